"""SpeckDet: MobileNetV3 backbone (+ LGA) -> FPN (nearest | bilinear | LDA-AQU) -> CenterNet head."""
from __future__ import annotations

from torch import nn

from .backbone import MobileNetV3
from .fpn import FPN
from .head import CenterNetHead
from .lga import LocalGlobalAttention

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class SpeckDet(nn.Module):
    def __init__(self, backbone="mobilenetv3_small", width=1.0, lga="reference", lga_heads=4,
                 lga_at="c5", upsampler="lda-aqu", neck=32, out_stride=4, nc=1, lda=None):
        super().__init__()
        self.cfg = dict(backbone=backbone, width=width, lga=lga, lga_heads=lga_heads, lga_at=lga_at,
                        upsampler=upsampler, neck=neck, out_stride=out_stride, nc=nc, lda=lda)
        arch = {"mobilenetv3_small": "small", "mobilenetv3_large": "large"}[backbone]
        self.backbone = MobileNetV3(arch, width)
        chans = self.backbone.out_channels
        self.lga_level = {"c2": 0, "c3": 1, "c4": 2, "c5": 3}[lga_at]
        self.lga = None
        if lga and lga != "none":
            c = chans[self.lga_level]
            h = lga_heads
            while c % h:
                h -= 1
            self.lga = LocalGlobalAttention(c, h, variant=lga)
        self.neck = FPN(chans, neck, upsampler, out_stride, lda_kw=lda if upsampler == "lda-aqu" else None)
        self.head = CenterNetHead(neck, nc, out_stride)
        self.stride = out_stride

    def raw(self, x):
        feats = self.backbone(x)
        if self.lga is not None:
            feats[self.lga_level] = self.lga(feats[self.lga_level])
        return self.head(self.neck(feats))

    def forward(self, x):
        """Contract outputs (heatmap, box)."""
        return self.head.activate(*self.raw(x))


def build_model(cfg_model):
    return SpeckDet(**cfg_model)
