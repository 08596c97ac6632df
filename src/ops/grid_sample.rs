//! GridSample (ONNX opset 16+, 4-D): bilinear / nearest, zeros / border / reflection padding.

use super::{OpError, OpResult};
use crate::kernels::SharedOut;
use ndarray::{ArrayViewD, ArrayViewMutD, Ix4};
use rayon::prelude::*;

/// Interpolation of GridSample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GridMode {
    /// bilinear
    Bilinear,
    /// nearest (round half to even, as ONNX Runtime)
    Nearest,
}

/// Out-of-range handling of GridSample.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum GridPadding {
    /// zeros outside
    Zeros,
    /// clamp to the border
    Border,
    /// reflect at the border
    Reflection,
}

/// Attributes of GridSample.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct GridSample {
    /// interpolation
    pub mode: GridMode,
    /// padding
    pub padding: GridPadding,
    /// align_corners
    pub align_corners: bool,
}

/// x `[N,C,H,W]`, grid `[N,Ho,Wo,2]` -> `[N,C,Ho,Wo]`.
pub fn grid_sample_shape(x: &[usize], grid: &[usize]) -> OpResult<Vec<usize>> {
    if x.len() != 4 || grid.len() != 4 || grid[3] != 2 || grid[0] != x[0] {
        return Err(OpError::Shape(format!(
            "GridSample expects x [N,C,H,W] and grid [N,Ho,Wo,2], got x {x:?}, grid {grid:?}"
        )));
    }
    Ok(vec![x[0], x[1], grid[1], grid[2]])
}

/// Normalised [-1, 1] to pixel coordinate (ONNX Runtime's `GsDenormalize`).
pub(super) fn denormalize(n: f32, len: usize, align_corners: bool) -> f32 {
    if align_corners {
        (n + 1.0) / 2.0 * (len as f32 - 1.0)
    } else {
        ((n + 1.0) * len as f32 - 1.0) / 2.0
    }
}

/// Reflect `x` into `[lo, hi]` (ONNX Runtime's `GsReflect`).
fn reflect(x: f32, lo: f32, hi: f32) -> f32 {
    let range = hi - lo;
    if range <= 0.0 || !x.is_finite() {
        return lo;
    }
    if x < lo {
        let dx = lo - x;
        let n = (dx / range) as i64;
        let r = dx - n as f32 * range;
        if n % 2 == 0 {
            lo + r
        } else {
            hi - r
        }
    } else if x > hi {
        let dx = x - hi;
        let n = (dx / range) as i64;
        let r = dx - n as f32 * range;
        if n % 2 == 0 {
            hi - r
        } else {
            lo + r
        }
    } else {
        x
    }
}

/// GridSample: the per-plane fast path for bilinear sampling with zeros or border padding
/// (LDA-AQU's case), else the reference.
pub fn run_grid_sample(
    g: &GridSample,
    x: &ArrayViewD<f32>,
    grid: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let fast = g.mode == GridMode::Bilinear && g.padding != GridPadding::Reflection;
    let out = grid_sample_shape(x.shape(), grid.shape())?;
    if fast && y.shape() == out.as_slice() && x.shape()[2] * x.shape()[3] > 0 {
        if let (Some(xs), Some(gs)) = (x.as_slice(), grid.as_slice()) {
            let dims = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
            if let Some(ys) = y.as_slice_mut() {
                bilinear_planes(g, dims, xs, gs, [out[2], out[3]], ys);
                return Ok(());
            }
        }
    }
    run_grid_sample_reference(g, x, grid, y)
}

/// One output pixel's bilinear taps: plane indices (clamped into the plane), weights, and
/// which taps read the image (the others read 0).
#[derive(Clone, Copy, Default)]
pub(super) struct Taps {
    pub(super) idx: [u32; 4],
    /// `[dx2, dx1, dy2, dy1]`
    pub(super) w: [f32; 4],
    /// bit k: tap k is inside the image (or border padding)
    pub(super) valid: u8,
}

/// Output pixels per block: the block's taps stay in L1 while every channel uses them.
const BLOCK: usize = 512;

/// `floor` without a libm call (baseline x86-64 has no `roundps`): exact for |v| < 2^31.
#[inline]
fn floor_i64(v: f32) -> i64 {
    let t = v as i64;
    if (t as f32) > v {
        t - 1
    } else {
        t
    }
}

/// Bilinear GridSample with zeros or border padding, planes contiguous: the taps of a block
/// of output pixels are computed once and reused by every channel (blocks in parallel); the
/// arithmetic is the reference's, term for term.
fn bilinear_planes(
    g: &GridSample,
    [n, c, h, w]: [usize; 4],
    x: &[f32],
    grid: &[f32],
    [ho, wo]: [usize; 2],
    y: &mut [f32],
) {
    let plane_out = ho * wo;
    let blocks = plane_out.div_ceil(BLOCK);
    let out = SharedOut(y.as_mut_ptr());
    assert!(y.len() >= n * c * plane_out && x.len() >= n * c * h * w);
    (0..n * blocks)
        .into_par_iter()
        .with_min_len((1 << 15) / (BLOCK * c).max(1) + 1)
        .for_each_init(
            || vec![Taps::default(); BLOCK.min(plane_out)],
            |taps, job| {
                let (ni, b) = (job / blocks, job % blocks);
                let p0 = b * BLOCK;
                let len = BLOCK.min(plane_out - p0);
                let taps = &mut taps[..len];
                let mut fills = vec![];
                let gb = &grid[(ni * plane_out + p0) * 2..(ni * plane_out + p0 + len) * 2];
                for (p, (t, gxy)) in taps.iter_mut().zip(gb.chunks_exact(2)).enumerate() {
                    match bilinear_taps(g, h, w, gxy[0], gxy[1]) {
                        Ok(tp) => *t = tp,
                        Err(f) => {
                            *t = Taps::default();
                            fills.push((p, f));
                        }
                    }
                }
                for ci in 0..c {
                    let plane = &x[(ni * c + ci) * h * w..(ni * c + ci + 1) * h * w];
                    // SAFETY: channel ci of image ni, pixels p0..p0+len: this job's alone.
                    let dst = unsafe {
                        std::slice::from_raw_parts_mut(out.at((ni * c + ci) * plane_out + p0), len)
                    };
                    sample_plane(plane, taps, dst);
                    for &(p, f) in &fills {
                        dst[p] = f;
                    }
                }
            },
        );
}

/// `dst[p]` = the bilinear sample of `plane` at `taps[p]`.
fn sample_plane(plane: &[f32], taps: &[Taps], dst: &mut [f32]) {
    assert!(taps
        .iter()
        .all(|t| t.idx.iter().all(|&i| (i as usize) < plane.len())));
    // SAFETY: every index is inside `plane` (asserted above).
    unsafe { sample_plane_body(plane, taps, dst) }
}

/// The loop of [`sample_plane`], without bounds checks (an AVX2 gather build was slower).
///
/// # Safety
/// Every tap index must be inside `plane`.
#[inline(always)]
unsafe fn sample_plane_body(plane: &[f32], taps: &[Taps], dst: &mut [f32]) {
    for (o, t) in dst.iter_mut().zip(taps) {
        *o = bilinear_at(plane, t);
    }
}

/// The bilinear sample of `plane` at `t`, with the reference's arithmetic term for term.
///
/// # Safety
/// Every index of `t` must be inside `plane`.
#[inline(always)]
pub(super) unsafe fn bilinear_at(plane: &[f32], t: &Taps) -> f32 {
    let v = |k: usize| {
        let s = *plane.get_unchecked(t.idx[k] as usize);
        if t.valid & (1 << k) != 0 {
            s
        } else {
            0.0
        }
    };
    let [dx2, dx1, dy2, dy1] = t.w;
    dy2 * (dx2 * v(0) + dx1 * v(1)) + dy1 * (dx2 * v(2) + dx1 * v(3))
}

/// The bilinear taps of grid point `(gx, gy)`, or `Err(fill)` when a coordinate is not finite
/// (the output is then `fill`: NaN with border padding, 0 with zeros).
#[inline]
pub(super) fn bilinear_taps(
    g: &GridSample,
    h: usize,
    w: usize,
    gx: f32,
    gy: f32,
) -> Result<Taps, f32> {
    let (x_min, x_max, y_min, y_max) = if g.align_corners {
        (0.0, w as f32 - 1.0, 0.0, h as f32 - 1.0)
    } else {
        (-0.5, w as f32 - 0.5, -0.5, h as f32 - 0.5)
    };
    let border = g.padding == GridPadding::Border;
    let mut sx = denormalize(gx, w, g.align_corners);
    let mut sy = denormalize(gy, h, g.align_corners);
    if border && (sx < x_min || sx > x_max || sy < y_min || sy > y_max) {
        sx = sx.clamp(0.0, w as f32 - 1.0);
        sy = sy.clamp(0.0, h as f32 - 1.0);
    }
    if !sx.is_finite() || !sy.is_finite() {
        return Err(if border { f32::NAN } else { 0.0 });
    }
    // Far outside (zeros padding) every tap is invalid whatever the weights: keep the integer
    // parts small.
    let sx = sx.clamp(-4.0, w as f32 + 4.0);
    let sy = sy.clamp(-4.0, h as f32 + 4.0);
    let (x1, y1) = (floor_i64(sx), floor_i64(sy));
    let (x2, y2) = (x1 + 1, y1 + 1);
    let mut t = Taps {
        w: [
            x2 as f32 - sx,
            sx - x1 as f32,
            y2 as f32 - sy,
            sy - y1 as f32,
        ],
        ..Taps::default()
    };
    for (k, &(r, col)) in [(y1, x1), (y1, x2), (y2, x1), (y2, x2)].iter().enumerate() {
        let inside = r >= 0 && r < h as i64 && col >= 0 && col < w as i64;
        let (r, col) = (r.clamp(0, h as i64 - 1), col.clamp(0, w as i64 - 1));
        if inside || border {
            t.valid |= 1 << k;
        }
        t.idx[k] = (r as usize * w + col as usize) as u32;
    }
    Ok(t)
}

/// Reference GridSample (every mode and padding).
pub fn run_grid_sample_reference(
    g: &GridSample,
    x: &ArrayViewD<f32>,
    grid: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = grid_sample_shape(x.shape(), grid.shape())?;
    if y.shape() != out.as_slice() {
        return Err(OpError::Shape(format!(
            "GridSample output is {:?}, expected {out:?} (x {:?}, grid {:?})",
            y.shape(),
            x.shape(),
            grid.shape()
        )));
    }
    let x = x
        .view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let grid = grid
        .view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let mut y = y
        .view_mut()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let (n, c, h, w) = x.dim();
    let (_, ho, wo, _) = grid.dim();
    if h == 0 || w == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let (x_min, x_max, y_min, y_max) = if g.align_corners {
        (0.0, w as f32 - 1.0, 0.0, h as f32 - 1.0)
    } else {
        (-0.5, w as f32 - 0.5, -0.5, h as f32 - 0.5)
    };
    // value at integer pixel (r, col) of plane (ni, ci) under the padding mode
    let pixel = |ni: usize, ci: usize, r: i64, col: i64| -> f32 {
        let (r, col) = match g.padding {
            GridPadding::Zeros => {
                if r < 0 || r >= h as i64 || col < 0 || col >= w as i64 {
                    return 0.0;
                }
                (r, col)
            }
            GridPadding::Border => (r.clamp(0, h as i64 - 1), col.clamp(0, w as i64 - 1)),
            GridPadding::Reflection => (
                reflect(r as f32, y_min, y_max) as i64,
                reflect(col as f32, x_min, x_max) as i64,
            ),
        };
        // guard against float edge cases: never index out of bounds
        x[[
            ni,
            ci,
            r.clamp(0, h as i64 - 1) as usize,
            col.clamp(0, w as i64 - 1) as usize,
        ]]
    };
    for ni in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut sx = denormalize(grid[[ni, oy, ox, 0]], w, g.align_corners);
                let mut sy = denormalize(grid[[ni, oy, ox, 1]], h, g.align_corners);
                if g.mode == GridMode::Nearest {
                    sx = sx.round_ties_even();
                    sy = sy.round_ties_even();
                }
                if sx < x_min || sx > x_max || sy < y_min || sy > y_max {
                    match g.padding {
                        GridPadding::Border => {
                            sx = sx.clamp(0.0, w as f32 - 1.0);
                            sy = sy.clamp(0.0, h as f32 - 1.0);
                        }
                        GridPadding::Reflection => {
                            sx = reflect(sx, x_min, x_max);
                            sy = reflect(sy, y_min, y_max);
                        }
                        GridPadding::Zeros => {}
                    }
                }
                if !sx.is_finite() || !sy.is_finite() {
                    for ci in 0..c {
                        y[[ni, ci, oy, ox]] = if g.padding == GridPadding::Zeros {
                            0.0
                        } else {
                            f32::NAN
                        };
                    }
                    continue;
                }
                match g.mode {
                    GridMode::Nearest => {
                        for ci in 0..c {
                            y[[ni, ci, oy, ox]] = pixel(ni, ci, sy as i64, sx as i64);
                        }
                    }
                    GridMode::Bilinear => {
                        let (x1, y1) = (sx.floor() as i64, sy.floor() as i64);
                        let (x2, y2) = (x1 + 1, y1 + 1);
                        let (dx2, dx1) = (x2 as f32 - sx, sx - x1 as f32);
                        let (dy2, dy1) = (y2 as f32 - sy, sy - y1 as f32);
                        for ci in 0..c {
                            let p11 = pixel(ni, ci, y1, x1);
                            let p12 = pixel(ni, ci, y1, x2);
                            let p21 = pixel(ni, ci, y2, x1);
                            let p22 = pixel(ni, ci, y2, x2);
                            y[[ni, ci, oy, ox]] =
                                dy2 * (dx2 * p11 + dx1 * p12) + dy1 * (dx2 * p21 + dx1 * p22);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    fn run(
        mode: GridMode,
        padding: GridPadding,
        align: bool,
        x: &ArrayD<f32>,
        grid: &[f32],
    ) -> Vec<f32> {
        let g = GridSample {
            mode,
            padding,
            align_corners: align,
        };
        let npts = grid.len() / 2;
        let grid = ArrayD::from_shape_vec(IxDyn(&[1, 1, npts, 2]), grid.to_vec()).unwrap();
        let s = grid_sample_shape(x.shape(), grid.shape()).unwrap();
        let mut y = ArrayD::zeros(IxDyn(&s));
        run_grid_sample(&g, &x.view(), &grid.view(), &mut y.view_mut()).unwrap();
        y.iter().copied().collect()
    }

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() < 1e-4, "at {i}: {x} vs {y}\n{a:?}\n{b:?}");
        }
    }

    // ONNX backend test input: x = arange(6).reshape(1,1,3,2)
    fn x32() -> ArrayD<f32> {
        ArrayD::from_shape_vec(IxDyn(&[1, 1, 3, 2]), (0..6).map(|v| v as f32).collect()).unwrap()
    }

    // grid of the ONNX gridsample_* tests, flattened (x, y) pairs: shape [1, 2, 4, 2]
    const GRID: [f32; 16] = [
        -10.0, -10.0, -5.0, -5.0, -0.2, -0.2, 10.0, 10.0, 10.0, 10.0, -0.2, -0.2, 5.0, 5.0, 10.0,
        10.0,
    ];

    #[test]
    fn onnx_padding_modes() {
        let x = x32();
        close(
            &run(GridMode::Bilinear, GridPadding::Zeros, false, &x, &GRID),
            &[0.0, 0.0, 1.7, 0.0, 0.0, 1.7, 0.0, 0.0],
        );
        close(
            &run(GridMode::Bilinear, GridPadding::Border, false, &x, &GRID),
            &[0.0, 0.0, 1.7, 5.0, 5.0, 1.7, 5.0, 5.0],
        );
        close(
            &run(
                GridMode::Bilinear,
                GridPadding::Reflection,
                false,
                &x,
                &GRID,
            ),
            &[2.5, 0.0, 1.7, 2.5, 2.5, 1.7, 5.0, 2.5],
        );
    }

    // diagonal points t in normalised space, sampled from [[0, 1], [2, 3]] (values worked by hand)
    const GRID2: [f32; 12] = [
        -1.0, -1.0, -0.5, -0.5, -0.2, -0.2, 0.0, 0.0, 0.5, 0.5, 1.0, 1.0,
    ];

    #[test]
    fn onnx_modes_align() {
        let x = ArrayD::from_shape_vec(IxDyn(&[1, 1, 2, 2]), vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        close(
            &run(GridMode::Bilinear, GridPadding::Zeros, false, &x, &GRID2),
            &[0.0, 0.0, 0.9, 1.5, 3.0, 0.75],
        );
        close(
            &run(GridMode::Bilinear, GridPadding::Zeros, true, &x, &GRID2),
            &[0.0, 0.75, 1.2, 1.5, 2.25, 3.0],
        );
        close(
            &run(GridMode::Nearest, GridPadding::Zeros, false, &x, &GRID2),
            &[0.0, 0.0, 0.0, 0.0, 3.0, 0.0],
        );
        close(
            &run(GridMode::Nearest, GridPadding::Zeros, true, &x, &GRID2),
            &[0.0, 0.0, 0.0, 0.0, 3.0, 3.0],
        );
        close(
            &run(
                GridMode::Nearest,
                GridPadding::Reflection,
                false,
                &x,
                &[-1.7, -1.7, 1.9, 1.9],
            ),
            &[0.0, 3.0],
        );
        close(
            &run(
                GridMode::Nearest,
                GridPadding::Border,
                true,
                &x,
                &[5.0, -5.0],
            ),
            &[1.0],
        );
    }

    #[test]
    fn errors_and_degenerate() {
        let x = x32();
        let g = GridSample {
            mode: GridMode::Bilinear,
            padding: GridPadding::Zeros,
            align_corners: false,
        };
        let grid = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 2, 3]));
        let mut y = ArrayD::zeros(IxDyn(&[1, 1, 2, 2]));
        assert!(run_grid_sample(&g, &x.view(), &grid.view(), &mut y.view_mut()).is_err());
        let grid = ArrayD::<f32>::zeros(IxDyn(&[2, 2, 2, 2]));
        assert!(grid_sample_shape(x.shape(), grid.shape()).is_err());
        let grid = ArrayD::<f32>::zeros(IxDyn(&[1, 2, 3, 2]));
        assert!(run_grid_sample(&g, &x.view(), &grid.view(), &mut y.view_mut()).is_err());
        // NaN grid and a 1x1 image with reflection never panic
        let one = ArrayD::from_shape_vec(IxDyn(&[1, 1, 1, 1]), vec![7.0]).unwrap();
        for p in [
            GridPadding::Zeros,
            GridPadding::Border,
            GridPadding::Reflection,
        ] {
            for align in [false, true] {
                for m in [GridMode::Bilinear, GridMode::Nearest] {
                    let v = run(m, p, align, &one, &[f32::NAN, 0.3, 3.0, -2.0]);
                    assert_eq!(v.len(), 2);
                }
            }
        }
        close(
            &run(
                GridMode::Bilinear,
                GridPadding::Reflection,
                true,
                &one,
                &[3.0, -2.0],
            ),
            &[7.0],
        );
    }

    #[test]
    fn bilinear_fast_path_equals_the_reference() {
        let mut seed = 7u32;
        let mut rnd = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed as f32 / u32::MAX as f32
        };
        // the last case spans several pixel blocks (BLOCK = 512) with a partial last one
        for &(n, c, h, w, ho, wo) in &[
            (1, 3, 5, 7, 4, 9),
            (2, 2, 1, 6, 3, 1),
            (1, 5, 8, 8, 16, 16),
            (2, 3, 6, 9, 37, 29),
        ] {
            let x = ArrayD::from_shape_fn(IxDyn(&[n, c, h, w]), |_| rnd() * 4.0 - 2.0);
            let grid = ArrayD::from_shape_fn(IxDyn(&[n, ho, wo, 2]), |i| match i[1] % 4 {
                // exact pixel centres and edges, far outside, and random points
                0 => (i[2] % 5) as f32 * 0.5 - 1.0,
                1 => rnd() * 6.0 - 3.0,
                2 if i[2] == 0 => f32::NAN,
                _ => rnd() * 2.4 - 1.2,
            });
            for padding in [GridPadding::Zeros, GridPadding::Border] {
                for align_corners in [false, true] {
                    let g = GridSample {
                        mode: GridMode::Bilinear,
                        padding,
                        align_corners,
                    };
                    let mut fast = ArrayD::zeros(IxDyn(&[n, c, ho, wo]));
                    let mut want = fast.clone();
                    run_grid_sample(&g, &x.view(), &grid.view(), &mut fast.view_mut()).unwrap();
                    run_grid_sample_reference(&g, &x.view(), &grid.view(), &mut want.view_mut())
                        .unwrap();
                    for (a, b) in fast.iter().zip(want.iter()) {
                        assert!(
                            a == b || (a.is_nan() && b.is_nan()),
                            "{padding:?} {align_corners}: {a} != {b}"
                        );
                    }
                }
            }
        }
    }
}
