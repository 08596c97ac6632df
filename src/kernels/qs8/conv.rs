//! A quantized convolution planned for one input shape: algorithm choice, packed weights,
//! folded bias and the requantization multipliers.
//!
//! Algorithms: `1x1 gemm` (1x1, stride 1, no padding, one group: the NHWC input is A as it
//! is), `depthwise` (group == C == M), `im2col gemm` (everything else, one GEMM per group: rows
//! of `kh * kw * C/group` bytes, padding filled with the input zero point). [`conv_direct`] is
//! the reference loop the tests hold them to.

use super::dwconv::{self, DwGeom, DwKernel};
use super::elementwise::ResidualAdd;
use super::gemm::{self, EpiMode, Epilogue, GemmKernel, PackedB, NR};
use super::lut::{self, LutKernel};
use super::Level;
use crate::kernels::transpose::transpose_f32;
use crate::ops::{apply_activation, Activation, OpError, OpResult, QConv, QConvOut, QWeights};
use std::sync::Arc;

#[derive(Clone, Debug)]
enum Algo {
    Gemm1x1,
    Im2col,
    Depthwise(DwKernel, Vec<i16>),
}

/// One group's epilogue (padded to whole blocks).
#[derive(Clone, Debug)]
struct GroupGemm {
    bias: Vec<i32>,
    scale: Vec<f32>,
}

/// A planned quantized convolution.
#[derive(Clone, Debug)]
pub struct ConvQs8 {
    algo: Algo,
    gemm: GemmKernel,
    /// applies the fused table (chosen once, at the plan's level)
    lut_kernel: LutKernel,
    groups: Vec<GroupGemm>,
    /// GEMM algorithms: each group's packed weights (shared with the graph's [`QWeights`])
    packs: Arc<[PackedB]>,
    q: QConv,
    /// N, H, W, C of the input
    nhwc: [usize; 4],
    /// M, OH, OW
    out: [usize; 3],
    /// per channel, padded to whole blocks: bias (folded for GEMM algorithms) and multipliers
    bias: Vec<i32>,
    scale: Vec<f32>,
    mode: EpiMode,
    activation: Option<Activation>,
    k4: usize,
    level: Level,
}

/// Output spatial size of one axis.
fn out_len(n: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize) -> OpResult<usize> {
    let span = d * (k - 1) + 1;
    if n + p0 + p1 < span || s == 0 {
        return Err(OpError::Shape(format!(
            "kernel {k} (dilation {d}) does not fit input {n} with pads {p0}+{p1}"
        )));
    }
    Ok((n + p0 + p1 - span) / s + 1)
}

/// Per-channel vectors and weights of the sizes `w_shape` and `group` give (a compiled file's
/// plan is checked here before any kernel indexes them).
fn check_params(q: &QConv) -> OpResult<()> {
    let [m, cg, kh, kw] = q.w_shape;
    let group = q.conv.group;
    let bad = |what: String| Err(OpError::Invalid(format!("quantized conv: {what}")));
    if m == 0 || group == 0 || m % group != 0 {
        return bad(format!("{m} output channels in {group} groups"));
    }
    if q.bias.len() != m || q.w_scale.len() != m {
        return bad(format!(
            "{} biases and {} weight scales for {m} output channels",
            q.bias.len(),
            q.w_scale.len()
        ));
    }
    let len = [cg, kh, kw].iter().try_fold(m, |a, &d| a.checked_mul(d));
    match &q.weights {
        QWeights::Onnx(w) if Some(w.len()) == len => Ok(()),
        QWeights::Onnx(w) => bad(format!("{} weights for shape {:?}", w.len(), q.w_shape)),
        QWeights::GemmPacked(p)
            if p.len() == group && p.iter().all(|b| b.n == m / group && b.k == kh * kw * cg) =>
        {
            Ok(())
        }
        QWeights::GemmPacked(_) => bad(format!(
            "packed weights do not match shape {:?} in {group} groups",
            q.w_shape
        )),
        QWeights::Stored(_) => bad_weights("still refer to a compiled file"),
    }
}

fn bad_weights<T>(what: &str) -> OpResult<T> {
    Err(OpError::Invalid(format!("quantized conv: weights {what}")))
}

/// Pack weights `w` (`[M, C/group, kh, kw]`, ONNX order) for the int8 GEMM kernels: per
/// group, rows reordered to `[ky][kx][c]` (the NHWC input's order), then the c4 layout.
pub fn pack_gemm_groups(w: &[i8], w_shape: [usize; 4], group: usize) -> Vec<PackedB> {
    let [m, cg, kh, kw] = w_shape;
    let (mg, kk) = (m / group, kh * kw * cg);
    (0..group)
        .map(|g| {
            let mut wr = vec![0i8; mg * kk];
            for j in 0..mg {
                for ci in 0..cg {
                    for t in 0..kh * kw {
                        wr[j * kk + t * cg + ci] = w[((g * mg + j) * cg + ci) * kh * kw + t];
                    }
                }
            }
            PackedB::new(&wr, mg, kk)
        })
        .collect()
}

/// Whether a conv of this shape and group count runs as depthwise (else as GEMMs).
pub fn is_depthwise(w_shape: [usize; 4], group: usize) -> bool {
    w_shape[1] == 1 && group == w_shape[0]
}

impl ConvQs8 {
    /// Plan for input `[N,C,H,W]` at instruction-set `level`.
    pub fn new(q: &QConv, in_shape: &[usize], level: Level) -> OpResult<ConvQs8> {
        let [m, cg, kh, kw] = q.w_shape;
        if in_shape.len() != 4 || in_shape[1] != cg * q.conv.group || m % q.conv.group != 0 {
            return Err(OpError::Shape(format!(
                "quantized conv: input {in_shape:?} does not fit weights {:?} in {} groups",
                q.w_shape, q.conv.group
            )));
        }
        check_params(q)?;
        if let Some(t) = &q.lut {
            if t.len() != 256 || !matches!(q.out, QConvOut::Quant { .. }) {
                return Err(OpError::Shape(format!(
                    "quantized conv: a fused table must have 256 entries and a stored output \
                     (got {} entries, output {:?})",
                    t.len(),
                    q.out
                )));
            }
        }
        if q.residual.is_some() && !matches!(q.out, QConvOut::Quant { .. }) {
            return Err(OpError::Shape(format!(
                "quantized conv: a fused residual Add needs a stored output (output {:?})",
                q.out
            )));
        }
        let (n, c, h, w) = (in_shape[0], in_shape[1], in_shape[2], in_shape[3]);
        let c2 = &q.conv;
        let oh = out_len(
            h,
            kh,
            c2.strides[0],
            c2.dilations[0],
            c2.pads[0],
            c2.pads[2],
        )?;
        let ow = out_len(
            w,
            kw,
            c2.strides[1],
            c2.dilations[1],
            c2.pads[1],
            c2.pads[3],
        )?;
        let mp = m.div_ceil(NR) * NR;
        let zx = q.input.zero_point;
        let (mode, activation) = match q.out {
            QConvOut::Quant { q: o, lo, hi } => (
                EpiMode::Quant {
                    zp: o.zero_point,
                    lo: lo as i32,
                    hi: hi as i32,
                },
                None,
            ),
            QConvOut::Float { activation } => (EpiMode::Float, activation),
        };
        let mut scale = vec![0f32; mp];
        for (i, s) in scale.iter_mut().enumerate().take(m) {
            *s = match q.out {
                QConvOut::Quant { q: o, .. } => q.input.scale * q.w_scale[i] / o.scale,
                QConvOut::Float { .. } => q.input.scale * q.w_scale[i],
            };
        }
        let mut bias = vec![0i32; mp];
        bias[..m].copy_from_slice(&q.bias);
        let depthwise = is_depthwise(q.w_shape, q.conv.group);
        let one = kh == 1 && kw == 1 && c2.strides == [1, 1] && c2.pads == [0; 4];
        let group = q.conv.group;
        let mut groups = vec![];
        let mut packs: Arc<[PackedB]> = Arc::new([]);
        let mut gemm = gemm::select(level);
        let (algo, k4) = if depthwise {
            let g = DwGeom {
                h,
                w,
                c,
                oh,
                ow,
                k: [kh, kw],
                s: c2.strides,
                p: [c2.pads[0], c2.pads[1]],
                d: c2.dilations,
            };
            let QWeights::Onnx(w) = &q.weights else {
                return bad_weights("of a depthwise conv must be in ONNX order");
            };
            let dk = dwconv::select_for(level, &g, w.contains(&i8::MIN));
            (Algo::Depthwise(dk, (dk.pack)(w, &g)), 0)
        } else {
            let packed = match &q.weights {
                QWeights::GemmPacked(p) => p.clone(),
                QWeights::Onnx(w) => pack_gemm_groups(w, q.w_shape, group).into(),
                QWeights::Stored(_) => return bad_weights("still refer to a compiled file"),
            };
            let mg = m / group;
            let kk = kh * kw * cg;
            let mgp = mg.div_ceil(NR) * NR;
            for (g, pb) in packed.iter().enumerate() {
                let mut gb = vec![0i32; mgp];
                let mut gs = vec![0f32; mgp];
                for j in 0..mg {
                    gb[j] = bias[g * mg + j] - zx * pb.row_sum(j);
                    gs[j] = scale[g * mg + j];
                }
                groups.push(GroupGemm {
                    bias: gb,
                    scale: gs,
                });
            }
            let k4 = kk.div_ceil(4);
            gemm = gemm::select_for(level, packed.iter().any(|p| p.has_min));
            packs = packed;
            (
                if one && group == 1 {
                    Algo::Gemm1x1
                } else {
                    Algo::Im2col
                },
                k4,
            )
        };
        Ok(ConvQs8 {
            algo,
            gemm,
            lut_kernel: lut::select(level),
            groups,
            // the packed groups (or the depthwise taps) hold the weights now
            q: QConv {
                weights: QWeights::Onnx(Vec::new()),
                conv: q.conv.clone(),
                w_scale: Vec::new(),
                bias: Vec::new(),
                lut: q.lut.clone(),
                ..*q
            },
            packs,
            nhwc: [n, h, w, c],
            out: [m, oh, ow],
            bias,
            scale,
            mode,
            activation,
            k4,
            level,
        })
    }

    /// Algorithm and kernel, for profiles.
    pub fn algorithm(&self) -> String {
        match &self.algo {
            Algo::Gemm1x1 => format!("1x1 {}", self.gemm.name),
            Algo::Im2col => format!("im2col {}", self.gemm.name),
            Algo::Depthwise(k, _) => k.name.to_string(),
        }
    }

    /// The fused lookup table and its kernel, for stored (`Quant`) outputs.
    fn lut(&self) -> Option<(&[u8], LutKernel)> {
        match self.mode {
            EpiMode::Quant { .. } => self.q.lut.as_deref().map(|t| (t, self.lut_kernel)),
            EpiMode::Float => None,
        }
    }

    fn out_elem(&self) -> usize {
        self.mode.elem_bytes()
    }

    /// The depthwise geometry (one image).
    fn dw_geom(&self) -> DwGeom {
        let [_, h, w, c] = self.nhwc;
        let [_, oh, ow] = self.out;
        DwGeom {
            h,
            w,
            c,
            oh,
            ow,
            k: [self.q.w_shape[2], self.q.w_shape[3]],
            s: self.q.conv.strides,
            p: [self.q.conv.pads[0], self.q.conv.pads[1]],
            d: self.q.conv.dilations,
        }
    }

    /// Scratch in f32 units before the float-output buffer: im2col rows, or the depthwise
    /// kernel's padded input copy.
    fn cols_len(&self) -> usize {
        let [_, oh, ow] = self.out;
        match &self.algo {
            Algo::Im2col => (oh * ow * self.k4 * 4).div_ceil(4) + 16,
            Algo::Depthwise(k, _) if (k.input)(&self.dw_geom()) != dwconv::Input::Image => {
                dwconv::framed_len(&self.dw_geom()).div_ceil(4)
            }
            _ => 0,
        }
    }

    /// Scratch (in f32 units): im2col rows or a padded input, and an NHWC f32 buffer for
    /// float outputs.
    pub fn scratch_len(&self) -> usize {
        let [m, oh, ow] = self.out;
        let cols = self.cols_len();
        let fl = match self.mode {
            EpiMode::Float => self.nhwc[0] * oh * ow * m,
            EpiMode::Quant { .. } => 0,
        };
        cols + fl
    }

    /// The fused residual Add for image `b` of the output, the skip tensor (every image) at
    /// `skip`.
    unsafe fn residual(&self, skip: *const u8, b: usize) -> Option<ResidualAdd> {
        let (r, QConvOut::Quant { q: conv, .. }) = (self.q.residual?, self.q.out) else {
            return None;
        };
        let [m, oh, ow] = self.out;
        Some(ResidualAdd::new(
            self.level,
            conv,
            r,
            skip.add(b * oh * ow * m),
        ))
    }

    /// Run: `x` NHWC u8, `y` NHWC u8 or (float output) NCHW f32; `skip` the fused residual
    /// Add's second input (NHWC u8 of `y`'s shape), or null without one.
    ///
    /// # Safety
    /// `x`, `skip` and `y` must hold the planned shapes (plus the kernels' read slack on
    /// `x`); `y` must not overlap them.
    pub unsafe fn run(&self, x: *const u8, skip: *const u8, y: *mut u8, scratch: &mut [f32]) {
        assert!(
            self.q.residual.is_none() || !skip.is_null(),
            "a fused residual Add without its input"
        );
        let [n, h, w, c] = self.nhwc;
        let [m, oh, ow] = self.out;
        let (cols, rest) = scratch.split_at_mut(self.cols_len());
        let float_out = matches!(self.mode, EpiMode::Float);
        let dst_all: *mut u8 = if float_out {
            rest.as_mut_ptr() as *mut u8
        } else {
            y
        };
        let oe = self.out_elem();
        for b in 0..n {
            let xb = x.add(b * h * w * c);
            let yb = dst_all.add(b * oh * ow * m * oe);
            let residual = self.residual(skip, b);
            match &self.algo {
                Algo::Gemm1x1 => {
                    let gg = &self.groups[0];
                    let epi = Epilogue {
                        bias: &gg.bias,
                        scale: &gg.scale,
                        mode: self.mode,
                        lut: self.lut(),
                        residual,
                    };
                    gemm::gemm(&self.gemm, oh * ow, xb, c, &self.packs[0], &epi, yb, m);
                }
                Algo::Im2col => {
                    // Chunks of output rows small enough that their im2col rows are still in
                    // L1/L2 when the GEMM reads them; chunks run in parallel, each into its own
                    // rows of `cols`.
                    let stride = self.k4 * 4;
                    let rows = oh * ow;
                    let chunk = im2col_chunk_rows(stride, self.gemm.mr);
                    let chunks = rows.div_ceil(chunk);
                    let mg = m / self.groups.len();
                    let ptrs = (xb as usize, cols.as_mut_ptr() as usize, yb as usize);
                    for (g, gg) in self.groups.iter().enumerate() {
                        let epi = Epilogue {
                            bias: &gg.bias,
                            scale: &gg.scale,
                            mode: self.mode,
                            lut: self.lut(),
                            residual: None,
                        };
                        let one_chunk = |ci: usize| {
                            let (r0, r1) = (ci * chunk, ((ci + 1) * chunk).min(rows));
                            let colp = (ptrs.1 as *mut u8).add(r0 * stride);
                            self.im2col_rows(ptrs.0 as *const u8, colp, g, r0, r1);
                            let yg = (ptrs.2 as *mut u8).add((r0 * m + g * mg) * oe);
                            // (the skip's element at this chunk's first output)
                            let epi = Epilogue {
                                residual: residual.map(|r| r.advanced(r0 * m + g * mg)),
                                ..epi
                            };
                            gemm::gemm_serial(
                                &self.gemm,
                                r1 - r0,
                                colp,
                                stride,
                                &self.packs[g],
                                &epi,
                                yg,
                                m,
                            );
                        };
                        if rayon::current_num_threads() > 1 && chunks > 1 {
                            use rayon::prelude::*;
                            (0..chunks).into_par_iter().for_each(one_chunk);
                        } else {
                            (0..chunks).for_each(one_chunk);
                        }
                    }
                }
                Algo::Depthwise(k, wts) => {
                    let mut g = self.dw_geom();
                    let mut xb = xb;
                    let input = (k.input)(&g);
                    if input != dwconv::Input::Image {
                        // the kernel's prepared copy: framed, maybe signed
                        let copy = std::slice::from_raw_parts_mut(
                            cols.as_mut_ptr() as *mut u8,
                            cols.len() * 4,
                        );
                        let x = std::slice::from_raw_parts(xb, h * w * c);
                        let zx = self.q.input.zero_point as u8;
                        let signed = input == dwconv::Input::FramedSigned;
                        g = dwconv::frame_input(&g, x, zx, signed, copy);
                        xb = copy.as_ptr();
                    }
                    let row_bytes = ow * m * self.out_elem();
                    let ptrs = (xb as usize, yb as usize);
                    let lut = self.lut();
                    // bands of the rows the kernel computes together
                    let band = (k.band)(&g).max(1);
                    let one_band = |b: usize| {
                        let (oy, rows) = (b * band, band.min(oh - b * band));
                        let first = (ptrs.1 as *mut u8).add(oy * row_bytes);
                        (k.run)(
                            &g,
                            oy,
                            rows,
                            ptrs.0 as *const u8,
                            self.q.input.zero_point,
                            wts.as_ptr(),
                            self.bias.as_ptr(),
                            self.scale.as_ptr(),
                            self.mode,
                            first,
                        );
                        if let Some((t, lk)) = &lut {
                            lk.apply(t, first, rows * row_bytes);
                        }
                        if let Some(r) = &residual {
                            r.apply(oy * row_bytes, first, rows * row_bytes);
                        }
                    };
                    let bands = oh.div_ceil(band);
                    let band_macs = (band * ow * m * g.k[0] * g.k[1]).max(1);
                    let min_bands = gemm::PAR_MIN_MACS_PER_TASK.div_ceil(band_macs);
                    if rayon::current_num_threads() > 1 && bands >= 2 * min_bands {
                        use rayon::prelude::*;
                        (0..bands)
                            .into_par_iter()
                            .with_min_len(min_bands)
                            .for_each(one_band);
                    } else {
                        (0..bands).for_each(one_band);
                    }
                }
            }
        }
        if float_out {
            // NHWC f32 -> NCHW f32, with the float activation.
            let src = std::slice::from_raw_parts(dst_all as *const f32, n * oh * ow * m);
            let dst = std::slice::from_raw_parts_mut(y as *mut f32, n * oh * ow * m);
            let hw = oh * ow;
            // Blocks of pixels small enough that the block's NHWC rows stay in L1 while each
            // channel's run of the NCHW plane is written contiguously.
            const PIX: usize = 64;
            for b in 0..n {
                let planes = &mut dst[b * m * hw..(b + 1) * m * hw];
                for p0 in (0..hw).step_by(PIX) {
                    let pn = PIX.min(hw - p0);
                    let rows = &src[(b * hw + p0) * m..(b * hw + p0 + pn) * m];
                    // SIMD tiles except at the scalar level
                    let simd = self.level != Level::Scalar;
                    transpose_f32(simd, rows, m, &mut planes[p0..], hw, pn, m);
                    if let Some(a) = self.activation {
                        for out in planes[p0..].chunks_mut(hw) {
                            activate_run(a, &mut out[..pn]);
                        }
                    }
                }
            }
        }
    }

    /// Rows of group `g`'s `kh * kw * C/group` input bytes for output pixels `p0..p1`, one
    /// row of `4 * k4` bytes per pixel from `cols` on.
    unsafe fn im2col_rows(&self, x: *const u8, cols: *mut u8, g: usize, p0: usize, p1: usize) {
        let [_, h, w, c] = self.nhwc;
        let cg = self.q.w_shape[1];
        let [_, _, ow] = self.out;
        let [_, _, kh, kw] = self.q.w_shape;
        let cv = &self.q.conv;
        let stride = self.k4 * 4;
        let zx = self.q.input.zero_point as u8;
        // Rows of kw taps are one contiguous run of the input when the conv has one group
        // and no horizontal dilation: copy them at once where they lie inside the image.
        let run = (cg == c && cv.dilations[1] == 1).then_some(kw * c);
        // One tap row of one pixel, anywhere (padding filled with the zero point).
        let generic = |oy: usize, ox: usize, row: *mut u8| {
            let ix0 = (ox * cv.strides[1]) as isize - cv.pads[1] as isize;
            let cols_inside = ix0 >= 0 && ix0 + kw as isize <= w as isize;
            for ky in 0..kh {
                let iy = (oy * cv.strides[0] + ky * cv.dilations[0]) as isize - cv.pads[0] as isize;
                let row_inside = iy >= 0 && iy < h as isize;
                if let (Some(len), true, true) = (run, row_inside, cols_inside) {
                    let src = x.add((iy as usize * w + ix0 as usize) * c);
                    copy_small(src, row.add(ky * kw * cg), len);
                    continue;
                }
                for kx in 0..kw {
                    let ix =
                        (ox * cv.strides[1] + kx * cv.dilations[1]) as isize - cv.pads[1] as isize;
                    let d = row.add((ky * kw + kx) * cg);
                    if !row_inside || ix < 0 || ix >= w as isize {
                        std::ptr::write_bytes(d, zx, cg);
                    } else {
                        copy_small(x.add((iy as usize * w + ix as usize) * c + g * cg), d, cg);
                    }
                }
            }
        };
        // Columns whose kw taps all lie inside the image: [ox_lo, ox_hi).
        let (sx, px) = (cv.strides[1], cv.pads[1]);
        let ox_lo = px.div_ceil(sx);
        let ox_hi = if w + px >= kw {
            (w + px - kw) / sx + 1
        } else {
            0
        };
        let mut p = p0;
        while p < p1 {
            let (oy, ox_a) = (p / ow, p % ow);
            let ox_b = ow.min(ox_a + p1 - p);
            let iy0 = (oy * cv.strides[0]) as isize - cv.pads[0] as isize;
            let rows_inside = iy0 >= 0 && iy0 as usize + (kh - 1) * cv.dilations[0] < h;
            let (fast_a, fast_b) = match run {
                Some(_) if rows_inside => {
                    let a = ox_a.max(ox_lo).min(ox_b);
                    (a, ox_b.min(ox_hi).max(a))
                }
                _ => (ox_b, ox_b),
            };
            for ox in (ox_a..fast_a).chain(fast_b..ox_b) {
                let row = cols.add((p + ox - ox_a - p0) * stride);
                // The k4 padding (under 4 bytes) first, as one word over the row's last 4
                // bytes: the taps overwrite whatever part of it is data.
                std::ptr::write_unaligned(row.add(stride - 4) as *mut u32, 0);
                generic(oy, ox, row);
            }
            if let (Some(len), true) = (run, fast_a < fast_b) {
                // Interior: kh runs of kw * C bytes per pixel, no bounds checks.
                let ystep = cv.dilations[0] * w * c;
                let mut src = x.add((iy0 as usize * w + fast_a * sx - px) * c);
                let mut row = cols.add((p + fast_a - ox_a - p0) * stride);
                if kh == 3 && (8..=16).contains(&len) {
                    // The usual stem (3x3 over 3 channels: 9-byte runs), unrolled: 17
                    // instructions a pixel on aarch64 instead of 41.
                    let (y2, l8) = (2 * ystep, len - 8);
                    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
                    for _ in fast_a..fast_b {
                        wr(row.add(stride - 4) as *mut u32, 0);
                        for (s, d) in [(0, 0), (ystep, len), (y2, 2 * len)] {
                            wr(row.add(d) as *mut u64, rd(src.add(s) as *const u64));
                            wr(
                                row.add(d + l8) as *mut u64,
                                rd(src.add(s + l8) as *const u64),
                            );
                        }
                        src = src.add(sx * c);
                        row = row.add(stride);
                    }
                } else {
                    // (pointer steps rather than `ky * ystep`: LLVM kept both multiplies in
                    // the loop)
                    for _ in fast_a..fast_b {
                        std::ptr::write_unaligned(row.add(stride - 4) as *mut u32, 0);
                        let (mut s, mut d) = (src, row);
                        for _ in 0..kh {
                            copy_small(s, d, len);
                            s = s.add(ystep);
                            d = d.add(len);
                        }
                        src = src.add(sx * c);
                        row = row.add(stride);
                    }
                }
            }
            p += ox_b - ox_a;
        }
    }
}

/// Output rows per im2col chunk: about 16 KB of rows (so they stay in L1/L2 between im2col
/// and the GEMM), a whole number of GEMM tiles.
fn im2col_chunk_rows(row_bytes: usize, mr: usize) -> usize {
    ((16384 / row_bytes.max(1)) / mr).max(1) * mr
}

/// `copy_nonoverlapping` for the few-byte runs of im2col (a stem conv copies 3 or 9 bytes at a
/// time; a `memcpy` call per run costs more than the copy).
#[inline(always)]
unsafe fn copy_small(src: *const u8, dst: *mut u8, len: usize) {
    // Two overlapping unaligned words cover any length in [w, 2w]; a byte loop would be turned
    // back into a `memcpy` call by LLVM.
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    if (8..=16).contains(&len) {
        wr(dst as *mut u64, rd(src as *const u64));
        wr(
            dst.add(len - 8) as *mut u64,
            rd(src.add(len - 8) as *const u64),
        );
    } else if (4..8).contains(&len) {
        wr(dst as *mut u32, rd(src as *const u32));
        wr(
            dst.add(len - 4) as *mut u32,
            rd(src.add(len - 4) as *const u32),
        );
    } else if len < 4 {
        for i in 0..len {
            *dst.add(i) = *src.add(i);
        }
    } else if len <= 256 {
        // 16-byte words, the last one overlapping (the 3 x 32-byte tap rows of a 3x3 conv
        // over 32 channels: a call per run cost about a tenth of that conv on x86-64)
        let mut i = 0;
        while i + 16 < len {
            wr(dst.add(i) as *mut u128, rd(src.add(i) as *const u128));
            i += 16;
        }
        wr(
            dst.add(len - 16) as *mut u128,
            rd(src.add(len - 16) as *const u128),
        );
    } else {
        std::ptr::copy_nonoverlapping(src, dst, len);
    }
}

/// The reference quantized convolution on one NHWC image (any group): `(x - zx) * w` summed
/// over in-bounds taps plus `bias` (unfolded), then the shared epilogue. `out` is NHWC u8 or f32
/// bytes by `mode`.
pub fn conv_direct(
    q: &QConv,
    bias: &[i32],
    scale: &[f32],
    mode: EpiMode,
    hwc: [usize; 3],
    x: &[u8],
    out: &mut [u8],
) {
    let [h, w, c] = hwc;
    let [m, cg, kh, kw] = q.w_shape;
    let cv = &q.conv;
    let mg = m / cv.group;
    let oh = (h + cv.pads[0] + cv.pads[2] - (cv.dilations[0] * (kh - 1) + 1)) / cv.strides[0] + 1;
    let ow = (w + cv.pads[1] + cv.pads[3] - (cv.dilations[1] * (kw - 1) + 1)) / cv.strides[1] + 1;
    let zx = q.input.zero_point;
    let QWeights::Onnx(weights) = &q.weights else {
        panic!("the reference conv reads weights in ONNX order");
    };
    for oy in 0..oh {
        for ox in 0..ow {
            for mm in 0..m {
                let g = mm / mg;
                let mut acc = bias[mm];
                for ci in 0..cg {
                    for ky in 0..kh {
                        let iy = (oy * cv.strides[0] + ky * cv.dilations[0]) as isize
                            - cv.pads[0] as isize;
                        for kx in 0..kw {
                            let ix = (ox * cv.strides[1] + kx * cv.dilations[1]) as isize
                                - cv.pads[1] as isize;
                            if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                continue;
                            }
                            let xv = x[(iy as usize * w + ix as usize) * c + g * cg + ci] as i32;
                            let wv = weights[((mm * cg + ci) * kh + ky) * kw + kx] as i32;
                            acc += (xv - zx) * wv;
                        }
                    }
                }
                let i = (oy * ow + ox) * m + mm;
                match gemm::epilogue_one(acc, scale[mm], mode) {
                    Ok(v) => out[i] = q.lut.as_ref().map_or(v, |t| t[v as usize]),
                    Err(f) => out[i * 4..i * 4 + 4].copy_from_slice(&f.to_ne_bytes()),
                }
            }
        }
    }
}

/// The float activation over a run of values (`#[inline(never)]` so that `apply_activation`
/// inlines into one loop the compiler can vectorise, rather than a call per value).
#[inline(never)]
fn activate_run(a: Activation, v: &mut [f32]) {
    for x in v {
        *x = apply_activation(a, *x);
    }
}
