//! Graph rewrites run after import and before planning. Each pass keeps the graph's
//! results identical up to float rounding.

mod fold_batchnorm;
mod fuse_activation;
mod fuse_channel_layer_norm;
mod fuse_conv_add;
mod fuse_exported_activations;
mod fuse_lda_aqu;
mod lga_einsum;
mod merge_sibling_convs;
mod quantize_lower;

pub use fold_batchnorm::fold_batchnorm;
pub use fuse_activation::fuse_conv_activation;
pub use fuse_channel_layer_norm::fuse_channel_layer_norm;
pub use fuse_conv_add::fuse_conv_add;
pub use fuse_exported_activations::{fuse_gelu, fuse_silu};
pub use fuse_lda_aqu::fuse_lda_aqu;
pub use lga_einsum::rewrite_lga_einsum;
pub use merge_sibling_convs::merge_sibling_convs;
pub use quantize_lower::{fuse_conv_residual, int8_enabled_by_env, is_int8_value, lower_int8};

use crate::model::Graph;

/// What the engine and `speck compile` run on an imported graph: QDQ patterns lowered to
/// int8 ops first when `int8` (they need the integer form of the constants the float passes
/// fold away), unless `SPECK_INT8` turns that off, then [`optimize`]. Returns the pass log.
///
/// QDQ graphs come from the ONNX importer, so a build without it (the device build, which
/// loads compiled models, lowered when they were compiled) leaves the lowering out: it is
/// 10-15 KB of the board binary's 4 MB budget.
pub fn prepare(g: &mut Graph, int8: bool) -> Vec<String> {
    let mut log = vec![];
    #[cfg(feature = "onnx")]
    if int8 && int8_enabled_by_env() {
        let n = lower_int8(g);
        if n > 0 {
            log.push(format!("QDQ lowered to int8 ops: {n}"));
        }
    }
    #[cfg(not(feature = "onnx"))]
    let _ = int8;
    log.extend(optimize(g));
    log
}

/// Run every pass in order; returns a line per pass that changed something.
pub fn optimize(g: &mut Graph) -> Vec<String> {
    let mut log = vec![];
    let mut run = |name: &str, n: usize| {
        if n > 0 {
            log.push(format!("{name}: {n}"));
        }
    };
    run("batchnorm folded into conv", fold_batchnorm(g));
    run(
        "exported GELU (Div, Erf, Add, Mul, Mul) fused",
        fuse_gelu(g),
    );
    run("exported SiLU (x * Sigmoid(x)) fused", fuse_silu(g));
    run("activation fused into conv", fuse_conv_activation(g));
    run("residual Add fused into int8 conv", fuse_conv_residual(g));
    run(
        "LGA einsum pair rewritten to head channel sum",
        rewrite_lga_einsum(g),
    );
    run("LDA-AQU sampling and attention fused", fuse_lda_aqu(g));
    run(
        "convs stacked onto a sibling on the same input (one im2col)",
        merge_sibling_convs(g),
    );
    run(
        "transposed LayerNorms normalise channels in place",
        fuse_channel_layer_norm(g),
    );
    // last: the patterns above match plain convs
    run("residual Add fused into float conv", fuse_conv_add(g));
    g.remove_dead();
    log
}

/// The only node reading `v`, when exactly one does and `v` is not a graph output.
pub(crate) fn sole_consumer(g: &Graph, consumers: &[Vec<usize>], v: usize) -> Option<usize> {
    match consumers[v].as_slice() {
        [one] if !g.outputs.contains(&v) => Some(*one),
        _ => None,
    }
}

/// Test helper: every output of `g` run as it is (no passes), one thread, on `input`.
#[cfg(test)]
pub(crate) fn run_as_is(g: &Graph, input: &ndarray::ArrayD<f32>) -> Vec<ndarray::ArrayD<f32>> {
    let opts = crate::exec::EngineOptions {
        optimize: false,
        threads: 1,
        ..Default::default()
    };
    let mut e = crate::exec::Engine::new(g.clone(), &opts).unwrap();
    let out = e.run(&[crate::tensor::Tensor::F32(input.clone())]).unwrap();
    out.iter().map(|t| t.as_f32().unwrap().clone()).collect()
}

/// Test helper: two runs' outputs alike in shape and within float rounding.
#[cfg(test)]
pub(crate) fn assert_outputs_close(
    before: &[ndarray::ArrayD<f32>],
    after: &[ndarray::ArrayD<f32>],
) {
    assert_eq!(before.len(), after.len());
    for (o, (a, b)) in before.iter().zip(after).enumerate() {
        assert_eq!(a.shape(), b.shape(), "output {o}");
        for (x, y) in a.iter().zip(b.iter()) {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + x.abs()),
                "output {o}: {x} vs {y}"
            );
        }
    }
}
