#!/usr/bin/env python3
"""Builds the small single-op and multi-op ONNX graphs of speck's parity suite.

    python3 tests/parity/make_op_models.py [OUTDIR]     (default: tests/parity/ops/)

One file per case, `<case>.onnx`, opset 17, built with `onnx.helper` only (no torch). Graph
inputs are float32 with static shapes; weights are initializers. Every case draws its weights
from its own generator, seeded from the case name, so the output is byte-for-byte deterministic
and independent of which cases are built. `test_parity.py` calls `build_all()` into a pytest
temporary directory; nothing generated is committed.
"""
from __future__ import annotations

import argparse
import os
import sys
import zlib
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17; keeps the files loadable by older ORT
MAX_BYTES = 200 * 1024

F32 = TensorProto.FLOAT


class G:
    """A tiny graph builder: G(name) -> .input() / .init() / .node() / .output() -> .model()."""

    def __init__(self, name: str):
        self.name = name
        self.rng = np.random.default_rng(zlib.crc32(name.encode()))
        self.inputs: List[onnx.ValueInfoProto] = []
        self.inits: List[onnx.TensorProto] = []
        self.nodes: List[onnx.NodeProto] = []
        self.outputs: List[onnx.ValueInfoProto] = []
        self._n = 0

    # --- values ---------------------------------------------------------------------------
    def input(self, name: str, shape: Sequence[int]) -> str:
        self.inputs.append(helper.make_tensor_value_info(name, F32, list(shape)))
        return name

    def init(self, name: str, arr) -> str:
        arr = np.asarray(arr)
        if arr.dtype == np.float64:
            arr = arr.astype(np.float32)
        self.inits.append(numpy_helper.from_array(arr, name))
        return name

    def randn(self, name: str, shape: Sequence[int], scale: float = 1.0) -> str:
        return self.init(name, (self.rng.standard_normal(shape) * scale).astype(np.float32))

    def uniform(self, name: str, shape: Sequence[int], lo: float, hi: float) -> str:
        return self.init(name, self.rng.uniform(lo, hi, shape).astype(np.float32))

    def i64(self, name: str, values) -> str:
        return self.init(name, np.asarray(values, dtype=np.int64))

    def f32(self, name: str, values) -> str:
        return self.init(name, np.asarray(values, dtype=np.float32))

    def conv_w(self, name: str, cout: int, cin_per_group: int, kh: int, kw: Optional[int] = None) -> str:
        kw = kh if kw is None else kw
        fan_in = cin_per_group * kh * kw
        return self.randn(name, (cout, cin_per_group, kh, kw), scale=1.0 / np.sqrt(fan_in))

    # --- nodes ----------------------------------------------------------------------------
    def node(self, op: str, inputs: Sequence[str], n_out: int = 1, name: Optional[str] = None,
             outputs: Optional[Sequence[str]] = None, domain: Optional[str] = None, **attrs):
        self._n += 1
        name = name or f"{op.lower()}_{self._n}"
        outputs = list(outputs) if outputs is not None else [f"{name}_out{i}" for i in range(n_out)]
        kw = {"domain": domain} if domain else {}
        self.nodes.append(helper.make_node(op, list(inputs), outputs, name=name, **attrs, **kw))
        return outputs[0] if len(outputs) == 1 else outputs

    def output(self, value: str, name: Optional[str] = None, elem_type: int = F32) -> str:
        """Declares `value` as a graph output (through an Identity when renamed)."""
        if name is not None and name != value:
            self.nodes.append(helper.make_node("Identity", [value], [name], name=f"out_{name}"))
            value = name
        self.outputs.append(helper.make_tensor_value_info(value, elem_type, None))
        return value

    def model(self, extra_opsets: Sequence[onnx.OperatorSetIdProto] = (), check: bool = True) -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.inits)
        opsets = [helper.make_opsetid("", OPSET)] + list(extra_opsets)
        m = helper.make_model(graph, opset_imports=opsets, producer_name="speck-parity")
        m.ir_version = IR_VERSION
        if check:
            # fills the graph outputs' shapes (declared without one), then validates strictly
            inferred = onnx.shape_inference.infer_shapes(m, check_type=True, strict_mode=True)
            del m.graph.output[:]
            m.graph.output.extend(inferred.graph.output)
            onnx.checker.check_model(m, full_check=True)
        return m


CASES: Dict[str, Callable[[], onnx.ModelProto]] = {}


def case(name: str):
    def deco(fn):
        CASES[name] = lambda: fn(G(name))
        return fn
    return deco


def _unary(name: str, op: str, shape=(1, 13, 5, 11), scale: float = 3.0, **attrs):
    """Single unary op; the input is pre-scaled (Mul) so activations see their saturated ranges."""
    @case(name)
    def _(g: G):
        x = g.input("x", shape)
        xs = g.node("Mul", [x, g.f32("in_scale", scale)])
        g.output(g.node(op, [xs], **attrs), "y")
        return g.model()


# ============================================================================================
# Conv
# ============================================================================================
def _conv_case(name, in_shape, cout, k, group=1, bias=True, **attrs):
    @case(name)
    def _(g: G):
        x = g.input("x", in_shape)
        kh, kw = (k, k) if isinstance(k, int) else k
        ins = [x, g.conv_w("w", cout, in_shape[1] // group, kh, kw)]
        if bias:
            ins.append(g.randn("b", (cout,), 0.5))
        g.output(g.node("Conv", ins, kernel_shape=[kh, kw], group=group, **attrs), "y")
        return g.model()


_conv_case("conv_3x3", (1, 3, 7, 9), 13, 3, pads=[1, 1, 1, 1])
_conv_case("conv_3x3_nopad", (1, 13, 5, 11), 17, 3)
_conv_case("conv_group2", (1, 6, 7, 9), 10, 3, group=2, pads=[1, 1, 1, 1])
_conv_case("conv_group4", (1, 12, 5, 11), 8, 3, group=4, pads=[1, 1, 1, 1])
_conv_case("conv_dw3x3", (1, 13, 7, 9), 13, 3, group=13, pads=[1, 1, 1, 1])
_conv_case("conv_dw5x5", (1, 13, 7, 9), 13, 5, group=13, pads=[2, 2, 2, 2])
_conv_case("conv_dw7x7", (1, 17, 9, 11), 17, 7, group=17, pads=[3, 3, 3, 3])
_conv_case("conv_dw11x11", (1, 17, 13, 15), 17, 11, group=17, pads=[5, 5, 5, 5])
_conv_case("conv_dw3x3_s2", (1, 13, 7, 9), 13, 3, group=13, pads=[1, 1, 1, 1], strides=[2, 2])
_conv_case("conv_dw_mult2", (1, 3, 7, 9), 6, 3, group=3, pads=[1, 1, 1, 1])  # depth multiplier 2
_conv_case("conv_1x1", (1, 17, 5, 11), 13, 1)
_conv_case("conv_1x1_s2", (1, 17, 7, 9), 13, 1, strides=[2, 2])
_conv_case("conv_stride2", (1, 3, 7, 9), 13, 3, pads=[1, 1, 1, 1], strides=[2, 2])
_conv_case("conv_stride2_k4", (1, 3, 9, 11), 5, 4, pads=[1, 1, 1, 1], strides=[2, 2])
_conv_case("conv_asym_pads", (1, 3, 7, 9), 13, 3, pads=[0, 1, 2, 0])
_conv_case("conv_asym_kernel", (1, 3, 7, 9), 5, (1, 5), pads=[0, 2, 0, 2])
_conv_case("conv_dilation2", (1, 3, 7, 9), 13, 3, pads=[2, 2, 2, 2], dilations=[2, 2])
_conv_case("conv_same_upper", (1, 3, 7, 9), 13, 4, auto_pad="SAME_UPPER")
_conv_case("conv_same_upper_s2", (1, 3, 8, 11), 13, 3, auto_pad="SAME_UPPER", strides=[2, 2])
_conv_case("conv_nobias", (1, 13, 5, 11), 3, 3, bias=False, pads=[1, 1, 1, 1])


# ============================================================================================
# Normalization and activations
# ============================================================================================
@case("batchnorm")
def _(g: G):
    c = 13
    x = g.input("x", (1, c, 5, 11))
    ins = [x, g.randn("scale", (c,)), g.randn("bias", (c,)), g.randn("mean", (c,)),
           g.uniform("var", (c,), 0.2, 3.0)]
    g.output(g.node("BatchNormalization", ins, epsilon=1e-3), "y")
    return g.model()


_unary("relu", "Relu")
_unary("sigmoid", "Sigmoid", scale=4.0)
_unary("tanh", "Tanh")
_unary("erf", "Erf")
_unary("hardswish", "HardSwish", scale=4.0)
_unary("hardsigmoid", "HardSigmoid", scale=4.0)  # ONNX defaults alpha=0.2, beta=0.5
_unary("hardsigmoid_torch", "HardSigmoid", scale=4.0, alpha=1.0 / 6.0, beta=0.5)
_unary("leakyrelu", "LeakyRelu", alpha=0.1)
_unary("leakyrelu_default", "LeakyRelu")  # alpha=0.01
_unary("identity_op", "Identity", shape=(1, 3, 7, 9), scale=1.0)


@case("clip_min_max")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Clip", [x, g.f32("lo", -0.5), g.f32("hi", 0.75)]), "y")
    return g.model()


@case("clip_relu6")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    xs = g.node("Mul", [x, g.f32("s", 4.0)])
    g.output(g.node("Clip", [xs, g.f32("lo", 0.0), g.f32("hi", 6.0)]), "y")
    return g.model()


@case("clip_min_only")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Clip", [x, g.f32("lo", -0.25), ""]), "y")
    return g.model()


@case("clip_max_only")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Clip", [x, "", g.f32("hi", 0.3)]), "y")
    return g.model()


@case("clip_no_bounds")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    g.output(g.node("Clip", [x]), "y")
    return g.model()


def _gelu(g: G, x: str) -> str:
    """x * 0.5 * (1 + Erf(x / sqrt(2))), as torch exports nn.GELU()."""
    d = g.node("Div", [x, g.f32(f"sqrt2_{g._n}", np.sqrt(2.0))])
    e = g.node("Erf", [d])
    a = g.node("Add", [e, g.f32(f"one_{g._n}", 1.0)])
    m = g.node("Mul", [x, a])
    return g.node("Mul", [m, g.f32(f"half_{g._n}", 0.5)])


@case("gelu_pattern")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    xs = g.node("Mul", [x, g.f32("in_scale", 3.0)])
    g.output(_gelu(g, xs), "y")
    return g.model()


# ============================================================================================
# Binary elementwise with broadcasting
# ============================================================================================
_BCAST = {
    "scalar": (),
    "c11": (1, 13, 1, 1),
    "w": (11,),
    "rank3": (13, 1, 11),   # rank-mismatched: [C,1,W] against [N,C,H,W]
    "hw": (5, 11),          # rank-mismatched: [H,W]
}


def _binary_init(op: str, tag: str, shape, x_first: bool = True):
    name = f"{op.lower()}_{tag}" + ("" if x_first else "_rev")

    @case(name)
    def _(g: G):
        x = g.input("x", (1, 13, 5, 11))
        if op == "Div":
            mag = g.rng.uniform(0.5, 2.0, shape)
            sign = np.where(g.rng.random(shape) < 0.5, -1.0, 1.0)
            c = g.f32("c", mag * sign)
        else:
            c = g.randn("c", shape)
        ins = [x, c] if x_first else [c, x]
        g.output(g.node(op, ins), "y")
        return g.model()


for _op in ("Add", "Sub", "Mul", "Div"):
    for _tag, _shape in _BCAST.items():
        _binary_init(_op, _tag, _shape)
for _op in ("Sub", "Mul"):
    _binary_init(_op, "c11", _BCAST["c11"], x_first=False)
    _binary_init(_op, "rank3", _BCAST["rank3"], x_first=False)


def _binary_inputs(op: str, tag: str, a_shape, b_shape):
    @case(f"{op.lower()}_inputs_{tag}")
    def _(g: G):
        a = g.input("a", a_shape)
        b = g.input("b", b_shape)
        g.output(g.node(op, [a, b]), "y")
        return g.model()


for _op in ("Add", "Sub", "Mul"):
    _binary_inputs(_op, "same", (1, 13, 5, 11), (1, 13, 5, 11))
    _binary_inputs(_op, "bcast_both", (1, 13, 1, 11), (1, 1, 5, 1))  # both sides broadcast
    _binary_inputs(_op, "rank", (3, 1, 5, 11), (7, 1, 1))


@case("div_inputs_bcast")
def _(g: G):
    a = g.input("a", (1, 13, 5, 11))
    b = g.input("b", (1, 13, 1, 1))
    # divisor kept away from zero: b*b + 0.5
    d = g.node("Add", [g.node("Mul", [b, b]), g.f32("half", 0.5)])
    g.output(g.node("Div", [a, d]), "y")
    return g.model()


# ============================================================================================
# Shape manipulation
# ============================================================================================
@case("concat_axis1")
def _(g: G):
    a = g.input("a", (1, 3, 5, 11))
    b = g.input("b", (1, 13, 5, 11))
    c = g.randn("c", (1, 1, 5, 11))
    g.output(g.node("Concat", [a, b, c], axis=1), "y")
    return g.model()


@case("concat_neg_axis")
def _(g: G):
    a = g.input("a", (1, 3, 7, 9))
    b = g.input("b", (1, 3, 7, 2))
    g.output(g.node("Concat", [a, b, a], axis=-1), "y")
    return g.model()


def _slice_case(name, in_shape, starts, ends, axes=None, steps=None):
    @case(name)
    def _(g: G):
        x = g.input("x", in_shape)
        ins = [x, g.i64("starts", starts), g.i64("ends", ends)]
        if axes is not None:
            ins.append(g.i64("axes", axes))
        if steps is not None:
            if axes is None:
                ins.append("")
            ins.append(g.i64("steps", steps))
        g.output(g.node("Slice", ins), "y")
        return g.model()


_I64_MAX = np.iinfo(np.int64).max
_I64_MIN = np.iinfo(np.int64).min
_slice_case("slice_basic", (1, 13, 5, 11), [1, 2], [4, 9], [2, 3])
_slice_case("slice_all_axes_noaxes", (1, 13, 5, 11), [0, 2, 1, 3], [1, 11, 5, 10])
_slice_case("slice_step2", (1, 13, 7, 9), [0, 1], [7, 9], [2, 3], [2, 2])
_slice_case("slice_step2_channels", (1, 13, 5, 11), [1], [_I64_MAX], [1], [2])
_slice_case("slice_neg_start_end", (1, 13, 5, 11), [-7, -4], [-1, _I64_MAX], [-1, -2])
_slice_case("slice_neg_step", (1, 13, 5, 11), [-1], [_I64_MIN], [3], [-1])
_slice_case("slice_neg_step2", (1, 13, 5, 11), [9, -2], [1, -1000], [3, 1], [-2, -3])
_slice_case("slice_axes_subset", (1, 13, 5, 11), [2], [11], [1])
_slice_case("slice_clamped_ends", (1, 13, 5, 11), [-100, 3], [100, 1000], [2, 1])


@case("split_equal")
def _(g: G):
    x = g.input("x", (1, 12, 5, 11))
    outs = g.node("Split", [x], n_out=3, axis=1)
    for i, o in enumerate(outs):
        g.output(o, f"y{i}")
    return g.model()


@case("split_explicit")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    outs = g.node("Split", [x, g.i64("split", [3, 9, 1])], n_out=3, axis=1)
    for i, o in enumerate(outs):
        g.output(o, f"y{i}")
    return g.model()


@case("split_neg_axis")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    outs = g.node("Split", [x, g.i64("split", [2, 7])], n_out=2, axis=-1)
    for i, o in enumerate(outs):
        g.output(o, f"y{i}")
    return g.model()


@case("reshape_zero_neg1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Reshape", [x, g.i64("shape", [0, -1, 11])]), "y")
    return g.model()


@case("reshape_zero_zero_neg1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    r = g.node("Reshape", [x, g.i64("shape", [0, 0, -1])])
    g.output(g.node("Mul", [r, g.randn("m", (55,))]), "y")  # consumes the reshaped layout
    return g.model()


@case("transpose_nhwc")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Transpose", [x], perm=[0, 2, 3, 1]), "y")
    return g.model()


@case("transpose_mixed")
def _(g: G):
    x = g.input("x", (2, 3, 5, 7))
    g.output(g.node("Transpose", [x], perm=[3, 1, 0, 2]), "y")
    return g.model()


@case("transpose_default_perm")
def _(g: G):
    x = g.input("x", (3, 5, 7))
    g.output(g.node("Transpose", [x]), "y")
    return g.model()


@case("flatten_axis1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Flatten", [x], axis=1), "y")
    return g.model()


@case("flatten_axis2")
def _(g: G):
    x = g.input("x", (2, 3, 5, 7))
    g.output(g.node("Flatten", [x], axis=2), "y")
    return g.model()


@case("squeeze_axes")
def _(g: G):
    x = g.input("x", (1, 13, 1, 11))
    g.output(g.node("Squeeze", [x, g.i64("axes", [0, -2])]), "y")
    return g.model()


@case("squeeze_all")
def _(g: G):
    x = g.input("x", (1, 13, 1, 11))
    g.output(g.node("Squeeze", [x]), "y")
    return g.model()


@case("unsqueeze")
def _(g: G):
    x = g.input("x", (13, 11))
    g.output(g.node("Unsqueeze", [x, g.i64("axes", [0, -1, 2])]), "y")
    return g.model()


@case("pad_constant")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    g.output(g.node("Pad", [x, g.i64("pads", [0, 0, 1, 2, 0, 1, 3, 1]), g.f32("v", 0.5)],
                    mode="constant"), "y")
    return g.model()


@case("pad_constant_zero_default")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Pad", [x, g.i64("pads", [0, 0, 0, 1, 0, 0, 1, 0])]), "y")
    return g.model()


@case("gather_indices_1d")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Gather", [x, g.i64("idx", [0, 5, 2, 12, -1])], axis=1), "y")
    return g.model()


@case("gather_scalar_index")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("Gather", [x, g.i64("idx", 3)], axis=2), "y")
    return g.model()


@case("gather_2d_indices_neg_axis")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    g.output(g.node("Gather", [x, g.i64("idx", [[0, 8], [-1, 4], [2, 2]])], axis=-1), "y")
    return g.model()


@case("expand")
def _(g: G):
    x = g.input("x", (1, 13, 1, 11))
    g.output(g.node("Expand", [x, g.i64("shape", [2, 13, 5, 11])]), "y")
    return g.model()


@case("expand_lower_rank_shape")
def _(g: G):
    x = g.input("x", (3, 1, 7))
    g.output(g.node("Expand", [x, g.i64("shape", [5, 1])]), "y")  # -> [3,5,7]
    return g.model()


@case("shape_gather_concat_reshape")
def _(g: G):
    """The dynamic reshape torch exports for x.reshape(b, 3, 4, h*w); folds to a constant."""
    x = g.input("x", (1, 12, 5, 11))
    s = g.node("Shape", [x])
    b = g.node("Gather", [s, g.i64("i0", [0])], axis=0)
    h = g.node("Gather", [s, g.i64("i2", 2)], axis=0)
    w = g.node("Gather", [s, g.i64("i3", 3)], axis=0)
    hw = g.node("Unsqueeze", [g.node("Mul", [h, w]), g.i64("ax0", [0])])
    shape = g.node("Concat", [b, g.i64("c3", [3]), g.i64("c4", [4]), hw], axis=0)
    r = g.node("Reshape", [x, shape])
    g.output(g.node("Add", [r, g.randn("bias", (1, 3, 4, 1))]), "y")
    return g.model()


@case("shape_gather_concat_reshape_neg1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    s = g.node("Shape", [x])
    bc = g.node("Slice", [s, g.i64("st", [0]), g.i64("en", [2])])
    shape = g.node("Concat", [bc, g.i64("m1", [-1])], axis=0)
    g.output(g.node("Reshape", [x, shape]), "y")
    return g.model()


@case("cast_float")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    y = g.node("Cast", [x], to=TensorProto.FLOAT)
    g.output(y, "y")
    s = g.node("Cast", [g.node("Shape", [x])], to=TensorProto.FLOAT)
    g.output(s, "shape_as_float")
    return g.model()


@case("identity_odd_output_name")
def _(g: G):
    """Output names with characters outside [A-Za-z0-9._-] are sanitised to '_' in file names."""
    x = g.input("input:0", (1, 3, 7, 9))
    g.output(g.node("Identity", [x]), "out/0:x y")
    g.output(g.node("Relu", [x]), "relu.out-1")
    return g.model()


# ============================================================================================
# Pooling and reductions
# ============================================================================================
@case("global_avg_pool")
def _(g: G):
    x = g.input("x", (1, 17, 7, 9))
    g.output(g.node("GlobalAveragePool", [x]), "y")
    return g.model()


@case("reducemean_keepdims1")
def _(g: G):
    # ReduceMean takes axes as an attribute up to opset 17 (input only from opset 18)
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("ReduceMean", [x], axes=[2, 3], keepdims=1), "y")
    return g.model()


@case("reducemean_keepdims0")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("ReduceMean", [x], axes=[1], keepdims=0), "y")
    return g.model()


@case("reducemean_neg_axis")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("ReduceMean", [x], axes=[-1]), "y")
    return g.model()


@case("reducesum_axes_input_keepdims1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("ReduceSum", [x, g.i64("axes", [1])], keepdims=1), "y")
    return g.model()


@case("reducesum_axes_input_keepdims0")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("ReduceSum", [x, g.i64("axes", [-1, 2])], keepdims=0), "y")
    return g.model()


@case("reducesum_no_axes")
def _(g: G):
    x = g.input("x", (1, 3, 7, 9))
    g.output(g.node("ReduceSum", [x], keepdims=0), "y")  # all axes -> scalar
    return g.model()


def _pool(name, op, in_shape, **attrs):
    @case(name)
    def _(g: G):
        x = g.input("x", in_shape)
        g.output(g.node(op, [x], **attrs), "y")
        return g.model()


_pool("maxpool_k3s2p1", "MaxPool", (1, 13, 7, 9), kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
_pool("maxpool_k2s2", "MaxPool", (1, 13, 8, 10), kernel_shape=[2, 2], strides=[2, 2])
_pool("maxpool_ceil", "MaxPool", (1, 13, 7, 9), kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)
_pool("maxpool_ceil_pads", "MaxPool", (1, 3, 7, 9), kernel_shape=[3, 3], strides=[2, 2],
      pads=[1, 1, 1, 1], ceil_mode=1)
_pool("maxpool_k5s1p2", "MaxPool", (1, 13, 7, 9), kernel_shape=[5, 5], strides=[1, 1], pads=[2, 2, 2, 2])
_pool("maxpool_asym_pads", "MaxPool", (1, 3, 7, 9), kernel_shape=[3, 2], strides=[1, 2], pads=[0, 1, 2, 0])
_pool("avgpool_k3s2p1_excl", "AveragePool", (1, 13, 7, 9), kernel_shape=[3, 3], strides=[2, 2],
      pads=[1, 1, 1, 1], count_include_pad=0)
_pool("avgpool_k3s2p1_incl", "AveragePool", (1, 13, 7, 9), kernel_shape=[3, 3], strides=[2, 2],
      pads=[1, 1, 1, 1], count_include_pad=1)
_pool("avgpool_k2s2", "AveragePool", (1, 13, 8, 10), kernel_shape=[2, 2], strides=[2, 2])
_pool("avgpool_ceil", "AveragePool", (1, 3, 7, 9), kernel_shape=[2, 2], strides=[2, 2], ceil_mode=1)


# ============================================================================================
# Resize
# ============================================================================================
def _resize(name, in_shape, scales=None, sizes=None, **attrs):
    @case(name)
    def _(g: G):
        x = g.input("x", in_shape)
        if sizes is not None:
            ins = [x, "", "", g.i64("sizes", sizes)]
        else:
            ins = [x, "", g.f32("scales", scales)]
        g.output(g.node("Resize", ins, **attrs), "y")
        return g.model()


_NEAREST_TORCH = dict(mode="nearest", coordinate_transformation_mode="asymmetric", nearest_mode="floor")
_resize("resize_nearest_floor_asym_scales2", (1, 13, 5, 11), scales=[1, 1, 2, 2], **_NEAREST_TORCH)
_resize("resize_nearest_floor_asym_sizes", (1, 13, 5, 11), sizes=[1, 13, 13, 17], **_NEAREST_TORCH)
_resize("resize_nearest_floor_asym_down", (1, 3, 7, 9), sizes=[1, 3, 3, 4], **_NEAREST_TORCH)
_resize("resize_nearest_prefer_floor_asym_scales", (1, 13, 5, 11), scales=[1, 1, 2, 2], mode="nearest",
        coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor")
_resize("resize_nearest_prefer_floor_asym_sizes", (1, 3, 7, 9), sizes=[1, 3, 10, 20], mode="nearest",
        coordinate_transformation_mode="asymmetric", nearest_mode="round_prefer_floor")
_resize("resize_nearest_default_scales3", (1, 3, 7, 9), scales=[1, 1, 3, 3], mode="nearest")
_resize("resize_bilinear_half_pixel_scales", (1, 13, 5, 11), scales=[1, 1, 2, 2], mode="linear",
        coordinate_transformation_mode="half_pixel")
_resize("resize_bilinear_half_pixel_sizes", (1, 3, 7, 9), sizes=[1, 3, 12, 20], mode="linear",
        coordinate_transformation_mode="half_pixel")
_resize("resize_bilinear_half_pixel_down", (1, 3, 7, 9), sizes=[1, 3, 4, 5], mode="linear",
        coordinate_transformation_mode="half_pixel")
_resize("resize_bilinear_align_corners_sizes", (1, 13, 5, 11), sizes=[1, 13, 10, 22], mode="linear",
        coordinate_transformation_mode="align_corners")
_resize("resize_bilinear_align_corners_scales", (1, 3, 7, 9), scales=[1, 1, 2, 2], mode="linear",
        coordinate_transformation_mode="align_corners")
_resize("resize_bilinear_pytorch_half_pixel", (1, 3, 7, 9), sizes=[1, 3, 14, 19], mode="linear",
        coordinate_transformation_mode="pytorch_half_pixel")


# ============================================================================================
# Softmax, LayerNorm, MatMul, Gemm, Einsum
# ============================================================================================
@case("softmax_axis_neg1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    xs = g.node("Mul", [x, g.f32("s", 5.0)])
    g.output(g.node("Softmax", [xs], axis=-1), "y")
    return g.model()


@case("softmax_axis1")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    xs = g.node("Mul", [x, g.f32("s", 5.0)])
    g.output(g.node("Softmax", [xs], axis=1), "y")
    return g.model()


@case("softmax_default_axis")
def _(g: G):
    x = g.input("x", (3, 17))
    g.output(g.node("Softmax", [x]), "y")  # opset 13+: default axis -1
    return g.model()


@case("layernorm_last_axis")
def _(g: G):
    x = g.input("x", (1, 5, 11, 13))
    g.output(g.node("LayerNormalization", [x, g.randn("gamma", (13,)), g.randn("beta", (13,))],
                    axis=-1, epsilon=1e-5), "y")
    return g.model()


@case("layernorm_axis_neg3")
def _(g: G):
    x = g.input("x", (1, 13, 5, 11))
    g.output(g.node("LayerNormalization", [x, g.randn("gamma", (13, 5, 11)), g.randn("beta", (13, 5, 11))],
                    axis=-3, epsilon=1e-6), "y")
    return g.model()


@case("layernorm_no_bias")
def _(g: G):
    x = g.input("x", (1, 7, 17))
    g.output(g.node("LayerNormalization", [x, g.randn("gamma", (17,))], axis=-1), "y")
    return g.model()


@case("matmul_2d")
def _(g: G):
    a = g.input("a", (7, 13))
    g.output(g.node("MatMul", [a, g.randn("b", (13, 5))]), "y")
    return g.model()


@case("matmul_2d_inputs")
def _(g: G):
    a = g.input("a", (7, 13))
    b = g.input("b", (13, 17))
    g.output(g.node("MatMul", [a, b]), "y")
    return g.model()


@case("matmul_batched_4d")
def _(g: G):
    a = g.input("a", (1, 3, 7, 13))
    b = g.input("b", (1, 3, 13, 5))
    g.output(g.node("MatMul", [a, b]), "y")
    return g.model()


@case("matmul_broadcast_batch")
def _(g: G):
    a = g.input("a", (2, 1, 7, 13))
    b = g.input("b", (1, 3, 13, 5))
    g.output(g.node("MatMul", [a, b]), "y")
    return g.model()


@case("matmul_4d_by_2d")
def _(g: G):
    a = g.input("a", (2, 3, 7, 13))
    g.output(g.node("MatMul", [a, g.randn("b", (13, 5))]), "y")
    return g.model()


@case("matmul_1d_rhs")
def _(g: G):
    a = g.input("a", (3, 7, 13))
    g.output(g.node("MatMul", [a, g.randn("b", (13,))]), "y")
    return g.model()


@case("gemm_transb_c")
def _(g: G):
    a = g.input("a", (1, 17))
    g.output(g.node("Gemm", [a, g.randn("w", (13, 17)), g.randn("c", (13,))], transB=1), "y")
    return g.model()


@case("gemm_alpha_beta")
def _(g: G):
    a = g.input("a", (7, 13))
    g.output(g.node("Gemm", [a, g.randn("w", (5, 13)), g.randn("c", (7, 5))], transB=1,
                    alpha=0.7, beta=1.3), "y")
    return g.model()


@case("gemm_transa_scalar_c")
def _(g: G):
    a = g.input("a", (13, 7))
    g.output(g.node("Gemm", [a, g.randn("w", (13, 5)), g.randn("c", (1,))], transA=1, beta=0.5), "y")
    return g.model()


@case("gemm_no_c")
def _(g: G):
    a = g.input("a", (3, 13))
    g.output(g.node("Gemm", [a, g.randn("w", (13, 5))], alpha=2.0), "y")
    return g.model()


@case("gemm_row_c_alpha_beta")
def _(g: G):
    # the engine's fully connected path: C one value per column, alpha and beta folded
    a = g.input("a", (3, 37))
    g.output(g.node("Gemm", [a, g.randn("w", (37, 21)), g.randn("c", (1, 21))], alpha=0.6,
                    beta=1.7), "y")
    return g.model()


@case("gemm_scalar_c_transb")
def _(g: G):
    a = g.input("a", (2, 19))
    g.output(g.node("Gemm", [a, g.randn("w", (33, 19)), g.randn("c", (1,))], transB=1, beta=0.5), "y")
    return g.model()


def _einsum(name, eq, a_shape, b_shape):
    @case(name)
    def _(g: G):
        a = g.input("a", a_shape)
        b = g.input("b", b_shape)
        g.output(g.node("Einsum", [a, b], equation=eq), "y")
        return g.model()


_einsum("einsum_bhqd_bhkd", "bhqd,bhkd->bhqk", (1, 3, 5, 13), (1, 3, 7, 13))
_einsum("einsum_bhqk_bhvd_degenerate", "bhqk,bhvd->bhqd", (1, 3, 5, 7), (1, 3, 4, 11))
_einsum("einsum_bhqk_bhkd", "bhqk,bhkd->bhqd", (1, 3, 5, 7), (1, 3, 7, 11))
_einsum("einsum_ij_jk", "ij,jk->ik", (7, 13), (13, 5))


# ============================================================================================
# GridSample
# ============================================================================================
def _grid_sample(mode, padding, align):
    name = f"gridsample_{mode}_{padding}_ac{align}"

    @case(name)
    def _(g: G):
        x = g.input("x", (1, 3, 7, 9))
        # grid spans slightly beyond [-1, 1] so the padding mode matters at the borders
        grid = g.uniform("grid", (1, 6, 10, 2), -1.15, 1.15)
        g.output(g.node("GridSample", [x, grid], mode=mode, padding_mode=padding,
                        align_corners=align), "y")
        return g.model()


for _mode in ("bilinear", "nearest"):
    for _pad in ("zeros", "border"):
        for _ac in (0, 1):
            _grid_sample(_mode, _pad, _ac)


@case("gridsample_grid_input")
def _(g: G):
    """Grid computed in-graph (Tanh * 1.1) from a graph input; 2 batches, 13 channels."""
    x = g.input("x", (2, 13, 5, 11))
    gi = g.input("g", (2, 4, 7, 2))
    grid = g.node("Mul", [g.node("Tanh", [gi]), g.f32("s", 1.1)])
    g.output(g.node("GridSample", [x, grid], mode="bilinear", padding_mode="zeros", align_corners=0), "y")
    return g.model()


# ============================================================================================
# Multi-op blocks
# ============================================================================================
def _bn(g: G, x: str, c: int, tag: str) -> str:
    ins = [x, g.uniform(f"{tag}_gamma", (c,), 0.5, 1.5), g.randn(f"{tag}_beta", (c,), 0.2),
           g.randn(f"{tag}_mean", (c,), 0.2), g.uniform(f"{tag}_var", (c,), 0.5, 2.0)]
    return g.node("BatchNormalization", ins, epsilon=1e-5)


def _conv(g: G, x: str, cin: int, cout: int, k: int, tag: str, group: int = 1, stride: int = 1,
          bias: bool = True) -> str:
    ins = [x, g.conv_w(f"{tag}_w", cout, cin // group, k)]
    if bias:
        ins.append(g.randn(f"{tag}_b", (cout,), 0.1))
    return g.node("Conv", ins, kernel_shape=[k, k], pads=[k // 2] * 4, strides=[stride, stride], group=group)


@case("block_conv_bn_relu")
def _(g: G):
    x = g.input("x", (1, 3, 9, 11))
    y = g.node("Relu", [_bn(g, _conv(g, x, 3, 13, 3, "c1", bias=False), 13, "bn1")])
    g.output(y, "y")
    return g.model()


@case("block_conv_gelu")
def _(g: G):
    """Conv -> exported GELU: speck fuses the five nodes into one GELU, then into the conv."""
    x = g.input("x", (1, 5, 9, 11))
    g.output(_gelu(g, _conv(g, x, 5, 12, 3, "c1")), "y")
    return g.model()


@case("block_conv_silu")
def _(g: G):
    """Conv -> x * Sigmoid(x), as YOLOv5 / v8 export SiLU: speck fuses the two into one."""
    x = g.input("x", (1, 5, 9, 11))
    c = _conv(g, x, 5, 12, 3, "c1")
    g.output(g.node("Mul", [c, g.node("Sigmoid", [c])]), "y")
    return g.model()


@case("block_conv_bn_hardswish")
def _(g: G):
    x = g.input("x", (1, 13, 7, 9))
    y = _bn(g, _conv(g, x, 13, 17, 3, "c1", stride=2, bias=False), 17, "bn1")
    g.output(g.node("HardSwish", [y]), "y")
    return g.model()


@case("block_squeeze_excite")
def _(g: G):
    c, r = 17, 5
    x = g.input("x", (1, c, 7, 9))
    s = g.node("GlobalAveragePool", [x])
    s = g.node("Relu", [_conv(g, s, c, r, 1, "fc1")])
    s = g.node("HardSigmoid", [_conv(g, s, r, c, 1, "fc2")], alpha=1.0 / 6.0, beta=0.5)
    g.output(g.node("Mul", [x, s]), "y")
    return g.model()


@case("block_residual")
def _(g: G):
    c = 13
    x = g.input("x", (1, c, 7, 9))
    y = g.node("Relu", [_conv(g, x, c, c, 3, "c1")])
    y = _conv(g, y, c, c, 3, "c2")
    g.output(g.node("Relu", [g.node("Add", [y, x])]), "y")
    return g.model()


@case("block_mbv3_bneck")
def _(g: G):
    """expand 1x1 -> dw 5x5 s2 -> SE -> project 1x1, HardSwish, as MobileNetV3 exports it."""
    x = g.input("x", (1, 13, 9, 11))
    e = g.node("HardSwish", [_conv(g, x, 13, 24, 1, "exp")])
    d = g.node("HardSwish", [_conv(g, e, 24, 24, 5, "dw", group=24, stride=2)])
    s = g.node("GlobalAveragePool", [d])
    s = g.node("Relu", [_conv(g, s, 24, 7, 1, "se1")])
    s = g.node("HardSigmoid", [_conv(g, s, 7, 24, 1, "se2")], alpha=1.0 / 6.0, beta=0.5)
    g.output(_conv(g, g.node("Mul", [d, s]), 24, 17, 1, "proj"), "y")
    return g.model()


@case("block_lga")
def _(g: G):
    """LGA-like attention with the reference's degenerate einsum pair."""
    b, c, h, w, nh = 1, 12, 5, 7, 3
    hd = c // nh
    x = g.input("x", (b, c, h, w))
    dw = _conv(g, x, c, c, 3, "dw", group=c)
    qkv = _conv(g, dw, c, 3 * c, 1, "pw", group=nh)
    q, k, v = g.node("Split", [qkv, g.i64("split", [c, c, c])], n_out=3, axis=1)
    shp = g.i64("qkv_shape", [b, nh, hd, h * w])
    q, k, v = (g.node("Reshape", [t, shp]) for t in (q, k, v))
    energy = g.node("Einsum", [q, k], equation="bhqd,bhkd->bhqk")
    energy = g.node("Mul", [energy, g.f32("scale", hd ** -0.5)])
    attn = g.node("Softmax", [energy], axis=-1)
    out = g.node("Einsum", [attn, v], equation="bhqk,bhvd->bhqd")
    out = g.node("Reshape", [out, g.i64("out_shape", [b, c, h, w])])
    g.output(_conv(g, g.node("Add", [out, x]), c, c, 1, "out"), "y")
    return g.model()


@case("block_lga_paper")
def _(g: G):
    """LGA-like attention with the paper's einsum pair."""
    b, c, h, w, nh = 1, 12, 5, 7, 3
    hd = c // nh
    x = g.input("x", (b, c, h, w))
    qkv = _conv(g, x, c, 3 * c, 1, "pw", group=nh)
    q, k, v = g.node("Split", [qkv], n_out=3, axis=1)
    shp = g.i64("qkv_shape", [b, nh, hd, h * w])
    q, k, v = (g.node("Reshape", [t, shp]) for t in (q, k, v))
    energy = g.node("Mul", [g.node("Einsum", [q, k], equation="bhqd,bhkd->bhqk"), g.f32("scale", hd ** -0.5)])
    attn = g.node("Softmax", [energy], axis=-1)
    out = g.node("Einsum", [attn, v], equation="bhqk,bhkd->bhqd")
    g.output(g.node("Reshape", [out, g.i64("out_shape", [b, c, h, w])]), "y")
    return g.model()


def _channel_ln(g: G, x: str, c: int, tag: str) -> str:
    t = g.node("Transpose", [x], perm=[0, 2, 3, 1])
    t = g.node("LayerNormalization", [t, g.uniform(f"{tag}_g", (c,), 0.5, 1.5), g.randn(f"{tag}_b", (c,), 0.1)],
               axis=-1, epsilon=1e-5)
    return g.node("Transpose", [t], perm=[0, 3, 1, 2])


@case("block_lda_aqu")
def _(g: G):
    """LDA-AQU-like upsampler: channel LayerNorm, 1x1 q/k, bilinear align_corners upsample of q,
    Tanh offsets, GridSample (bilinear, zeros, align_corners=1) of 9 taps, Softmax over 9, MatMul."""
    B, C, H, W, hid, n, rf = 1, 8, 5, 7, 4, 9, 2.0
    Ho, Wo = 2 * H, 2 * W
    x = g.input("x", (B, C, H, W))
    xn = _channel_ln(g, x, C, "ln")
    q = _conv(g, xn, C, hid, 1, "pq", bias=False)
    q = g.node("Resize", [q, "", "", g.i64("q_size", [B, hid, Ho, Wo])], mode="linear",
               coordinate_transformation_mode="align_corners")
    k = _conv(g, xn, C, hid, 1, "pk", bias=False)
    o = _conv(g, q, hid, hid, 3, "off_dw", group=hid, bias=False)
    o = _gelu(g, _channel_ln(g, o, hid, "off_ln"))
    o = _conv(g, o, hid, 2 * n, 3, "off_pw")
    p = np.arange(-1, 2, dtype=np.float32)
    base = np.stack([np.repeat(p, 3), np.tile(p, 3)], 1).reshape(1, -1, 1, 1)
    off = g.node("Add", [g.node("Mul", [g.node("Tanh", [o]), g.f32("range", rf)]), g.f32("base", base)])
    off = g.node("Reshape", [off, g.i64("off_shape", [B, n, 2, Ho, Wo])])
    dy = g.node("Gather", [off, g.i64("i0", 0)], axis=2)
    dx = g.node("Gather", [off, g.i64("i1", 1)], axis=2)
    rows = g.f32("rows", np.arange(Ho, dtype=np.float32).reshape(1, 1, Ho, 1))
    cols = g.f32("cols", np.arange(Wo, dtype=np.float32).reshape(1, 1, 1, Wo))
    gy = g.node("Sub", [g.node("Mul", [g.node("Add", [dy, rows]), g.f32("sy", 2.0 / (Ho - 1))]), g.f32("one_y", 1.0)])
    gx = g.node("Sub", [g.node("Mul", [g.node("Add", [dx, cols]), g.f32("sx", 2.0 / (Wo - 1))]), g.f32("one_x", 1.0)])
    last = g.i64("last", [-1])
    grid = g.node("Concat", [g.node("Unsqueeze", [gx, last]), g.node("Unsqueeze", [gy, last])], axis=-1)
    grid = g.node("Reshape", [grid, g.i64("grid_shape", [B, n * Ho, Wo, 2])])
    gs = dict(mode="bilinear", padding_mode="zeros", align_corners=1)
    ks = g.node("Reshape", [g.node("GridSample", [k, grid], **gs), g.i64("ks_shape", [B, hid, n, Ho, Wo])])
    vs = g.node("Reshape", [g.node("GridSample", [x, grid], **gs), g.i64("vs_shape", [B, C, n, Ho, Wo])])
    qs = g.node("Reshape", [g.node("Mul", [q, g.f32("qscale", hid ** -0.5)]), g.i64("qs_shape", [B, hid, 1, Ho, Wo])])
    logits = g.node("ReduceSum", [g.node("Mul", [qs, ks]), g.i64("ax1", [1])], keepdims=1)  # [B,1,n,Ho,Wo]
    attn = g.node("Softmax", [logits], axis=2)
    attn_t = g.node("Transpose", [attn], perm=[0, 3, 4, 2, 1])          # [B,Ho,Wo,n,1]
    vs_t = g.node("Transpose", [vs], perm=[0, 3, 4, 1, 2])              # [B,Ho,Wo,C,n]
    out = g.node("MatMul", [vs_t, attn_t])                              # [B,Ho,Wo,C,1]
    out = g.node("Squeeze", [out, g.i64("sq", [-1])])
    g.output(g.node("Transpose", [out], perm=[0, 3, 1, 2]), "y")
    return g.model()


@case("block_fpn_merge")
def _(g: G):
    """Two-level FPN merge: lateral 1x1 + nearest x2 upsample (torch export form) + add, 3x3 head, Sigmoid."""
    c3 = g.input("c3", (1, 13, 10, 14))
    c4 = g.input("c4", (1, 17, 5, 7))
    p4 = _conv(g, c4, 17, 8, 1, "l4")
    up = g.node("Resize", [p4, "", g.f32("sc", [1, 1, 2, 2])], **_NEAREST_TORCH)
    p3 = g.node("Add", [_conv(g, c3, 13, 8, 1, "l3"), up])
    h = g.node("Relu", [_conv(g, p3, 8, 8, 3, "h1")])
    hm = g.node("Sigmoid", [_conv(g, h, 8, 2, 1, "hm")])
    box = _conv(g, h, 8, 4, 1, "box")
    g.output(hm, "heatmap")
    g.output(box, "box")
    return g.model()


# ============================================================================================
# Cases used by the bad-input tests (not in CASES: ORT cannot, or should not, run them)
# ============================================================================================
def unsupported_nms_model() -> onnx.ModelProto:
    g = G("unsupported_nms")
    boxes = g.input("boxes", (1, 7, 4))
    scores = g.input("scores", (1, 1, 7))
    g.nodes.append(helper.make_node("NonMaxSuppression", [boxes, scores, g.i64("max_out", [3])],
                                    ["selected"], name="my_nms_node"))
    g.outputs.append(helper.make_tensor_value_info("selected", TensorProto.INT64, None))
    return g.model()


def custom_domain_model() -> onnx.ModelProto:
    g = G("custom_domain")
    x = g.input("x", (1, 3, 7, 9))
    r = g.node("Relu", [x])
    y = g.node("FancyWarp", [r], name="fancy_node_7", domain="com.example.speck")
    g.output(y, "y")
    return g.model(extra_opsets=[helper.make_opsetid("com.example.speck", 1)], check=False)


# ============================================================================================
def build(name: str, outdir: str) -> str:
    m = CASES[name]()
    path = os.path.join(outdir, f"{name}.onnx")
    data = m.SerializeToString(deterministic=True)
    if len(data) > MAX_BYTES:
        raise RuntimeError(f"{name}: {len(data)} bytes > {MAX_BYTES}")
    with open(path, "wb") as f:
        f.write(data)
    return path


def build_all(outdir: str, names: Optional[Sequence[str]] = None) -> Dict[str, str]:
    """Writes every case (or `names`) to OUTDIR/<case>.onnx; returns {case: path}."""
    os.makedirs(outdir, exist_ok=True)
    return {n: build(n, outdir) for n in (names or CASES)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("outdir", nargs="?", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ops"))
    ap.add_argument("--list", action="store_true", help="print the case names and exit")
    a = ap.parse_args(argv)
    if a.list:
        print("\n".join(CASES))
        return 0
    paths = build_all(a.outdir)
    print(f"wrote {len(paths)} models to {a.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
