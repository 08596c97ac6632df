#!/usr/bin/env python3
"""speck next to its peers, same models, same machine, one sitting.

usage: scripts/bench_peers.py [--runs N] [--sittings N] [--speck target/release/speck] MODEL.onnx...
Needs the peers venv (see ../shared/peers/README.md): run it with that venv's python.
For each model and thread count (1, 2) it runs `speck bench --json` and the peers harness
(`../shared/peers/peers.py`: ONNX Runtime, OpenVINO, tract, fp32 and int8 QDQ; ncnn fp32 where
MODEL.ncnn.param exists, made with `pnnx MODEL.onnx inputshape=[1,3,H,W]`), then prints one
markdown table with median latencies and speck's ratio to each peer (below 1 = faster; "-"
where a peer did not run that model at all, "failed" where it could not load or run it).
speck also runs the int8 QDQ copy the harness makes (MODEL.qdq.onnx, ONNX Runtime's
quantize_static) on its int8 engine; int8 peers are compared with speck int8, fp32 peers
with speck fp32.
"""
import argparse, json, os, re, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--speck", default="target/release/speck")
ap.add_argument("--sittings", type=int, default=1,
                help="repeat the whole comparison N times and keep each cell's lowest median "
                     "(on a noisy shared host, the least-disturbed sitting of every runtime)")
ap.add_argument("--peers", default=os.path.join(os.path.dirname(__file__), "../../shared/peers/peers.py"))
a = ap.parse_args()

def speck_bench(model, threads):
    s = subprocess.run([a.speck, "bench", model, "--threads", str(threads), "--runs", str(a.runs), "--json"],
                       capture_output=True, text=True)
    if s.returncode != 0:
        sys.exit(f"speck bench failed on {model}: {s.stderr.strip()}")
    return json.loads(s.stdout)["median_ms"]


def low(a, b):
    return b if a is None else a if b is None else min(a, b)


best = {}
for sitting in range(a.sittings):
    for model in a.models:
        for threads in (1, 2):
            speck_ms = speck_bench(model, threads)
            p = subprocess.run([sys.executable, a.peers, model, "--threads", str(threads), "--runs", str(a.runs)],
                               capture_output=True, text=True)
            peers = {}
            for line in p.stdout.splitlines():
                m = re.match(r"(.+?)\s+median\s+([\d.]+) ms", line)
                if m:
                    peers[m.group(1).strip()] = float(m.group(2))
                elif line.strip():
                    peers[line.split("  ")[0].strip()] = None
            qpath = model[:-5] + ".qdq.onnx"
            speck_int8 = speck_bench(qpath, threads) if os.path.exists(qpath) else None
            key = (os.path.basename(model), threads)
            if key in best:
                sm, si, pe = best[key]
                peers = {n: low(pe.get(n), peers.get(n)) for n in set(pe) | set(peers)}
                speck_ms, speck_int8 = low(sm, speck_ms), low(si, speck_int8)
            best[key] = (speck_ms, speck_int8, peers)
rows = [(k[0], k[1], *v) for k, v in best.items()]

names = sorted({k for r in rows for k in r[4]})
print("| model | threads | speck fp32 ms | speck int8 ms | " + " | ".join(f"{n} ms (speck ratio)" for n in names) + " |")
print("|---|---|---|---|" + "---|" * len(names))
for model, threads, sm, si, peers in rows:
    cells = []
    for n in names:
        if n not in peers:
            cells.append("-")
            continue
        v = peers[n]
        mine = si if "int8" in n and si is not None else sm
        cells.append("failed" if v is None else f"{v:.2f} ({mine / v:.2f})")
    int8_cell = "-" if si is None else f"{si:.2f}"
    print(f"| {model} | {threads} | {sm:.2f} | {int8_cell} | " + " | ".join(cells) + " |")
