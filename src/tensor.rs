//! Tensors: an n-dimensional array of one element type, backed by ndarray.
//!
//! Runtime activations are f32 (int8 arrives with the quantized engine); the other element
//! types exist for constants (shape arithmetic during import) and for reading model files.

use ndarray::{ArrayD, IxDyn};

/// Element type of a [`Tensor`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 64-bit signed integer (shapes, indices).
    I64,
    /// 32-bit signed integer.
    I32,
    /// 8-bit signed integer.
    I8,
    /// 8-bit unsigned integer.
    U8,
    /// Boolean.
    Bool,
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            DType::F32 => "f32",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        };
        f.write_str(s)
    }
}

/// A tensor that owns its data.
#[derive(Clone, Debug, PartialEq)]
pub enum Tensor {
    /// f32 data.
    F32(ArrayD<f32>),
    /// i64 data.
    I64(ArrayD<i64>),
    /// i32 data.
    I32(ArrayD<i32>),
    /// i8 data.
    I8(ArrayD<i8>),
    /// u8 data.
    U8(ArrayD<u8>),
    /// bool data.
    Bool(ArrayD<bool>),
}

macro_rules! each {
    ($t:expr, $a:ident => $e:expr) => {
        match $t {
            Tensor::F32($a) => $e,
            Tensor::I64($a) => $e,
            Tensor::I32($a) => $e,
            Tensor::I8($a) => $e,
            Tensor::U8($a) => $e,
            Tensor::Bool($a) => $e,
        }
    };
}

impl Tensor {
    /// Shape of the tensor.
    pub fn shape(&self) -> &[usize] {
        each!(self, a => a.shape())
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        each!(self, a => a.len())
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::I64(_) => DType::I64,
            Tensor::I32(_) => DType::I32,
            Tensor::I8(_) => DType::I8,
            Tensor::U8(_) => DType::U8,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    /// A zero-filled f32 tensor.
    pub fn zeros_f32(shape: &[usize]) -> Tensor {
        Tensor::F32(ArrayD::zeros(IxDyn(shape)))
    }

    /// An f32 tensor from a shape and a flat row-major vector.
    pub fn from_f32(shape: &[usize], data: Vec<f32>) -> Result<Tensor, ndarray::ShapeError> {
        Ok(Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data)?))
    }

    /// The f32 array, if this tensor is f32.
    pub fn as_f32(&self) -> Option<&ArrayD<f32>> {
        match self {
            Tensor::F32(a) => Some(a),
            _ => None,
        }
    }

    /// The values as f32, converting integer types (for constants used as attributes).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            Tensor::F32(a) => a.iter().copied().collect(),
            Tensor::I64(a) => a.iter().map(|&v| v as f32).collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as f32).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as f32).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as f32).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8 as f32).collect(),
        }
    }

    /// The values as i64, converting other types (for shape and index constants).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self {
            Tensor::F32(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::I32(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::I8(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::U8(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as i64).collect(),
        }
    }

    /// Size in bytes of the data.
    pub fn byte_len(&self) -> usize {
        let elem = match self.dtype() {
            DType::F32 | DType::I32 => 4,
            DType::I64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
        };
        self.len() * elem
    }
}
