//! Float matrix transpose in 4 x 4 register tiles: the NHWC -> NCHW step where an int8 conv
//! hands float outputs to a float island. Strided scalar copies cost about six instructions a
//! value on aarch64; a tile is four loads, eight shuffles and four stores for sixteen.

/// `dst[j * ds + i] = src[i * ss + j]` for `i < rows`, `j < cols`: a `rows x cols` block with
/// row stride `ss` into a `cols x rows` block with row stride `ds`. `simd` takes the 4 x 4
/// tiles of the host's baseline SIMD (SSE2 on x86-64, NEON on aarch64; the portable loop
/// elsewhere); `false` forces the portable loop.
pub fn transpose_f32(
    simd: bool,
    src: &[f32],
    ss: usize,
    dst: &mut [f32],
    ds: usize,
    rows: usize,
    cols: usize,
) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(ss >= cols && ds >= rows, "strides below the block's width");
    assert!(
        src.len() >= (rows - 1) * ss + cols && dst.len() >= (cols - 1) * ds + rows,
        "transpose block out of bounds"
    );
    #[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
    let (r4, c4) = if !simd {
        (0, 0)
    } else {
        let (r4, c4) = (rows / 4 * 4, cols / 4 * 4);
        // SAFETY: every tile lies within the first r4 rows and c4 columns, in bounds by the
        // asserts; SSE2 and NEON are baseline on these targets.
        unsafe { tiles(src.as_ptr(), ss, dst.as_mut_ptr(), ds, r4, c4) };
        (r4, c4)
    };
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    let (r4, c4) = {
        let _ = simd;
        (0, 0)
    };
    // the ragged right columns of every row, then the ragged bottom rows' tiled columns
    transpose_f32_scalar(src, ss, dst, ds, (0, rows), (c4, cols));
    transpose_f32_scalar(src, ss, dst, ds, (r4, rows), (0, c4));
}

/// The portable reference: rows `r.0..r.1` and columns `c.0..c.1` of the block.
pub fn transpose_f32_scalar(
    src: &[f32],
    ss: usize,
    dst: &mut [f32],
    ds: usize,
    r: (usize, usize),
    c: (usize, usize),
) {
    // destination rows outer: each is written front to back (they may be far apart, and
    // hopping between them per value thrashes the cache sets they share)
    for j in c.0..c.1 {
        for i in r.0..r.1 {
            dst[j * ds + i] = src[i * ss + j];
        }
    }
}

/// The whole 4 x 4 tiles of an `r4 x c4` block (multiples of 4).
///
/// # Safety
/// `src` must hold `r4` rows of `c4` values `ss` apart, `dst` `c4` rows of `r4` values `ds`
/// apart.
#[cfg(any(target_arch = "x86_64", target_arch = "aarch64"))]
unsafe fn tiles(src: *const f32, ss: usize, dst: *mut f32, ds: usize, r4: usize, c4: usize) {
    // four destination rows at a time, each written front to back (as in the scalar loop)
    for j in (0..c4).step_by(4) {
        for i in (0..r4).step_by(4) {
            let s = src.add(i * ss + j);
            let d = dst.add(j * ds + i);
            tile4(s, ss, d, ds);
        }
    }
}

/// One 4 x 4 tile: rows `a..d` of `s` become columns of `d`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn tile4(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
    use std::arch::x86_64::*;
    let r: [__m128; 4] = std::array::from_fn(|i| _mm_loadu_ps(s.add(i * ss)));
    let t0 = _mm_unpacklo_ps(r[0], r[1]); // a0 b0 a1 b1
    let t1 = _mm_unpacklo_ps(r[2], r[3]); // c0 d0 c1 d1
    let t2 = _mm_unpackhi_ps(r[0], r[1]); // a2 b2 a3 b3
    let t3 = _mm_unpackhi_ps(r[2], r[3]); // c2 d2 c3 d3
    _mm_storeu_ps(d, _mm_movelh_ps(t0, t1));
    _mm_storeu_ps(d.add(ds), _mm_movehl_ps(t1, t0));
    _mm_storeu_ps(d.add(2 * ds), _mm_movelh_ps(t2, t3));
    _mm_storeu_ps(d.add(3 * ds), _mm_movehl_ps(t3, t2));
}

/// One 4 x 4 tile: rows `a..d` of `s` become columns of `d`.
#[cfg(target_arch = "aarch64")]
#[inline(always)]
unsafe fn tile4(s: *const f32, ss: usize, d: *mut f32, ds: usize) {
    use std::arch::aarch64::*;
    let r: [float32x4_t; 4] = std::array::from_fn(|i| vld1q_f32(s.add(i * ss)));
    let t0 = vreinterpretq_f64_f32(vtrn1q_f32(r[0], r[1])); // a0 b0 a2 b2
    let t1 = vreinterpretq_f64_f32(vtrn2q_f32(r[0], r[1])); // a1 b1 a3 b3
    let t2 = vreinterpretq_f64_f32(vtrn1q_f32(r[2], r[3])); // c0 d0 c2 d2
    let t3 = vreinterpretq_f64_f32(vtrn2q_f32(r[2], r[3])); // c1 d1 c3 d3
    vst1q_f32(d, vreinterpretq_f32_f64(vtrn1q_f64(t0, t2)));
    vst1q_f32(d.add(ds), vreinterpretq_f32_f64(vtrn1q_f64(t1, t3)));
    vst1q_f32(d.add(2 * ds), vreinterpretq_f32_f64(vtrn2q_f64(t0, t2)));
    vst1q_f32(d.add(3 * ds), vreinterpretq_f32_f64(vtrn2q_f64(t1, t3)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_equal_the_scalar_reference_on_odd_sizes() {
        let mut seed = 7u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as f32 / u32::MAX as f32 - 0.5
        };
        // (rows, cols, extra source stride, extra destination stride)
        let cases = [
            (1, 1, 0, 0),
            (4, 4, 0, 0),
            (3, 5, 0, 2),
            (64, 32, 0, 9215),
            (13, 7, 3, 1),
            (8, 17, 1, 0),
            (5, 4, 0, 0),
            (4, 9, 2, 5),
        ];
        for (rows, cols, es, ed) in cases {
            let (ss, ds) = (cols + es, rows + ed);
            let src: Vec<f32> = (0..rows * ss).map(|_| next()).collect();
            let len = (cols - 1) * ds + rows;
            let mut want = vec![f32::NAN; len];
            transpose_f32_scalar(&src, ss, &mut want, ds, (0, rows), (0, cols));
            for simd in [false, true] {
                let mut got = vec![f32::NAN; len];
                transpose_f32(simd, &src, ss, &mut got, ds, rows, cols);
                // bit for bit, the gaps between destination rows untouched
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{rows}x{cols} simd {simd}");
            }
        }
    }
}
