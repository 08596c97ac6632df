//! int8 data-movement and element-wise kernels (memory-bound; scalar Rust that the compiler
//! vectorises). Every function computes exactly what the fake-quantized float graph computes
//! (`Q(op(DQ(a), ...))`) on the same f32 arithmetic, so results match it bit for bit.

use crate::ops::{QBinaryKind, QType};

/// `[N,C,H,W]` -> `(N, C, H*W)` for a rank-4 shape, else `(1, 1, len)` (no layout change).
pub fn nchw(shape: &[usize]) -> (usize, usize, usize) {
    if shape.len() == 4 {
        (shape[0], shape[1], shape[2] * shape[3])
    } else {
        (1, 1, shape.iter().product())
    }
}

/// QuantizeLinear of an f32 NCHW tensor into stored NHWC bytes.
pub fn quantize(q: QType, shape: &[usize], x: &[f32], y: &mut [u8]) {
    let (n, c, hw) = nchw(shape);
    for b in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                y[(b * hw + p) * c + ch] = q.quantize(x[(b * c + ch) * hw + p]);
            }
        }
    }
}

/// DequantizeLinear of stored NHWC bytes into f32 NCHW.
pub fn dequantize(q: QType, shape: &[usize], x: &[u8], y: &mut [f32]) {
    let (n, c, hw) = nchw(shape);
    let table: Vec<f32> = (0..=255u8).map(|v| q.dequantize(v)).collect();
    for b in 0..n {
        for ch in 0..c {
            for p in 0..hw {
                y[(b * c + ch) * hw + p] = table[x[(b * hw + p) * c + ch] as usize];
            }
        }
    }
}

/// A 256-entry table `Q_out(f(DQ_in(v)))`.
pub fn lut_table(input: QType, out: QType, f: impl Fn(f32) -> f32) -> Vec<u8> {
    (0..=255u8)
        .map(|v| out.quantize(f(input.dequantize(v))))
        .collect()
}

/// `y = table[x]`.
pub fn lut(table: &[u8], x: &[u8], y: &mut [u8]) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = table[v as usize];
    }
}

/// `Q(DQ(a) op DQ(b))`; `b` is a's shape or (`per_channel`) one value per channel of an NHWC
/// tensor with `c` channels.
#[allow(clippy::too_many_arguments)]
pub fn binary(
    kind: QBinaryKind,
    qa: QType,
    qb: QType,
    qo: QType,
    c: usize,
    per_channel: bool,
    a: &[u8],
    b: &[u8],
    y: &mut [u8],
) {
    let ta: Vec<f32> = (0..=255u8).map(|v| qa.dequantize(v)).collect();
    let tb: Vec<f32> = (0..=255u8).map(|v| qb.dequantize(v)).collect();
    let f = |x: f32, z: f32| match kind {
        QBinaryKind::Add => x + z,
        QBinaryKind::Mul => x * z,
    };
    if per_channel {
        // a is NHWC with c channels per pixel; b holds one value per (image, channel).
        let c = c.max(1);
        let per_image = a.len() / (b.len() / c).max(1);
        for (img, (ya, aa)) in y.chunks_mut(per_image).zip(a.chunks(per_image)).enumerate() {
            let bt: Vec<f32> = b[img * c..(img + 1) * c]
                .iter()
                .map(|&v| tb[v as usize])
                .collect();
            for (yp, ap) in ya.chunks_mut(c).zip(aa.chunks(c)) {
                for ((o, &va), &vb) in yp.iter_mut().zip(ap).zip(&bt) {
                    *o = qo.quantize(f(ta[va as usize], vb));
                }
            }
        }
    } else {
        for ((o, &va), &vb) in y.iter_mut().zip(a).zip(b) {
            *o = qo.quantize(f(ta[va as usize], tb[vb as usize]));
        }
    }
}

/// Where ONNX axis `axis` of a tensor lands in speck's storage order (NHWC for rank 4).
pub fn stored_axis(rank: usize, axis: usize) -> usize {
    if rank == 4 {
        [0, 3, 1, 2][axis]
    } else {
        axis
    }
}

/// Stored shape (NHWC for rank 4).
pub fn stored_shape(shape: &[usize]) -> Vec<usize> {
    if shape.len() == 4 {
        vec![shape[0], shape[2], shape[3], shape[1]]
    } else {
        shape.to_vec()
    }
}

/// Concatenate stored tensors along ONNX `axis`, requantizing each input to `qo`.
pub fn concat(
    axis: usize,
    shapes: &[Vec<usize>],
    qs: &[QType],
    qo: QType,
    xs: &[&[u8]],
    y: &mut [u8],
) {
    let rank = shapes[0].len();
    let ax = stored_axis(rank, axis);
    let st: Vec<Vec<usize>> = shapes.iter().map(|s| stored_shape(s)).collect();
    let outer: usize = st[0][..ax].iter().product();
    let chunks: Vec<usize> = st.iter().map(|s| s[ax..].iter().product()).collect();
    let total: usize = chunks.iter().sum();
    for (i, (x, q)) in xs.iter().zip(qs).enumerate() {
        let off: usize = chunks[..i].iter().sum();
        let table = (*q != qo).then(|| lut_table(*q, qo, |v| v));
        for o in 0..outer {
            let src = &x[o * chunks[i]..(o + 1) * chunks[i]];
            let dst = &mut y[o * total + off..o * total + off + chunks[i]];
            match &table {
                None => dst.copy_from_slice(src),
                Some(t) => lut(t, src, dst),
            }
        }
    }
}

/// Global average pool of an NHWC tensor: the f32 mean of the dequantized values, quantized.
pub fn global_average_pool(
    qi: QType,
    qo: QType,
    n: usize,
    hw: usize,
    c: usize,
    x: &[u8],
    y: &mut [u8],
) {
    let mut sum = vec![0i64; c];
    for b in 0..n {
        sum.iter_mut().for_each(|s| *s = 0);
        for p in 0..hw {
            let px = &x[(b * hw + p) * c..(b * hw + p + 1) * c];
            for (s, &v) in sum.iter_mut().zip(px) {
                *s += v as i64;
            }
        }
        for ch in 0..c {
            let mean =
                (sum[ch] - qi.zero_point as i64 * hw as i64) as f64 * qi.scale as f64 / hw as f64;
            y[b * c + ch] = qo.quantize(mean as f32);
        }
    }
}
