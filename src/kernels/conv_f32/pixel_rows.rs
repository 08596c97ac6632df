//! 1x1 convs on small maps with pixels as the microkernel's rows
//! (`conv1x1_f32_pixelrows_<R>x32_avx512`, `R` = 5 to 8 pixels).
//!
//! The tiled path ([`super::tiled`]) vectorises over output pixels, [`NR`] = 32 at a time, so a
//! 7 x 7 map computes 64 pixels for 49 (31% of the multiply-adds wasted): the last stage of
//! MobileNets (MobileNetV3-Large: 43 M multiply-adds in 7 x 7 1x1 convs). Here the same
//! microkernel runs with the operands swapped, `acc[pixel][channel]`: the "weights" operand is
//! `MR` = 8 pixels of the input (each k's eight values are contiguous in NCHW, so packing a
//! pixel block is a copy of `k` runs of 8 floats), the "panel" is the weights transposed into
//! `[k][32 output channels]` blocks packed at planning. The waste moves to the channels,
//! which are multiples of 32 in most of these layers (MobileNetV3-Large: 160, 960), and to
//! pixels rounded up to the block: [`rows_for`] picks the block of 5 to 8 pixels that pads
//! the map least (7 for a 7 x 7 map: none, where blocks of 8 computed 56 pixels for 49).
//! [`suits`] says where this pays.
//!
//! Bias and the activation are added along the block's rows (the channels are contiguous
//! there), then the block is transposed into the NCHW output in 4 x 4 register tiles
//! ([`transpose_f32`]).

use super::tiled::{gemm_f32_rx32_avx512, MR, NR};
use crate::kernels::transpose::transpose_f32;
use crate::kernels::{Isa, SharedOut};

/// Below this many input channels the block transpose and epilogue cost too large a share (the
/// tiled path's fused kernels store straight from registers).
pub(crate) const MIN_K: usize = 64;

/// Pixels per block, the microkernel's rows: from 5 (10 accumulators, still twice the
/// loads' count of multiply-adds) to [`MR`].
const ROWS: std::ops::RangeInclusive<usize> = 5..=MR;

/// The kernel's name for blocks of `rows` pixels.
pub(crate) fn name(rows: usize) -> &'static str {
    match rows {
        5 => "conv1x1_f32_pixelrows_5x32_avx512",
        6 => "conv1x1_f32_pixelrows_6x32_avx512",
        7 => "conv1x1_f32_pixelrows_7x32_avx512",
        _ => "conv1x1_f32_pixelrows_8x32_avx512",
    }
}

/// Pixels per block for a map of `hw` pixels: the block size in [`ROWS`] that pads `hw`
/// least, the largest of equals (fewer blocks).
pub(crate) fn rows_for(hw: usize) -> usize {
    ROWS.rev().min_by_key(|&r| hw.div_ceil(r) * r).unwrap_or(MR)
}

/// Whether `isa` runs this layout: where the tiled path runs the AVX-512 microkernel (AVX2's
/// 1x1 convs run on the `gemm` crate).
pub(crate) fn applies(isa: Isa) -> bool {
    isa == Isa::Avx512 && Isa::Avx512.supported()
}

/// Whether a 1x1 stride-1 conv of `k` input and `m` output channels over `ohw` pixels runs
/// faster with pixels as rows: maps of at most two tiles (7 x 7 and smaller), where the tiled
/// path's second tile is mostly padding and its first reads 32-float rows `ohw` floats apart,
/// unaligned, and this layout computes clearly less, each side counting its padding. On
/// 14 x 14 maps (196 pixels: 224 computed in tiles, 200 here) the block transpose and the
/// unfused epilogue cost more than the padding saved (MobileNetV3-Large's 112 -> 672
/// expansion: 20% slower), and with few input channels they would everywhere.
pub(crate) fn suits(ohw: usize, m: usize, k: usize) -> bool {
    let pad = |n: usize, b: usize| n.div_ceil(b) * b;
    let tiled = pad(ohw, NR) * pad(m, MR);
    let rows = pad(ohw, rows_for(ohw)) * pad(m, NR);
    k >= MIN_K && (2..=2 * NR).contains(&ohw) && (rows as f64) < 0.95 * tiled as f64
}

/// Weights `[m][k]` (row-major) packed as `[ceil(m/NR)][k][NR]`: each block of `NR` output
/// channels transposed, channels past `m` zero.
pub(crate) fn pack_weights(w: &[f32], m: usize, k: usize) -> Vec<f32> {
    let mut p = vec![0.0; m.div_ceil(NR) * k * NR];
    for (row, wr) in w.chunks_exact(k.max(1)).take(m).enumerate() {
        let (b, j) = (row / NR, row % NR);
        for (kk, &v) in wr.iter().enumerate() {
            p[(b * k + kk) * NR + j] = v;
        }
    }
    p
}

/// A planned conv: `k` input channels over `hw` pixels into `m` output channels, in blocks of
/// `rows` pixels ([`rows_for`]).
pub(crate) struct PixelRowsConv<'a> {
    pub k: usize,
    pub hw: usize,
    pub m: usize,
    pub rows: usize,
    /// [`pack_weights`]
    pub packed: &'a [f32],
    /// `[m]`
    pub bias: &'a [f32],
}

/// `acc[r][j] = act(acc[r][j] + bias[j])` for the block's first `rows` pixel rows, compiled
/// for AVX-512 so that LLVM vectorises the closure 16 wide.
///
/// # Safety
/// The host must have AVX-512F.
#[target_feature(enable = "avx512f,avx2,fma")]
#[allow(clippy::incompatible_msrv)]
unsafe fn bias_act_rows_avx512<F: Fn(f32) -> f32>(
    acc: &mut [[f32; NR]; MR],
    rows: usize,
    bias: &[f32; NR],
    act: &F,
) {
    for row in acc.iter_mut().take(rows) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = act(*v + b);
        }
    }
}

/// Floats of scratch [`run_pixel_rows`] needs: one image's pixel blocks of `rows`, packed.
pub(crate) fn scratch_len(k: usize, hw: usize, rows: usize) -> usize {
    hw.div_ceil(rows) * k * rows
}

/// Runs the conv on `n` images: `x` `[n][k][hw]` into `y` `[n][m][hw]`. Per image, its pixel
/// blocks are packed into `scratch` (grown to [`scratch_len`]), then blocks of output channels
/// run in parallel on rayon's current pool, each over every pixel block in turn: a block's
/// weights (`k` x 32 floats) are read from memory once and then from L1/L2, where pixel
/// blocks outside would stream all the weights once per block of pixels.
///
/// # Panics
/// On a host without AVX-512 (the planner only picks this where [`applies`]), or with
/// `t.rows` outside 5..=8.
pub(crate) fn run_pixel_rows<F: Fn(f32) -> f32 + Sync>(
    t: &PixelRowsConv,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    act: &F,
) {
    match t.rows {
        5 => run_blocks::<5, F>(t, n, x, y, scratch, act),
        6 => run_blocks::<6, F>(t, n, x, y, scratch, act),
        7 => run_blocks::<7, F>(t, n, x, y, scratch, act),
        8 => run_blocks::<8, F>(t, n, x, y, scratch, act),
        r => panic!("pixel-row conv planned with blocks of {r} pixels"),
    }
}

/// [`run_pixel_rows`] in blocks of `R` pixels.
fn run_blocks<const R: usize, F: Fn(f32) -> f32 + Sync>(
    t: &PixelRowsConv,
    n: usize,
    x: &[f32],
    y: &mut [f32],
    scratch: &mut Vec<f32>,
    act: &F,
) {
    let (k, hw, m) = (t.k, t.hw, t.m);
    let (pblocks, cblocks) = (hw.div_ceil(R), m.div_ceil(NR));
    assert!(
        Isa::Avx512.supported(),
        "pixel-row conv planned on a CPU without AVX-512"
    );
    assert!(
        x.len() >= n * k * hw
            && y.len() >= n * m * hw
            && t.packed.len() >= cblocks * k * NR
            && t.bias.len() >= m
    );
    let len = scratch_len(k, hw, R);
    if scratch.len() < len {
        scratch.resize(len, 0.0);
    }
    let packed_x = &mut scratch[..len];
    let out = SharedOut(y.as_mut_ptr());
    for (ni, xi) in x.chunks_exact(k * hw).take(n).enumerate() {
        // pixel block pb as [k][R]: each k's R pixels are contiguous in NCHW
        for (pb, blk) in packed_x.chunks_exact_mut(k * R).enumerate() {
            let (p0, np) = (pb * R, R.min(hw - pb * R));
            for (ar, xr) in blk.chunks_exact_mut(R).zip(xi.chunks_exact(hw)) {
                ar[..np].copy_from_slice(&xr[p0..p0 + np]);
                ar[np..].fill(0.0);
            }
        }
        let packed_x: &[f32] = packed_x;
        // jobs are (channel block, pixel block) pairs, a channel block's consecutive
        crate::kernels::par::for_each(cblocks * pblocks, pblocks, &|job| {
            let (b, pb) = (job / pblocks, job % pblocks);
            let (p0, np) = (pb * R, R.min(hw - pb * R));
            let (c0, nc) = (b * NR, NR.min(m - b * NR));
            // rows past R stay zero: the transpose below moves whole 4 x 4 tiles
            let mut acc = [[0.0f32; NR]; MR];
            let mut bias = [0.0f32; NR];
            bias[..nc].copy_from_slice(&t.bias[c0..c0 + nc]);
            // SAFETY: the panel (block b of the packing) holds k rows of NR floats, the pixel
            // block k * R; the host has AVX-512 (asserted above).
            unsafe {
                gemm_f32_rx32_avx512::<R>(
                    k,
                    &packed_x[pb * k * R..(pb + 1) * k * R],
                    t.packed[b * k * NR..].as_ptr(),
                    NR,
                    &mut acc,
                );
                bias_act_rows_avx512(&mut acc, np, &bias, act);
            }
            let mut cols = [[0.0f32; MR]; NR];
            transpose_f32(
                true,
                acc.as_flattened(),
                NR,
                cols.as_flattened_mut(),
                MR,
                np.next_multiple_of(4).min(MR),
                nc,
            );
            for (j, col) in cols.iter().enumerate().take(nc) {
                let dst = out.at((ni * m + c0 + j) * hw + p0);
                // SAFETY: channel c0 + j of image ni, pixels p0..p0 + np: this job's alone.
                // (A whole block as one fixed-size move: a `memcpy` call per block cost more
                // than the transpose.)
                unsafe {
                    if np == R {
                        dst.cast::<[f32; R]>()
                            .write_unaligned(*col[..R].as_ptr().cast::<[f32; R]>());
                    } else {
                        std::ptr::copy_nonoverlapping(col.as_ptr(), dst, np);
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The block that pads least, the larger of equals; blocks of 5 to 8 only.
    #[test]
    fn rows_for_pads_least() {
        for (hw, rows) in [
            (49, 7),
            (36, 6),
            (64, 8),
            (45, 5),
            (16, 8),
            (2, 5),
            (56, 8),
            (35, 7),
        ] {
            assert_eq!(rows_for(hw), rows, "{hw} pixels");
        }
        for hw in 1..=64 {
            assert!(ROWS.contains(&rows_for(hw)));
        }
    }
}
