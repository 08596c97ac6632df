//! `gemm_qs8_4x16c4_scalar`: the portable reference for the GEMM contract.

use super::{epilogue_one, EpiMode, NR};

/// Row tiles of 4 x blocks of 16 channels; see the module doc of `gemm` for the contract.
///
/// # Safety
/// Pointers as in the contract.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gemm_qs8_4x16c4_scalar(
    m: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    row_tiles!(4, one_tile(m, n, k4, a, lda, b, bias, scale, mode, c, ldc))
}

/// One tile: up to 4 rows.
///
/// # Safety
/// As the kernel's, with `mr` at most 4.
#[allow(clippy::too_many_arguments)]
unsafe fn one_tile(
    mr: usize,
    n: usize,
    k4: usize,
    a: *const u8,
    lda: usize,
    b: *const i8,
    bias: *const i32,
    scale: *const f32,
    mode: EpiMode,
    c: *mut u8,
    ldc: usize,
) {
    for blk in 0..n.div_ceil(NR) {
        let nc = NR.min(n - blk * NR);
        let (b, bias, scale, c) = super::block_args(blk, k4, b, bias, scale, mode, c);
        for i in 0..mr {
            let row = a.add(i * lda);
            let mut acc = [0i32; NR];
            for kk in 0..k4 {
                let w = b.add(kk * NR * 4);
                for (j, acc) in acc.iter_mut().enumerate() {
                    for q in 0..4 {
                        *acc += *row.add(kk * 4 + q) as i32 * *w.add(j * 4 + q) as i32;
                    }
                }
            }
            for (j, &acc) in acc.iter().enumerate().take(nc) {
                match epilogue_one(acc + *bias.add(j), *scale.add(j), mode) {
                    Ok(q) => *c.add(i * ldc + j) = q,
                    Err(f) => *(c as *mut f32).add(i * ldc + j) = f,
                }
            }
        }
    }
}
