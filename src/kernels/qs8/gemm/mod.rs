//! `gemm_qs8`: `C[m, n] = requant(sum_k A[m, k] * B[n, k] + bias[n])`, A u8 activations (one row
//! per output pixel, NHWC), B int8 weights prepacked, C u8 or f32 rows (NHWC).
//!
//! # Microkernel contract (every ISA implements exactly this)
//! - **Packing of B** ([`PackedB`]): output channels in blocks of [`NR`] = 16; each block holds
//!   `k4 = ceil(K / 4)` groups of 64 bytes: `[16 channels][4 consecutive k]` int8 (the "c4"
//!   layout `vpdpbusd` and `SDOT` consume directly), then the 16 channels' weight sums as i32
//!   (64 bytes; kernels that flip A to signed with `a ^ 0x80` add `128 * sum` back from them).
//!   Channels >= N and k >= K are zero.
//! - **A**: `mr` rows at `a + i * lda`; the kernel reads `4 * k4` bytes of each row (up to 3
//!   past K: those bytes meet zero weights, so the caller only needs them readable).
//! - **Epilogue** ([`Epilogue`]), per channel n: `acc + bias[n]` (the caller folds
//!   `-zero_point_a * sum_k B[n, k]` into the bias), then either
//!   `Quant`: `clamp(round_half_even(f32(acc) * scale[n]) + zp, lo, hi)` stored as u8, or
//!   `Float`: `f32(acc) * scale[n]` stored as f32. `f32(acc)` rounds to nearest, the product is
//!   one f32 multiply, and rounding is half to even (as ONNX Runtime's `MlasRequantizeOutput`),
//!   so every ISA gives bit-identical results to the scalar reference.
//! - **Tiles**: a kernel computes `m` rows (any count) by all `n` channels per call, in row
//!   tiles of its `MR` (the last one shorter), each tile block after block of 16 (`b` is the
//!   whole packing; a tile's rows of A stay in L1 across blocks, and the call's set-up is paid
//!   once per call, not per tile); rows of C are `ldc` elements apart. Kernels without a
//!   faster plan for many tiles run `row_tiles!` over their one-tile body.
//!
//! Kernels: `gemm_qs8_4x16c4_scalar` (reference), `gemm_qs8_2x16c4_avx2` (widening to i16 and
//! `vpmaddwd`: exact, unlike `vpmaddubsw` which saturates u8*i8 pair sums), and
//! `gemm_qs8_8x32c4_avx512vnni` (`vpdpbusd`, two blocks of 16 channels per tile); on aarch64 `gemm_qs8_4x16c4_neondot` (`SDOT` by
//! lane on the same c4 layout; A flipped to i8 with `a ^ 0x80` and `128 * sum_k B[n, k]` from
//! the block's sums added back), `gemm_qs8_2x16c4_neonmull` (baseline NEON: `SMULL` + `SMLAL`
//! of two c4 groups in i16, `SADALP` into i32; weights in -127..=127; both with their loops
//! and full-tile stores in inline assembly) and `gemm_qs8_4x16c4_neon` (`LD4` de-interleave, widening to i16, `SMLAL` by lane: any weights);
//! on 32-bit Arm `gemm_qs8_4x16c4_armv7neon` (inline assembly, the `neonmull` scheme with a
//! one-row register tile; weights in -127..=127, others take the scalar kernel).

/// The contract's row loop for a kernel whose body computes one tile: `$tile` (same
/// arguments as the microkernel, `mr` at most `$mr`) for each tile of the call's `$m` rows.
macro_rules! row_tiles {
    ($mr:expr, $tile:ident($m:ident, $n:ident, $k4:ident, $a:ident, $lda:ident, $b:ident,
     $bias:ident, $scale:ident, $mode:ident, $c:ident, $ldc:ident)) => {{
        let c_row = $ldc * $mode.elem_bytes();
        let mut t = 0;
        while t < $m {
            let mr = ($m - t).min($mr);
            $tile(
                mr,
                $n,
                $k4,
                $a.add(t * $lda),
                $lda,
                $b,
                $bias,
                $scale,
                $mode,
                $c.add(t * c_row),
                $ldc,
            );
            t += mr;
        }
    }};
}

#[cfg(target_arch = "arm")]
pub(super) mod armv7neon;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
#[cfg(target_arch = "aarch64")]
pub(super) mod neon;
#[cfg(target_arch = "aarch64")]
mod neon_tiles;
#[cfg(target_arch = "aarch64")]
mod neondot;
#[cfg(target_arch = "aarch64")]
mod neonmull;
mod scalar;

use super::Level;

/// Output channels per packed block.
pub const NR: usize = 16;

/// How the epilogue writes C.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum EpiMode {
    /// requantize to u8 with this zero point and clamp
    Quant {
        /// output zero point (stored domain)
        zp: i32,
        /// lowest stored value
        lo: i32,
        /// highest stored value
        hi: i32,
    },
    /// write `f32(acc) * scale` as f32
    Float,
}

impl EpiMode {
    /// Bytes per output element: a stored byte or an f32.
    #[inline(always)]
    pub fn elem_bytes(self) -> usize {
        match self {
            EpiMode::Quant { .. } => 1,
            EpiMode::Float => 4,
        }
    }
}

/// Per-channel epilogue parameters (slices padded to whole blocks of [`NR`]).
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// int32 bias with the zero-point correction folded in
    pub bias: &'a [i32],
    /// requantization multiplier (Quant) or dequantization scale (Float)
    pub scale: &'a [f32],
    /// output form
    pub mode: EpiMode,
    /// `Quant` outputs: 256-entry table the stored values go through last (fused activation),
    /// and the kernel that applies it
    pub lut: Option<(&'a [u8], super::lut::LutKernel)>,
    /// `Quant` outputs: a residual Add applied after the table, its skip matching `c`'s row 0
    pub residual: Option<super::elementwise::ResidualAdd>,
}

/// B prepacked in the c4 layout described in the module doc.
#[derive(Clone, Debug, PartialEq)]
pub struct PackedB {
    /// `ceil(n / 16)` blocks of [`PackedB::block_len`] bytes
    pub data: Vec<i8>,
    /// output channels
    pub n: usize,
    /// reduction length
    pub k: usize,
    /// `ceil(k / 4)`
    pub k4: usize,
    /// some weight is -128 (kernels that add two i8 x i8 products in i16 need -127..=127)
    pub has_min: bool,
}

impl PackedB {
    /// Pack `w` (`[n][k]` row-major).
    pub fn new(w: &[i8], n: usize, k: usize) -> PackedB {
        assert_eq!(w.len(), n * k);
        let k4 = k.div_ceil(4);
        let blocks = n.div_ceil(NR);
        let bb = Self::block_len(k4);
        let mut data = vec![0i8; blocks * bb];
        let sums = Self::row_sums(w, n, k);
        for nn in 0..n {
            let (b, j) = (nn / NR, nn % NR);
            for kk in 0..k {
                data[b * bb + (kk / 4 * NR + j) * 4 + kk % 4] = w[nn * k + kk];
            }
            let at = b * bb + k4 * NR * 4 + 4 * j;
            for (d, s) in data[at..at + 4].iter_mut().zip(sums[nn].to_ne_bytes()) {
                *d = s as i8;
            }
        }
        let has_min = w.contains(&i8::MIN);
        PackedB {
            data,
            n,
            k,
            k4,
            has_min,
        }
    }

    /// Adopt bytes already in the packed layout (a compiled model's), checking in one pass
    /// what the kernels rely on: the length, zeros where channels >= `n` or k >= `k`, and
    /// each channel's stored sum (the zero-point correction) equal to its weights' sum.
    pub fn from_packed(data: Vec<i8>, n: usize, k: usize) -> Result<PackedB, String> {
        let k4 = k.div_ceil(4);
        let bb = Self::block_len(k4);
        let blocks = n.div_ceil(NR);
        if blocks.checked_mul(bb) != Some(data.len()) || n == 0 {
            return Err(format!(
                "packed weights of {} bytes do not hold {n} channels of {k}",
                data.len()
            ));
        }
        let mut has_min = false;
        for (b, block) in data.chunks_exact(bb).enumerate() {
            let live = (n - b * NR).min(NR);
            let mut sums = [0i32; NR];
            for (step, group) in block[..k4 * NR * 4].chunks_exact(NR * 4).enumerate() {
                let live_k = k.saturating_sub(step * 4).min(4);
                for (j, w4) in group.chunks_exact(4).enumerate() {
                    for (t, &w) in w4.iter().enumerate() {
                        if j >= live || t >= live_k {
                            if w != 0 {
                                return Err(format!(
                                    "packed weights: padding byte {w} in block {b} (channel \
                                     {j}, k {})",
                                    step * 4 + t
                                ));
                            }
                        } else {
                            sums[j] += w as i32;
                            has_min |= w == i8::MIN;
                        }
                    }
                }
            }
            for (j, (s, stored)) in sums
                .iter()
                .zip(block[k4 * NR * 4..].chunks_exact(4))
                .enumerate()
            {
                let stored = i32::from_ne_bytes(std::array::from_fn(|i| stored[i] as u8));
                if *s != stored {
                    return Err(format!(
                        "packed weights: channel {} sums to {s}, stored {stored}",
                        b * NR + j
                    ));
                }
            }
        }
        Ok(PackedB {
            data,
            n,
            k,
            k4,
            has_min,
        })
    }

    /// Channel `j`'s weight sum, as stored in its block.
    pub fn row_sum(&self, j: usize) -> i32 {
        let at = (j / NR) * Self::block_len(self.k4) + self.k4 * NR * 4 + 4 * (j % NR);
        let b = &self.data[at..at + 4];
        i32::from_ne_bytes(std::array::from_fn(|i| b[i] as u8))
    }

    /// Bytes per block of 16 channels: the c4 groups and the sums.
    pub fn block_len(k4: usize) -> usize {
        (k4 + 1) * NR * 4
    }

    /// Sum of each channel's weights (for the zero-point correction).
    pub fn row_sums(w: &[i8], n: usize, k: usize) -> Vec<i32> {
        (0..n)
            .map(|i| w[i * k..(i + 1) * k].iter().map(|&v| v as i32).sum())
            .collect()
    }
}

/// A microkernel: `(m, n, k4, a, lda, b, bias, scale, mode, c, ldc)`; see the module doc.
pub type GemmUkernel = unsafe fn(
    usize,
    usize,
    usize,
    *const u8,
    usize,
    *const i8,
    *const i32,
    *const f32,
    EpiMode,
    *mut u8,
    usize,
);

/// A registered GEMM microkernel.
#[derive(Clone, Copy, Debug)]
pub struct GemmKernel {
    /// `gemm_qs8_<MR>x<NR>c4_<isa>`
    pub name: &'static str,
    /// rows per tile
    pub mr: usize,
    /// instruction-set level
    pub level: Level,
    /// the microkernel
    pub run: GemmUkernel,
    /// needs weights in -127..=127 (it adds two i8 x i8 products in i16)
    pub no_min_weight: bool,
}

/// Every GEMM kernel this build has, best first (the host may not run all of them).
#[allow(clippy::vec_init_then_push)] // pushes are per-architecture
pub fn registry() -> Vec<GemmKernel> {
    #[allow(unused_mut)]
    let mut v = vec![];
    #[cfg(target_arch = "x86_64")]
    {
        v.push(GemmKernel {
            name: "gemm_qs8_8x32c4_avx512vnni",
            mr: 8,
            level: Level::Avx512Vnni,
            run: avx512vnni::gemm_qs8_8x32c4_avx512vnni,
            no_min_weight: false,
        });
        v.push(GemmKernel {
            name: "gemm_qs8_2x16c4_avx2",
            mr: 2,
            level: Level::Avx2,
            run: avx2::gemm_qs8_2x16c4_avx2,
            no_min_weight: false,
        });
    }
    #[cfg(target_arch = "aarch64")]
    {
        v.push(GemmKernel {
            name: "gemm_qs8_4x16c4_neondot",
            mr: 4,
            level: Level::NeonDot,
            run: neondot::gemm_qs8_4x16c4_neondot,
            no_min_weight: false,
        });
        v.push(GemmKernel {
            name: "gemm_qs8_2x16c4_neonmull",
            mr: 2,
            level: Level::Neon,
            run: neonmull::gemm_qs8_2x16c4_neonmull,
            no_min_weight: true,
        });
        v.push(GemmKernel {
            name: "gemm_qs8_4x16c4_neon",
            mr: 4,
            level: Level::Neon,
            run: neon::gemm_qs8_4x16c4_neon,
            no_min_weight: false,
        });
    }
    #[cfg(target_arch = "arm")]
    v.push(GemmKernel {
        name: "gemm_qs8_4x16c4_armv7neon",
        mr: 4,
        level: Level::Neon,
        run: armv7neon::gemm_qs8_4x16c4_armv7neon,
        no_min_weight: true,
    });
    v.push(GemmKernel {
        name: "gemm_qs8_4x16c4_scalar",
        mr: 4,
        level: Level::Scalar,
        run: scalar::gemm_qs8_4x16c4_scalar,
        no_min_weight: false,
    });
    v
}

/// The best kernel at or below `level` that the host runs (for any weights).
pub fn select(level: Level) -> GemmKernel {
    select_for(level, true)
}

/// As [`select`], for weights that hold -128 (`has_min`, see [`PackedB`]) or not.
pub fn select_for(level: Level, has_min: bool) -> GemmKernel {
    registry()
        .into_iter()
        .find(|k| k.level <= level && k.level.supported() && !(has_min && k.no_min_weight))
        .expect("the scalar kernel is always there")
}

/// Raw pointers that may cross into rayon workers (each worker writes disjoint rows).
#[derive(Clone, Copy)]
struct SendPtr(*const u8, *mut u8);
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    /// Taken through a method so closures capture the whole (Send) struct.
    fn get(self) -> (*const u8, *mut u8) {
        (self.0, self.1)
    }
}

/// Multiply-adds below which a piece of int8 work stays on one thread: a rayon task costs a
/// few microseconds, in which the VNNI and dot-product kernels do a few hundred thousand.
pub(crate) const PAR_MIN_MACS_PER_TASK: usize = 1 << 18;

/// `C = A * B'` for `m` rows, with the epilogue; `out_elem` is 1 (u8) or 4 (f32) bytes. Rows
/// are split over the current rayon pool in tiles of the kernel's MR.
///
/// # Safety
/// `a` must be readable for `m` rows of `lda` bytes plus `4 * k4` bytes of the last row, and
/// `c` writable for `m` rows of `ldc` elements; `epi` slices cover `ceil(n / 16) * 16`.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm(
    k: &GemmKernel,
    m: usize,
    a: *const u8,
    lda: usize,
    b: &PackedB,
    epi: &Epilogue,
    c: *mut u8,
    ldc: usize,
) {
    let tiles = m.div_ceil(k.mr);
    let threads = rayon::current_num_threads();
    // no more chunks than keep each one worth a rayon task
    let chunks = (threads * 4)
        .min(tiles)
        .min(m * b.n * b.k / PAR_MIN_MACS_PER_TASK);
    if threads <= 1 || chunks < 2 {
        gemm_serial(k, m, a, lda, b, epi, c, ldc);
        return;
    }
    let out_elem = epi.mode.elem_bytes();
    let p = SendPtr(a, c);
    rayon::scope(|s| {
        for ch in 0..chunks {
            let (t0, t1) = (tiles * ch / chunks, tiles * (ch + 1) / chunks);
            s.spawn(move |_| {
                let (pa, pc) = p.get();
                let (r0, r1) = (t0 * k.mr, (t1 * k.mr).min(m));
                let epi = Epilogue {
                    residual: epi.residual.map(|r| r.advanced(r0 * ldc)),
                    ..*epi
                };
                gemm_serial(
                    k,
                    r1 - r0,
                    pa.add(r0 * lda),
                    lda,
                    b,
                    &epi,
                    pc.add(r0 * ldc * out_elem),
                    ldc,
                );
            });
        }
    });
}

/// [`gemm`] on the calling thread only (a caller that already splits rows over threads).
///
/// # Safety
/// As [`gemm`].
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_serial(
    k: &GemmKernel,
    m: usize,
    a: *const u8,
    lda: usize,
    b: &PackedB,
    epi: &Epilogue,
    c: *mut u8,
    ldc: usize,
) {
    let out_elem = epi.mode.elem_bytes();
    let quant = matches!(epi.mode, EpiMode::Quant { .. });
    let lut = epi.lut.filter(|_| quant);
    let residual = epi.residual.filter(|_| quant);
    // With a fused table or residual Add, tiles go in groups of about 4 KB of output, so
    // they are applied while the group's rows are in L1, in one call when the rows are
    // contiguous (narrow convs such as a 16-channel stem would otherwise pay the set-up
    // every 16 bytes). Without one, one call does every row.
    let tile_bytes = k.mr * b.n;
    let group = if lut.is_some() || residual.is_some() {
        (4096 / tile_bytes.max(1)).max(1) * k.mr
    } else {
        m
    };
    let mut r0 = 0;
    while r0 < m {
        let r1 = (r0 + group).min(m);
        (k.run)(
            r1 - r0,
            b.n,
            b.k4,
            a.add(r0 * lda),
            lda,
            b.data.as_ptr(),
            epi.bias.as_ptr(),
            epi.scale.as_ptr(),
            epi.mode,
            c.add(r0 * ldc * out_elem),
            ldc,
        );
        // the group's output as runs `(first element, length)`: one when its rows are
        // contiguous, else one per row
        let runs = |f: &dyn Fn(usize, usize)| {
            if ldc == b.n {
                f(r0 * ldc, (r1 - r0) * b.n);
            } else {
                (r0..r1).for_each(|r| f(r * ldc, b.n));
            }
        };
        if let Some((table, lk)) = lut {
            runs(&|at, len| lk.apply(table, c.add(at), len));
        }
        if let Some(res) = &residual {
            runs(&|at, len| res.apply(at, c.add(at), len));
        }
        r0 = r1;
    }
}

/// A kernel's pointers for block `blk` of 16 channels: weights, bias, multipliers, and the
/// first output element of the block in row 0.
#[inline(always)]
fn block_args(
    blk: usize,
    k4: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
) -> (*const i8, *const i32, *const f32, *mut u8) {
    let n0 = blk * NR;
    (
        b.wrapping_add(blk * PackedB::block_len(k4)),
        bias.wrapping_add(n0),
        scale.wrapping_add(n0),
        c.wrapping_add(n0 * mode.elem_bytes()),
    )
}

/// Shared epilogue for one value (the scalar definition every ISA matches bit for bit).
#[inline]
pub fn epilogue_one(acc: i32, scale: f32, mode: EpiMode) -> Result<u8, f32> {
    match mode {
        EpiMode::Quant { zp, lo, hi } => {
            let v = (acc as f32 * scale).round_ties_even() as i32 + zp;
            Ok(v.clamp(lo, hi) as u8)
        }
        EpiMode::Float => Err(acc as f32 * scale),
    }
}

#[cfg(test)]
mod tests;
