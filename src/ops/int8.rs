//! int8 ops: what the int8 lowering (`passes::quantize_lower`) turns QDQ patterns into.
//!
//! Storage: every runtime int8 tensor is held as **bytes, u8, asymmetric**: a signed (ONNX
//! `int8`) tensor is stored as `q + 128` with its zero point shifted by 128, so kernels only
//! ever see `u8` activations with a zero point (what `vpdpbusd` / `SDOT` on biased inputs
//! want); the two forms are the same numbers. A rank-4 int8 tensor is laid out **NHWC**
//! (channels innermost: depthwise and GEMM kernels vectorise over channels); other ranks keep
//! the ONNX order. Float tensors stay NCHW f32; [`QOp::Quantize`] and [`QOp::Dequantize`]
//! convert at the edges of float islands.
//!
//! The kernels are in `crate::kernels::qs8`; these structs are the op's parameters only.

use super::{Activation, Conv, OpError, OpResult, QuantParams};
use crate::kernels::qs8::gemm::PackedB;

/// Per-tensor quantization of a runtime int8 tensor in speck's stored (u8) form.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QType {
    /// scale
    pub scale: f32,
    /// zero point in the stored u8 domain (ONNX int8 zero point + 128 for signed tensors)
    pub zero_point: i32,
    /// the ONNX type is int8 (stored shifted by 128)
    pub signed: bool,
}

/// `x -> DQ(Q(x))`: a QuantizeLinear read back by a DequantizeLinear, on f32 values.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QRound {
    /// the QuantizeLinear's quantization
    pub quant: QType,
    /// the DequantizeLinear's interpretation of the integers
    pub dequant: QType,
}

/// The constants of [`QRound::apply`], for the loops and vector versions that hoist them.
#[derive(Clone, Copy, Debug)]
pub struct QRoundConsts {
    /// the quantization's scale (divided by)
    pub scale: f32,
    /// the low integer bound, `-zq`
    pub lo: f32,
    /// the high integer bound, `255 - zq`
    pub hi: f32,
    /// subtracted after adding [`QRound::MAGIC`]: `MAGIC - zq + zd`
    pub unmagic: f32,
    /// the dequantization's scale
    pub dscale: f32,
}

impl QRound {
    /// Adding and subtracting it rounds ties to even below 2^22 (`round_ties_even` is a libm
    /// call on baseline x86-64).
    pub const MAGIC: f32 = 12_582_912.0;

    /// [`QRound::apply`]'s constants.
    #[inline(always)]
    pub fn consts(&self) -> QRoundConsts {
        let (zq, zd) = (self.quant.zero_point as f32, self.dequant.zero_point as f32);
        QRoundConsts {
            scale: self.quant.scale,
            lo: -zq,
            hi: 255.0 - zq,
            unmagic: Self::MAGIC - zq + zd,
            dscale: self.dequant.scale,
        }
    }

    /// The rounded value.
    #[inline(always)]
    pub fn apply(&self, x: f32) -> f32 {
        // `dequant.dequantize(quant.quantize(x))` without leaving floats, identical to it:
        // clamping to the integer bounds `[-zq, 255 - zq]` before rounding equals clamping
        // after (NaN lands on the low bound, code 0, as in `quantize`), and with the clamped
        // `y` small, `(y + M) - (M - zq + zd)` is exactly `round_ties_even(y) + zq - zd`
        // (every term an integer below 2^24). Loops hoist the constants: 6 operations a value.
        let c = self.consts();
        let y = clamp_nan_low(x / c.scale, c.lo, c.hi);
        ((y + Self::MAGIC) - c.unmagic) * c.dscale
    }
}

impl QType {
    /// From ONNX per-tensor parameters of an 8-bit QuantizeLinear / DequantizeLinear; `None`
    /// for per-axis or non-8-bit parameters.
    pub fn from_params(p: &QuantParams) -> Option<QType> {
        if p.scale.len() != 1 || !(p.scale[0] > 0.0 && p.scale[0].is_finite()) {
            return None;
        }
        let signed = match (p.qmin, p.qmax) {
            (lo, hi) if lo == 0.0 && hi == 255.0 => false,
            (lo, hi) if lo == -128.0 && hi == 127.0 => true,
            _ => return None,
        };
        let zp = p.zero_point[0] as i32 + if signed { 128 } else { 0 };
        Some(QType {
            scale: p.scale[0],
            zero_point: zp,
            signed,
        })
    }

    /// ONNX QuantizeLinear into the stored domain: `sat(round_half_even(x / s) + zp)`.
    #[inline]
    pub fn quantize(&self, x: f32) -> u8 {
        // Clamp before rounding: beyond +-512 every value saturates anyway, and inside it the
        // add-and-subtract rounding below is exact.
        // NaN lands on the low bound (code 0), so the conversion below is in range.
        let v = round_ties_even_small(clamp_nan_low(x / self.scale, -512.0, 512.0));
        let v = clamp_nan_low(v + self.zero_point as f32, 0.0, 255.0);
        // SAFETY: v is finite and in [0, 255].
        unsafe { v.to_int_unchecked::<i32>() as u8 }
    }

    /// DequantizeLinear of a stored value.
    #[inline]
    pub fn dequantize(&self, q: u8) -> f32 {
        (q as i32 - self.zero_point) as f32 * self.scale
    }
}

/// `x` clamped to `[lo, hi]`, NaN to `lo`: `x.max(lo).min(hi)`. On x86-64 as compare-selects,
/// which are exactly MAXPS / MINPS (`a > b ? a : b`, one instruction each), where `f32::max`
/// is a max, an unordered compare and a blend (LdaAqu's and the int8 element-wise rows'
/// roundings spent most of their instructions there); Arm's FMAXNM / FMINNM are `max` / `min`
/// as they are. The two forms differ only in the sign of a zero, which no caller sees (a
/// rounding follows).
#[inline(always)]
#[allow(clippy::manual_clamp)] // NaN lands on `lo`; `clamp` would keep it
pub fn clamp_nan_low(x: f32, lo: f32, hi: f32) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        let y = if x > lo { x } else { lo };
        if y < hi {
            y
        } else {
            hi
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        x.max(lo).min(hi)
    }
}

/// Round half to even for `|x| <= 2^22`, by adding and subtracting 1.5 * 2^23 (the FPU's
/// default round-to-nearest-even does the rounding). `f32::round_ties_even` is a libm call on
/// baseline x86-64 (no SSE4.1 `roundps`), which stops loops from vectorising; this is two adds.
#[inline(always)]
pub fn round_ties_even_small(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    (x + MAGIC) - MAGIC
}

/// What a quantized convolution writes.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum QConvOut {
    /// Requantized to `q`, clamped to `[lo, hi]` in the stored domain (a fused Relu or Clip
    /// before the QuantizeLinear becomes this clamp: Q is monotonic and Q(0) = zero point).
    Quant {
        /// output quantization
        q: QType,
        /// lowest stored value
        lo: u8,
        /// highest stored value
        hi: u8,
    },
    /// Dequantized to f32 (NCHW), then `activation` (a float reader follows the conv).
    Float {
        /// activation applied in f32 after the bias
        activation: Option<Activation>,
    },
}

/// A convolution on int8 weights: `acc = sum (x - zx) * w + bias` in int32, then requantized.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QConv {
    /// geometry (its `activation` is unused: see `out`)
    pub conv: Conv,
    /// symmetric int8 weights, in ONNX order or packed for the GEMM kernels
    pub weights: QWeights,
    /// `[M, C/group, kh, kw]`
    pub w_shape: [usize; 4],
    /// weight scale per output channel
    pub w_scale: Vec<f32>,
    /// int32 bias per output channel at scale `x.scale * w_scale[m]`
    pub bias: Vec<i32>,
    /// input quantization
    pub input: QType,
    /// output
    pub out: QConvOut,
    /// with a `Quant` output: the stored values mapped through this 256-entry table after
    /// the clamp (a lookup-table activation, hard-swish say, fused into the conv's epilogue)
    pub lut: Option<Vec<u8>>,
    /// with a `Quant` output: a residual Add fused in (the op's second input, `skip`, of
    /// the output's shape): the stored values, after the clamp and the table, become
    /// `Q_out(DQ(value) + DQ_skip(skip))`
    pub residual: Option<QResidual>,
}

/// A [`QConv`]'s weights.
///
/// The importer's lowering gives [`QWeights::Onnx`]. A compiled model stores the weights of
/// every conv that runs as a GEMM (all but depthwise) already packed in the c4 layout that
/// every int8 GEMM kernel reads, whatever the ISA (`kernels::qs8::gemm`): in its file as
/// [`QWeights::Stored`] references into the weights section, in memory, once loaded and
/// checked, as [`QWeights::GemmPacked`]. Depthwise weights stay in ONNX order: the depthwise
/// kernels' tap layouts depend on the kernel chosen when the engine plans (input geometry and
/// `SPECK_ISA`), and they are a few KiB.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum QWeights {
    /// `[M, C/group, kh, kw]`, ONNX order
    Onnx(Vec<i8>),
    /// in a compiled file's plan: each group's packed bytes in the weights section
    Stored(Vec<StoredPacked>),
    /// one packed B (`[M/group, kh * kw * C/group]`, rows in `[ky][kx][c]` order, the NHWC
    /// input's order) per group; never serialized (the compiled writer stores it as
    /// [`QWeights::Stored`])
    #[serde(skip)]
    GemmPacked(std::sync::Arc<[PackedB]>),
}

/// Where one group's packed GEMM weights lie in a compiled file's weights section.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredPacked {
    /// byte offset from the start of the weights section (a multiple of 64)
    pub offset: u64,
    /// byte length
    pub len: u64,
}

impl QWeights {
    /// Weight bytes held (the packed form's padding and row sums included).
    pub fn byte_len(&self) -> usize {
        match self {
            QWeights::Onnx(w) => w.len(),
            QWeights::Stored(s) => s.iter().map(|p| p.len as usize).sum(),
            QWeights::GemmPacked(p) => p.iter().map(|b| b.data.len()).sum(),
        }
    }
}

/// A residual Add fused into a [`QConv`]: `Q(DQ(conv) + DQ(skip))`, exactly the int8 Add
/// it replaces (float addition commutes, so the operands' order does not matter).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QResidual {
    /// the skip input's quantization
    pub skip: QType,
    /// the sum's quantization (what the op writes)
    pub out: QType,
}

/// Element-wise two-input ops with requantization.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum QBinaryKind {
    /// a + b
    Add,
    /// a * b
    Mul,
}

/// An int8 op. Inputs and outputs are stored int8 tensors unless noted.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum QOp {
    /// f32 input -> int8 output (ONNX QuantizeLinear).
    Quantize {
        /// output quantization
        out: QType,
    },
    /// int8 input -> f32 output (ONNX DequantizeLinear).
    Dequantize {
        /// input quantization
        input: QType,
    },
    /// Convolution (see [`QConv`]).
    Conv(Box<QConv>),
    /// `out = table[in]`: any element-wise function between a DQ and a Q (HardSwish,
    /// HardSigmoid, Sigmoid, a requantization, ...), evaluated once per input value.
    Lut {
        /// 256 stored output values, indexed by the stored input value
        table: Vec<u8>,
    },
    /// `Q(op(DQ(a), DQ(b)))` with b of a's shape, or b `[N,C,1,1]` against a `[N,C,H,W]`.
    Binary {
        /// add or multiply
        kind: QBinaryKind,
        /// first input
        a: QType,
        /// second input
        b: QType,
        /// output
        out: QType,
        /// b is `[N,C,1,1]`, broadcast over a's spatial positions
        b_per_channel: bool,
    },
    /// Concatenation along ONNX `axis`, each input requantized to `out`.
    Concat {
        /// ONNX axis
        axis: usize,
        /// input quantizations
        inputs: Vec<QType>,
        /// output
        out: QType,
    },
    /// Global average pool `[N,C,H,W] -> [N,C,1,1]`.
    GlobalAveragePool {
        /// input
        input: QType,
        /// output
        out: QType,
    },
    /// A float op run on the dequantized input and quantized back, for data-movement ops
    /// whose int8 form would be the same numbers (MaxPool, Resize).
    Float {
        /// MaxPool or Resize
        op: Box<super::Op>,
        /// input
        input: QType,
        /// output
        out: QType,
    },
    /// f32 -> f32 `DQ(Q(x))` in the float layout: a QuantizeLinear whose int8 result is only
    /// read back by a DequantizeLinear into float ops (the edges of the float islands a QDQ
    /// file leaves). Same numbers as Quantize then Dequantize, without two layout changes.
    FakeQuant(QRound),
}

/// An int8 op with its output shape (ONNX order, NCHW).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Int8Op {
    /// the op
    pub op: QOp,
    /// output shape
    pub out_shape: Vec<usize>,
}

impl Int8Op {
    /// Drop a conv's weights once its kernel has packed them (the engine's graph then only
    /// describes the node: shapes and parameters, not a second copy of the weights).
    pub fn release_weights(&mut self) {
        if let QOp::Conv(c) = &mut self.op {
            c.weights = QWeights::Onnx(Vec::new());
        }
    }

    /// The output shape the op computes from its inputs' shapes: the kernels size their
    /// loops from the inputs, so a stored `out_shape` (a compiled file's) must equal it.
    pub fn infer_shape(&self, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
        let bad = |msg: String| Err(OpError::Shape(format!("{}: {msg}", self.name())));
        let Some(&x) = inputs.first() else {
            return Err(OpError::Arity {
                expected: 1,
                got: 0,
            });
        };
        match &self.op {
            QOp::Quantize { .. } | QOp::Dequantize { .. } | QOp::Lut { .. } | QOp::FakeQuant(_) => {
                Ok(x.to_vec())
            }
            QOp::Binary { b_per_channel, .. } => {
                let Some(&b) = inputs.get(1) else {
                    return bad("needs two inputs".into());
                };
                let fits = if *b_per_channel {
                    x.len() == 4 && b == [x[0], x[1], 1, 1]
                } else {
                    b == x
                };
                if !fits {
                    return bad(format!("inputs {x:?} and {b:?}"));
                }
                Ok(x.to_vec())
            }
            QOp::Concat {
                axis, inputs: q, ..
            } => {
                if q.len() != inputs.len() {
                    return bad(format!(
                        "{} inputs, {} quantizations",
                        inputs.len(),
                        q.len()
                    ));
                }
                super::concat_shape(*axis, inputs)
            }
            QOp::GlobalAveragePool { .. } => super::global_pool_shape(x),
            QOp::Float { op, .. } => Ok(op.output_shapes(&inputs[..1])?.swap_remove(0)),
            QOp::Conv(c) => {
                let [m, cg, kh, kw] = c.w_shape;
                if x.len() == 2 {
                    // a Gemm lowered to a 1x1 conv: `[rows, K]`
                    if (kh, kw, c.conv.group) != (1, 1, 1) || x[1] != cg {
                        return bad(format!("input {x:?} for weights {:?}", c.w_shape));
                    }
                    return Ok(vec![x[0], m]);
                }
                super::conv_shape(&c.conv, &[x, &c.w_shape])
            }
        }
    }

    /// Check the invariants the int8 kernels rely on and a compiled file could break: every
    /// zero point a byte, every scale finite, clamp bounds ordered, tables of 256 entries.
    pub fn check(&self) -> Result<(), String> {
        let q = |t: &QType, what: &str| {
            if (0..=255).contains(&t.zero_point) && t.scale.is_finite() {
                Ok(())
            } else {
                Err(format!(
                    "{}: {what} quantization has scale {} and zero point {}",
                    self.name(),
                    t.scale,
                    t.zero_point
                ))
            }
        };
        let table = |t: &[u8]| match t.len() {
            256 => Ok(()),
            n => Err(format!("{}: a table of {n} entries, not 256", self.name())),
        };
        match &self.op {
            QOp::Quantize { out } => q(out, "output"),
            QOp::Dequantize { input } => q(input, "input"),
            QOp::Lut { table: t } => table(t),
            QOp::Binary { a, b, out, .. } => {
                q(a, "first input")?;
                q(b, "second input")?;
                q(out, "output")
            }
            QOp::Concat { inputs, out, .. } => {
                inputs.iter().try_for_each(|t| q(t, "input"))?;
                q(out, "output")
            }
            QOp::GlobalAveragePool { input, out } | QOp::Float { input, out, .. } => {
                q(input, "input")?;
                q(out, "output")
            }
            QOp::FakeQuant(r) => {
                q(&r.quant, "quantize")?;
                q(&r.dequant, "dequantize")
            }
            QOp::Conv(c) => {
                q(&c.input, "input")?;
                if let QConvOut::Quant { q: o, lo, hi } = c.out {
                    q(&o, "output")?;
                    if lo > hi {
                        return Err(format!("{}: clamp {lo}..={hi}", self.name()));
                    }
                }
                if let Some(r) = &c.residual {
                    q(&r.skip, "skip")?;
                    q(&r.out, "sum")?;
                }
                if !c.w_scale.iter().all(|s| s.is_finite()) {
                    return Err(format!("{}: a weight scale is not finite", self.name()));
                }
                c.lut.as_deref().map_or(Ok(()), table)
            }
        }
    }

    /// Short name for profiles.
    pub fn name(&self) -> String {
        match &self.op {
            QOp::Quantize { .. } => "Quantize".into(),
            QOp::Dequantize { .. } => "Dequantize".into(),
            QOp::Conv(c) if c.residual.is_some() => "QConv+Add".into(),
            QOp::Conv(_) => "QConv".into(),
            QOp::Lut { .. } => "QLut".into(),
            QOp::Binary { kind, .. } => format!("Q{kind:?}"),
            QOp::Concat { .. } => "QConcat".into(),
            QOp::GlobalAveragePool { .. } => "QGlobalAveragePool".into(),
            QOp::Float { op, .. } => format!("Q{}", op.name()),
            QOp::FakeQuant(_) => "FakeQuant".into(),
        }
    }

    /// Whether input `i` is an int8 tensor (else f32).
    pub fn input_is_int8(&self, _i: usize) -> bool {
        !matches!(self.op, QOp::Quantize { .. } | QOp::FakeQuant(_))
    }

    /// Whether the output is an int8 tensor (else f32).
    pub fn output_is_int8(&self) -> bool {
        match &self.op {
            QOp::Dequantize { .. } | QOp::FakeQuant(_) => false,
            QOp::Conv(c) => matches!(c.out, QConvOut::Quant { .. }),
            _ => true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamp_nan_low_is_max_then_min() {
        // the x86 compare-select form against `f32::max` / `min`, zeros' signs aside
        let special = [
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            0.0,
            -0.0,
            1e-40,
            -3.5,
        ];
        for &(lo, hi) in &[
            (-128.0, 127.0),
            (0.0, 255.0),
            (-0.0, 255.0),
            (-512.0, 512.0),
        ] {
            for &x in special.iter().chain(&[lo, hi, lo - 1.0, hi + 1.0, 17.25]) {
                let (got, want) = (clamp_nan_low(x, lo, hi), x.max(lo).min(hi));
                assert!(
                    got == want && !got.is_nan(),
                    "{x} in [{lo}, {hi}]: {got} {want}"
                );
            }
        }
        let q = QType {
            scale: 0.1,
            zero_point: 10,
            signed: false,
        };
        assert_eq!(
            [f32::NAN, f32::NEG_INFINITY, f32::INFINITY, -1.0, 0.0].map(|x| q.quantize(x)),
            [0, 0, 255, 0, 10]
        );
    }

    #[test]
    fn round_trip_equals_quantize_then_dequantize() {
        let types = [
            (0.02, 128, false),
            (0.5, 0, false),
            (1.0 / 255.0, 3, true),
            (0.0731, 200, false),
            (0.3, 255, true),
            (7.5, 0, true),
        ];
        let mut xs = vec![
            0.0,
            -0.0,
            f32::NAN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            1e30,
            -1e30,
            f32::MIN_POSITIVE,
        ];
        // half steps (ties), their neighbours, and a sweep
        for i in -600..600 {
            let h = (i as f32 + 0.5) * 0.02;
            xs.extend([
                h,
                f32::from_bits(h.to_bits() + 1),
                f32::from_bits(h.to_bits() - 1),
            ]);
            xs.push(i as f32 * 0.0137);
        }
        for &(scale, zero_point, signed) in &types {
            for &(s2, z2) in &[(scale, zero_point), (scale * 1.5, zero_point / 2)] {
                let quant = QType {
                    scale,
                    zero_point,
                    signed,
                };
                let dequant = QType {
                    scale: s2,
                    zero_point: z2,
                    signed,
                };
                let r = QRound { quant, dequant };
                for &x in &xs {
                    let want = dequant.dequantize(quant.quantize(x));
                    assert_eq!(r.apply(x).to_bits(), want.to_bits(), "{x} {r:?}");
                }
            }
        }
    }
}
