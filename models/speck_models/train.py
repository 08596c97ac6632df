"""Training.

  python -m speck_models.train --config cpu-small --data /tmp/models-scratch/synth_train \
      --val /tmp/models-scratch/synth_val --out /tmp/models-scratch/run [--resume]

Time-budgeted cosine schedule (`minutes` in the config, or --minutes): the learning rate follows
the elapsed training time, so a resumed run continues the same schedule.  Checkpoints
(`last.pt` every --ckpt-every minutes, `best.pt` by held-out AP50) go to --out.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .configs import get_config
from .data.datasets import SynthDataset, TinyPersonDataset, collate, load_coco
from .detector import build_model
from .evaluate import evaluate, torch_runner
from .head import centernet_loss


def load_model(path):
    ck = torch.load(path, map_location="cpu", weights_only=False)
    cfg = ck["cfg"]
    m = build_model(cfg["model"])
    m.load_state_dict(ck["model"])
    m.eval()
    return m, cfg


def resolve_device(name):
    """`auto` -> cuda when available, else cpu; anything else as torch names it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def lr_at(cfg, it, frac):
    if it < cfg["warmup"]:
        return cfg["lr"] * (it + 1) / cfg["warmup"]
    return cfg["lr"] * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu-small")
    ap.add_argument("--data", required=True, help="synthetic dir (annotations.json + images/) or TinyPerson json")
    ap.add_argument("--tinyperson-images", help="image root when --data is a real TinyPerson json")
    ap.add_argument("--val", help="held-out dir for AP50 at checkpoints")
    ap.add_argument("--val-limit", type=int, default=20)
    ap.add_argument("--out", required=True)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--minutes", type=float)
    ap.add_argument("--max-iters", type=int)
    ap.add_argument("--input-size", type=int)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--upsampler")
    ap.add_argument("--lga")
    ap.add_argument("--eval-every", type=float, default=10.0, help="minutes")
    ap.add_argument("--ckpt-every", type=float, default=5.0, help="minutes")
    ap.add_argument("--threads", type=int, help="torch intra-op threads (1 avoids thrashing on busy cores)")
    ap.add_argument("--workers", type=int, help="data-loader worker processes")
    ap.add_argument("--device", default="auto", help="cpu | cuda | cuda:N | auto (cuda when available)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)

    cfg = get_config(a.config, minutes=a.minutes, max_iters=a.max_iters, input_size=a.input_size,
                     batch=a.batch, lr=a.lr, upsampler=a.upsampler, lga=a.lga,
                     threads=a.threads, workers=a.workers)
    device = resolve_device(a.device)
    torch.set_num_threads(cfg["threads"])
    random.seed(a.seed); np.random.seed(a.seed); torch.manual_seed(a.seed)
    os.makedirs(a.out, exist_ok=True)
    log = open(os.path.join(a.out, "log.jsonl"), "a")

    model = build_model(cfg["model"]).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    it, elapsed, best = 0, 0.0, -1.0
    last = os.path.join(a.out, "last.pt")
    if a.resume and os.path.exists(last):
        ck = torch.load(last, map_location="cpu", weights_only=False)
        model.load_state_dict(ck["model"]); opt.load_state_dict(ck["opt"])
        it, elapsed, best = ck["iter"], ck["elapsed"], ck.get("best", -1.0)
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed at iter {it}, {elapsed / 60:.1f} min")
    n_par = sum(p.numel() for p in model.parameters())
    print(f"config {a.config}: {json.dumps(cfg)}\nparams {n_par}, device {device}")

    size = cfg["input_size"]
    if a.tinyperson_images:
        ds = TinyPersonDataset(a.data, a.tinyperson_images, size, seed=a.seed)
    else:
        ds = SynthDataset(os.path.join(a.data, "annotations.json"), size, scale_aug=tuple(cfg["scale_aug"]), seed=a.seed)
    if cfg["workers"] > 0 and isinstance(ds, SynthDataset):
        ds.preload(threads=max(1, cfg["workers"]))  # decoded once here, shared copy-on-write by the workers
    val_items = load_coco(os.path.join(a.val, "annotations.json"))[:a.val_limit] if a.val else None
    budget = (cfg["minutes"] or 1e9) * 60

    def save(path, extra=None):
        ck = dict(model=model.state_dict(), opt=opt.state_dict(), iter=it, elapsed=elapsed, best=best,
                  cfg=cfg, torch_rng=torch.get_rng_state())
        ck.update(extra or {})
        torch.save(ck, path + ".tmp")
        os.replace(path + ".tmp", path)

    def run_eval():
        nonlocal best
        model.eval()
        m, _ = evaluate(torch_runner(model, device), val_items, size, model.stride)
        model.train()
        rec = dict(iter=it, minutes=elapsed / 60, **m)
        log.write(json.dumps(rec) + "\n"); log.flush()
        tqdm.write(f"eval {json.dumps(rec)}")
        if m["AP50"] > best:
            best = m["AP50"]
            save(os.path.join(a.out, "best.pt"), dict(val=m))

    model.train()
    t_ck = t_ev = elapsed
    pbar = tqdm(total=cfg["max_iters"], initial=it, dynamic_ncols=True, mininterval=10)

    def train_loop():
        nonlocal it, elapsed, t_ck, t_ev
        while it < cfg["max_iters"] and elapsed < budget:
            ds.epoch = it  # fresh, deterministic crops after a resume
            dl = DataLoader(ds, batch_size=cfg["batch"], num_workers=cfg["workers"], collate_fn=collate,
                            shuffle=isinstance(ds, TinyPersonDataset), pin_memory=device.type == "cuda",
                            persistent_workers=False, prefetch_factor=4 if cfg["workers"] > 0 else None)
            t_prev = time.time()
            for imgs, t in dl:
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, it, elapsed / budget)
                imgs = imgs.to(device, non_blocking=True)
                t = {k: v.to(device, non_blocking=True) for k, v in t.items()}
                hm, reg = model.raw(imgs)
                loss, parts = centernet_loss(model.head, hm, reg, t)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 10.0)
                opt.step()
                it += 1
                now = time.time()
                elapsed += now - t_prev  # data + step time; eval and checkpointing excluded
                t_prev = now
                pbar.update(1)
                pbar.set_postfix(loss=f"{loss.item():.3f}", hm=f"{parts['hm']:.3f}", giou=f"{parts['giou']:.3f}",
                                 min=f"{elapsed / 60:.1f}", refresh=False)
                if it % 20 == 0:
                    log.write(json.dumps(dict(iter=it, minutes=elapsed / 60, loss=loss.item(), lr=opt.param_groups[0]["lr"], **parts)) + "\n")
                    log.flush()
                if elapsed - t_ck > a.ckpt_every * 60:
                    save(last); t_ck = elapsed
                    t_prev = time.time()
                if val_items and elapsed - t_ev > a.eval_every * 60:
                    run_eval(); t_ev = elapsed
                    t_prev = time.time()
                if it >= cfg["max_iters"] or elapsed >= budget:
                    break
                if isinstance(ds, SynthDataset) and it % 1000 == 0:
                    break  # re-seed the crops

    try:
        train_loop()
    except KeyboardInterrupt:  # Ctrl-C / SIGINT: keep what was trained, --resume continues
        save(last)
        pbar.close()
        print(f"interrupted at iter {it}: saved {last}")
        raise SystemExit(130)
    save(last)
    if val_items:
        run_eval()
    pbar.close()
    print(f"done: {it} iters, {elapsed / 60:.1f} min of training, best AP50 {best:.4f}")


if __name__ == "__main__":
    main()
