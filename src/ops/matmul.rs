//! MatMul (numpy semantics) and Gemm.

use super::{broadcast_shape, OpError, OpResult};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Ix2};

/// Attributes of Gemm.
#[derive(Clone, Debug, PartialEq)]
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
    general_mat_mul(g.alpha, &a, &b, beta, &mut y2);
    Ok(())
}
