//! MatMul (numpy semantics) and Gemm.

use super::{broadcast_shape, OpError, OpResult};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Ix2};

/// Attributes of Gemm.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Gemm {
    /// alpha
    pub alpha: f32,
    /// beta
    pub beta: f32,
    /// transpose A
    pub trans_a: bool,
    /// transpose B
    pub trans_b: bool,
}

/// numpy matmul shape (1-D operands promoted and demoted, batch dims broadcast).
pub fn matmul_shape(a: &[usize], b: &[usize]) -> OpResult<Vec<usize>> {
    let err = |why: &str| OpError::Shape(format!("MatMul of {a:?} and {b:?}: {why}"));
    if a.is_empty() || b.is_empty() {
        return Err(err("scalar operands are not allowed"));
    }
    let (ab, m, ka) = match a.len() {
        1 => (&a[..0], None, a[0]),
        r => (&a[..r - 2], Some(a[r - 2]), a[r - 1]),
    };
    let (bb, kb, n) = match b.len() {
        1 => (&b[..0], b[0], None),
        r => (&b[..r - 2], b[r - 2], Some(b[r - 1])),
    };
    if ka != kb {
        return Err(err("inner dimensions differ"));
    }
    let mut out =
        broadcast_shape(&[ab, bb]).map_err(|_| err("batch dimensions do not broadcast"))?;
    out.extend(m);
    out.extend(n);
    Ok(out)
}

/// Index a batch of matrices `x` (batch dims right-aligned to `batch`) at batch index `idx`.
fn batch_matrix<'a>(
    x: &ArrayViewD<'a, f32>,
    batch: &[usize],
    idx: &[usize],
) -> ArrayViewD<'a, f32> {
    let xb = x.ndim() - 2;
    let off = batch.len() - xb;
    let mut v = x.clone();
    for &i in &idx[off..] {
        let i = if v.shape()[0] == 1 { 0 } else { i };
        v = v.index_axis_move(Axis(0), i);
    }
    v
}

/// Reference matmul.
pub fn run_matmul(
    a: &ArrayViewD<f32>,
    b: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = matmul_shape(a.shape(), b.shape())?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "MatMul of {:?} and {:?} gives {out:?}, output is {:?}",
            a.shape(),
            b.shape(),
            y.shape()
        )));
    }
    if a.shape()[a.ndim() - 1] == 0 {
        y.fill(0.0);
        return Ok(());
    }
    let a2 = if a.ndim() == 1 {
        a.view().insert_axis(Axis(0))
    } else {
        a.view()
    };
    let b2 = if b.ndim() == 1 {
        b.view().insert_axis(Axis(1))
    } else {
        b.view()
    };
    let mut y2 = y.view_mut();
    if a.ndim() == 1 {
        let pos = y2.ndim() - usize::from(b.ndim() != 1);
        y2 = y2.insert_axis(Axis(pos));
    }
    if b.ndim() == 1 {
        let pos = y2.ndim();
        y2 = y2.insert_axis(Axis(pos));
    }
    let batch = y2.shape()[..y2.ndim() - 2].to_vec();
    let count: usize = batch.iter().product();
    let mut idx = vec![0usize; batch.len()];
    let shape_err = || OpError::Shape("MatMul: internal rank error".into());
    for _ in 0..count {
        let am = batch_matrix(&a2, &batch, &idx)
            .into_dimensionality::<Ix2>()
            .map_err(|_| shape_err())?;
        let bm = batch_matrix(&b2, &batch, &idx)
            .into_dimensionality::<Ix2>()
            .map_err(|_| shape_err())?;
        let mut ym = y2.view_mut();
        for &i in &idx {
            ym = ym.index_axis_move(Axis(0), i);
        }
        let mut ym = ym.into_dimensionality::<Ix2>().map_err(|_| shape_err())?;
        general_mat_mul(1.0, &am, &bm, 0.0, &mut ym);
        for j in (0..idx.len()).rev() {
            idx[j] += 1;
            if idx[j] < batch[j] {
                break;
            }
            idx[j] = 0;
        }
    }
    Ok(())
}

/// Gemm shape: A, B, optional C (unidirectionally broadcast to the output).
pub fn gemm_shape(g: &Gemm, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if !(2..=3).contains(&inputs.len()) {
        return Err(OpError::Arity {
            expected: 3,
            got: inputs.len(),
        });
    }
    let (a, b) = (inputs[0], inputs[1]);
    if a.len() != 2 || b.len() != 2 {
        return Err(OpError::Shape(format!(
            "Gemm expects 2-D A and B, got {a:?} and {b:?}"
        )));
    }
    let (m, ka) = if g.trans_a {
        (a[1], a[0])
    } else {
        (a[0], a[1])
    };
    let (kb, n) = if g.trans_b {
        (b[1], b[0])
    } else {
        (b[0], b[1])
    };
    if ka != kb {
        return Err(OpError::Shape(format!(
            "Gemm: inner dimensions of A {a:?} (transA {}) and B {b:?} (transB {}) differ",
            g.trans_a, g.trans_b
        )));
    }
    if let Some(c) = inputs.get(2) {
        let out = [m, n];
        let ok = c.len() <= 2
            && c.iter()
                .rev()
                .zip(out.iter().rev())
                .all(|(&d, &o)| d == o || d == 1);
        if !ok {
            return Err(OpError::Shape(format!(
                "Gemm: C {c:?} does not broadcast to {out:?}"
            )));
        }
    }
    Ok(vec![m, n])
}

/// Reference Gemm.
pub fn run_gemm(g: &Gemm, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = gemm_shape(g, &shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "Gemm of {shapes:?} gives {out:?}, output is {:?}",
            y.shape()
        )));
    }
    let shape_err = || OpError::Shape("Gemm: internal rank error".into());
    let a = inputs[0]
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| shape_err())?;
    let b = inputs[1]
        .view()
        .into_dimensionality::<Ix2>()
        .map_err(|_| shape_err())?;
    let a = if g.trans_a { a.reversed_axes() } else { a };
    let b = if g.trans_b { b.reversed_axes() } else { b };
    let mut y2 = y
        .view_mut()
        .into_dimensionality::<Ix2>()
        .map_err(|_| shape_err())?;
    let beta = match inputs.get(2) {
        Some(c) if g.beta != 0.0 => {
            let cb = c.broadcast(out.as_slice()).ok_or_else(shape_err)?;
            y2.assign(&cb);
            g.beta
        }
        _ => {
            y2.fill(0.0);
            0.0
        }
    };
    // Few rows (a classifier on one pooled vector): one pass over B's contiguous rows. A
    // general GEMM would pack all of B first, which costs more than the products.
    if a.nrows() <= 4 && b.t().is_standard_layout() {
        let bt = b.t();
        for (mut yr, ar) in y2.rows_mut().into_iter().zip(a.rows()) {
            for (yv, br) in yr.iter_mut().zip(bt.rows()) {
                let dot: f32 = match (ar.as_slice(), br.as_slice()) {
                    (Some(x), Some(w)) => dot_f32(x, w),
                    _ => ar.dot(&br),
                };
                *yv = g.alpha * dot + beta * *yv;
            }
        }
        return Ok(());
    }
    general_mat_mul(g.alpha, &a, &b, beta, &mut y2);
    Ok(())
}

/// Dot product with 16 independent accumulators, so it vectorises instead of waiting on
/// one serial chain of adds.
fn dot_f32(x: &[f32], w: &[f32]) -> f32 {
    let mut acc = [0.0f32; 16];
    let (xc, wc) = (x.chunks_exact(16), w.chunks_exact(16));
    let tail: f32 = xc
        .remainder()
        .iter()
        .zip(wc.remainder())
        .map(|(p, q)| p * q)
        .sum();
    for (a, b) in xc.zip(wc) {
        for i in 0..16 {
            acc[i] += a[i] * b[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::{ArrayD, Dimension, IxDyn};

    fn matmul(a: &ArrayViewD<f32>, b: &ArrayViewD<f32>) -> ArrayD<f32> {
        let s = matmul_shape(a.shape(), b.shape()).unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&s), f32::NAN);
        run_matmul(a, b, &mut y.view_mut()).unwrap();
        y
    }

    /// numpy matmul written plainly: promote, broadcast, triple loop, demote.
    fn naive_matmul(a: &ArrayD<f32>, b: &ArrayD<f32>) -> ArrayD<f32> {
        let (a1, b1) = (a.ndim() == 1, b.ndim() == 1);
        let a = if a.ndim() == 1 {
            a.clone().insert_axis(Axis(0))
        } else {
            a.clone()
        };
        let b = if b.ndim() == 1 {
            b.clone().insert_axis(Axis(1))
        } else {
            b.clone()
        };
        let (ra, rb) = (a.ndim(), b.ndim());
        let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
        let batch = broadcast_shape(&[&a.shape()[..ra - 2], &b.shape()[..rb - 2]]).unwrap();
        let mut full = batch.clone();
        full.extend([m, n]);
        let pick = |x: &ArrayD<f32>, bi: &[usize], r: usize, c: usize| {
            let xb = x.ndim() - 2;
            let off = bi.len() - xb;
            let mut i: Vec<usize> = (0..xb)
                .map(|j| if x.shape()[j] == 1 { 0 } else { bi[off + j] })
                .collect();
            i.extend([r, c]);
            x[IxDyn(&i)]
        };
        let mut y = ArrayD::from_shape_fn(IxDyn(&full), |idx| {
            let idx = idx.slice();
            let (bi, r, c) = (&idx[..batch.len()], idx[batch.len()], idx[batch.len() + 1]);
            let mut s = 0.0f64;
            for q in 0..k {
                s += pick(&a, bi, r, q) as f64 * pick(&b, bi, q, c) as f64;
            }
            s as f32
        });
        if b1 {
            y = y.index_axis_move(Axis(batch.len() + 1), 0);
        }
        if a1 {
            y = y.index_axis_move(Axis(batch.len()), 0);
        }
        y
    }

    #[test]
    fn matmul_by_hand() {
        let a = arr(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = arr(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        assert_eq!(
            matmul(&a.view(), &b.view()),
            arr(&[2, 2], &[58.0, 64.0, 139.0, 154.0])
        );
        let v = arr(&[3], &[1.0, 0.0, -1.0]);
        assert_eq!(matmul(&a.view(), &v.view()), arr(&[2], &[-2.0, -2.0]));
        assert_eq!(matmul(&v.view(), &b.view()), arr(&[2], &[-4.0, -4.0]));
        assert_eq!(matmul(&v.view(), &v.view()), arr(&[], &[2.0]));
        assert_eq!(
            matmul_shape(&[2, 1, 3, 4], &[5, 4, 6]).unwrap(),
            vec![2, 5, 3, 6]
        );
        assert_eq!(matmul_shape(&[4], &[2, 4, 6]).unwrap(), vec![2, 6]);
        assert_eq!(matmul_shape(&[2, 3, 4], &[4]).unwrap(), vec![2, 3]);
        // empty inner dimension gives zeros
        let z = matmul(
            &ArrayD::zeros(IxDyn(&[2, 0])).view(),
            &ArrayD::zeros(IxDyn(&[0, 3])).view(),
        );
        assert_eq!(z, ArrayD::<f32>::zeros(IxDyn(&[2, 3])));
    }

    #[test]
    fn matmul_random() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[1, 1], &[1, 1]),
            (&[3, 7], &[7, 13]),
            (&[17, 13], &[13, 1]),
            (&[7], &[7, 3]),
            (&[3, 7], &[7]),
            (&[13], &[13]),
            (&[2, 3, 7, 5], &[2, 3, 5, 13]),
            (&[3, 1, 7, 5], &[1, 3, 5, 3]),
            (&[7, 5], &[2, 3, 5, 3]),
            (&[2, 3, 7, 5], &[5, 3]),
            (&[3, 7, 5], &[5]),
            (&[5], &[3, 5, 7]),
            (&[1, 17, 13], &[3, 13, 17]),
        ];
        let mut rng = Rng(31);
        for &(sa, sb) in cases {
            let a = rng.arr(sa);
            let b = rng.arr(sb);
            let want = naive_matmul(&a, &b);
            let (af, bf) = (fortran(&a), fortran(&b));
            for (x, z) in [
                (a.view(), b.view()),
                (af.view(), b.view()),
                (a.view(), bf.view()),
                (af.view(), bf.view()),
            ] {
                assert_close(&matmul(&x, &z), &want, 1e-5);
                let mut yf = fortran(&ArrayD::from_elem(IxDyn(want.shape()), f32::NAN));
                run_matmul(&x, &z, &mut yf.view_mut()).unwrap();
                assert_close(&yf, &want, 1e-5);
            }
            // reversed strides
            let ar = a.slice_each_axis(|_| ndarray::Slice::new(0, None, -1));
            let want_r = naive_matmul(&ar.to_owned(), &b);
            assert_close(&matmul(&ar, &b.view()), &want_r, 1e-5);
        }
    }

    #[test]
    fn matmul_errors() {
        assert!(matmul_shape(&[2, 3], &[4, 2]).is_err());
        assert!(matmul_shape(&[], &[3]).is_err());
        assert!(matmul_shape(&[2, 2, 3], &[3, 3, 2]).is_err());
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[3, 4]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 5]));
        let e = run_matmul(&a.view(), &b.view(), &mut y.view_mut()).unwrap_err();
        assert!(e.to_string().contains("[2, 5]"), "{e}");
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[2, 4]));
        assert!(run_matmul(&b.view(), &a.view(), &mut y.view_mut()).is_err());
    }

    fn gemm(g: &Gemm, inputs: &[ArrayViewD<f32>]) -> ArrayD<f32> {
        let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
        let s = gemm_shape(g, &shapes).unwrap();
        let mut y = ArrayD::from_elem(IxDyn(&s), f32::NAN);
        run_gemm(g, inputs, &mut y.view_mut()).unwrap();
        y
    }

    #[test]
    fn gemm_by_hand() {
        let a = arr(&[2, 3], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = arr(&[3, 2], &[7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let c = arr(&[2], &[1.0, -1.0]);
        let g = Gemm {
            alpha: 2.0,
            beta: 0.5,
            trans_a: false,
            trans_b: false,
        };
        assert_eq!(
            gemm(&g, &[a.view(), b.view(), c.view()]),
            arr(&[2, 2], &[116.5, 127.5, 278.5, 307.5])
        );
        let g = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: true,
            trans_b: true,
        };
        // A' = a.T [3,2] (needs B' [2,k]); use b.T.T: pass b.t() as B with transB
        let y = gemm(&g, &[a.t(), b.t()]);
        assert_eq!(y, arr(&[2, 2], &[58.0, 64.0, 139.0, 154.0]));
        let g = Gemm {
            alpha: 1.0,
            beta: 0.0,
            trans_a: false,
            trans_b: false,
        };
        let cn = ArrayD::from_elem(IxDyn(&[2, 2]), f32::NAN);
        assert_eq!(
            gemm(&g, &[a.view(), b.view(), cn.view()]),
            arr(&[2, 2], &[58.0, 64.0, 139.0, 154.0])
        );
    }

    #[test]
    fn gemm_random() {
        let mut rng = Rng(32);
        for &(m, k, n) in &[(1, 1, 1), (3, 7, 13), (17, 1, 3), (13, 17, 7)] {
            for ta in [false, true] {
                for tb in [false, true] {
                    for cshape in [
                        None,
                        Some(vec![]),
                        Some(vec![n]),
                        Some(vec![m, 1]),
                        Some(vec![1, n]),
                        Some(vec![m, n]),
                    ] {
                        let a = rng.arr(&if ta { [k, m] } else { [m, k] });
                        let b = rng.arr(&if tb { [n, k] } else { [k, n] });
                        let c = cshape.as_ref().map(|s| rng.arr(s));
                        let g = Gemm {
                            alpha: 0.7,
                            beta: -1.3,
                            trans_a: ta,
                            trans_b: tb,
                        };
                        let want = ArrayD::from_shape_fn(IxDyn(&[m, n]), |idx| {
                            let (i, j) = (idx[0], idx[1]);
                            let mut s = 0.0f64;
                            for q in 0..k {
                                let av = if ta { a[[q, i]] } else { a[[i, q]] };
                                let bv = if tb { b[[j, q]] } else { b[[q, j]] };
                                s += av as f64 * bv as f64;
                            }
                            let cv = c.as_ref().map_or(0.0, |c| {
                                let cb = c.broadcast(IxDyn(&[m, n])).unwrap();
                                cb[[i, j]]
                            });
                            (0.7 * s + -1.3 * cv as f64) as f32
                        });
                        let af = fortran(&a);
                        let mut inputs = vec![af.view(), b.view()];
                        if let Some(c) = &c {
                            inputs.push(c.view());
                        }
                        assert_close(&gemm(&g, &inputs), &want, 1e-5);
                    }
                }
            }
        }
    }

    #[test]
    fn gemm_errors() {
        let g = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: false,
            trans_b: false,
        };
        assert!(gemm_shape(&g, &[&[2, 3], &[2, 3]]).is_err());
        assert!(gemm_shape(&g, &[&[2, 3, 1], &[3, 3]]).is_err());
        assert!(gemm_shape(&g, &[&[2, 3], &[3, 4], &[3]]).is_err());
        assert!(gemm_shape(&g, &[&[2, 3], &[3, 4], &[3, 4]]).is_err());
        assert!(gemm_shape(&g, &[&[2, 3]]).is_err());
        let t = Gemm {
            trans_b: true,
            ..g.clone()
        };
        assert_eq!(
            gemm_shape(&t, &[&[2, 3], &[4, 3], &[2, 1]]).unwrap(),
            vec![2, 4]
        );
        let a = ArrayD::<f32>::zeros(IxDyn(&[2, 3]));
        let b = ArrayD::<f32>::zeros(IxDyn(&[3, 4]));
        let mut y = ArrayD::<f32>::zeros(IxDyn(&[4, 2]));
        assert!(run_gemm(&g, &[a.view(), b.view()], &mut y.view_mut()).is_err());
    }
}
