//! Helpers shared by the op modules' tests: a seeded PRNG, column-major copies (to exercise
//! non-contiguous views) and a relative-tolerance comparison.
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

/// xorshift64* generator: deterministic by seed, no dependency.
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in [-1, 1).
    pub fn f(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// Uniform in [-1, 1).
    pub fn arr(&mut self, shape: &[usize]) -> ArrayD<f32> {
        self.arr_affine(shape, 1.0, 0.0)
    }

    /// Uniform in [shift - scale, shift + scale).
    pub fn arr_affine(&mut self, shape: &[usize], scale: f32, shift: f32) -> ArrayD<f32> {
        ArrayD::from_shape_fn(IxDyn(shape), |_| self.f() * scale + shift)
    }
}

/// The same logical content in column-major memory (a non-contiguous row-major view).
pub(crate) fn fortran(a: &ArrayD<f32>) -> ArrayD<f32> {
    let mut f = ArrayD::zeros(IxDyn(a.shape()).f());
    f.assign(a);
    f
}

/// A row-major array from its values.
pub(crate) fn arr(shape: &[usize], v: &[f32]) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

/// `a` and `b` equal, both NaN, or within `tol` relative to `1 + |b|`.
pub(crate) fn close(a: f32, b: f32, tol: f32) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= tol * (1.0 + b.abs())
}

/// Same shape and every element `close`.
pub(crate) fn assert_close(got: &ArrayD<f32>, want: &ArrayD<f32>, tol: f32) {
    assert_eq!(got.shape(), want.shape());
    for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
        assert!(close(*g, *w, tol), "element {i}: got {g}, want {w}");
    }
}
