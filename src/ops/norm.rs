//! LayerNormalization and BatchNormalization (inference).

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};

/// True when `p` broadcasts unidirectionally to `target`.
fn broadcasts_to(p: &[usize], target: &[usize]) -> bool {
    p.len() <= target.len()
        && p.iter()
            .rev()
            .zip(target.iter().rev())
            .all(|(&a, &b)| a == b || a == 1)
}

/// Shape check for LayerNorm: x, scale (broadcastable to x[axis..]), optional bias.
pub fn layer_norm_shape(axis: usize, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if !(2..=3).contains(&inputs.len()) {
        return Err(OpError::Arity {
            expected: 3,
            got: inputs.len(),
        });
    }
    let x = inputs[0];
    if axis >= x.len() {
        return Err(OpError::Shape(format!(
            "LayerNorm axis {axis} out of range for shape {x:?}"
        )));
    }
    let norm = &x[axis..];
    for p in &inputs[1..] {
        if !broadcasts_to(p, norm) {
            return Err(OpError::Shape(format!(
                "LayerNorm: parameter shape {p:?} does not broadcast to {norm:?} (x {x:?}, axis {axis})"
            )));
        }
    }
    Ok(x.to_vec())
}

/// Mean of a slice, accumulated in f64.
fn mean(xs: &[f32]) -> f64 {
    xs.iter().map(|&v| v as f64).sum::<f64>() / xs.len() as f64
}

/// Reference LayerNorm over axes `axis..rank`.
pub fn run_layer_norm(
    axis: usize,
    epsilon: f32,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = layer_norm_shape(axis, &shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "LayerNorm: input {out:?}, output {:?}",
            y.shape()
        )));
    }
    let x = &inputs[0];
    let norm_shape = &x.shape()[axis..];
    let n: usize = norm_shape.iter().product();
    if n == 0 || x.is_empty() {
        return Ok(());
    }
    let param = |p: &ArrayViewD<f32>| -> OpResult<Vec<f32>> {
        let b = p.broadcast(norm_shape).ok_or_else(|| {
            OpError::Shape(format!(
                "LayerNorm: cannot broadcast {:?} to {norm_shape:?}",
                p.shape()
            ))
        })?;
        Ok(b.iter().copied().collect())
    };
    let scale = param(&inputs[1])?;
    let bias = match inputs.get(2) {
        Some(b) => param(b)?,
        None => vec![0.0; n],
    };
    let xc = x.as_standard_layout();
    let xs = xc
        .as_slice()
        .ok_or_else(|| OpError::Shape("LayerNorm: input not contiguous".into()))?;
    let run = |ys: &mut [f32]| {
        for (xr, yr) in xs.chunks_exact(n).zip(ys.chunks_exact_mut(n)) {
            let m = mean(xr);
            let var = xr.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n as f64;
            let inv = (1.0 / (var + epsilon as f64).sqrt()) as f32;
            let m = m as f32;
            for (((o, &v), &s), &b) in yr.iter_mut().zip(xr).zip(&scale).zip(&bias) {
                *o = (v - m) * inv * s + b;
            }
        }
    };
    if let Some(ys) = y.as_slice_mut() {
        run(ys);
    } else {
        let mut buf = vec![0.0f32; xs.len()];
        run(&mut buf);
        for (o, &v) in y.iter_mut().zip(&buf) {
            *o = v;
        }
    }
    Ok(())
}

/// Shape check for BatchNorm: x `[N,C,...]`, scale, bias, mean, var `[C]`.
pub fn batch_norm_shape(inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if inputs.len() != 5 {
        return Err(OpError::Arity {
            expected: 5,
            got: inputs.len(),
        });
    }
    let x = inputs[0];
    if x.len() < 2 {
        return Err(OpError::Shape(format!(
            "BatchNorm expects x of rank >= 2, got {x:?}"
        )));
    }
    let c = x[1];
    for p in &inputs[1..] {
        if *p != [c] {
            return Err(OpError::Shape(format!(
                "BatchNorm: parameter shape {p:?} is not [{c}] for x {x:?}"
            )));
        }
    }
    Ok(x.to_vec())
}

/// Reference BatchNorm.
pub fn run_batch_norm(
    epsilon: f32,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|v| v.shape()).collect();
    let out = batch_norm_shape(&shapes)?;
    if out.as_slice() != y.shape() {
        return Err(OpError::Shape(format!(
            "BatchNorm: input {out:?}, output {:?}",
            y.shape()
        )));
    }
    let x = &inputs[0];
    let (scale, bias, mean, var) = (&inputs[1], &inputs[2], &inputs[3], &inputs[4]);
    let params = Zip::from(scale)
        .and(bias)
        .and(mean)
        .and(var)
        .map_collect(|&s, &b, &m, &v| {
            let inv = 1.0 / (v + epsilon).sqrt();
            (m, inv, s, b)
        });
    for (c, &(m, inv, s, b)) in params.iter().enumerate() {
        Zip::from(y.index_axis_mut(Axis(1), c))
            .and(x.index_axis(Axis(1), c))
            .for_each(|o, &v| *o = (v - m) * inv * s + b);
    }
    Ok(())
}
