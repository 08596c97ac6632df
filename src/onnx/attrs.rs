//! Typed access to ONNX node attributes.

use tract_onnx::pb::{AttributeProto, NodeProto};

/// Attributes of one node.
pub struct Attrs<'a>(&'a [AttributeProto]);

impl<'a> Attrs<'a> {
    /// Wrap a node's attributes.
    pub fn of(node: &'a NodeProto) -> Self {
        Attrs(&node.attribute)
    }

    fn get(&self, name: &str) -> Option<&'a AttributeProto> {
        self.0.iter().find(|a| a.name == name)
    }

    /// True when the attribute is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Integer attribute with a default.
    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).map(|a| a.i).unwrap_or(default)
    }

    /// Float attribute with a default.
    pub fn float(&self, name: &str, default: f32) -> f32 {
        self.get(name).map(|a| a.f).unwrap_or(default)
    }

    /// String attribute with a default.
    pub fn string(&self, name: &str, default: &str) -> String {
        self.get(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
            .unwrap_or_else(|| default.to_string())
    }

    /// Float list attribute (empty when absent).
    pub fn floats(&self, name: &str) -> Vec<f32> {
        self.get(name).map(|a| a.floats.clone()).unwrap_or_default()
    }

    /// Integer list attribute, if present.
    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.get(name).map(|a| a.ints.clone())
    }
}
