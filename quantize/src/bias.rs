//! Bias correction (Nagel et al. 2019): the weight quantization error `dW = Wq - W` shifts the
//! mean of each output channel by `sum dW * E[x]`; subtracting that from the bias removes the
//! shift. `E[x]` per input channel comes from the calibration set.

use crate::error::QuantizeError;
use crate::pb;
use crate::proto::{attr_i, initializer_index, set_f32, to_f32};
use crate::weights::quantize_weight;
use ndarray::{ArrayD, Axis, IxDyn};
use std::collections::HashMap;

/// Correct the bias of every Conv whose weights are an initializer and whose input has
/// per-channel means in `input_means` (keyed by tensor name). `per_channel` must match the
/// weight quantization that will be used. Returns the corrected nodes and the largest
/// correction applied to each.
pub fn correct_biases(
    model: &mut pb::ModelProto,
    input_means: &HashMap<String, Vec<f32>>,
    per_channel: bool,
    skip: &dyn Fn(&pb::NodeProto) -> bool,
) -> Result<Vec<(String, f32)>, QuantizeError> {
    let g = model.graph.as_mut().ok_or(QuantizeError::NoGraph)?;
    let mut done = vec![];
    for ni in 0..g.node.len() {
        let n = g.node[ni].clone();
        if n.op_type != "Conv" || skip(&n) {
            continue;
        }
        let inits = initializer_index(g);
        let (Some(wname), Some(mean)) = (n.input.get(1), input_means.get(&n.input[0])) else {
            continue;
        };
        let Some(&wi) = inits.get(wname) else {
            continue;
        };
        let w = to_f32(&g.initializer[wi])?;
        if w.ndim() < 2 {
            continue;
        }
        let (m, cpg) = (w.shape()[0], w.shape()[1]);
        let groups = attr_i(&n, "group").unwrap_or(1).max(1) as usize;
        if cpg * groups != mean.len() || m % groups != 0 {
            continue;
        }
        let mpg = m / groups;
        let dq = quantize_weight(w.view(), per_channel.then_some(0)).dequantize();
        let mut shift = vec![0.0f32; m];
        for (mo, (wm, dm)) in w.axis_iter(Axis(0)).zip(dq.axis_iter(Axis(0))).enumerate() {
            let g0 = mo / mpg;
            for (j, (wj, dj)) in wm.axis_iter(Axis(0)).zip(dm.axis_iter(Axis(0))).enumerate() {
                let dsum: f32 = dj.iter().zip(wj.iter()).map(|(a, b)| a - b).sum();
                shift[mo] += dsum * mean[g0 * cpg + j];
            }
        }
        let bname = match n.input.get(2).filter(|s| !s.is_empty()) {
            Some(b) if inits.contains_key(b) => b.clone(),
            Some(_) => continue,
            None => {
                let name = format!(
                    "{}_bias_corrected",
                    if n.name.is_empty() { wname } else { &n.name }
                );
                set_f32(g, &name, &ArrayD::zeros(IxDyn(&[m])));
                let node = &mut g.node[ni];
                while node.input.len() < 3 {
                    node.input.push(String::new());
                }
                node.input[2] = name.clone();
                name
            }
        };
        let inits = initializer_index(g);
        let mut b = to_f32(&g.initializer[inits[&bname]])?;
        if b.len() != m {
            continue;
        }
        for (v, s) in b.iter_mut().zip(&shift) {
            *v -= s;
        }
        set_f32(g, &bname, &b);
        done.push((
            n.name.clone(),
            shift.iter().fold(0.0f32, |a, v| a.max(v.abs())),
        ));
    }
    Ok(done)
}
