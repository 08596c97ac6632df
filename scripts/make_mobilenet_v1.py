#!/usr/bin/env python3
"""Write MobileNetV1 1.0 224 (the network ncnn's benchmark times as `mobilenet_int8`) as ONNX.

RESEARCH.md gives ncnn's executed Arm instructions for MobileNetV1 int8 (its only int8 count);
`scripts/arm_insn_count.sh --mobilenet-v1` needs the same network to put speck's int8 count
beside it. Instruction counts do not depend on weight values, so the weights are random
(He-normal, batch norm already folded, as a converter leaves it), seeded, and only numpy and
onnx are needed (no torch).

    python3 scripts/make_mobilenet_v1.py OUT.onnx

Stem 3x3/2 to 32 channels, 13 depthwise-separable blocks (3x3 depthwise + 1x1, ReLU after
each), global average pool, 1024 -> 1000 fully connected: 569 M multiply-accumulates.
"""
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# (output channels, stride) of each depthwise-separable block, from the paper's table 1.
BLOCKS = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [
    (1024, 2),
    (1024, 1),
]


def build(seed=0):
    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def conv(x, cin, cout, k, stride, group, name):
        fan_in = cin // group * k * k
        w = rng.normal(0, np.sqrt(2.0 / fan_in), (cout, cin // group, k, k)).astype(np.float32)
        b = rng.normal(0, 0.05, cout).astype(np.float32)
        inits.extend([numpy_helper.from_array(w, name + ".w"), numpy_helper.from_array(b, name + ".b")])
        nodes.append(
            helper.make_node(
                "Conv", [x, name + ".w", name + ".b"], [name], kernel_shape=[k, k],
                strides=[stride, stride], pads=[k // 2] * 4, group=group,
            )
        )
        nodes.append(helper.make_node("Relu", [name], [name + ".relu"]))
        return name + ".relu"

    x = conv("input", 3, 32, 3, 2, 1, "conv1")
    cin = 32
    for i, (cout, stride) in enumerate(BLOCKS):
        x = conv(x, cin, cin, 3, stride, cin, f"conv{i + 2}_dw")
        x = conv(x, cin, cout, 1, 1, 1, f"conv{i + 2}_pw")
        cin = cout
    nodes.append(helper.make_node("GlobalAveragePool", [x], ["pool"]))
    nodes.append(helper.make_node("Flatten", ["pool"], ["flat"], axis=1))
    w = rng.normal(0, np.sqrt(1.0 / cin), (1000, cin)).astype(np.float32)
    inits += [numpy_helper.from_array(w, "fc.w"), numpy_helper.from_array(np.zeros(1000, np.float32), "fc.b")]
    nodes.append(helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["output"], transB=1))
    graph = helper.make_graph(
        nodes,
        "mobilenet_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1000])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_mobilenet_v1.py OUT.onnx")
    onnx.save(build(), sys.argv[1])
    print("wrote", sys.argv[1])
