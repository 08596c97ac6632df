//! Optimised f32 2-D convolution (NCHW), planned once per conv.
//!
//! Algorithms, chosen in [`ConvF32::new`]:
//! - `dwconv_f32_*`: depthwise (group == C == M, dilation 1): direct per-plane kernels, see
//!   [`depthwise`];
//! - `conv_f32_gemv16_<isa>`: a 1x1 output (squeeze-excite FCs, classifier Gemms planned by
//!   [`ConvF32::linear`]): matrix-vector products over weights packed for one stream, see
//!   [`gemv`];
//! - `conv_f32_tiled_8x32_<isa>`: every other conv where the ISA has a microkernel (AVX2,
//!   AVX-512, NEON on aarch64 and armv7; on AVX2 not the 1x1s): packed im2col tiles of 32
//!   pixels times 8-channel weight blocks, see [`tiled`];
//! - `conv1x1_f32_pixelrows_<R>x32_avx512`: 1x1 stride-1 convs on maps of 7 x 7 and smaller,
//!   where the tiled path's 32-pixel tiles would waste more: the same microkernel with blocks
//!   of `R` = 5 to 8 pixels as rows and output channels as the vector columns (x86-64 only),
//!   see `pixel_rows`;
//! - `conv3x3s1_f32_winograd43_8x32_<isa>` / `..._winograd23_...`: 3x3 stride-1 convs with
//!   16+ input channels (one group) where the ISA has a microkernel (not armv7): Winograd
//!   F(4x4, 3x3) on outputs of 8 x 8 and up, F(2x2, 3x3) below, on the same microkernels, see
//!   [`winograd`]; `conv3x3s1_f16_winograd23_8x32_neonfp16` with `fp16` on maps below 8 x 8;
//! - `conv_f32_tiled_8x32_neonfp16`: the tiled algorithm in fp16 arithmetic, when asked for
//!   (`EngineOptions::fp16`) on an aarch64 CPU with FEAT_FP16, see [`tiled_fp16`];
//! - otherwise (`SPECK_ISA=scalar`, armv7 without NEON) the `gemm` crate:
//!   `conv1x1_f32_gemm` (1x1, stride 1, no padding: one GEMM `[M x C] * [C x HW]` per group) and
//!   `conv_f32_im2col_gemm` (im2col into the scratch buffer, then one GEMM per group).
//!
//! Bias and the fused activation are applied in each algorithm's epilogue; a fused residual Add
//! ([`ConvF32::run_add`]) in the tiled kernels' too (each block as it is stored), after the
//! others in one pass.

pub mod depthwise;
mod epilogue;
mod gemm;
mod gemv;
mod im2col;
#[cfg(target_arch = "x86_64")]
mod pixel_rows;
mod tiled;
mod tiled_fp16;
mod winograd;

use super::Isa;
use crate::ops::{apply_activation, conv_shape, Activation, Conv, OpResult};
use depthwise::{DwGeom, DwRow};
use epilogue::EpiHint;
use im2col::ColGeom;
use ndarray::{ArrayViewD, ArrayViewMutD};
use std::borrow::Cow;

/// Whether this CPU has the fp16 arithmetic that [`ConvF32::with_options`]' `fp16` uses.
pub fn fp16_supported() -> bool {
    tiled_fp16::supported()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algo {
    Gemm1x1,
    Depthwise(DwRow),
    /// a 1x1 output: one matrix-vector product per image and group ([`gemv`])
    Gemv,
    Im2colGemm,
    /// packed im2col tiles and an `MR x NR` microkernel ([`tiled`])
    Tiled,
    /// a 1x1 conv on a small map: the tiled microkernel with pixels as rows (`pixel_rows`), in
    /// blocks of this many pixels
    #[cfg(target_arch = "x86_64")]
    PixelRows(usize),
    /// [`Algo::Tiled`] in fp16 arithmetic ([`tiled_fp16`])
    TiledF16,
    /// 3x3 stride 1 by Winograd F(2x2, 3x3) or F(4x4, 3x3) on the tiled microkernels
    /// ([`winograd`])
    Winograd(winograd::Tile),
    /// [`Algo::Winograd`] F(2x2, 3x3) with the point-wise products in fp16 arithmetic
    WinogradF16,
}

/// Whether a conv's epilogue runs activation `a` in its own monomorphic instance (the list in
/// [`ConvF32::run_add`]). The others go through one shared closure that matches on the
/// activation per value; fusing one of them costs more than the separate element-wise pass it
/// saves (a 3x3 conv, 16 -> 32 channels at 96 x 96, x86 AVX-512: with LeakyRelu fused 2.43 ms,
/// as conv then LeakyRelu 0.57 + 0.04 ms), so `fuse_conv_activation` leaves them unfused.
pub fn has_monomorphic_epilogue(a: Activation) -> bool {
    matches!(
        a,
        Activation::Relu
            | Activation::HardSwish
            | Activation::HardSigmoid { .. }
            | Activation::Sigmoid
            | Activation::Tanh
    )
}

/// A convolution planned for one input shape: packed weights and the chosen algorithm.
#[derive(Clone, Debug)]
pub struct ConvF32 {
    algo: Algo,
    isa: Isa,
    /// (C, H, W) of the planned input
    chw: [usize; 3],
    m: usize,
    group: usize,
    k: [usize; 2],
    strides: [usize; 2],
    pads: [usize; 4],
    dilations: [usize; 2],
    out_hw: [usize; 2],
    /// `[M, C/group * kh * kw]` row-major (empty for the algorithms that run on `packed` or
    /// `packed_f16`)
    weights: Vec<f32>,
    /// `[M]`, zeros when the conv has no bias
    bias: Vec<f32>,
    activation: Option<Activation>,
    /// a fused residual Add: [`ConvF32::run_add`] adds its `skip` after the activation
    residual: bool,
    scratch_len: usize,
    /// [`Algo::Tiled`]: per group, the weights packed by [`tiled::pack_weights`];
    /// [`Algo::Gemv`]: by [`gemv::pack_weights`]; `Algo::PixelRows`: by
    /// `pixel_rows::pack_weights`
    packed: Vec<f32>,
    /// [`Algo::TiledF16`]: per group, the weights packed by [`tiled_fp16::pack_weights_f16`]
    packed_f16: Vec<u16>,
}

/// Each group's packing of `w` (`groups` runs of `[mg][kc]`), concatenated. One group (every
/// dense conv) keeps its packing as it is: collecting through an iterator of unknown length
/// grew the vector by doubling, and a 5 MB classifier then held about three times its size in
/// memory while it was packed.
fn pack_groups<T>(
    w: &[f32],
    mg: usize,
    kc: usize,
    pack: impl Fn(&[f32], usize, usize) -> Vec<T>,
) -> Vec<T> {
    let mut groups = w.chunks_exact((mg * kc).max(1)).map(|wg| pack(wg, mg, kc));
    let mut all = groups.next().unwrap_or_default();
    groups.for_each(|g| all.extend(g));
    all
}

/// [`Algo::PixelRows`] for a conv of `[ohw, m, k]` (pixels, output and input channels) on `isa`
/// where that layout applies (`one_by_one`: 1x1, stride 1, unpadded, one group, not fp16) and
/// computes less. x86-64 only: on aarch64 it saved 1.5% of MobileNetV3-Large's float
/// instructions (Cortex-A72, the tiled kernel's epilogue is in registers there) for 14 KB of
/// the board binary, which has to stay under 4 MB.
fn pixel_rows_algo(isa: Isa, one_by_one: bool, [ohw, m, k]: [usize; 3]) -> Option<Algo> {
    #[cfg(target_arch = "x86_64")]
    if one_by_one && pixel_rows::applies(isa) && pixel_rows::suits(ohw, m, k) {
        return Some(Algo::PixelRows(pixel_rows::rows_for(ohw)));
    }
    let _ = (isa, one_by_one, ohw, m, k);
    None
}

impl ConvF32 {
    /// Plan a convolution of inputs shaped `in_shape` (`[N,C,H,W]`) with weights `w`
    /// (`[M, C/group, kh, kw]`) and optional bias `b` (`[M]`), for the host's ISA
    /// ([`super::isa`], capped by `SPECK_ISA`).
    pub fn new(
        c: &Conv,
        w: ArrayViewD<f32>,
        b: Option<ArrayViewD<f32>>,
        in_shape: &[usize],
    ) -> OpResult<ConvF32> {
        Self::with_isa(c, w, b, in_shape, super::isa())
    }

    /// [`ConvF32::new`] for an explicit ISA; one the host lacks falls back to a lower level.
    pub fn with_isa(
        c: &Conv,
        w: ArrayViewD<f32>,
        b: Option<ArrayViewD<f32>>,
        in_shape: &[usize],
        isa: Isa,
    ) -> OpResult<ConvF32> {
        Self::with_options(c, w, b, in_shape, isa, false)
    }

    /// [`ConvF32::with_isa`]; with `fp16`, a conv that would run tiled runs in fp16 arithmetic
    /// where the host has it (aarch64 FEAT_FP16 with NEON selected; elsewhere `fp16` is
    /// ignored). Outputs then differ from f32 by binary16 rounding (about 3 decimal digits).
    pub fn with_options(
        c: &Conv,
        w: ArrayViewD<f32>,
        b: Option<ArrayViewD<f32>>,
        in_shape: &[usize],
        isa: Isa,
        fp16: bool,
    ) -> OpResult<ConvF32> {
        let isa = isa.capped();
        let mut shapes: Vec<&[usize]> = vec![in_shape, w.shape()];
        if let Some(b) = &b {
            shapes.push(b.shape());
        }
        // (the residual input is the runner's, not the plan's: shapes without it)
        let plain = Conv {
            residual: false,
            ..c.clone()
        };
        let out = conv_shape(&plain, &shapes)?;
        let (cin, h, wd) = (in_shape[1], in_shape[2], in_shape[3]);
        let (m, cg, kh, kw) = (w.shape()[0], w.shape()[1], w.shape()[2], w.shape()[3]);
        // Row-major weights without a copy where the view already is (constants are).
        let owned: Vec<f32>;
        let w_rows: &[f32] = match w.as_slice() {
            Some(rows) => rows,
            None => {
                owned = w.iter().copied().collect();
                &owned
            }
        };
        let bias = match &b {
            Some(b) => b.iter().copied().collect(),
            None => vec![0.0; m],
        };
        let (oh, ow) = (out[2], out[3]);
        let is_1x1 = kh == 1 && kw == 1 && c.strides == [1, 1] && c.pads == [0; 4];
        let algo = if c.group == cin && m == cin && c.dilations == [1, 1] {
            let g = DwGeom {
                h,
                w: wd,
                oh,
                ow,
                kh,
                kw,
                sh: c.strides[0],
                sw: c.strides[1],
                pt: c.pads[0],
                pl: c.pads[1],
            };
            Algo::Depthwise(DwRow::select(&g, isa))
        } else if oh * ow == 1 {
            Algo::Gemv
        } else if tiled::microkernel(isa).is_some()
            && winograd::applies([kh, kw], c.strides, c.dilations, c.group, cg, m)
        {
            // fp16 products only with F(2x2, 3x3) (see `winograd`: F(4x4, 3x3) in f32 costs
            // about the same and is exact)
            match winograd::Tile::select(oh, ow) {
                winograd::Tile::F23 if fp16 && isa == Isa::Neon && tiled_fp16::supported() => {
                    Algo::WinogradF16
                }
                tile => Algo::Winograd(tile),
            }
        } else if let Some(a) = pixel_rows_algo(
            isa,
            is_1x1 && c.group == 1 && !(fp16 && tiled_fp16::supported()),
            [oh * ow, m, cg],
        ) {
            a
        } else if tiled::microkernel(isa).is_some()
            && cg * kh * kw > 0
            && !(is_1x1 && isa == Isa::Avx2)
        {
            // (AVX2 1x1: the `gemm` crate measured faster, 27 vs 18 GMAC/s, benches/conv_f32.rs)
            if fp16 && isa == Isa::Neon && tiled_fp16::supported() {
                Algo::TiledF16
            } else {
                Algo::Tiled
            }
        } else if is_1x1 {
            Algo::Gemm1x1
        } else {
            Algo::Im2colGemm
        };
        let (mg, kc) = (m / c.group, cg * kh * kw);
        let packed = match algo {
            Algo::Tiled => pack_groups(w_rows, mg, kc, tiled::pack_weights),
            #[cfg(target_arch = "x86_64")]
            Algo::PixelRows(_) => pixel_rows::pack_weights(w_rows, m, kc),
            Algo::Gemv => pack_groups(w_rows, mg, kc, gemv::pack_weights),
            Algo::Winograd(tile) => winograd::pack_weights(tile, w_rows, m, cg),
            _ => vec![],
        };
        let packed_f16 = match algo {
            Algo::WinogradF16 => winograd::pack_weights_f16(winograd::Tile::F23, w_rows, m, cg),
            Algo::TiledF16 => pack_groups(w_rows, mg, kc, tiled_fp16::pack_weights_f16),
            _ => vec![],
        };
        // The packed kernels read only their packed copy: keeping the plain one too would
        // hold every such conv's weights twice for the life of the plan.
        let weights = if packed.is_empty() && packed_f16.is_empty() {
            w_rows.to_vec()
        } else {
            Vec::new()
        };
        let mut conv = ConvF32 {
            algo,
            isa,
            chw: [cin, h, wd],
            m,
            group: c.group,
            k: [kh, kw],
            strides: c.strides,
            pads: c.pads,
            dilations: c.dilations,
            out_hw: [oh, ow],
            weights,
            bias,
            activation: c.activation,
            residual: c.residual,
            scratch_len: 0,
            packed,
            packed_f16,
        };
        conv.scratch_len = match algo {
            Algo::Im2colGemm => cg * kh * kw * oh * ow,
            Algo::Tiled | Algo::TiledF16 => tiled::scratch_len(&conv.geom(), c.group, is_1x1),
            #[cfg(target_arch = "x86_64")]
            Algo::PixelRows(rows) => pixel_rows::scratch_len(cg, oh * ow, rows),
            _ => 0,
        };
        Ok(conv)
    }

    /// The im2col geometry of one group.
    fn geom(&self) -> ColGeom {
        let [c, h, w] = self.chw;
        let [oh, ow] = self.out_hw;
        ColGeom {
            cg: c / self.group,
            h,
            w,
            kh: self.k[0],
            kw: self.k[1],
            sh: self.strides[0],
            sw: self.strides[1],
            pt: self.pads[0],
            pl: self.pads[1],
            dh: self.dilations[0],
            dw: self.dilations[1],
            oh,
            ow,
        }
    }

    /// Plan a fully connected layer, `y[rows][n] = x[rows][k] * w^T + bias` with `w` `[n][k]`
    /// row-major (a Gemm or Linear with constant weights), as a 1x1 conv of `[rows, k, 1, 1]`
    /// inputs; run it with [`ConvF32::run_linear`].
    pub fn linear(w: &[f32], n: usize, k: usize, bias: &[f32], rows: usize) -> OpResult<ConvF32> {
        let bad = |why: String| crate::ops::OpError::Shape(format!("linear layer: {why}"));
        let w = ndarray::ArrayView::from_shape([n, k, 1, 1], w)
            .map_err(|e| bad(format!("weights are not [{n}, {k}]: {e}")))?;
        let b = ndarray::ArrayView::from_shape([n], bias)
            .map_err(|e| bad(format!("bias is not [{n}]: {e}")))?;
        let conv = Conv {
            group: 1,
            strides: [1, 1],
            pads: [0; 4],
            dilations: [1, 1],
            activation: None,
            residual: false,
        };
        Self::new(&conv, w.into_dyn(), Some(b.into_dyn()), &[rows, k, 1, 1])
    }

    /// Run a plan of [`ConvF32::linear`] on `x` `[rows, k]` into `y` `[rows, n]`.
    ///
    /// # Panics
    /// When `x` or `y` do not have the planned shapes (a planning error, not a data error).
    pub fn run_linear(&self, x: ArrayViewD<f32>, y: ArrayViewMutD<f32>, scratch: &mut Vec<f32>) {
        let (xs, ys) = (x.shape().to_vec(), y.shape().to_vec());
        let as4 = |s: &[usize]| match s {
            [r, c] => [*r, *c, 1, 1],
            _ => panic!("linear layer planned for 2-D tensors, got x {xs:?} y {ys:?}"),
        };
        let x4 = x
            .into_shape_with_order(as4(&xs))
            .expect("linear input is contiguous");
        let y4 = y
            .into_shape_with_order(as4(&ys))
            .expect("linear output is contiguous");
        self.run(x4.into_dyn(), y4.into_dyn(), scratch);
    }

    /// Name of the chosen kernel.
    pub fn algorithm(&self) -> &'static str {
        match self.algo {
            Algo::Gemm1x1 => "conv1x1_f32_gemm",
            Algo::Depthwise(r) => r.name(),
            Algo::Gemv => gemv::microkernel(self.isa).1,
            Algo::Im2colGemm => "conv_f32_im2col_gemm",
            Algo::Tiled => tiled::microkernel(self.isa).map_or("", |k| k.1),
            #[cfg(target_arch = "x86_64")]
            Algo::PixelRows(rows) => pixel_rows::name(rows),
            Algo::TiledF16 => "conv_f32_tiled_8x32_neonfp16",
            Algo::Winograd(tile) => {
                let names = match tile {
                    winograd::Tile::F23 => [
                        "conv3x3s1_f32_winograd23_8x32_avx512",
                        "conv3x3s1_f32_winograd23_8x32_avx2",
                        "conv3x3s1_f32_winograd23_8x32_neon",
                    ],
                    winograd::Tile::F43 => [
                        "conv3x3s1_f32_winograd43_8x32_avx512",
                        "conv3x3s1_f32_winograd43_8x32_avx2",
                        "conv3x3s1_f32_winograd43_8x32_neon",
                    ],
                };
                match tiled::microkernel(self.isa).map(|k| k.1) {
                    Some("conv_f32_tiled_8x32_avx512") => names[0],
                    Some("conv_f32_tiled_8x32_avx2") => names[1],
                    _ => names[2],
                }
            }
            Algo::WinogradF16 => "conv3x3s1_f16_winograd23_8x32_neonfp16",
        }
    }

    /// ISA the plan runs with.
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Floats of scratch [`ConvF32::run`] needs (0 for algorithms without im2col).
    pub fn scratch_len(&self) -> usize {
        self.scratch_len
    }

    /// Output shape for a batch of `n`.
    pub fn out_shape(&self, n: usize) -> [usize; 4] {
        [n, self.m, self.out_hw[0], self.out_hw[1]]
    }

    /// Run on `x` (`[N,C,H,W]` with the planned C, H, W) into `y` (`[N,M,OH,OW]`); `scratch` is
    /// grown to [`ConvF32::scratch_len`] when shorter. Non-contiguous views are copied.
    ///
    /// # Panics
    /// When `x` or `y` do not have the planned shapes (a planning error, not a data error), or
    /// the conv was planned with a residual Add ([`ConvF32::run_add`] runs those).
    pub fn run(&self, x: ArrayViewD<f32>, y: ArrayViewMutD<f32>, scratch: &mut Vec<f32>) {
        self.run_add(x, None, y, scratch)
    }

    /// Whether the conv was planned with a fused residual Add.
    pub fn residual(&self) -> bool {
        self.residual
    }

    /// [`ConvF32::run`] for a conv planned with or without a residual Add: `skip`, shaped as
    /// `y`, is added after the activation (the tiled kernels add it in each tile's epilogue,
    /// while the tile is in cache; the others after the conv).
    ///
    /// # Panics
    /// As [`ConvF32::run`], and when `skip` is given for a conv planned without a residual Add,
    /// missing for one with, or shaped otherwise than `y`.
    pub fn run_add(
        &self,
        x: ArrayViewD<f32>,
        skip: Option<ArrayViewD<f32>>,
        y: ArrayViewMutD<f32>,
        scratch: &mut Vec<f32>,
    ) {
        // One monomorphic epilogue per activation the shipped models fuse into convs: a
        // closure that matches on the activation per element is not inlined into the kernels
        // (it was 10% of the detector's time). The rarer ones share that slower closure, as
        // each instance is 50-70 KB of the device binary (the tiled, Winograd and im2col
        // paths and their rayon splits).
        macro_rules! with_act {
            ($($pat:pat => $act:expr),* $(,)?) => {
                let hint = EpiHint::of(self.activation);
                match self.activation {
                    None => self.run_with_hint(x, skip, y, scratch, &|v: f32| v, hint),
                    $(Some($pat) => self.run_with_hint(x, skip, y, scratch, &move |v: f32| {
                        apply_activation($act, v)
                    }, hint),)*
                    Some(a) => self.run_with_hint(x, skip, y, scratch, &move |v: f32| {
                        apply_activation(a, v)
                    }, hint),
                }
            };
        }
        // keep in step with `has_monomorphic_epilogue`
        with_act! {
            Activation::Relu => Activation::Relu,
            Activation::HardSwish => Activation::HardSwish,
            Activation::HardSigmoid { alpha, beta } => Activation::HardSigmoid { alpha, beta },
            Activation::Sigmoid => Activation::Sigmoid,
            Activation::Tanh => Activation::Tanh,
        }
    }

    /// [`ConvF32::run`] with the epilogue activation given as a function (ignores the conv's own).
    #[cfg(test)]
    pub(crate) fn run_with<F: Fn(f32) -> f32 + Sync>(
        &self,
        x: ArrayViewD<f32>,
        y: ArrayViewMutD<f32>,
        scratch: &mut Vec<f32>,
        act: &F,
    ) {
        self.run_with_hint(x, None, y, scratch, act, EpiHint::Closure)
    }

    /// [`ConvF32::run_with`], told what `act` computes (ISAs with a vector form of it use that).
    fn run_with_hint<F: Fn(f32) -> f32 + Sync>(
        &self,
        x: ArrayViewD<f32>,
        skip: Option<ArrayViewD<f32>>,
        mut y: ArrayViewMutD<f32>,
        scratch: &mut Vec<f32>,
        act: &F,
        hint: EpiHint,
    ) {
        let [c, h, w] = self.chw;
        assert!(
            x.ndim() == 4 && x.shape()[1..] == [c, h, w],
            "ConvF32 planned for [N, {c}, {h}, {w}], got x {:?}",
            x.shape()
        );
        let n = x.shape()[0];
        let out = self.out_shape(n);
        assert!(
            y.shape() == out,
            "ConvF32 output must be {out:?}, got {:?}",
            y.shape()
        );
        assert!(
            skip.is_some() == self.residual,
            "ConvF32 planned {} a residual Add, run {} one",
            if self.residual { "with" } else { "without" },
            if skip.is_some() { "with" } else { "without" },
        );
        let contiguous = |a: &ArrayViewD<'_, f32>| -> Vec<f32> { a.iter().copied().collect() };
        let xs: Cow<[f32]> = match x.as_slice() {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(contiguous(&x)),
        };
        let skip: Option<Cow<[f32]>> = skip.as_ref().map(|s| {
            assert!(
                s.shape() == out,
                "ConvF32 residual input must be {out:?}, got {:?}",
                s.shape()
            );
            match s.as_slice() {
                Some(v) => Cow::Borrowed(v),
                None => Cow::Owned(contiguous(s)),
            }
        });
        let skip = skip.as_deref();
        match y.as_slice_mut() {
            Some(ys) => self.run_slices(n, &xs, skip, ys, scratch, act, hint),
            None => {
                let mut tmp = vec![0.0; out.iter().product()];
                self.run_slices(n, &xs, skip, &mut tmp, scratch, act, hint);
                for (d, s) in y.iter_mut().zip(tmp) {
                    *d = s;
                }
            }
        }
    }

    /// Runs the planned algorithm; a `skip` is added in the tiled kernels' tiles, elsewhere
    /// after the algorithm has written all of `y`.
    #[allow(clippy::too_many_arguments)]
    fn run_slices<F: Fn(f32) -> f32 + Sync>(
        &self,
        n: usize,
        x: &[f32],
        skip: Option<&[f32]>,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
        act: &F,
        hint: EpiHint,
    ) {
        let in_tiles = matches!(self.algo, Algo::Tiled | Algo::TiledF16);
        self.run_algo(n, x, skip.filter(|_| in_tiles), y, scratch, act, hint);
        if let (Some(skip), false) = (skip, in_tiles) {
            epilogue::add_skip(y, skip);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_algo<F: Fn(f32) -> f32 + Sync>(
        &self,
        n: usize,
        x: &[f32],
        skip: Option<&[f32]>,
        y: &mut [f32],
        scratch: &mut Vec<f32>,
        act: &F,
        hint: EpiHint,
    ) {
        let [c, h, w] = self.chw;
        let [oh, ow] = self.out_hw;
        let (hw, ohw) = (h * w, oh * ow);
        let (cg, mg) = (c / self.group, self.m / self.group);
        let kk = cg * self.k[0] * self.k[1];
        if ohw == 0 || self.m == 0 {
            return;
        }
        let geom = self.geom();
        match self.algo {
            Algo::Tiled | Algo::TiledF16 => {
                let weights = if self.algo == Algo::TiledF16 {
                    tiled::TiledWeights::F16(&self.packed_f16)
                } else {
                    tiled::TiledWeights::F32 {
                        packed: &self.packed,
                        kernel: tiled::microkernel(self.isa)
                            .expect("planned with a microkernel")
                            .0,
                        fused: tiled::fused_microkernel(self.isa, hint),
                    }
                };
                let t = tiled::TiledConv {
                    geom,
                    group: self.group,
                    m: self.m,
                    weights,
                    bias: &self.bias,
                    direct: self.k == [1, 1] && self.strides == [1, 1] && self.pads == [0; 4],
                    hint,
                    skip,
                    isa: self.isa,
                };
                // bias and activation are applied in the tiles' epilogue
                return tiled::run_tiled(&t, n, x, y, scratch, act);
            }
            #[cfg(target_arch = "x86_64")]
            Algo::PixelRows(rows) => {
                let t = pixel_rows::PixelRowsConv {
                    k: c,
                    hw,
                    m: self.m,
                    rows,
                    packed: &self.packed,
                    bias: &self.bias,
                };
                return pixel_rows::run_pixel_rows(&t, n, x, y, scratch, act);
            }
            Algo::Winograd(_) | Algo::WinogradF16 => {
                let (tile, weights) = match self.algo {
                    Algo::Winograd(tile) => (
                        tile,
                        winograd::WinoWeights::F32 {
                            packed: &self.packed,
                            kernel: tiled::microkernel(self.isa)
                                .expect("planned with a microkernel")
                                .0,
                        },
                    ),
                    _ => (
                        winograd::Tile::F23,
                        winograd::WinoWeights::F16(&self.packed_f16),
                    ),
                };
                let t = winograd::WinogradConv {
                    chw: [c, h, w],
                    out_hw: [oh, ow],
                    pads: [self.pads[0], self.pads[1]],
                    m: self.m,
                    tile,
                    weights,
                    bias: &self.bias,
                    hint,
                };
                return winograd::run_winograd(&t, self.isa, n, x, y, act);
            }
            Algo::Gemv => {
                let t = gemv::GemvConv {
                    geom,
                    group: self.group,
                    m: self.m,
                    packed: &self.packed,
                    bias: &self.bias,
                    kernel: gemv::microkernel(self.isa).0,
                };
                return gemv::run_gemv(&t, n, x, y, act);
            }
            Algo::Depthwise(row) => {
                let g = DwGeom {
                    h,
                    w,
                    oh,
                    ow,
                    kh: self.k[0],
                    kw: self.k[1],
                    sh: self.strides[0],
                    sw: self.strides[1],
                    pt: self.pads[0],
                    pl: self.pads[1],
                };
                let kk = self.k[0] * self.k[1];
                // jobs of ~4096 outputs: whole planes of one image, in whole groups where the
                // kernel takes planes a group at a time
                let group = row.planes_per_group();
                let per_job = (4096 / ohw).max(1).div_ceil(group) * group;
                let per_job = per_job.clamp(1, c);
                let jobs = c.div_ceil(per_job);
                let out = super::SharedOut(y.as_mut_ptr());
                crate::kernels::par::for_each(n * jobs, 1, &|job| {
                    let (ni, c0) = (job / jobs, job % jobs * per_job);
                    let c1 = c.min(c0 + per_job);
                    // SAFETY: planes c0..c1 of image ni, inside `y`: this job's alone.
                    let yb = unsafe {
                        std::slice::from_raw_parts_mut(out.at((ni * c + c0) * ohw), (c1 - c0) * ohw)
                    };
                    depthwise::dwconv_f32_planes(
                        &x[(ni * c + c0) * hw..(ni * c + c1) * hw],
                        yb,
                        &self.weights[c0 * kk..c1 * kk],
                        &self.bias[c0..c1],
                        &g,
                        row,
                        act,
                        hint,
                    );
                });
                return;
            }
            Algo::Gemm1x1 => {
                for ni in 0..n {
                    for gi in 0..self.group {
                        let xg = &x[(ni * c + gi * cg) * hw..(ni * c + (gi + 1) * cg) * hw];
                        let yg = &mut y
                            [(ni * self.m + gi * mg) * ohw..(ni * self.m + (gi + 1) * mg) * ohw];
                        let wg = &self.weights[gi * mg * kk..(gi + 1) * mg * kk];
                        gemm::sgemm_f32(mg, hw, cg, wg, xg, hw, yg);
                    }
                }
            }
            Algo::Im2colGemm => {
                if scratch.len() < self.scratch_len {
                    scratch.resize(self.scratch_len, 0.0);
                }
                let col = &mut scratch[..self.scratch_len];
                for ni in 0..n {
                    for gi in 0..self.group {
                        let xg = &x[(ni * c + gi * cg) * hw..(ni * c + (gi + 1) * cg) * hw];
                        im2col::im2col_f32(xg, &geom, col);
                        let yg = &mut y
                            [(ni * self.m + gi * mg) * ohw..(ni * self.m + (gi + 1) * mg) * ohw];
                        let wg = &self.weights[gi * mg * kk..(gi + 1) * mg * kk];
                        gemm::sgemm_f32(mg, ohw, kk, wg, col, ohw, yg);
                    }
                }
            }
        }
        // GEMM epilogue: bias + activation per output plane, in parallel
        // jobs of ~4096 outputs: whole planes
        let (m, planes) = (self.m, y.len() / ohw);
        let per_job = (4096 / ohw).max(1);
        let out = super::SharedOut(y.as_mut_ptr());
        crate::kernels::par::for_each(planes.div_ceil(per_job), 1, &|job| {
            for p in job * per_job..planes.min((job + 1) * per_job) {
                let b = self.bias[p % m];
                // SAFETY: plane p of `y`: this job's alone.
                let plane = unsafe { std::slice::from_raw_parts_mut(out.at(p * ohw), ohw) };
                for v in plane.iter_mut() {
                    *v = act(*v + b);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests;
