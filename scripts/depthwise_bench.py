#!/usr/bin/env python3
"""Time single depthwise convs (Conv + Relu ONNX models, one per shape) on one or more speck
builds side by side, and optionally ONNX Runtime: a table of per-conv times.

usage: scripts/depthwise_bench.py [--speck BIN]... [--ort] [--rounds N] [--runs N] SHAPE...
  SHAPE is C:H:K:S (channels, square map side, square kernel, stride; "same" padding K // 2).
  example: scripts/depthwise_bench.py --speck old/speck --speck target/release/speck \\
               72:56:3:1 64:112:3:2 120:28:5:1 960:7:5:1

speck's time is the conv node's own (`speck bench --profile --json`), without the input copy
that `bench`'s end-to-end time includes; ONNX Runtime's (`--ort`) is its session's end to end,
layout conversions included, so only the speck columns compare exactly. Each build runs
`--rounds` times, alternating with the others (timing on a shared host drifts by tens of
percent over minutes); a cell is the lowest of its rounds. Needs numpy and onnx (the peers or
test venv), onnxruntime for `--ort`.
"""
import argparse, json, os, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("shapes", nargs="+")
ap.add_argument("--speck", action="append", help="a speck binary (repeatable)")
ap.add_argument("--ort", action="store_true", help="add ONNX Runtime's end-to-end time")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--runs", type=int, default=300)
a = ap.parse_args()
bins = a.speck or ["target/release/speck"]

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def model(path, c, h, k, s):
    rng = np.random.default_rng(c * 1000 + h * 10 + k)
    w = numpy_helper.from_array((rng.standard_normal((c, 1, k, k)) * 0.1).astype(np.float32), "w")
    b = numpy_helper.from_array((rng.standard_normal(c) * 0.1).astype(np.float32), "b")
    p, oh = k // 2, (h + 2 * (k // 2) - k) // s + 1
    nodes = [
        helper.make_node("Conv", ["x", "w", "b"], ["y0"], group=c, kernel_shape=[k, k],
                         pads=[p] * 4, strides=[s, s]),
        helper.make_node("Relu", ["y0"], ["y"]),
    ]
    g = helper.make_graph(nodes, "dw", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, c, h, h])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, c, oh, oh])], [w, b])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
    m.ir_version = 8
    onnx.save(m, path)


def speck_ms(binary, path):
    out = subprocess.run([binary, "bench", path, "--runs", str(a.runs), "--profile", "--json"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} bench {path} failed: {out.stderr.strip()}")
    d = json.loads(out.stdout)
    return sum(p["ms"] for p in d["profile"] if p["op"].startswith("Conv")), d["profile"][0]["op"]


def ort_ms(path):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    x = np.random.rand(*sess.get_inputs()[0].shape).astype(np.float32)
    for _ in range(20):
        sess.run(None, {"x": x})
    ts = []
    for _ in range(a.runs):
        t = time.perf_counter()
        sess.run(None, {"x": x})
        ts.append(time.perf_counter() - t)
    return float(np.median(ts)) * 1e3


tmp = tempfile.mkdtemp()
cols = [os.path.basename(os.path.dirname(os.path.abspath(b))) + "/" + os.path.basename(b) for b in bins]
print("| C:H:K:S | " + " | ".join(f"{c} ms" for c in cols) + (" | ONNX Runtime ms (end to end)" if a.ort else "") + " | kernel (last build) |")
print("|---|" + "---:|" * (len(bins) + (1 if a.ort else 0)) + "---|")
for shape in a.shapes:
    c, h, k, s = (int(v) for v in shape.split(":"))
    path = os.path.join(tmp, f"dw_{c}_{h}_{k}_{s}.onnx")
    model(path, c, h, k, s)
    best = [float("inf")] * len(bins)
    kernel = ""
    for _ in range(a.rounds):
        for i, b in enumerate(bins):
            ms, kernel = speck_ms(b, path)
            best[i] = min(best[i], ms)
    cells = [f"{v:.3f}" for v in best] + ([f"{ort_ms(path):.3f}"] if a.ort else [])
    print(f"| {shape} | " + " | ".join(cells) + f" | {kernel} |")
