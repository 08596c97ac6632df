//! Data movement: Concat, Slice, Split, Transpose, Reshape, Expand, Gather, Pad.

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Slice as NdSlice};

/// One sliced axis: `start..end` by `step` (step may be negative), already clamped to the axis.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Slice {
    /// sliced axes
    pub axes: Vec<SliceAxis>,
}

/// Pad mode.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
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
    // Contiguous tensors (the usual case): each input is `outer` runs of `n * inner` floats,
    // copied whole; runs of one float (the detector's LDA-AQU grids, 1 ms through ndarray's
    // `assign`) are one strided loop.
    let inner: usize = out[axis + 1..].iter().product();
    let outer: usize = out[..axis].iter().product();
    if let Some(ys) = y.as_slice_mut() {
        if inputs.iter().all(|x| x.as_slice().is_some()) && inner > 0 {
            let row = out[axis] * inner;
            // output rows (one per index before `axis`) in parallel on rayon's current pool
            // when large
            crate::kernels::par::rows_mut(&mut ys[..outer * row], row, |rows, ys| {
                if let [a, b] = inputs {
                    if a.shape()[axis] * inner == 1 && b.shape()[axis] * inner == 1 {
                        // two planes stacked on a new last axis (LDA-AQU's (x, y) grid):
                        // pairs, which vectorise as shuffles
                        let (a, b) = (
                            a.as_slice().expect("checked"),
                            b.as_slice().expect("checked"),
                        );
                        let pairs = ys.chunks_exact_mut(2);
                        for ((d, &x), &y) in pairs.zip(&a[rows.clone()]).zip(&b[rows]) {
                            d[0] = x;
                            d[1] = y;
                        }
                        return;
                    }
                }
                let mut off = 0usize;
                for x in inputs {
                    let xs = x.as_slice().expect("checked contiguous");
                    let run = x.shape()[axis] * inner;
                    let xs = &xs[rows.start * run..rows.end * run];
                    if run == 1 {
                        // stacking along a last axis of 1 (LDA-AQU's sampling grid): an
                        // interleave
                        for (d, &v) in ys[off..].iter_mut().step_by(row).zip(xs) {
                            *d = v;
                        }
                    } else if run > 0 {
                        for (src, dst) in xs.chunks_exact(run).zip(ys.chunks_exact_mut(row)) {
                            dst[off..off + run].copy_from_slice(src);
                        }
                    }
                    off += run;
                }
            });
            return Ok(());
        }
    }
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
    // Row-major input and output: each output is one contiguous run per index before `axis`.
    let (len, inner) = (
        x.shape()[axis],
        x.shape()[axis + 1..].iter().product::<usize>(),
    );
    let mut start = 0usize;
    for y in ys.iter_mut() {
        let n = y.shape()[axis];
        match (x.as_slice(), y.as_slice_mut()) {
            (Some(xs), Some(dst)) if n * inner > 0 => {
                // runs in parallel on rayon's current pool when large
                crate::kernels::par::rows_mut(dst, n * inner, |rows, dst| {
                    for (o, run) in rows.zip(dst.chunks_exact_mut(n * inner)) {
                        let at = (o * len + start) * inner;
                        run.copy_from_slice(&xs[at..at + n * inner]);
                    }
                });
            }
            _ => y.assign(&x.slice_axis(Axis(axis), NdSlice::from(start..start + n))),
        }
        start += n;
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
    if let (Some(xs), Some(ys), Some(dims)) =
        (x.as_slice(), y.as_slice_mut(), batched_2d(perm, x.shape()))
    {
        transpose_2d(xs, ys, dims);
        return Ok(());
    }
    y.assign(&x.view().permuted_axes(perm.to_vec()));
    Ok(())
}

/// `perm` of a tensor of `shape` as a batched 2-D transpose: the tensor viewed as
/// `[outer, a, b]` becomes `[outer, b, a]` (a copy when `a` or `b` is 1), once axes of size 1
/// are dropped and axes that stay neighbours are merged. `None` for other permutations.
/// NCHW <-> NHWC (the LDA-AQU offset branch's LayerNorm) is `[N, C, HW]` <-> `[N, HW, C]`.
fn batched_2d(perm: &[usize], shape: &[usize]) -> Option<(usize, usize, usize)> {
    // the input axes that matter, in output order, renumbered by input position
    let kept: Vec<usize> = (0..shape.len()).filter(|&i| shape[i] > 1).collect();
    let rank = |ax: usize| kept.iter().position(|&k| k == ax);
    let order: Vec<usize> = perm.iter().filter_map(|&p| rank(p)).collect();
    // groups of consecutive input ranks, in output order: (first rank, elements)
    let mut groups: Vec<(usize, usize)> = Vec::new();
    for (i, &r) in order.iter().enumerate() {
        match groups.last_mut() {
            Some((_, n)) if i > 0 && order[i - 1] + 1 == r => *n *= shape[kept[r]],
            _ => groups.push((r, shape[kept[r]])),
        }
    }
    let mut by_input = groups.clone();
    by_input.sort_unstable();
    let sizes: Vec<usize> = by_input.iter().map(|g| g.1).collect();
    let output_order: Vec<usize> = groups
        .iter()
        .map(|g| by_input.iter().position(|h| h == g).expect("same groups"))
        .collect();
    match output_order.as_slice() {
        [] | [0] => Some((1, 1, sizes.first().copied().unwrap_or(1))),
        [1, 0] => Some((1, sizes[0], sizes[1])),
        [0, 2, 1] => Some((sizes[0], sizes[1], sizes[2])),
        _ => None,
    }
}

/// `y[o][j][i] = x[o][i][j]` for `x` of `[outer, a, b]`: 16 x 16 tiles (reads and writes stay
/// in cache lines), output rows in parallel on rayon's current pool when large.
fn transpose_2d(x: &[f32], y: &mut [f32], (_outer, a, b): (usize, usize, usize)) {
    const T: usize = 16;
    crate::kernels::par::rows_mut(y, a, |rows, ys| {
        let mut r = rows.start;
        while r < rows.end {
            // output rows r.. are columns j0.. of image o
            let (o, j0) = (r / b, r % b);
            let jn = T.min(b - j0).min(rows.end - r);
            let img = &x[o * a * b..(o + 1) * a * b];
            let dst = &mut ys[(r - rows.start) * a..(r - rows.start + jn) * a];
            for i0 in (0..a).step_by(T) {
                let i1 = (i0 + T).min(a);
                for (jj, yr) in dst.chunks_exact_mut(a).enumerate() {
                    for (i, o) in (i0..i1).zip(&mut yr[i0..i1]) {
                        *o = img[i * b + j0 + jj];
                    }
                }
            }
            r += jn;
        }
    });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::test_util::*;
    use ndarray::{ArrayD, Dimension, IxDyn};

    /// A random shape of `rank` dims from small odd sizes (1 included, for broadcasting).
    fn rand_shape(rng: &mut Rng, rank: usize) -> Vec<usize> {
        const SIZES: [usize; 5] = [1, 3, 7, 13, 17];
        (0..rank).map(|_| SIZES[rng.below(4)]).collect()
    }

    fn vals(a: &ArrayD<f32>) -> Vec<f32> {
        a.iter().copied().collect()
    }

    fn arange(shape: &[usize]) -> ArrayD<f32> {
        let n = shape.iter().product::<usize>();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(|v| v as f32).collect()).unwrap()
    }

    fn nan(shape: &[usize]) -> ArrayD<f32> {
        ArrayD::from_elem(IxDyn(shape), f32::NAN)
    }

    #[test]
    fn concat() {
        let a = arange(&[2, 1]);
        let b = arange(&[2, 2]);
        let mut y = nan(&[2, 3]);
        run_concat(1, &[a.view(), b.view()], &mut y.view_mut()).unwrap();
        assert_eq!(vals(&y), vec![0.0, 0.0, 1.0, 1.0, 2.0, 3.0]);
        let mut rng = Rng(1);
        // all contiguous (runs copied whole), an empty input among them, or one Fortran-order
        // input (ndarray's element-wise assign)
        for (rank, fort) in (1..=4).flat_map(|r| [(r, false), (r, true)]) {
            for axis in 0..rank {
                let base = rand_shape(&mut rng, rank);
                let xs: Vec<ArrayD<f32>> = (0..3)
                    .map(|i| {
                        let mut s = base.clone();
                        s[axis] = if fort { [1, 3, 7][i] } else { [2, 0, 1][i] };
                        let x = rng.arr(&s);
                        if i == 1 && fort {
                            fortran(&x)
                        } else {
                            x
                        }
                    })
                    .collect();
                let views: Vec<_> = xs.iter().map(|x| x.view()).collect();
                let shapes: Vec<&[usize]> = xs.iter().map(|x| x.shape()).collect();
                let out = concat_shape(axis, &shapes).unwrap();
                let mut y = nan(&out);
                run_concat(axis, &views, &mut y.view_mut()).unwrap();
                let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                    let mut i = idx.slice().to_vec();
                    for x in &xs {
                        if i[axis] < x.shape()[axis] {
                            return x[IxDyn(&i)];
                        }
                        i[axis] -= x.shape()[axis];
                    }
                    unreachable!()
                });
                assert_eq!(y, want);
            }
        }
        // two planes stacked on a new last axis (the pair interleave, over several pieces
        // when large), and pairs that only look like that (an empty input beside two values)
        for (sa, sb, axis) in [
            (vec![3, 5, 1], vec![3, 5, 1], 2),
            (vec![70_001, 1], vec![70_001, 1], 1),
            (vec![4, 0], vec![4, 2], 1),
            (vec![4, 2, 0], vec![4, 2, 1], 2),
        ] {
            let xs = [rng.arr(&sa), rng.arr(&sb)];
            let out = concat_shape(axis, &[&sa, &sb]).unwrap();
            let mut y = nan(&out);
            run_concat(axis, &[xs[0].view(), xs[1].view()], &mut y.view_mut()).unwrap();
            let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                let mut i = idx.slice().to_vec();
                if i[axis] < sa[axis] {
                    return xs[0][IxDyn(&i)];
                }
                i[axis] -= sa[axis];
                xs[1][IxDyn(&i)]
            });
            assert_eq!(y, want, "{sa:?} {sb:?}");
        }
        assert!(concat_shape(0, &[]).is_err());
        assert!(concat_shape(2, &[&[1, 2]]).is_err());
        assert!(concat_shape(1, &[&[1, 2], &[2, 2]]).is_err());
        assert!(concat_shape(0, &[&[1, 2], &[2, 2, 1]]).is_err());
        let mut bad = nan(&[2, 4]);
        let e = run_concat(1, &[a.view(), b.view()], &mut bad.view_mut()).unwrap_err();
        assert!(e.to_string().contains("[2, 4]"), "{e}");
    }

    fn sa(axis: usize, start: i64, end: i64, step: i64) -> SliceAxis {
        SliceAxis {
            axis,
            start,
            end,
            step,
        }
    }

    /// Indices taken by a slice, written the obvious way.
    fn naive_indices(s: &SliceAxis) -> Vec<usize> {
        let mut v = Vec::new();
        let mut i = s.start;
        while (s.step > 0 && i < s.end) || (s.step < 0 && i > s.end) {
            v.push(i as usize);
            i += s.step;
        }
        v
    }

    #[test]
    fn slice() {
        let x = arange(&[10]);
        let run = |s: SliceAxis| {
            let s = Slice { axes: vec![s] };
            let mut y = nan(&slice_shape(&s, &[10]).unwrap());
            run_slice(&s, &x.view(), &mut y.view_mut()).unwrap();
            vals(&y)
        };
        assert_eq!(run(sa(0, 1, 8, 3)), vec![1.0, 4.0, 7.0]);
        assert_eq!(run(sa(0, 9, -1, -4)), vec![9.0, 5.0, 1.0]);
        assert_eq!(run(sa(0, 8, 2, -2)), vec![8.0, 6.0, 4.0]);
        assert_eq!(
            run(sa(0, 9, -1, -1)),
            (0..10).rev().map(|v| v as f32).collect::<Vec<_>>()
        );
        assert_eq!(run(sa(0, 5, 5, 1)), Vec::<f32>::new());
        assert_eq!(run(sa(0, 2, 7, -1)), Vec::<f32>::new());
        assert_eq!(run(sa(0, 10, 10, 1)), Vec::<f32>::new());

        let mut rng = Rng(2);
        for _ in 0..200 {
            let rank = 1 + rng.below(4);
            let shape = rand_shape(&mut rng, rank);
            let x = rng.arr(&shape);
            let mut axes = Vec::new();
            for (axis, &d) in shape.iter().enumerate() {
                if rng.below(3) == 0 {
                    continue;
                }
                let d = d as i64;
                let step = [1i64, 2, 3, -1, -2, -5][rng.below(6)];
                let (start, end) = if step > 0 {
                    (
                        rng.below(d as usize + 1) as i64,
                        rng.below(d as usize + 1) as i64,
                    )
                } else {
                    (
                        rng.below(d as usize) as i64,
                        rng.below(d as usize + 1) as i64 - 1,
                    )
                };
                axes.push(sa(axis, start, end, step));
            }
            let s = Slice { axes };
            let out = slice_shape(&s, &shape).unwrap();
            let picks: Vec<Vec<usize>> = (0..rank)
                .map(|a| match s.axes.iter().find(|q| q.axis == a) {
                    Some(q) => naive_indices(q),
                    None => (0..shape[a]).collect(),
                })
                .collect();
            assert_eq!(out, picks.iter().map(|p| p.len()).collect::<Vec<_>>());
            let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                let i: Vec<usize> = idx
                    .slice()
                    .iter()
                    .enumerate()
                    .map(|(a, &k)| picks[a][k])
                    .collect();
                x[IxDyn(&i)]
            });
            for xv in [x.clone(), fortran(&x)] {
                let mut y = nan(&out);
                run_slice(&s, &xv.view(), &mut y.view_mut()).unwrap();
                assert_eq!(y, want);
            }
        }
        let bad = |s: SliceAxis| slice_shape(&Slice { axes: vec![s] }, &[10]).is_err();
        assert!(bad(sa(0, 0, 5, 0)));
        assert!(bad(sa(0, 0, 11, 1)));
        assert!(bad(sa(0, -1, 5, 1)));
        assert!(bad(sa(0, 10, 0, -1)));
        assert!(bad(sa(1, 0, 5, 1)));
        let mut y = nan(&[3]);
        let s = Slice {
            axes: vec![sa(0, 0, 10, 2)],
        };
        assert!(run_slice(&s, &x.view(), &mut y.view_mut()).is_err());
    }

    #[test]
    fn split() {
        let x = arange(&[2, 3]);
        let shapes = split_shapes(1, &[1, 2], &[2, 3]).unwrap();
        assert_eq!(shapes, vec![vec![2, 1], vec![2, 2]]);
        let mut ys: Vec<ArrayD<f32>> = shapes.iter().map(|s| nan(s)).collect();
        let mut views: Vec<_> = ys.iter_mut().map(|y| y.view_mut()).collect();
        run_split(1, &x.view(), &mut views).unwrap();
        assert_eq!(vals(&ys[0]), vec![0.0, 3.0]);
        assert_eq!(vals(&ys[1]), vec![1.0, 2.0, 4.0, 5.0]);

        let mut rng = Rng(3);
        for _ in 0..30 {
            let rank = 1 + rng.below(4);
            let mut shape = rand_shape(&mut rng, rank);
            let axis = rng.below(rank);
            let sizes = vec![rng.below(4), 1 + rng.below(7), rng.below(3)];
            shape[axis] = sizes.iter().sum();
            // row-major (the contiguous runs) and column-major (the general path)
            let x = rng.arr(&shape);
            let x = if rng.below(2) == 0 { fortran(&x) } else { x };
            let shapes = split_shapes(axis, &sizes, &shape).unwrap();
            let mut ys: Vec<ArrayD<f32>> = shapes.iter().map(|s| nan(s)).collect();
            let mut views: Vec<_> = ys.iter_mut().map(|y| y.view_mut()).collect();
            run_split(axis, &x.view(), &mut views).unwrap();
            let mut off = 0;
            for y in &ys {
                for (idx, &v) in y.indexed_iter() {
                    let mut i = idx.slice().to_vec();
                    i[axis] += off;
                    assert_eq!(v, x[IxDyn(&i)]);
                }
                off += y.shape()[axis];
            }
        }
        assert!(split_shapes(1, &[1, 1], &[2, 3]).is_err());
        assert!(split_shapes(2, &[3], &[2, 3]).is_err());
        let mut a = nan(&[2, 1]);
        let mut b = nan(&[2, 1]);
        assert!(run_split(1, &x.view(), &mut [a.view_mut(), b.view_mut()]).is_err());
        let mut c = nan(&[1, 3]);
        assert!(run_split(1, &x.view(), &mut [a.view_mut(), c.view_mut()]).is_err());
    }

    #[test]
    fn transpose() {
        let x = arange(&[2, 3]);
        let mut y = nan(&[3, 2]);
        run_transpose(&[1, 0], &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(vals(&y), vec![0.0, 3.0, 1.0, 4.0, 2.0, 5.0]);
        let mut rng = Rng(4);
        for _ in 0..40 {
            let rank = 1 + rng.below(5);
            let shape = rand_shape(&mut rng, rank);
            let mut perm: Vec<usize> = (0..rank).collect();
            for i in (1..rank).rev() {
                perm.swap(i, rng.below(i + 1));
            }
            let x = rng.arr(&shape);
            let out = transpose_shape(&perm, &shape).unwrap();
            let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                let mut i = vec![0; rank];
                for (k, &p) in perm.iter().enumerate() {
                    i[p] = idx[k];
                }
                x[IxDyn(&i)]
            });
            for xv in [x.clone(), fortran(&x)] {
                let mut y = nan(&out);
                run_transpose(&perm, &xv.view(), &mut y.view_mut()).unwrap();
                assert_eq!(y, want);
            }
        }
        // large tensors take the tiled 2-D path in pieces on a pool (NCHW <-> NHWC, a
        // rotation, a swap of two inner axes, one left to ndarray) and equal the gather
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (shape, perm) in [
            (vec![1, 37, 61, 23], vec![0, 2, 3, 1]),
            (vec![2, 61, 23, 37], vec![0, 3, 1, 2]),
            (vec![3, 1, 170, 190], vec![2, 0, 3, 1]),
            (vec![2, 3, 111, 130], vec![0, 1, 3, 2]),
            (vec![4, 50, 3, 70], vec![1, 0, 2, 3]),
        ] {
            let x = rng.arr(&shape);
            let out = transpose_shape(&perm, &shape).unwrap();
            let want = x.view().permuted_axes(perm.clone()).to_owned();
            let mut y = nan(&out);
            pool.install(|| run_transpose(&perm, &x.view(), &mut y.view_mut()).unwrap());
            assert_eq!(y, want, "{shape:?} {perm:?}");
        }
        assert_eq!(batched_2d(&[0, 2, 3, 1], &[1, 8, 5, 6]), Some((1, 8, 30)));
        assert_eq!(batched_2d(&[0, 3, 1, 2], &[2, 5, 6, 8]), Some((2, 30, 8)));
        assert_eq!(batched_2d(&[1, 0, 2], &[4, 1, 9]), Some((1, 1, 36)));
        assert_eq!(batched_2d(&[1, 0, 2], &[4, 5, 9]), None);
        assert!(transpose_shape(&[0, 0], &[2, 2]).is_err());
        assert!(transpose_shape(&[0, 2], &[2, 2]).is_err());
        assert!(transpose_shape(&[0], &[2, 2]).is_err());
        assert!(run_transpose(&[0, 1], &x.view(), &mut y.view_mut()).is_err());
    }

    #[test]
    fn reshape_and_copy() {
        assert_eq!(reshape_shape(&[3, 2], &[2, 3]).unwrap(), vec![3, 2]);
        assert_eq!(reshape_shape(&[], &[1, 1]).unwrap(), Vec::<usize>::new());
        assert!(reshape_shape(&[4], &[2, 3]).is_err());
        let mut rng = Rng(5);
        let x = rng.arr(&[3, 7, 13]);
        let want: Vec<f32> = x.iter().copied().collect();
        for xv in [x.clone(), fortran(&x)] {
            let mut y = nan(&[21, 13]);
            run_copy(&xv.view(), &mut y.view_mut()).unwrap();
            assert_eq!(vals(&y), want);
            let mut yf = fortran(&nan(&[13, 21]));
            run_copy(&xv.view(), &mut yf.view_mut()).unwrap();
            assert_eq!(vals(&yf), want);
        }
        let mut small = nan(&[5]);
        assert!(run_copy(&x.view(), &mut small.view_mut()).is_err());
    }

    #[test]
    fn expand() {
        let x = arange(&[3, 1]);
        let mut y = nan(&[2, 3, 2]);
        run_expand(&x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(
            vals(&y),
            vec![0.0, 0.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0, 1.0, 1.0, 2.0, 2.0]
        );
        let xf = fortran(&arange(&[1, 3, 1, 7]));
        let mut y = nan(&[13, 3, 17, 7]);
        run_expand(&xf.view(), &mut y.view_mut()).unwrap();
        for (idx, &v) in y.indexed_iter() {
            assert_eq!(v, xf[[0, idx[1], 0, idx[3]]]);
        }
        let mut bad = nan(&[4]);
        assert!(run_expand(&arange(&[3]).view(), &mut bad.view_mut()).is_err());
    }

    #[test]
    fn gather() {
        let x = arange(&[3, 2]);
        let mut y = nan(&[2, 2]);
        run_gather(0, &[2, 0], &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(vals(&y), vec![4.0, 5.0, 0.0, 1.0]);
        // scalar index removes the axis
        assert_eq!(gather_shape(1, &[], &[3, 2]).unwrap(), vec![3]);
        let mut y = nan(&[3]);
        run_gather(1, &[1], &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(vals(&y), vec![1.0, 3.0, 5.0]);
        // 2-D indices
        assert_eq!(gather_shape(1, &[2, 2], &[3, 2]).unwrap(), vec![3, 2, 2]);
        let mut y = nan(&[3, 2, 2]);
        run_gather(1, &[1, 0, 0, 1], &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(
            vals(&y),
            vec![1.0, 0.0, 0.0, 1.0, 3.0, 2.0, 2.0, 3.0, 5.0, 4.0, 4.0, 5.0]
        );

        let mut rng = Rng(6);
        for _ in 0..40 {
            let rank = 1 + rng.below(4);
            let shape = rand_shape(&mut rng, rank);
            let axis = rng.below(rank);
            let ishape: Vec<usize> = (0..rng.below(3)).map(|_| 1 + rng.below(3)).collect();
            let n: usize = ishape.iter().product();
            let indices: Vec<usize> = (0..n).map(|_| rng.below(shape[axis])).collect();
            let x = fortran(&rng.arr(&shape));
            let out = gather_shape(axis, &ishape, &shape).unwrap();
            let k = ishape.len();
            let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                let idx = idx.slice();
                let flat = idx[axis..axis + k]
                    .iter()
                    .zip(&ishape)
                    .fold(0, |f, (&i, &d)| f * d + i);
                let mut i = idx[..axis].to_vec();
                i.push(indices[flat]);
                i.extend_from_slice(&idx[axis + k..]);
                x[IxDyn(&i)]
            });
            let mut y = nan(&out);
            run_gather(axis, &indices, &x.view(), &mut y.view_mut()).unwrap();
            assert_eq!(y, want);
        }
        assert!(gather_shape(2, &[1], &[3, 2]).is_err());
        let mut y = nan(&[2, 2]);
        assert!(run_gather(0, &[3, 0], &x.view(), &mut y.view_mut()).is_err());
        assert!(run_gather(0, &[1], &x.view(), &mut y.view_mut()).is_err());
        let mut y = nan(&[2, 3]);
        assert!(run_gather(0, &[1, 0], &x.view(), &mut y.view_mut()).is_err());
        let mut y0 = nan(&[]);
        assert!(run_gather(0, &[0], &arange(&[2, 2]).view(), &mut y0.view_mut()).is_err());
    }

    fn naive_source(mode: PadMode, o: usize, before: usize, n: usize) -> Option<usize> {
        let mut i = o as i64 - before as i64;
        let n = n as i64;
        match mode {
            PadMode::Constant(_) => (0..n).contains(&i).then_some(i as usize),
            PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
            PadMode::Reflect => {
                if n == 1 {
                    return Some(0);
                }
                while !(0..n).contains(&i) {
                    if i < 0 {
                        i = -i;
                    }
                    if i >= n {
                        i = 2 * (n - 1) - i;
                    }
                }
                Some(i as usize)
            }
        }
    }

    #[test]
    fn pad() {
        let x = arange(&[3]);
        let run = |pads: (usize, usize), mode| {
            let mut y = nan(&pad_shape(&[pads], &[3]).unwrap());
            run_pad(&[pads], mode, &x.view(), &mut y.view_mut()).unwrap();
            vals(&y)
        };
        assert_eq!(
            run((2, 2), PadMode::Reflect),
            vec![2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0]
        );
        assert_eq!(
            run((2, 1), PadMode::Edge),
            vec![0.0, 0.0, 0.0, 1.0, 2.0, 2.0]
        );
        assert_eq!(
            run((1, 2), PadMode::Constant(-1.0)),
            vec![-1.0, 0.0, 1.0, 2.0, -1.0, -1.0]
        );
        let x2 = arange(&[2, 2]);
        let mut y = nan(&[3, 4]);
        run_pad(
            &[(1, 0), (1, 1)],
            PadMode::Constant(9.0),
            &x2.view(),
            &mut y.view_mut(),
        )
        .unwrap();
        assert_eq!(
            vals(&y),
            vec![9.0, 9.0, 9.0, 9.0, 9.0, 0.0, 1.0, 9.0, 9.0, 2.0, 3.0, 9.0]
        );

        let mut rng = Rng(7);
        for _ in 0..60 {
            let rank = 1 + rng.below(4);
            let shape = rand_shape(&mut rng, rank);
            let pads: Vec<(usize, usize)> =
                (0..rank).map(|_| (rng.below(4), rng.below(4))).collect();
            let mode = [PadMode::Constant(0.5), PadMode::Edge, PadMode::Reflect][rng.below(3)];
            let x = rng.arr(&shape);
            let out = pad_shape(&pads, &shape).unwrap();
            let want = ArrayD::from_shape_fn(IxDyn(&out), |idx| {
                let mut i = Vec::new();
                for (a, &o) in idx.slice().iter().enumerate() {
                    match naive_source(mode, o, pads[a].0, shape[a]) {
                        Some(s) => i.push(s),
                        None => return 0.5,
                    }
                }
                x[IxDyn(&i)]
            });
            for xv in [x.clone(), fortran(&x)] {
                let mut y = nan(&out);
                run_pad(&pads, mode, &xv.view(), &mut y.view_mut()).unwrap();
                assert_eq!(y, want, "{mode:?} {pads:?} {shape:?}");
                let mut yf = fortran(&nan(&out));
                run_pad(&pads, mode, &xv.view(), &mut yf.view_mut()).unwrap();
                assert_eq!(yf, want);
            }
        }
        assert!(pad_shape(&[(1, 1)], &[2, 2]).is_err());
        let mut y = nan(&[4]);
        assert!(run_pad(
            &[(1, 1)],
            PadMode::Edge,
            &arange(&[3]).view(),
            &mut y.view_mut()
        )
        .is_err());
        let mut y = nan(&[2]);
        assert!(run_pad(
            &[(1, 1)],
            PadMode::Reflect,
            &arange(&[0]).view(),
            &mut y.view_mut()
        )
        .is_err());
        // rank 0
        let s = ArrayD::from_elem(IxDyn(&[]), 3.0f32);
        let mut y = nan(&[]);
        run_pad(&[], PadMode::Edge, &s.view(), &mut y.view_mut()).unwrap();
        assert_eq!(vals(&y), vec![3.0]);
    }
}
