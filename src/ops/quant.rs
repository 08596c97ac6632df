//! ONNX QuantizeLinear / DequantizeLinear as float ops (fake quantization).
//!
//! speck's float engine keeps every tensor in f32: QuantizeLinear writes the integers
//! (`saturate(round_half_to_even(x / scale) + zero_point)`) as f32 values, DequantizeLinear
//! reads them back (`(q - zero_point) * scale`). The results are exactly what ONNX specifies,
//! since the integers involved (int8, uint8, and int32 up to 2^24) are exact in f32.

use super::{OpError, OpResult};
use ndarray::{ArrayViewD, ArrayViewMutD, Axis, Zip};

/// Scales and zero points of a QuantizeLinear or DequantizeLinear, one per slice along `axis`
/// (per-axis) or one for the tensor.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QuantParams {
    /// scale per slice (or one)
    pub scale: Vec<f32>,
    /// zero point per slice (or one)
    pub zero_point: Vec<f32>,
    /// the axis the parameters run along (ignored with one parameter)
    pub axis: usize,
    /// smallest integer of the quantized type
    pub qmin: f32,
    /// largest integer of the quantized type
    pub qmax: f32,
}

impl QuantParams {
    fn check(&self, shape: &[usize]) -> OpResult<()> {
        if self.scale.len() != self.zero_point.len() {
            return Err(OpError::Shape(format!(
                "{} scales but {} zero points",
                self.scale.len(),
                self.zero_point.len()
            )));
        }
        if self.scale.len() > 1 && shape.get(self.axis) != Some(&self.scale.len()) {
            return Err(OpError::Shape(format!(
                "{} per-axis scales along axis {} of shape {shape:?}",
                self.scale.len(),
                self.axis
            )));
        }
        Ok(())
    }

    fn per_slice(
        &self,
        x: &ArrayViewD<f32>,
        y: &mut ArrayViewMutD<f32>,
        f: impl Fn(f32, f32, f32) -> f32,
    ) -> OpResult<()> {
        if x.shape() != y.shape() {
            return Err(OpError::Shape(format!(
                "input {:?} vs output {:?}",
                x.shape(),
                y.shape()
            )));
        }
        self.check(x.shape())?;
        if self.scale.len() == 1 {
            let (s, z) = (self.scale[0], self.zero_point[0]);
            Zip::from(y).and(x).for_each(|o, &v| *o = f(v, s, z));
        } else {
            for (i, (mut ys, xs)) in y
                .axis_iter_mut(Axis(self.axis))
                .zip(x.axis_iter(Axis(self.axis)))
                .enumerate()
            {
                let (s, z) = (self.scale[i], self.zero_point[i]);
                Zip::from(&mut ys)
                    .and(&xs)
                    .for_each(|o, &v| *o = f(v, s, z));
            }
        }
        Ok(())
    }
}

/// Reference QuantizeLinear: integers as f32.
pub fn run_quantize(
    p: &QuantParams,
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    let (lo, hi) = (p.qmin, p.qmax);
    p.per_slice(x, y, |v, s, z| {
        let q = (v / s).round_ties_even() + z;
        // NaN saturates to the zero point's neighbourhood is unspecified by ONNX; keep NaN.
        if q < lo {
            lo
        } else if q > hi {
            hi
        } else {
            q
        }
    })
}

/// Reference DequantizeLinear.
pub fn run_dequantize(
    p: &QuantParams,
    x: &ArrayViewD<f32>,
    y: &mut ArrayViewMutD<f32>,
) -> OpResult<()> {
    p.per_slice(x, y, |v, s, z| (v - z) * s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{ArrayD, IxDyn};

    #[test]
    fn quantize_rounds_half_to_even_and_saturates() {
        let p = QuantParams {
            scale: vec![0.5],
            zero_point: vec![10.0],
            axis: 0,
            qmin: 0.0,
            qmax: 255.0,
        };
        let x = ArrayD::from_shape_vec(IxDyn(&[6]), vec![0.25, 0.75, -0.25, 1000.0, -1000.0, 1.25])
            .unwrap();
        let mut y = ArrayD::zeros(IxDyn(&[6]));
        run_quantize(&p, &x.view(), &mut y.view_mut()).unwrap();
        // 0.5 -> 0, 1.5 -> 2, -0.5 -> -0, 2.5 -> 2 (ties to even), then + 10, saturated.
        assert_eq!(y.as_slice().unwrap(), &[10.0, 12.0, 10.0, 255.0, 0.0, 12.0]);
        let mut z = ArrayD::zeros(IxDyn(&[6]));
        run_dequantize(&p, &y.view(), &mut z.view_mut()).unwrap();
        assert_eq!(z.as_slice().unwrap(), &[0.0, 1.0, 0.0, 122.5, -5.0, 1.0]);
    }

    #[test]
    fn per_axis() {
        let p = QuantParams {
            scale: vec![1.0, 0.1],
            zero_point: vec![0.0, 0.0],
            axis: 1,
            qmin: -128.0,
            qmax: 127.0,
        };
        let x = ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![3.2, 3.2, -200.0, -0.26]).unwrap();
        let mut y = ArrayD::zeros(IxDyn(&[2, 2]));
        run_quantize(&p, &x.view(), &mut y.view_mut()).unwrap();
        assert_eq!(y.as_slice().unwrap(), &[3.0, 32.0, -128.0, -3.0]);
        let bad = QuantParams {
            scale: vec![1.0; 3],
            zero_point: vec![0.0; 3],
            ..p
        };
        assert!(run_quantize(&bad, &x.view(), &mut y.view_mut()).is_err());
    }
}
