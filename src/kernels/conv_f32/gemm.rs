//! Row-major f32 GEMM on top of the `gemm` crate.

/// Below this many multiply-adds a GEMM runs on one thread.
const PAR_MIN_MACS: usize = 1 << 16;

/// `dst[m x n] = lhs[m x k] * rhs[k x n]`; all row-major, `rhs` rows `rhs_rs` apart, `dst` rows
/// `n` apart. Uses rayon's current pool when it has more than one thread.
pub(crate) fn sgemm_f32(
    m: usize,
    n: usize,
    k: usize,
    lhs: &[f32],
    rhs: &[f32],
    rhs_rs: usize,
    dst: &mut [f32],
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    assert!(lhs.len() >= m * k, "gemm lhs too short");
    assert!(
        rhs_rs >= n && rhs.len() >= (k - 1) * rhs_rs + n,
        "gemm rhs too short"
    );
    assert!(dst.len() >= m * n, "gemm dst too short");
    let threads = rayon::current_num_threads();
    let par = if threads > 1 && m * n * k >= PAR_MIN_MACS {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above keep every access of the three strided matrices in bounds.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            lhs.as_ptr(),
            1,
            k as isize,
            rhs.as_ptr(),
            1,
            rhs_rs as isize,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
