//! Checks a decoded plan before the engine sees it: the engine indexes values by id and trusts
//! shapes, so a file that passed its checksum but was written wrong (or crafted) must fail
//! here with an error rather than panic later.

use super::CompiledError;
use crate::model::Graph;

fn bad(msg: String) -> CompiledError {
    CompiledError::CorruptPlan(msg)
}

/// Every id in range, nodes in topological order, each value written once, stored shapes
/// equal to what each op's shape inference gives.
pub fn check(g: &Graph) -> Result<(), CompiledError> {
    let n = g.values.len();
    let in_range = |v: usize, what: &str| {
        if v < n {
            Ok(())
        } else {
            Err(bad(format!("{what} refers to value {v} of {n}")))
        }
    };
    // written[v]: the value is available (graph input, constant, or an earlier node's output)
    let mut written: Vec<bool> = g.values.iter().map(|v| v.constant.is_some()).collect();
    for &v in &g.inputs {
        in_range(v, "a graph input")?;
        if written[v] {
            return Err(bad(format!("graph input {v} is a constant or repeated")));
        }
        written[v] = true;
    }
    for node in &g.nodes {
        let what = format!("node '{}'", node.name);
        for &v in &node.inputs {
            in_range(v, &what)?;
            if !written[v] {
                return Err(bad(format!("{what} reads value {v} before it is written")));
            }
        }
        if node.inputs.len() < node.op.min_inputs() {
            return Err(bad(format!(
                "{what} ({}) has {} inputs, needs {}",
                node.op.name(),
                node.inputs.len(),
                node.op.min_inputs()
            )));
        }
        let shapes: Vec<&[usize]> = node
            .inputs
            .iter()
            .map(|&v| g.values[v].shape.as_slice())
            .collect();
        let expected = node
            .op
            .output_shapes(&shapes)
            .map_err(|e| bad(format!("{what} ({}): {e}", node.op.name())))?;
        if expected.len() != node.outputs.len() {
            return Err(bad(format!(
                "{what} has {} outputs, its op gives {}",
                node.outputs.len(),
                expected.len()
            )));
        }
        for (&v, shape) in node.outputs.iter().zip(&expected) {
            in_range(v, &what)?;
            if written[v] {
                return Err(bad(format!("{what} overwrites value {v}")));
            }
            if &g.values[v].shape != shape {
                return Err(bad(format!(
                    "{what}: output '{}' stored as {:?}, the op gives {shape:?}",
                    g.values[v].name, g.values[v].shape
                )));
            }
            written[v] = true;
        }
    }
    for &v in &g.outputs {
        in_range(v, "a graph output")?;
        if !written[v] {
            return Err(bad(format!("graph output {v} is never written")));
        }
    }
    if g.output_names.len() != g.outputs.len() {
        return Err(bad(format!(
            "{} output names for {} outputs",
            g.output_names.len(),
            g.outputs.len()
        )));
    }
    Ok(())
}
