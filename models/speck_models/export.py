"""Export a checkpoint to ONNX per docs/model-contract.md (`speck_centernet`).

  python -m speck_models.export /tmp/models-scratch/run/best.pt -o models/speck-tiny.onnx

Opset 17, static [1, 3, S, S] input `images`, outputs `heatmap` and `box`, contract metadata.
Runs onnx.checker, folds constants (TorchScript exporter; onnxsim too when installed, optional),
refuses graphs with ScatterND, and checks ONNX Runtime against PyTorch (max abs diff <= 1e-4).
"""
from __future__ import annotations

import argparse
import io
import json
import os
from collections import Counter

import numpy as np
import onnx
import torch

from .detector import MEAN, STD


def metadata(cfg, size):
    m = cfg["model"]
    return {
        "speck.format": "1",
        "input_size": f"{size},{size}",
        "mean": ",".join(str(v) for v in MEAN),
        "std": ",".join(str(v) for v in STD),
        "resize": "letterbox",
        "class_names": json.dumps(["person"][:m["nc"]]),
        "output_format": "speck_centernet",
        "strides": str(m["out_stride"]),
        "backbone": m["backbone"],
        "lga": str(m["lga"] or "none"),
        "upsampler": m["upsampler"],
        # Trained on native-scale crops of full frames: the runtime cuts frames into tiles of
        # the input size instead of shrinking them (people would shrink below what it saw).
        "tile": f"{size}x{size}",
    }


def fold_constants(proto):
    """Folds every node whose inputs are constant, with static shapes from ONNX shape inference
    (the Shape -> Gather -> Concat chains of traced reshapes, Constant and Identity nodes).
    Uses onnx's reference evaluator, so only standard ONNX ops are produced."""
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    model = onnx.shape_inference.infer_shapes(proto, strict_mode=True, data_prop=True)
    g = model.graph
    known = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    shapes = {}
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        dims = vi.type.tensor_type.shape.dim
        if dims and all(d.HasField("dim_value") for d in dims):
            shapes[vi.name] = [d.dim_value for d in dims]
    opset = [helper.make_opsetid("", 17)]
    keep = []
    for node in g.node:
        ins = [i for i in node.input if i]
        if node.op_type == "Shape" and node.input[0] in shapes:
            shp = np.array(shapes[node.input[0]], np.int64)
            at = {a.name: a.i for a in node.attribute}
            known[node.output[0]] = shp[at.get("start", 0):at.get("end", len(shp))]
            continue
        if all(i in known for i in ins) and node.op_type not in ("RandomNormal", "RandomUniform"):
            sub = helper.make_graph([node], "f", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output])
            ev = ReferenceEvaluator(helper.make_model(sub, opset_imports=opset))
            outs = ev.run(None, {i: known[i] for i in ins})
            for o, v in zip(node.output, outs):
                known[o] = np.asarray(v)
            continue
        keep.append(node)
    used = {i for n in keep for i in n.input} | {o.name for o in g.output}
    inits = [numpy_helper.from_array(known[n], n) for n in sorted(used) if n in known]
    graph = helper.make_graph(keep, g.name, list(g.input), list(g.output), inits)
    out = helper.make_model(graph, opset_imports=list(proto.opset_import), producer_name=proto.producer_name)
    out.ir_version = proto.ir_version
    return out


def export_model(model, cfg, path, size, simplify=True):
    model = model.eval()
    x = torch.zeros(1, 3, size, size)
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, x, buf, opset_version=17, input_names=["images"],
                          output_names=["heatmap", "box"], do_constant_folding=True, dynamo=False)
    proto = onnx.load_from_string(buf.getvalue())
    if simplify:
        proto = fold_constants(proto)
        try:  # optional
            import onnxsim
            proto, ok = onnxsim.simplify(proto)
            assert ok
        except ImportError:
            pass
    del proto.metadata_props[:]
    for k, v in metadata(cfg, size).items():
        p = proto.metadata_props.add()
        p.key, p.value = k, v
    proto.producer_name = "speck_models"
    onnx.checker.check_model(proto, full_check=True)
    ops = Counter(n.op_type for n in proto.graph.node)
    if "ScatterND" in ops:
        raise RuntimeError("exported graph contains ScatterND")
    onnx.save(proto, path)
    return proto, ops


def parity(model, path, size, seed=0, n=2):
    """Max abs difference ORT vs PyTorch on `n` seeded inputs, per output."""
    import onnxruntime as ort
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(seed)
    worst = {"heatmap": 0.0, "box": 0.0}
    for _ in range(n):
        x = torch.randn(1, 3, size, size, generator=g)
        with torch.no_grad():
            h, b = model(x)
        oh, ob = sess.run(["heatmap", "box"], {"images": x.numpy()})
        worst["heatmap"] = max(worst["heatmap"], float(np.abs(oh - h.numpy()).max()))
        worst["box"] = max(worst["box"], float(np.abs(ob - b.numpy()).max()))
    return worst


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ckpt")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--size", type=int, help="input size (default: the training size)")
    ap.add_argument("--max-mb", type=float, default=10.0)
    a = ap.parse_args(argv)
    from .train import load_model
    model, cfg = load_model(a.ckpt)
    size = a.size or cfg["input_size"]
    proto, ops = export_model(model, cfg, a.output, size)
    d = parity(model, a.output, size)
    mb = os.path.getsize(a.output) / 2 ** 20
    print(f"wrote {a.output}: {mb:.2f} MB, input [1,3,{size},{size}]")
    print("ops:", dict(sorted(ops.items())))
    print("metadata:", {p.key: p.value for p in proto.metadata_props})
    print("parity (max abs diff ORT vs torch):", d)
    if max(d.values()) > 1e-4:
        raise SystemExit("parity check failed")
    if mb > a.max_mb:
        raise SystemExit(f"model is {mb:.1f} MB > {a.max_mb} MB")


if __name__ == "__main__":
    main()
