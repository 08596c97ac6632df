import json
import os

import numpy as np
import onnx
import pytest
import torch

from speck_models.configs import get_config
from speck_models.detector import build_model
from speck_models.export import export_model, parity

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS = {"speck.format", "input_size", "mean", "std", "resize", "class_names", "output_format",
        "strides", "backbone", "lga", "upsampler", "tile"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    cfg = get_config("cpu-small")
    m = build_model(cfg["model"]).eval()
    with torch.no_grad():  # non-zero offsets so GridSample really samples off-grid
        for mod in m.modules():
            if hasattr(mod, "conv_offset"):
                torch.nn.init.normal_(mod.conv_offset[-1].weight, std=0.3)
        for mod in m.modules():  # non-trivial BN statistics
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.normal_(0, 0.1); mod.running_var.uniform_(0.5, 2)
    path = str(tmp_path_factory.mktemp("onnx") / "m.onnx")
    proto, ops = export_model(m, cfg, path, 256)
    return m, path, proto, ops


def test_parity_ort_vs_torch(exported):
    m, path, _, _ = exported
    d = parity(m, path, 256, n=2)
    assert max(d.values()) <= 1e-4, d


def test_graph_ops(exported):
    _, _, proto, ops = exported
    assert "ScatterND" not in ops
    assert ops["Einsum"] == 8 and ops["GridSample"] == 6 and ops["LayerNormalization"] == 6
    assert proto.opset_import[0].version == 17


def test_contract_io_and_metadata(exported):
    _, path, _, _ = exported
    p = onnx.load(path)
    assert [i.name for i in p.graph.input] == ["images"]
    assert [o.name for o in p.graph.output] == ["heatmap", "box"]
    md = {x.key: x.value for x in p.metadata_props}
    assert set(md) == KEYS
    assert md["output_format"] == "speck_centernet" and json.loads(md["class_names"]) == ["person"]
    assert md["tile"] == f"{md['input_size'].split(',')[1]}x{md['input_size'].split(',')[0]}"
    assert md["input_size"] == "256,256" and md["strides"] == "4"


def test_shipped_model():
    path = os.path.join(ROOT, "speck-tiny.onnx")
    if not os.path.exists(path):
        pytest.skip("models/speck-tiny.onnx not built")
    assert os.path.getsize(path) <= 10 * 2 ** 20
    p = onnx.load(path)
    onnx.checker.check_model(p)
    md = {x.key: x.value for x in p.metadata_props}
    assert set(md) >= KEYS and md["output_format"] == "speck_centernet"
    assert all(n.op_type != "ScatterND" for n in p.graph.node)
    w, h = (int(v) for v in md["input_size"].split(","))
    dims = [d.dim_value for d in p.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 3, h, w]
    import onnxruntime as ort
    s = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    heat, box = s.run(["heatmap", "box"], {"images": np.zeros((1, 3, h, w), np.float32)})
    assert heat.shape == (1, 1, h // 4, w // 4) and box.shape == (1, 4, h // 4, w // 4)
