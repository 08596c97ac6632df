"""Ablation on the synthetic benchmark with one identical short schedule per variant.

  python -m speck_models.ablate --data /tmp/models-scratch/synth_train \
      --val /tmp/models-scratch/synth_val --out /tmp/models-scratch/ablate --minutes 6 --val-limit 50

On a GPU, `--jobs 5 --device cuda --workers 2` trains all variants at once (one process each);
each still gets `--minutes` of its own training time.

Variants: baseline (nearest FPN, no LGA), +LGA reference, +LGA paper, +LDA-AQU, +LGA reference
+ LDA-AQU.  Each trains `--minutes` of wall time from the same seed with the cpu-small config,
then is scored on the first `--val-limit` held-out images (tiled, AP50 and AP50-tiny).
Writes results.json and results.md (a table) to --out.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import torch

from .data.datasets import load_coco
from .detector import build_model
from .evaluate import evaluate, torch_runner
from .profile import profile
from .train import load_model, resolve_device
from .train import main as train_main

VARIANTS = [("baseline (nearest)", "nearest", "none"),
            ("+LGA reference", "nearest", "reference"),
            ("+LGA paper", "nearest", "paper"),
            ("+LDA-AQU", "lda-aqu", "none"),
            ("+LGA reference +LDA-AQU", "lda-aqu", "reference")]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--val", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--minutes", type=float, default=6.0)
    ap.add_argument("--val-limit", type=int, default=50)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", type=int, nargs="*", help="indices of variants to run")
    ap.add_argument("--jobs", type=int, default=1, help="variants trained at the same time (subprocesses)")
    ap.add_argument("--device", default="auto", help="cpu | cuda | auto")
    ap.add_argument("--workers", type=int, default=0, help="data-loader workers per variant")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    res_path = os.path.join(a.out, "results.json")
    results = json.load(open(res_path)) if os.path.exists(res_path) else {}
    items = load_coco(os.path.join(a.val, "annotations.json"))[:a.val_limit]
    todo = [(i, v) for i, v in enumerate(VARIANTS) if not (a.only and i not in a.only) and v[0] not in results]

    def train_args(i, ups, lga):
        return ["--config", "cpu-small", "--data", a.data, "--out", os.path.join(a.out, f"v{i}"),
                "--minutes", str(a.minutes), "--upsampler", ups, "--lga", lga, "--batch", str(a.batch),
                "--lr", str(a.lr), "--threads", str(a.threads), "--workers", str(a.workers),
                "--device", a.device, "--resume"]

    failed = set()
    if a.jobs > 1:  # train concurrently, then score one by one
        for k in range(0, len(todo), a.jobs):
            procs = []
            for i, (_, ups, lga) in todo[k:k + a.jobs]:
                os.makedirs(os.path.join(a.out, f"v{i}"), exist_ok=True)
                log = open(os.path.join(a.out, f"v{i}", "train.log"), "a")
                cmd = [sys.executable, "-m", "speck_models.train"] + train_args(i, ups, lga)
                procs.append((i, subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)))
            for i, p in procs:
                if p.wait() != 0:  # score the others anyway
                    print(f"variant {i} failed: see {os.path.join(a.out, f'v{i}', 'train.log')}", file=sys.stderr)
                    failed.add(i)
    device = resolve_device(a.device)
    for i, (name, ups, lga) in todo:
        run = os.path.join(a.out, f"v{i}")
        if i in failed:
            continue
        if a.jobs <= 1:
            train_main(train_args(i, ups, lga))
        model, cfg = load_model(os.path.join(run, "last.pt"))
        model.to(device)
        torch.set_num_threads(a.threads)
        m, _ = evaluate(torch_runner(model, device), items, cfg["input_size"], model.stride)
        prof = profile(build_model(cfg["model"]), cfg["input_size"])
        ck = torch.load(os.path.join(run, "last.pt"), map_location="cpu", weights_only=False)
        results[name] = dict(upsampler=ups, lga=lga, iters=ck["iter"], minutes=ck["elapsed"] / 60, **m,
                             params=prof["params_total"], macs=prof["macs_total"])
        print(name, json.dumps(results[name]))
        with open(res_path, "w") as f:
            json.dump(results, f, indent=1)
    lines = ["| variant | upsampler | LGA | iters | AP50 | AP50-tiny | params | MACs (G) |",
             "|---|---|---|---|---|---|---|---|"]
    for name, _, _ in VARIANTS:
        if name in results:
            r = results[name]
            lines.append(f"| {name} | {r['upsampler']} | {r['lga']} | {r['iters']} | {100 * r['AP50']:.1f} | "
                         f"{100 * r['AP50_tiny']:.1f} | {r['params']:,} | {r['macs'] / 1e9:.3f} |")
    with open(os.path.join(a.out, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
