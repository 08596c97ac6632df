#!/usr/bin/env python3
"""Two or more speck builds on one model, alternating: end-to-end medians and per-op times.

usage: scripts/ab_ops.py [--rounds N] [--runs N] [--threads N] [--node TEXT] MODEL BIN BIN...
  example: scripts/ab_ops.py --rounds 5 --node conv_offset model.qdq.onnx old/speck target/release/speck

Each round runs every build once (`speck bench MODEL --profile --json`), so the builds take
turns: timing on a shared host drifts by tens of percent over minutes, and a same-minute
comparison is the only fair one. Prints, per build, the median and the lowest of the rounds'
end-to-end medians; then per op kind (nodes summed, "Conv [kernel]" as "Conv") the lowest of
the rounds, the 14 largest; with `--node`, also each node whose name contains TEXT.
Standard library only.
"""
import argparse, collections, json, subprocess, sys

ap = argparse.ArgumentParser()
ap.add_argument("model")
ap.add_argument("bins", nargs="+")
ap.add_argument("--rounds", type=int, default=5)
ap.add_argument("--runs", type=int, default=40)
ap.add_argument("--threads", type=int, default=1)
ap.add_argument("--node", help="also list the nodes whose name contains this")
a = ap.parse_args()
if len(a.bins) < 2:
    sys.exit("ab_ops.py: give at least two speck builds")

total = collections.defaultdict(list)
ops = collections.defaultdict(lambda: collections.defaultdict(list))
nodes = collections.defaultdict(lambda: collections.defaultdict(list))
for _ in range(a.rounds):
    for b in a.bins:
        cmd = [b, "bench", a.model, "--runs", str(a.runs), "--threads", str(a.threads),
               "--profile", "--json"]
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"{' '.join(cmd)} failed: {p.stderr.strip()}")
        d = json.loads(p.stdout)
        total[b].append(d["median_ms"])
        per_op = collections.Counter()
        for x in d["profile"]:
            op = x["op"].split(" [")[0]
            per_op[op] += x["ms"]
            if a.node and a.node in x["node"]:
                nodes[b][f"{op} {x['node']}"].append(x["ms"])
        for op, ms in per_op.items():
            ops[b][op].append(ms)

for b in a.bins:
    t = sorted(total[b])
    print(f"{b}: end to end median {t[len(t) // 2]:.3f} ms, lowest {t[0]:.3f} ms")
print()
print("| op | " + " | ".join(f"build {i + 1} ms" for i in range(len(a.bins))) + " |")
print("|---|" + "---:|" * len(a.bins))
first = ops[a.bins[0]]
for op in sorted(first, key=lambda k: -min(first[k]))[:14]:
    cells = [f"{min(ops[b][op]):.3f}" if ops[b][op] else "-" for b in a.bins]
    print(f"| {op} | " + " | ".join(cells) + " |")
if a.node:
    print()
    for name in nodes[a.bins[0]]:
        cells = [f"{min(nodes[b][name]):.4f}" if nodes[b][name] else "-" for b in a.bins]
        print(f"| {name} | " + " | ".join(cells) + " |")
