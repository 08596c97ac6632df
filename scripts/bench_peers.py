#!/usr/bin/env python3
"""speck next to its peers, same models, same machine, one sitting.

usage: scripts/bench_peers.py [--runs N] [--speck target/release/speck] MODEL.onnx...
Needs the peers venv (see ../shared/peers/README.md): run it with that venv's python.
For each model and thread count (1, 2) it runs `speck bench --json` and the peers harness
(`../shared/peers/peers.py`: ONNX Runtime, OpenVINO, tract, fp32 and int8 QDQ), then prints
one markdown table with median latencies and speck's ratio to each peer (below 1 = faster).
"""
import argparse, json, os, re, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("models", nargs="+")
ap.add_argument("--runs", type=int, default=30)
ap.add_argument("--speck", default="target/release/speck")
ap.add_argument("--peers", default=os.path.join(os.path.dirname(__file__), "../../shared/peers/peers.py"))
a = ap.parse_args()

rows = []
for model in a.models:
    for threads in (1, 2):
        s = subprocess.run([a.speck, "bench", model, "--threads", str(threads), "--runs", str(a.runs), "--json"],
                           capture_output=True, text=True)
        if s.returncode != 0:
            sys.exit(f"speck bench failed on {model}: {s.stderr.strip()}")
        speck_ms = json.loads(s.stdout)["median_ms"]
        p = subprocess.run([sys.executable, a.peers, model, "--threads", str(threads), "--runs", str(a.runs)],
                           capture_output=True, text=True)
        peers = {}
        for line in p.stdout.splitlines():
            m = re.match(r"(.+?)\s+median\s+([\d.]+) ms", line)
            if m:
                peers[m.group(1).strip()] = float(m.group(2))
            elif line.strip():
                peers[line.split("  ")[0].strip()] = None
        rows.append((os.path.basename(model), threads, speck_ms, peers))

names = sorted({k for r in rows for k in r[3]})
print("| model | threads | speck fp32 ms | " + " | ".join(f"{n} ms (speck ratio)" for n in names) + " |")
print("|---|---|---|" + "---|" * len(names))
for model, threads, sm, peers in rows:
    cells = []
    for n in names:
        v = peers.get(n)
        cells.append("failed" if v is None else f"{v:.2f} ({sm / v:.2f})")
    print(f"| {model} | {threads} | {sm:.2f} | " + " | ".join(cells) + " |")
