//! Checks a decoded plan before the engine sees it: the engine indexes values by id and trusts
//! shapes, so a file that passed its checksum but was written wrong (or crafted) must fail
//! here with an error rather than panic later.

use super::CompiledError;
use crate::model::Graph;
use crate::ops::Op;

fn kind(int8: bool) -> &'static str {
    if int8 {
        "int8 bytes"
    } else {
        "f32"
    }
}

fn bad(msg: String) -> CompiledError {
    CompiledError::CorruptPlan(msg)
}

/// Every id in range, nodes in topological order, each value written once, stored shapes
/// equal to what each op's shape inference gives, int8 and f32 tensors read as what they
/// are, graph outputs f32.
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
    // int8[v]: the value is a byte tensor (an int8 op's stored output); every other value is
    // f32, and each op reads only the kind it was built for (the arena sizes them apart)
    let mut int8 = vec![false; n];
    for node in &g.nodes {
        let what = format!("node '{}'", node.name);
        for (i, &v) in node.inputs.iter().enumerate() {
            in_range(v, &what)?;
            if !written[v] {
                return Err(bad(format!("{what} reads value {v} before it is written")));
            }
            let wants_int8 = match &node.op {
                Op::Int8(q) => q.input_is_int8(i),
                _ => false,
            };
            if int8[v] != wants_int8 {
                return Err(bad(format!(
                    "{what} reads value {v} as {}, it is {}",
                    kind(wants_int8),
                    kind(int8[v])
                )));
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
            int8[v] = matches!(&node.op, Op::Int8(q) if q.output_is_int8());
        }
    }
    for &v in &g.outputs {
        in_range(v, "a graph output")?;
        if !written[v] {
            return Err(bad(format!("graph output {v} is never written")));
        }
        if int8[v] {
            return Err(bad(format!("graph output {v} is an int8 byte tensor")));
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
