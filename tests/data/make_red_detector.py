"""Build tests/data/red_detector.onnx: a tiny hand-weighted CenterNet-format "detector"
that finds red patches, so the live-pipeline tests get real boxes from a model that runs in
milliseconds in debug builds.

heatmap = sigmoid(20 * (mean over 4x4 cells of R - (G + B) / 2) - 10)   (stride 4)
box     = (0.5, 0.5, 24, 24) everywhere (centre offset, width, height in input pixels)

Run: /work/.venv-torch/bin/python tests/data/make_red_detector.py
"""
import json
import pathlib

import onnx
import torch


class RedDetector(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.heat = torch.nn.Conv2d(3, 1, 4, stride=4)
        self.box = torch.nn.Conv2d(3, 4, 4, stride=4)
        with torch.no_grad():
            w = torch.tensor([1.0, -0.5, -0.5]).view(1, 3, 1, 1).expand(1, 3, 4, 4) / 16.0
            self.heat.weight.copy_(20.0 * w)
            self.heat.bias.fill_(-10.0)
            self.box.weight.zero_()
            self.box.bias.copy_(torch.tensor([0.5, 0.5, 24.0, 24.0]))

    def forward(self, x):
        return torch.sigmoid(self.heat(x)), self.box(x)


out = pathlib.Path(__file__).with_name("red_detector.onnx")
torch.onnx.export(
    RedDetector().eval(),
    torch.zeros(1, 3, 96, 96),
    str(out),
    input_names=["images"],
    output_names=["heatmap", "box"],
    opset_version=13,
    dynamo=False,
)
m = onnx.load(str(out))
for k, v in {
    "output_format": "speck_centernet",
    "input_size": "96,96",
    "mean": "0,0,0",
    "std": "1,1,1",
    "strides": "4",
    "class_names": json.dumps(["red"]),
}.items():
    p = m.metadata_props.add()
    p.key, p.value = k, v
onnx.save(m, str(out))
print("wrote", out)
