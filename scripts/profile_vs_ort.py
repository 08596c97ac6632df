#!/usr/bin/env python3
"""Per-node time of speck next to ONNX Runtime's, same model, same input, one sitting.

usage: scripts/profile_vs_ort.py MODEL.onnx [--runs N] [--threads N] [--speck target/release/speck]
                                 [--top N] [--json]
Needs onnxruntime (the peers venv or the test venv). speck's times come from
`speck bench --profile --json`, ONNX Runtime's from its own profiler (`enable_profiling`, the
mean `kernel_time` per node over the runs, the first run left out). ONNX Runtime fuses some
nodes (Conv+Add, Conv+activation) and names the fused node after its first member; a speck
node whose name ONNX Runtime's profile lacks counts as fused (shown as `-`). Lines are sorted
by speck's time; the totals at the bottom compare the two end to end.
"""
import argparse, collections, json, os, subprocess, sys, tempfile

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--speck", default="target/release/speck")
ap.add_argument("--top", type=int, default=40, help="print the N slowest speck nodes")
ap.add_argument("--json", action="store_true", help="one JSON object instead of the table")
a = ap.parse_args()

import numpy as np
import onnx
import onnxruntime as ort

s = subprocess.run([a.speck, "bench", a.model, "--threads", str(a.threads), "--runs", str(a.runs),
                    "--profile", "--json"], capture_output=True, text=True)
if s.returncode != 0:
    sys.exit(f"speck bench failed: {s.stderr.strip()}")
speck = json.loads(s.stdout)

so = ort.SessionOptions()
so.intra_op_num_threads = a.threads
so.inter_op_num_threads = 1
so.enable_profiling = True
tmp = tempfile.mkdtemp()
so.profile_file_prefix = os.path.join(tmp, "ort")
sess = ort.InferenceSession(a.model, so, providers=["CPUExecutionProvider"])
inp = sess.get_inputs()[0]
shape = [d if isinstance(d, int) else 1 for d in inp.shape]
x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
for _ in range(a.runs + 1):
    sess.run(None, {inp.name: x})
events = json.load(open(sess.end_profiling()))

# ONNX Runtime's NCHWc rewrite names a node after its output tensor (`<tensor>_nchwc`) and a
# fused chain after its last output (Conv+Add+Relu: the Relu's output): map each back through
# the ONNX graph to the node that starts the chain, which is the name speck profiles it under.
graph = onnx.load(a.model, load_external_data=False).graph
producer = {o: n for n in graph.node for o in n.output}
by_name = {n.name: n for n in graph.node}
speck_names = {p["node"] for p in speck["profile"]}
FUSABLE = {"Relu", "Clip", "HardSwish", "HardSigmoid", "Sigmoid", "Add", "BatchNormalization"}


def speck_node(ort_name):
    node = by_name.get(ort_name)
    if node is None and ort_name.endswith("_nchwc"):
        node = producer.get(ort_name[: -len("_nchwc")])
    fused = []
    while node is not None and node.name not in speck_names and node.op_type in FUSABLE:
        fused.append(node.op_type)
        ins = [producer.get(i) for i in node.input]
        convs = [n for n in ins if n is not None and n.op_type == "Conv"]
        node = convs[0] if convs else next((n for n in ins if n is not None), None)
    return (node.name if node is not None else ort_name), fused


ort_us = collections.defaultdict(list)
ort_op = {}
for e in events:
    if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
        op = e.get("args", {}).get("op_name", "")
        if op.startswith("Reorder"):
            name, fused = f"({op} nodes, all)", []
        else:
            name, fused = speck_node(e["name"][: -len("_kernel_time")])
        ort_us[name].append(e["dur"])
        ort_op[name] = "+".join([op] + fused[::-1]) if fused else op
runs = a.runs + 1
# a name can collect several ORT nodes per run (Reorder nodes): sum per run, drop the first run
ort_ms = {n: float(np.sum(v) - np.sum(v[: len(v) // runs])) / (runs - 1) / 1000
          for n, v in ort_us.items()}

rows = []
for p in speck["profile"]:
    o = ort_ms.get(p["node"])
    rows.append({"node": p["node"], "speck_op": p["op"], "speck_ms": p["ms"],
                 "ort_op": ort_op.get(p["node"]), "ort_ms": o})
total_speck = sum(r["speck_ms"] for r in rows)
total_ort = sum(ort_ms.values())
# ONNX Runtime-only nodes (layout reorders): one line each kind
extra = [(n, ms) for n, ms in ort_ms.items() if n not in speck_names]
if a.json:
    print(json.dumps({"model": a.model, "threads": a.threads, "nodes": rows,
                      "speck_total_ms": total_speck, "ort_total_ms": total_ort}, indent=1))
    sys.exit(0)
print(f"| node | speck op | speck ms | ORT op | ORT ms | ratio |")
print("|---|---|---:|---|---:|---:|")
for r in sorted(rows, key=lambda r: -r["speck_ms"])[: a.top]:
    o = r["ort_ms"]
    print(f"| {r['node']} | {r['speck_op']} | {r['speck_ms']:.3f} | {r['ort_op'] or '-'} | "
          + (f"{o:.3f} | {r['speck_ms'] / o:.2f} |" if o else "- | - |"))
for n, ms in sorted(extra, key=lambda x: -x[1]):
    print(f"| {n} | - | - | {ort_op.get(n, '')} | {ms:.3f} | - |")
print(f"\nsum of node times: speck {total_speck:.3f} ms, ONNX Runtime {total_ort:.3f} ms "
      f"({total_speck / total_ort:.2f}x); speck end to end median {speck['median_ms']:.3f} ms")
