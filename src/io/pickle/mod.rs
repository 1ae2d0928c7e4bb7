//! Restricted unpickler for the subset of pickle that `torch.save` emits.
//!
//! Nothing is imported or called: GLOBAL only resolves a fixed whitelist to
//! markers, and REDUCE on those markers builds plain Rust values. Lengths are
//! checked before allocating, and total work (including memo copies) and
//! nesting depth are bounded, so hostile input fails with an error.
//!
//! Values are owned, so the memo holds snapshots taken at PUT time rather
//! than shared references. torch never re-reads a container after filling
//! it, so this only matters for pickles that torch does not write.

mod machine;
#[cfg(test)]
pub(crate) mod tests;

pub use machine::unpickle;

use super::tensor::DType;

/// Deepest container nesting accepted (state dicts need about 4).
const MAX_DEPTH: usize = 64;
/// Longest GLOBAL module/name line.
const MAX_LINE: usize = 256;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer wider than 64 bits, as little-endian two's complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered; duplicate keys are kept, lookups take the last.
    Dict(Vec<(Value, Value)>),
    Global(Global),
    Storage(StorageRef),
    Tensor(TensorRef),
}

/// The only globals a pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Global {
    OrderedDict,
    RebuildTensor,
    RebuildTensorV2,
    RebuildParameter,
    RebuildParameterWithState,
    /// `torch.FloatStorage` and friends; only meaningful in persistent ids.
    Storage(DType),
}

/// A storage named by a persistent id; its bytes live outside the pickle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageRef {
    pub dtype: DType,
    pub key: String,
    pub location: String,
    pub numel: u64,
    /// Legacy format only: the tensor's storage is a slice of the root one.
    pub view: Option<StorageView>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageView {
    pub key: String,
    /// In elements of the root storage.
    pub offset: u64,
    pub numel: u64,
}

/// A tensor as `_rebuild_tensor[_v2]` describes it; data not yet read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: usize,
    pub shape: Vec<usize>,
    pub stride: Vec<usize>,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PickleError {
    #[error("truncated pickle: opcode at offset {offset} needs {needed} more bytes")]
    Truncated { offset: usize, needed: u64 },
    #[error("unsupported pickle opcode 0x{op:02x} at offset {offset}")]
    UnsupportedOpcode { op: u8, offset: usize },
    #[error("refusing global {module}.{name}: not on the tensor whitelist")]
    UnsafeGlobal { module: String, name: String },
    #[error("unknown storage type {module}.{name}")]
    UnknownStorageType { module: String, name: String },
    #[error("memo index {index} was never stored (opcode at offset {offset})")]
    BadMemo { index: u32, offset: usize },
    #[error("pickle exceeds the {what} limit at offset {offset}")]
    Limit { what: &'static str, offset: usize },
    #[error("invalid pickle at offset {offset}: {msg}")]
    Invalid { offset: usize, msg: String },
}

impl Value {
    /// Dict lookup by string key (last occurrence wins, as in Python).
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .rev()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            // Python 2 pickles store ASCII names as byte strings.
            Value::Bytes(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    pub fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    /// Short description for error messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "bool",
            Value::Int(_) | Value::BigInt(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "str",
            Value::Bytes(_) => "bytes",
            Value::Tuple(_) => "tuple",
            Value::List(_) => "list",
            Value::Dict(_) => "dict",
            Value::Global(_) => "global",
            Value::Storage(_) => "storage",
            Value::Tensor(_) => "tensor",
        }
    }

    fn children(&self) -> Box<dyn Iterator<Item = &Value> + '_> {
        match self {
            Value::Tuple(v) | Value::List(v) => Box::new(v.iter()),
            Value::Dict(kv) => Box::new(kv.iter().flat_map(|(k, v)| [k, v])),
            _ => Box::new(std::iter::empty()),
        }
    }

    /// Calls `f` on every storage referenced (directly or by tensors).
    pub fn for_each_storage(&self, f: &mut dyn FnMut(&StorageRef)) {
        match self {
            Value::Storage(s) => f(s),
            Value::Tensor(t) => f(&t.storage),
            _ => self.children().for_each(|c| c.for_each_storage(f)),
        }
    }
}

/// (work units, nesting depth). Recursion is safe: every value in existence
/// is at most MAX_DEPTH deep, which is checked whenever a container grows.
fn measure(v: &Value) -> (usize, usize) {
    let own = match v {
        Value::Str(s) => 1 + s.len() / 8,
        Value::Bytes(b) | Value::BigInt(b) => 1 + b.len() / 8,
        Value::Tensor(t) => 2 + t.shape.len() + t.storage.key.len() / 8,
        _ => 1,
    };
    v.children().fold((own, 0), |(w, d), c| {
        let (cw, cd) = measure(c);
        (w + cw, d.max(cd + 1))
    })
}

/// Resolves GLOBAL / STACK_GLOBAL; anything off the whitelist is an error.
pub fn resolve_global(module: &str, name: &str) -> Result<Global, PickleError> {
    let g = match (module, name) {
        ("collections", "OrderedDict") => Global::OrderedDict,
        ("torch._utils", "_rebuild_tensor") => Global::RebuildTensor,
        ("torch._utils", "_rebuild_tensor_v2") => Global::RebuildTensorV2,
        ("torch._utils", "_rebuild_parameter") => Global::RebuildParameter,
        ("torch._utils", "_rebuild_parameter_with_state") => Global::RebuildParameterWithState,
        // Very old CUDA checkpoints name torch.cuda.FloatStorage etc.
        ("torch" | "torch.cuda", n) if n.ends_with("Storage") => {
            let dtype = storage_dtype(n).ok_or_else(|| PickleError::UnknownStorageType {
                module: module.to_string(),
                name: name.to_string(),
            })?;
            Global::Storage(dtype)
        }
        _ => {
            return Err(PickleError::UnsafeGlobal {
                module: module.to_string(),
                name: name.to_string(),
            })
        }
    };
    Ok(g)
}

fn storage_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "DoubleStorage" => DType::F64,
        "FloatStorage" => DType::F32,
        "HalfStorage" => DType::F16,
        "BFloat16Storage" => DType::BF16,
        "LongStorage" => DType::I64,
        "IntStorage" => DType::I32,
        "ShortStorage" => DType::I16,
        "CharStorage" => DType::I8,
        "ByteStorage" | "UntypedStorage" => DType::U8,
        "BoolStorage" => DType::Bool,
        _ => return None,
    })
}
