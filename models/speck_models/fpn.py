"""Top-down FPN down to stride 4 (or 8) with a selectable upsampler."""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .lda_aqu import LDAAQU


class Upsample2x(nn.Module):
    def __init__(self, mode):
        super().__init__()
        self.mode = mode

    def forward(self, x):
        if self.mode == "nearest":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


def make_upsampler(kind, c, **kw):
    if kind in ("nearest", "bilinear"):
        return Upsample2x(kind)
    if kind == "lda-aqu":
        return LDAAQU(c, **kw)
    raise ValueError(f"unknown upsampler {kind!r}")


class FPN(nn.Module):
    """in: [C2, C3, C4, C5] (strides 4..32). out: P at `out_stride` (4 or 8), C channels.

    Laterals 1x1 (+BN), top-down: P_i = L_i + crop(up(P_{i+1})), a 3x3 conv-BN-ReLU smoothing on
    the output level.
    """

    def __init__(self, in_channels, c, upsampler="nearest", out_stride=4, lda_kw=None):
        super().__init__()
        self.levels = {4: 0, 8: 1}[out_stride]
        ins = in_channels[self.levels:]
        self.lateral = nn.ModuleList([nn.Sequential(nn.Conv2d(ci, c, 1, bias=False), nn.BatchNorm2d(c)) for ci in ins])
        self.up = nn.ModuleList([make_upsampler(upsampler, c, **(lda_kw or {})) for _ in ins[:-1]])
        self.smooth = nn.Sequential(nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU())

    def forward(self, feats):
        feats = feats[self.levels:]
        p = self.lateral[-1](feats[-1])
        for i in range(len(feats) - 2, -1, -1):
            lat = self.lateral[i](feats[i])
            u = self.up[i](p)
            if u.shape[2] != lat.shape[2] or u.shape[3] != lat.shape[3]:
                u = u[:, :, :lat.shape[2], :lat.shape[3]]  # crop to the lateral's size
            p = lat + u
        return self.smooth(p)
