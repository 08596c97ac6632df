//! Convolution (2-D, NCHW): general, grouped, depthwise, 1x1, any stride/pad/dilation.

use super::{Activation, OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Ix4};

/// Attributes of a 2-D convolution. Kernel size comes from the weight tensor.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conv {
    /// number of groups (C for depthwise)
    pub group: usize,
    /// (stride_h, stride_w)
    pub strides: [usize; 2],
    /// (top, left, bottom, right), explicit (auto_pad resolved at import)
    pub pads: [usize; 4],
    /// (dilation_h, dilation_w)
    pub dilations: [usize; 2],
    /// activation fused after bias (set by the fusion pass)
    pub activation: Option<Activation>,
    /// a residual Add fused after the activation (set by `passes::fuse_conv_add`): the node's
    /// last input, shaped as the output, is added to it
    pub residual: bool,
}

impl Conv {
    /// Index of the bias among a node's `n` inputs (`x, w[, b][, skip]`), if it has one.
    pub fn bias_input(&self, n: usize) -> Option<usize> {
        (n >= 3 + usize::from(self.residual)).then_some(2)
    }

    /// Index of the residual input among a node's `n` inputs, if the conv has one.
    pub fn skip_input(&self, n: usize) -> Option<usize> {
        (self.residual && n >= 3).then(|| n - 1)
    }
}

/// Output shape: inputs are x `[N,C,H,W]`, w `[M,C/group,kh,kw]`, optional b `[M]`.
pub fn conv_shape(c: &Conv, inputs: &[&[usize]]) -> OpResult<Vec<usize>> {
    if inputs.len() < 2 {
        return Err(OpError::Arity {
            expected: 2,
            got: inputs.len(),
        });
    }
    let (x, w) = (inputs[0], inputs[1]);
    if x.len() != 4 || w.len() != 4 {
        return Err(OpError::Shape(format!(
            "Conv expects x [N,C,H,W] and w [M,C/group,kh,kw], got x {x:?}, w {w:?}"
        )));
    }
    let g = c.group;
    if g == 0 || x[1] % g != 0 || w[0] % g != 0 || w[1] * g != x[1] {
        return Err(OpError::Shape(format!(
            "Conv group {g} does not fit x {x:?} and w {w:?} (need C % group == 0, M % group == 0, w[1] * group == C)"
        )));
    }
    if c.residual && inputs.len() < 3 {
        return Err(OpError::Arity {
            expected: 3,
            got: inputs.len(),
        });
    }
    if let Some(b) = c.bias_input(inputs.len()).map(|i| inputs[i]) {
        if b.len() != 1 || b[0] != w[0] {
            return Err(OpError::Shape(format!(
                "Conv bias {b:?} does not match w {w:?}"
            )));
        }
    }
    if c.strides.contains(&0) || c.dilations.contains(&0) {
        return Err(OpError::Shape(format!(
            "Conv strides {:?} and dilations {:?} must be positive (x {x:?}, w {w:?})",
            c.strides, c.dilations
        )));
    }
    let mut out = vec![x[0], w[0], 0, 0];
    for i in 0..2 {
        let padded = x[2 + i] + c.pads[i] + c.pads[i + 2];
        let k = w[2 + i];
        if k == 0 {
            return Err(OpError::Shape(format!("Conv kernel is empty: w {w:?}")));
        }
        let dk = (k - 1) * c.dilations[i] + 1;
        if dk > padded {
            return Err(OpError::Shape(format!(
                "Conv dilated kernel {dk} exceeds padded input {padded} (x {x:?}, w {w:?}, pads {:?})",
                c.pads
            )));
        }
        out[2 + i] = (padded - dk) / c.strides[i] + 1;
    }
    if let Some(skip) = c.skip_input(inputs.len()).map(|i| inputs[i]) {
        if skip != out.as_slice() {
            return Err(OpError::Shape(format!(
                "Conv residual input {skip:?} does not match its output {out:?}"
            )));
        }
    }
    Ok(out)
}

/// Reference convolution: direct loops, bias, then the fused activation.
pub fn run_conv(c: &Conv, inputs: &[ArrayViewD<f32>], y: &mut ArrayViewMutD<f32>) -> OpResult<()> {
    match c.activation {
        Some(a) => run_conv_with(c, inputs, y, |v| super::apply_activation(a, v)),
        None => run_conv_with(c, inputs, y, |v| v),
    }
}

/// [`run_conv`] with the activation given as a function (ignores `c.activation`); a fused
/// residual input is added after it.
pub(crate) fn run_conv_with(
    c: &Conv,
    inputs: &[ArrayViewD<f32>],
    y: &mut ArrayViewMutD<f32>,
    act: impl Fn(f32) -> f32,
) -> OpResult<()> {
    let shapes: Vec<&[usize]> = inputs.iter().map(|a| a.shape()).collect();
    let out = conv_shape(c, &shapes)?;
    if y.shape() != out.as_slice() {
        return Err(OpError::Shape(format!(
            "Conv output is {:?}, expected {out:?} (x {:?}, w {:?})",
            y.shape(),
            shapes[0],
            shapes[1]
        )));
    }
    let x = inputs[0]
        .view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let w = inputs[1]
        .view()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let b = c.bias_input(inputs.len()).map(|i| inputs[i].view());
    let skip = c.skip_input(inputs.len()).map(|i| inputs[i].view());
    let mut y = y
        .view_mut()
        .into_dimensionality::<Ix4>()
        .map_err(|e| OpError::Shape(e.to_string()))?;
    let (n, m, oh, ow) = y.dim();
    let (_, cg, kh, kw) = w.dim();
    let (h, wd) = (x.dim().2 as isize, x.dim().3 as isize);
    let mg = m / c.group;
    let [sh, sw] = c.strides;
    let [dh, dw] = c.dilations;
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    for ni in 0..n {
        for mi in 0..m {
            let g = mi / mg;
            let bias = b.as_ref().map_or(0.0, |b| b[mi]);
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bias;
                    for ci in 0..cg {
                        let cx = g * cg + ci;
                        for ky in 0..kh {
                            let iy = (oy * sh + ky * dh) as isize - pt;
                            if iy < 0 || iy >= h {
                                continue;
                            }
                            for kx in 0..kw {
                                let ix = (ox * sw + kx * dw) as isize - pl;
                                if ix < 0 || ix >= wd {
                                    continue;
                                }
                                acc += x[[ni, cx, iy as usize, ix as usize]] * w[[mi, ci, ky, kx]];
                            }
                        }
                    }
                    let add = skip.as_ref().map_or(0.0, |s| s[[ni, mi, oy, ox]]);
                    y[[ni, mi, oy, ox]] = act(acc) + add;
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

    fn conv(group: usize, strides: [usize; 2], pads: [usize; 4], dil: [usize; 2]) -> Conv {
        Conv {
            group,
            strides,
            pads,
            dilations: dil,
            activation: None,
            residual: false,
        }
    }

    fn arr(shape: &[usize], f: impl Fn(usize) -> f32) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(IxDyn(shape), (0..n).map(f).collect()).unwrap()
    }

    #[test]
    fn shape_rules() {
        let c = conv(1, [2, 2], [1, 1, 1, 1], [1, 1]);
        assert_eq!(
            conv_shape(&c, &[&[1, 3, 224, 224], &[16, 3, 3, 3]]).unwrap(),
            vec![1, 16, 112, 112]
        );
        let c = conv(1, [1, 1], [0, 0, 0, 0], [2, 2]);
        assert_eq!(
            conv_shape(&c, &[&[1, 3, 9, 9], &[4, 3, 3, 3]]).unwrap(),
            vec![1, 4, 5, 5]
        );
        let c = conv(2, [1, 1], [0, 0, 0, 0], [1, 1]);
        assert!(conv_shape(&c, &[&[1, 3, 9, 9], &[4, 1, 3, 3]]).is_err());
        assert!(conv_shape(
            &conv(1, [1, 1], [0; 4], [1, 1]),
            &[&[1, 3, 2, 2], &[4, 3, 3, 3]]
        )
        .is_err());
        assert!(conv_shape(
            &conv(1, [1, 1], [0; 4], [1, 1]),
            &[&[1, 3, 5, 5], &[4, 3, 3, 3], &[5]]
        )
        .is_err());
        assert!(conv_shape(
            &conv(1, [0, 1], [0; 4], [1, 1]),
            &[&[1, 3, 5, 5], &[4, 3, 3, 3]]
        )
        .is_err());
        assert!(conv_shape(
            &conv(0, [1, 1], [0; 4], [1, 1]),
            &[&[1, 3, 5, 5], &[4, 3, 3, 3]]
        )
        .is_err());
        assert!(conv_shape(
            &conv(1, [1, 1], [0; 4], [1, 1]),
            &[&[1, 3, 5], &[4, 3, 3, 3]]
        )
        .is_err());
    }

    #[test]
    fn known_values() {
        // 1 channel 3x3 input of ones, 3x3 kernel of ones, pad 1: counts of in-image neighbours.
        let x = arr(&[1, 1, 3, 3], |_| 1.0);
        let w = arr(&[1, 1, 3, 3], |_| 1.0);
        let b = arr(&[1], |_| 0.5);
        let c = conv(1, [1, 1], [1, 1, 1, 1], [1, 1]);
        let mut y = ArrayD::zeros(IxDyn(&[1, 1, 3, 3]));
        run_conv(&c, &[x.view(), w.view(), b.view()], &mut y.view_mut()).unwrap();
        let expect = [4.0, 6.0, 4.0, 6.0, 9.0, 6.0, 4.0, 6.0, 4.0];
        for (a, e) in y.iter().zip(expect) {
            assert_eq!(*a, e + 0.5);
        }
        // depthwise with per-channel weights, stride 2, asymmetric pads
        let x = arr(&[1, 2, 4, 4], |i| i as f32);
        let w = arr(&[2, 1, 1, 1], |i| (i + 1) as f32);
        let c = conv(2, [2, 2], [0, 0, 1, 1], [1, 1]);
        let mut y = ArrayD::zeros(IxDyn(&[1, 2, 3, 3]));
        run_conv(&c, &[x.view(), w.view()], &mut y.view_mut()).unwrap();
        assert_eq!(y[[0, 0, 0, 1]], 2.0);
        assert_eq!(y[[0, 0, 1, 1]], 10.0);
        assert_eq!(y[[0, 0, 2, 2]], 0.0);
        assert_eq!(y[[0, 1, 1, 0]], 2.0 * 24.0);
    }

    #[test]
    fn activation_epilogue_and_errors() {
        let x = arr(&[1, 1, 2, 2], |i| i as f32 - 2.0);
        let w = arr(&[1, 1, 1, 1], |_| 1.0);
        let c = conv(1, [1, 1], [0; 4], [1, 1]);
        let mut y = ArrayD::zeros(IxDyn(&[1, 1, 2, 2]));
        run_conv_with(&c, &[x.view(), w.view()], &mut y.view_mut(), |v| v.max(0.0)).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 0.0, 0.0, 1.0]
        );
        let mut bad = ArrayD::zeros(IxDyn(&[1, 1, 3, 2]));
        assert!(run_conv(&c, &[x.view(), w.view()], &mut bad.view_mut()).is_err());
        assert!(run_conv(&c, &[x.view()], &mut y.view_mut()).is_err());
    }

    /// A fused residual input is added after the activation, with or without a bias; it
    /// must be shaped as the output.
    #[test]
    fn residual_input() {
        let x = arr(&[1, 1, 2, 2], |i| i as f32 - 2.0);
        let w = arr(&[1, 1, 1, 1], |_| 1.0);
        let b = arr(&[1], |_| 0.5);
        let skip = arr(&[1, 1, 2, 2], |i| 10.0 * i as f32);
        let mut c = conv(1, [1, 1], [0; 4], [1, 1]);
        c.activation = Some(Activation::Relu);
        c.residual = true;
        let mut y = ArrayD::zeros(IxDyn(&[1, 1, 2, 2]));
        run_conv(&c, &[x.view(), w.view(), skip.view()], &mut y.view_mut()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 10.0, 20.0, 31.0]
        );
        let ins = [x.view(), w.view(), b.view(), skip.view()];
        run_conv(&c, &ins, &mut y.view_mut()).unwrap();
        assert_eq!(
            y.iter().copied().collect::<Vec<_>>(),
            vec![0.0, 10.0, 20.5, 31.5]
        );
        assert_eq!((c.bias_input(4), c.skip_input(4)), (Some(2), Some(3)));
        assert_eq!((c.bias_input(3), c.skip_input(3)), (None, Some(2)));
        let small = arr(&[1, 1, 1, 2], |_| 0.0);
        let e = run_conv(&c, &[x.view(), w.view(), small.view()], &mut y.view_mut());
        assert!(e.unwrap_err().to_string().contains("residual"));
        assert!(run_conv(&c, &[x.view(), w.view()], &mut y.view_mut()).is_err());
    }
}
