//! Data movement: Concat, Slice, Split, Transpose, Reshape, Expand, Gather, Pad.

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Slice as NdSlice};

/// One sliced axis: `start..end` by `step` (step may be negative), already clamped to the axis.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SliceAxis {
    /// non-negative axis
    pub axis: usize,
    /// first index taken
    pub start: i64,
    /// exclusive end (may be -1 for negative steps reaching index 0)
    pub end: i64,
    /// non-zero step
    pub step: i64,
}

/// Attributes of a slice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Slice {
    /// sliced axes
    pub axes: Vec<SliceAxis>,
}

/// Pad mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PadMode {
    /// fill with a value
    Constant(f32),
    /// mirror without repeating the edge
    Reflect,
    /// repeat the edge
    Edge,
}

fn shape_err(msg: String) -> OpError {
    OpError::Shape(msg)
}

fn check_out(op: &str, expected: &[usize], y: &[usize]) -> OpResult<()> {
    if expected != y {
        return Err(shape_err(format!(
            "{op}: expected output shape {expected:?}, got {y:?}"
        )));
    }
    Ok(())
}

/// Shape of a concatenation.
pub fn concat_shape(axis: usize, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    let first = inputs
        .first()
        .ok_or_else(|| shape_err("Concat needs at least one input".into()))?;
    if axis >= first.len() {
        return Err(shape_err(format!(
            "Concat axis {axis} out of range for shapes {inputs:?}"
        )));
    }
    let mut out = first.to_vec();
    out[axis] = 0;
    for s in inputs {
        if s.len() != out.len()
            || s.iter()
                .zip(first.iter())
                .enumerate()
                .any(|(i, (a, b))| i != axis && a != b)
        {
            return Err(shape_err(format!(
                "Concat along axis {axis}: incompatible shapes {inputs:?}"
            )));
        }
        out[axis] += s[axis];
    }
    Ok(out)
}

/// Reference concat.
pub fn run_concat(
    axis: usize,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|x| x.shape()).collect();
    let out = concat_shape(axis, &shapes)?;
    check_out("Concat", &out, y.shape())?;
    let mut off = 0usize;
    for x in inputs {
        let n = x.shape()[axis];
        y.slice_axis_mut(Axis(axis), NdSlice::from(off..off + n))
            .assign(x);
        off += n;
    }
    Ok(())
}

/// Number of elements taken by one sliced axis of size `dim`, with the checked
/// ndarray slice that takes them.
fn slice_axis_plan(sa: &SliceAxis, dim: usize) -> OpResult<(usize, NdSlice)> {
    let err = || shape_err(format!("Slice {sa:?} invalid for axis of size {dim}"));
    if sa.step == 0 {
        return Err(err());
    }
    let (start, end, step) = (sa.start as i128, sa.end as i128, sa.step as i128);
    let len = if step > 0 {
        if end > start {
            (end - start + step - 1) / step
        } else {
            0
        }
    } else if start > end {
        (start - end + (-step) - 1) / (-step)
    } else {
        0
    };
    if len == 0 {
        return Ok((0, NdSlice::new(0, Some(0), 1)));
    }
    let last = start + (len - 1) * step;
    let (lo, hi) = (start.min(last), start.max(last));
    if lo < 0 || hi >= dim as i128 {
        return Err(err());
    }
    let s = isize::try_from(step).map_err(|_| err())?;
    // ndarray walks a negative-step range from its end, which is `start` here.
    Ok((
        len as usize,
        NdSlice::new(lo as isize, Some(hi as isize + 1), s),
    ))
}

/// Shape of a slice.
pub fn slice_shape(s: &Slice, x: &[usize]) -> OpResult<Vec<usize>> {
    let mut out = x.to_vec();
    for sa in &s.axes {
        if sa.axis >= out.len() {
            return Err(shape_err(format!(
                "Slice axis {} out of range for shape {x:?}",
                sa.axis
            )));
        }
        out[sa.axis] = slice_axis_plan(sa, out[sa.axis])?.0;
    }
    Ok(out)
}

/// Reference slice.
pub fn run_slice(s: &Slice, x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let out = slice_shape(s, x.shape())?;
    check_out("Slice", &out, y.shape())?;
    let mut v = x.view();
    for sa in &s.axes {
        let (_, sl) = slice_axis_plan(sa, v.shape()[sa.axis])?;
        v.slice_axis_inplace(Axis(sa.axis), sl);
    }
    y.assign(&v);
    Ok(())
}

/// Shapes of a split.
pub fn split_shapes(axis: usize, sizes: &[usize], x: &[usize]) -> OpResult<Vec<Vec<usize>>> {
    if axis >= x.len() {
        return Err(shape_err(format!(
            "Split axis {axis} out of range for shape {x:?}"
        )));
    }
    if sizes.iter().sum::<usize>() != x[axis] {
        return Err(shape_err(format!(
            "Split sizes {sizes:?} do not sum to axis {axis} of {x:?}"
        )));
    }
    Ok(sizes
        .iter()
        .map(|&n| {
            let mut s = x.to_vec();
            s[axis] = n;
            s
        })
        .collect())
}

/// Reference split.
pub fn run_split(axis: usize, x: &ArrayViewD<f32>, ys: &mut [ArrayViewMutD<f32>]) -> OpResult<()> {
    if axis >= x.ndim() {
        return Err(shape_err(format!(
            "Split axis {axis} out of range for shape {:?}",
            x.shape()
        )));
    }
    let sizes: Vec<usize> = ys
        .iter()
        .map(|y| y.shape().get(axis).copied().unwrap_or(0))
        .collect();
    let expected = split_shapes(axis, &sizes, x.shape())?;
    for (e, y) in expected.iter().zip(ys.iter()) {
        check_out("Split", e, y.shape())?;
    }
    let mut off = 0usize;
    for y in ys.iter_mut() {
        let n = y.shape()[axis];
        y.assign(&x.slice_axis(Axis(axis), NdSlice::from(off..off + n)));
        off += n;
    }
    Ok(())
}

/// Shape of a transpose.
pub fn transpose_shape(perm: &[usize], x: &[usize]) -> OpResult<Vec<usize>> {
    let mut seen = vec![false; x.len()];
    if perm.len() != x.len() {
        return Err(shape_err(format!(
            "Transpose perm {perm:?} does not match shape {x:?}"
        )));
    }
    for &p in perm {
        if p >= x.len() || seen[p] {
            return Err(shape_err(format!(
                "Transpose perm {perm:?} invalid for shape {x:?}"
            )));
        }
        seen[p] = true;
    }
    Ok(perm.iter().map(|&p| x[p]).collect())
}

/// Reference transpose.
pub fn run_transpose(
    perm: &[usize],
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = transpose_shape(perm, x.shape())?;
    check_out("Transpose", &out, y.shape())?;
    y.assign(&x.view().permuted_axes(perm.to_vec()));
    Ok(())
}

/// Check a reshape keeps the element count.
pub fn reshape_shape(shape: &[usize], x: &[usize]) -> OpResult<Vec<usize>> {
    if shape.iter().product::<usize>() != x.iter().product::<usize>() {
        return Err(shape_err(format!(
            "Reshape of {x:?} to {shape:?} changes the element count"
        )));
    }
    Ok(shape.to_vec())
}

/// Copy `x` into `y` in row-major order (shapes may differ, counts equal).
pub fn run_copy(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    if x.len() != y.len() {
        return Err(shape_err(format!(
            "copy of {:?} into {:?}: element counts differ",
            x.shape(),
            y.shape()
        )));
    }
    if let (Some(xs), Some(ys)) = (x.as_slice(), y.as_slice_mut()) {
        ys.copy_from_slice(xs);
    } else {
        for (o, &v) in y.iter_mut().zip(x.iter()) {
            *o = v;
        }
    }
    Ok(())
}

/// Reference expand (broadcast `x` to `y`'s shape).
pub fn run_expand(x: &ArrayViewD<f32>, y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    let xb = x.broadcast(y.shape()).ok_or_else(|| {
        shape_err(format!(
            "Expand: cannot broadcast {:?} to {:?}",
            x.shape(),
            y.shape()
        ))
    })?;
    y.assign(&xb);
    Ok(())
}

/// Shape of a gather.
pub fn gather_shape(axis: usize, indices_shape: &[usize], x: &[usize]) -> OpResult<Vec<usize>> {
    if axis >= x.len() {
        return Err(shape_err(format!(
            "Gather axis {axis} out of range for shape {x:?}"
        )));
    }
    let mut out = x[..axis].to_vec();
    out.extend_from_slice(indices_shape);
    out.extend_from_slice(&x[axis + 1..]);
    Ok(out)
}

/// Reference gather.
pub fn run_gather(
    axis: usize,
    indices: &[usize],
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let (xs, ys) = (x.shape(), y.shape());
    let err = |why: &str| {
        shape_err(format!(
            "Gather axis {axis} of {xs:?} with {} indices into {ys:?}: {why}",
            indices.len()
        ))
    };
    if axis >= xs.len() || ys.len() + 1 < xs.len() {
        return Err(err("ranks do not match"));
    }
    let k = ys.len() + 1 - xs.len();
    let idx_shape = &ys[axis..axis + k];
    if ys[..axis] != xs[..axis]
        || ys[axis + k..] != xs[axis + 1..]
        || idx_shape.iter().product::<usize>() != indices.len()
    {
        return Err(err("output shape does not match"));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= xs[axis]) {
        return Err(err(&format!("index {bad} out of range")));
    }
    let idx_shape = idx_shape.to_vec();
    let mut digits = vec![0usize; k];
    for &src in indices {
        let mut v = y.view_mut();
        for &d in &digits {
            v = v.index_axis_move(Axis(axis), d);
        }
        v.assign(&x.index_axis(Axis(axis), src));
        // advance the row-major counter over the indices' shape
        for j in (0..k).rev() {
            digits[j] += 1;
            if digits[j] < idx_shape[j] {
                break;
            }
            digits[j] = 0;
        }
    }
    Ok(())
}

/// Shape of a pad.
pub fn pad_shape(pads: &[(usize, usize)], x: &[usize]) -> OpResult<Vec<usize>> {
    if pads.len() != x.len() {
        return Err(shape_err(format!(
            "Pad: {} pads for shape {x:?}",
            pads.len()
        )));
    }
    Ok(x.iter().zip(pads).map(|(&d, &(b, a))| d + b + a).collect())
}

/// Source index of output position `o` on an axis of size `dim` padded by `before`.
fn pad_source(mode: PadMode, o: usize, before: usize, dim: usize) -> usize {
    let i = o as isize - before as isize;
    let n = dim as isize;
    match mode {
        PadMode::Edge | PadMode::Constant(_) => i.clamp(0, n - 1) as usize,
        PadMode::Reflect => {
            if n == 1 {
                return 0;
            }
            let period = 2 * (n - 1);
            let r = i.rem_euclid(period);
            (if r < n { r } else { period - r }) as usize
        }
    }
}

/// Reference pad.
pub fn run_pad(
    pads: &[(usize, usize)],
    mode: PadMode,
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let out = pad_shape(pads, x.shape())?;
    check_out("Pad", &out, y.shape())?;
    if let PadMode::Constant(v) = mode {
        y.fill(v);
        let mut inner = y.view_mut();
        for (i, (&(b, _), &d)) in pads.iter().zip(x.shape()).enumerate() {
            inner.slice_axis_inplace(Axis(i), NdSlice::from(b..b + d));
        }
        inner.assign(x);
        return Ok(());
    }
    if y.is_empty() {
        return Ok(());
    }
    if x.is_empty() {
        return Err(shape_err(format!(
            "Pad {mode:?} of empty tensor {:?} to {out:?}",
            x.shape()
        )));
    }
    // Per-axis source index maps, then one pass over the output in row-major order.
    let maps: Vec<Vec<usize>> = out
        .iter()
        .zip(pads)
        .zip(x.shape())
        .map(|((&o, &(b, _)), &d)| (0..o).map(|i| pad_source(mode, i, b, d)).collect())
        .collect();
    let xc = x.as_standard_layout();
    let xs = xc
        .as_slice()
        .ok_or_else(|| shape_err("Pad: input not contiguous".into()))?;
    let rank = out.len();
    let mut strides = vec![1usize; rank];
    for i in (0..rank.saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * x.shape()[i + 1];
    }
    if rank == 0 {
        y.fill(xs[0]);
        return Ok(());
    }
    let last = rank - 1;
    let mut idx = vec![0usize; rank];
    let mut yit = y.iter_mut();
    loop {
        let base: usize = (0..last).map(|a| maps[a][idx[a]] * strides[a]).sum();
        for &s in &maps[last] {
            if let Some(o) = yit.next() {
                *o = xs[base + s];
            }
        }
        // advance over all but the last axis
        let mut a = last;
        loop {
            if a == 0 {
                return Ok(());
            }
            a -= 1;
            idx[a] += 1;
            if idx[a] < out[a] {
                break;
            }
            idx[a] = 0;
        }
    }
}
