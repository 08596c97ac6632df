"""speck infer == ONNX Runtime, op by op and on the committed real models.

Every case of make_op_models.py is generated into a pytest temporary directory, fed random normal
inputs (seeded from the case name), run through ONNX Runtime (CPUExecutionProvider, default
options) and `speck infer`, and each output must match: same shape and dtype, NaNs in the same
places, and max abs error <= 1e-4 * max(1, max(ORT) - min(ORT)).
"""
from __future__ import annotations

import glob
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import make_op_models as M  # noqa: E402
from parity_util import (ROOT, assert_clean_failure, assert_no_panic, check_parity, compare,  # noqa: E402
                         describe, graph_io, ort_run, random_inputs, require_speck, sanitize, speck_infer)

OP_CASES = list(M.CASES)

# cases also run with `--threads 2`
THREADED_CASES = ["conv_3x3", "conv_group4", "conv_dw7x7", "conv_dw11x11", "conv_stride2", "conv_1x1",
                  "block_conv_bn_relu", "block_mbv3_bneck", "block_residual", "block_lda_aqu",
                  "matmul_broadcast_batch"]

REAL_MODELS = {
    "speck-tiny": ROOT / "models" / "speck-tiny.onnx",
    "mnv3s_224": ROOT / "models" / "reference" / "mnv3s_224.onnx",
    "mnv3l_224": ROOT / "models" / "reference" / "mnv3l_224.onnx",
}
REAL_TIMEOUT = 600  # a debug build on a busy machine is slow


@pytest.fixture(scope="session")
def op_models(tmp_path_factory):
    return {k: Path(v) for k, v in M.build_all(str(tmp_path_factory.mktemp("ops"))).items()}


@pytest.fixture(scope="session")
def speck():
    return require_speck()


# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case", OP_CASES)
def test_op_parity(case, op_models, speck, tmp_path):
    path = op_models[case]
    check_parity(path, random_inputs(path, case), tmp_path)


@pytest.mark.parametrize("case", THREADED_CASES)
def test_op_parity_threads2(case, op_models, speck, tmp_path):
    path = op_models[case]
    check_parity(path, random_inputs(path, case), tmp_path, extra=["--threads", "2"])


# --------------------------------------------------------------------------------------------
def _real(name: str) -> Path:
    p = REAL_MODELS[name]
    if not p.is_file():
        pytest.skip(f"{p.relative_to(ROOT)} is absent")
    return p


@pytest.mark.parametrize("name", list(REAL_MODELS))
def test_real_model_parity_random(name, speck, tmp_path):
    p = _real(name)
    check_parity(p, random_inputs(p, name), tmp_path, timeout=REAL_TIMEOUT)


@pytest.mark.parametrize("name", ["mnv3s_224"])
def test_real_model_parity_threads2(name, speck, tmp_path):
    p = _real(name)
    check_parity(p, random_inputs(p, name), tmp_path, extra=["--threads", "2"], timeout=REAL_TIMEOUT)


def _letterbox_input(model_path: Path, image_path: str) -> np.ndarray:
    """The model contract's preprocessing (docs/model-contract.md), from the model's metadata."""
    from PIL import Image

    ins, _, m = graph_io(model_path)
    (_, shape), = ins
    _, c, H, W = shape
    meta = {p.key: p.value for p in m.metadata_props}
    mean = np.array([float(v) for v in meta.get("mean", "0,0,0").split(",")], np.float32)
    std = np.array([float(v) for v in meta.get("std", "1,1,1").split(",")], np.float32)
    img = Image.open(image_path).convert("RGB")
    w, h = img.size
    if meta.get("resize", "letterbox") == "stretch":
        canvas = np.asarray(img.resize((W, H), Image.BILINEAR), np.float32) / 255.0
    else:
        s = min(W / w, H / h)
        nw, nh = max(1, round(w * s)), max(1, round(h * s))
        canvas = np.full((H, W, 3), 114.0 / 255.0, np.float32)
        top, left = (H - nh) // 2, (W - nw) // 2
        canvas[top:top + nh, left:left + nw] = np.asarray(img.resize((nw, nh), Image.BILINEAR), np.float32) / 255.0
    x = (canvas - mean) / std
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None].astype(np.float32))


def test_speck_tiny_parity_on_image(speck, tmp_path):
    p = _real("speck-tiny")
    pytest.importorskip("PIL", reason="Pillow is needed to decode the example images")
    images = sorted(glob.glob(str(ROOT / "examples" / "data" / "images" / "*.jpg")))
    if not images:
        pytest.skip("examples/data/images/*.jpg is absent")
    for i, img in enumerate(images[:2]):
        check_parity(p, [_letterbox_input(p, img)], tmp_path / f"img{i}", timeout=REAL_TIMEOUT)


# --------------------------------------------------------------------------------------------
NAN_CASES = ["relu", "conv_3x3", "block_conv_bn_relu", "maxpool_k3s2p1"]


@pytest.mark.parametrize("case", NAN_CASES)
def test_nan_input(case, op_models, speck, tmp_path):
    """NaN inputs: exit 0 with NaNs where ORT has them (and the rest within tolerance), or a clean
    one-line error; never a panic."""
    path = op_models[case]
    x, = random_inputs(path, case)
    flat = x.reshape(-1)
    flat[[0, 7, flat.size // 2, flat.size - 1]] = np.nan
    ref = ort_run(path, [x])
    proc, out = speck_infer(path, [x], tmp_path)
    assert_no_panic(proc)
    if proc.returncode != 0:
        assert_clean_failure(proc)
        return
    for oname, r in ref.items():
        f = out / f"{sanitize(oname)}.npy"
        assert f.is_file(), f"missing {f.name}\n" + describe(proc)
        compare(oname, r, np.load(f, allow_pickle=False))


def test_case_list_is_complete():
    """Guards the generator: every op the brief lists is present in at least one case."""
    import onnx

    ops = set()
    for name, fn in M.CASES.items():
        ops |= {n.op_type for n in fn().graph.node}
    required = {"Conv", "BatchNormalization", "Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Tanh",
                "Erf", "LeakyRelu", "Add", "Sub", "Mul", "Div", "Concat", "Slice", "Split", "Reshape",
                "Transpose", "Flatten", "Squeeze", "Unsqueeze", "GlobalAveragePool", "ReduceMean", "ReduceSum",
                "MaxPool", "AveragePool", "Resize", "Softmax", "LayerNormalization", "MatMul", "Gemm", "Einsum",
                "GridSample", "Pad", "Gather", "Expand", "Shape", "Cast", "Identity"}
    assert required <= ops, f"missing ops: {sorted(required - ops)}"
    assert onnx.defs.onnx_opset_version() >= M.OPSET
