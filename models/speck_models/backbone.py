"""MobileNetV3 (Howard et al. 2019) backbones returning stride-4/8/16/32 features.

Same block configuration as torchvision's `mobilenet_v3_small` / `mobilenet_v3_large`
(hardswish / hardsigmoid, squeeze-excite with squeeze = make_divisible(exp/4, 8)), with a
configurable width multiplier. The classifier's final 1x1 conv and pooling are dropped.
"""
from __future__ import annotations

import torch
from torch import nn


def make_divisible(v, divisor=8, min_value=None):
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


class ConvBNAct(nn.Sequential):
    def __init__(self, cin, cout, k=3, s=1, groups=1, act="hs"):
        layers = [nn.Conv2d(cin, cout, k, s, (k - 1) // 2, groups=groups, bias=False),
                  nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if act == "hs":
            layers.append(nn.Hardswish())
        elif act == "re":
            layers.append(nn.ReLU())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    def __init__(self, c, squeeze):
        super().__init__()
        self.fc1 = nn.Conv2d(c, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, c, 1)
        self.act = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class InvertedResidual(nn.Module):
    def __init__(self, cin, k, exp, cout, se, act, stride):
        super().__init__()
        self.use_res = stride == 1 and cin == cout
        layers = []
        if exp != cin:
            layers.append(ConvBNAct(cin, exp, 1, act=act))
        layers.append(ConvBNAct(exp, exp, k, stride, groups=exp, act=act))
        if se:
            layers.append(SqueezeExcite(exp, make_divisible(exp // 4, 8)))
        layers.append(ConvBNAct(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)

    def forward(self, x):
        y = self.block(x)
        return x + y if self.use_res else y


# (kernel, expanded, out, SE, activation, stride)
SMALL = [(3, 16, 16, True, "re", 2), (3, 72, 24, False, "re", 2), (3, 88, 24, False, "re", 1),
         (5, 96, 40, True, "hs", 2), (5, 240, 40, True, "hs", 1), (5, 240, 40, True, "hs", 1),
         (5, 120, 48, True, "hs", 1), (5, 144, 48, True, "hs", 1), (5, 288, 96, True, "hs", 2),
         (5, 576, 96, True, "hs", 1), (5, 576, 96, True, "hs", 1)]
LARGE = [(3, 16, 16, False, "re", 1), (3, 64, 24, False, "re", 2), (3, 72, 24, False, "re", 1),
         (5, 72, 40, True, "re", 2), (5, 120, 40, True, "re", 1), (5, 120, 40, True, "re", 1),
         (3, 240, 80, False, "hs", 2), (3, 200, 80, False, "hs", 1), (3, 184, 80, False, "hs", 1),
         (3, 184, 80, False, "hs", 1), (3, 480, 112, True, "hs", 1), (3, 672, 112, True, "hs", 1),
         (5, 672, 160, True, "hs", 2), (5, 960, 160, True, "hs", 1), (5, 960, 160, True, "hs", 1)]


class MobileNetV3(nn.Module):
    """features(x) -> [C2 (s4), C3 (s8), C4 (s16), C5 (s32)]."""

    def __init__(self, arch="small", width=1.0):
        super().__init__()
        cfg = SMALL if arch == "small" else LARGE
        self.arch, self.width = arch, width
        c = make_divisible(16 * width)
        self.stem = ConvBNAct(3, c, 3, 2, act="hs")
        blocks, stride, self.out_idx, self.out_channels = [], 2, [], []
        for i, (k, e, o, se, act, s) in enumerate(cfg):
            e, o = make_divisible(e * width), make_divisible(o * width)
            blocks.append(InvertedResidual(c, k, e, o, se, act, s))
            c = o
            stride *= s
            # a stage ends where the next block downsamples (or at the end)
            nxt = cfg[i + 1][5] if i + 1 < len(cfg) else 2
            if nxt == 2 and stride >= 4:
                self.out_idx.append(i)
                self.out_channels.append(c)
        self.blocks = nn.ModuleList(blocks)
        self.strides = [4, 8, 16, 32]
        assert len(self.out_idx) == 4, self.out_idx
        self._init()

    def _init(self):
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.stem(x)
        feats = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.out_idx:
                feats.append(x)
        return feats
