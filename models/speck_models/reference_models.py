"""Reference ONNX models for the runtime's parity tests and peer benchmarks (random weights with
calibrated BatchNorm statistics, opset 17, input `input`, output `output`), built exactly as
`shared/peers/make_models.py` builds them (same seed, same order, so the same bytes).

  python -m speck_models.reference_models OUTDIR [--with-fpn]

mnv3l_224 / mnv3s_224: torchvision MobileNetV3-Large / -Small classifiers, 1x3x224x224.
mnv3l_fpn_640 (--with-fpn, 12 MB, not committed): MobileNetV3-Large features + 3-level FPN
(nearest) + stride-8 head, 1x3x640x640.
"""
import argparse
import os

import torch
import torch.nn.functional as F
import torchvision
from torch import nn


def calibrate_bn(m, shape, n=4):
    m.train()
    with torch.no_grad():
        for _ in range(n):
            m(torch.randn(*shape))
    m.eval()


class FPNDet(nn.Module):
    def __init__(self):
        super().__init__()
        f = torchvision.models.mobilenet_v3_large().features
        self.s8, self.s16, self.s32 = f[:7], f[7:13], f[13:]
        self.l8, self.l16, self.l32 = nn.Conv2d(40, 64, 1), nn.Conv2d(112, 64, 1), nn.Conv2d(960, 64, 1)
        self.head = nn.Sequential(nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1),
                                  nn.ReLU(), nn.Conv2d(64, 1 + 4, 1))

    def forward(self, x):
        c3 = self.s8(x)
        c4 = self.s16(c3)
        c5 = self.s32(c4)
        p5 = self.l32(c5)
        p4 = self.l16(c4) + F.interpolate(p5, scale_factor=2.0, mode="nearest")
        p3 = self.l8(c3) + F.interpolate(p4, scale_factor=2.0, mode="nearest")
        return self.head(p3)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--with-fpn", action="store_true")
    a = ap.parse_args(argv)
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    # all three are constructed before any is calibrated, as in make_models.py (RNG order)
    todo = [("mnv3l_224", torchvision.models.mobilenet_v3_large(), (1, 3, 224, 224)),
            ("mnv3s_224", torchvision.models.mobilenet_v3_small(), (1, 3, 224, 224)),
            ("mnv3l_fpn_640", FPNDet(), (1, 3, 640, 640))]
    if not a.with_fpn:
        todo = todo[:2]
    for name, m, shape in todo:
        calibrate_bn(m, (2,) + shape[1:])
        torch.onnx.export(m, torch.randn(*shape), os.path.join(a.out, f"{name}.onnx"), opset_version=17,
                          input_names=["input"], output_names=["output"], dynamo=False)
        print("wrote", name)


if __name__ == "__main__":
    main()
