"""Parameters and multiply-accumulates per part of a SpeckDet.

  python -m speck_models.profile --config cpu-small --size 384 [--upsampler nearest --lga none]

MACs: convolutions exactly (out elements x in-channels/groups x kernel area), plus the
non-convolution work counted analytically: LGA's two einsums per branch (h * d^2 * HW each),
LDA-AQU's bilinear sampling (4 MACs per sampled value, 9 taps, K and V), its attention
(9 * Cq logits + 9 * C weighted sum per output pixel) and its bilinear query upsampling.
Elementwise ops, norms and activations are not counted.
"""
from __future__ import annotations

import argparse
import json

import torch
from torch import nn

from .configs import get_config
from .detector import build_model
from .lda_aqu import LDAAQU
from .lga import LocalGlobalAttention


def profile(model, size):
    macs = {"backbone": 0, "lga": 0, "neck": 0, "head": 0}
    hooks = []

    def part(name):
        return name.split(".")[0]

    for name, mod in model.named_modules():
        p = part(name)
        if isinstance(mod, nn.Conv2d):
            def h(m, i, o, p=p):
                macs[p] += o.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
            hooks.append(mod.register_forward_hook(h))
        elif isinstance(mod, LocalGlobalAttention):
            def h(m, i, o, p=p):
                b, c, H, W = i[0].shape
                d = c // m.num_heads
                macs[p] += 4 * 2 * m.num_heads * d * d * H * W  # 4 branches x 2 einsums
            hooks.append(mod.register_forward_hook(h))
        elif isinstance(mod, LDAAQU):
            def h(m, i, o, p=p):
                b, c, Ho, Wo = o.shape
                n = m.k_u ** 2
                px = Ho * Wo
                macs[p] += px * n * 4 * (m.hidden + c)      # bilinear sampling of K and V
                macs[p] += px * n * (m.hidden + c)          # logits + weighted sum
                macs[p] += px * 4 * m.hidden                # bilinear upsampling of q
            hooks.append(mod.register_forward_hook(h))
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, size, size))
    for h in hooks:
        h.remove()
    params = {k: sum(p.numel() for n, p in model.named_parameters() if n.split(".")[0] == k) for k in macs}
    ups = [m for m in model.neck.up]
    return dict(params=params, params_total=sum(params.values()), macs=macs, macs_total=sum(macs.values()),
                upsampler_params=sum(p.numel() for m in ups for p in m.parameters()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="cpu-small")
    ap.add_argument("--size", type=int)
    ap.add_argument("--upsampler")
    ap.add_argument("--lga")
    a = ap.parse_args(argv)
    cfg = get_config(a.config, upsampler=a.upsampler, lga=a.lga)
    m = build_model(cfg["model"])
    print(json.dumps(profile(m, a.size or cfg["input_size"])))


if __name__ == "__main__":
    main()
