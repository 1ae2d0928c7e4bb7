//! Decoding ONNX tensors into host arrays, checking every size claim against the bytes present.

use super::proto::{data_type, TensorProto};

/// A constant: float data as an array, integer data as i64 values (shapes, axes, pads).
#[derive(Clone, Debug)]
pub enum Const {
    /// FLOAT or DOUBLE data.
    F32(crate::array::Array),
    /// INT32 or INT64 data, flattened.
    I64(Vec<i64>),
    /// INT8 or UINT8 data (the quantized tensors of QDQ models), with its shape.
    Int8 {
        /// `data_type::INT8` or `data_type::UINT8`.
        dt: i32,
        shape: Vec<usize>,
        values: Vec<i32>,
    },
}

impl Const {
    /// Its number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Const::F32(a) => a.numel(),
            Const::I64(v) => v.len(),
            Const::Int8 { values, .. } => values.len(),
        }
    }
}

/// The product of `shape`'s dimensions with zeros counted as 1 (`None` on overflow): what its
/// dimensions span, which bounds loops and shape products even where the tensor is empty.
pub(super) fn extent(shape: &[usize]) -> Option<usize> {
    shape
        .iter()
        .try_fold(1usize, |p, &d| p.checked_mul(d.max(1)))
}

/// The most elements one tensor may claim: well above any CNN weight (VGG-19's largest is
/// 2.4M), far below what would exhaust memory.
const MAX_ELEMS: u64 = 1 << 30;

/// Decodes `t` (named `name` in errors). Data in an external file is refused: the reader
/// takes only the .onnx file itself.
pub fn decode(t: &TensorProto, name: &str) -> Result<Const, String> {
    let err = |m: String| format!("tensor `{name}`: {m}");
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        let loc = t
            .external_data
            .iter()
            .find(|e| e.key.as_deref() == Some("location"))
            .and_then(|e| e.value.clone())
            .unwrap_or_default();
        return Err(err(format!(
            "its data is in an external file (`{loc}`), which synthcal does not read; save the model with its weights inside the .onnx file"
        )));
    }
    if t.dims.len() > 64 {
        return Err(err(format!("{} dimensions", t.dims.len())));
    }
    let mut shape = Vec::with_capacity(t.dims.len());
    let mut numel: u64 = 1;
    for &d in &t.dims {
        let d =
            u64::try_from(d).map_err(|_| err(format!("negative dimension {d} in {:?}", t.dims)))?;
        numel = numel.saturating_mul(d);
        shape.push(d as usize);
    }
    if numel > MAX_ELEMS {
        return Err(err(format!(
            "shape {:?} claims {numel} elements, more than the {MAX_ELEMS} synthcal accepts",
            t.dims
        )));
    }
    if extent(&shape).is_none_or(|e| e as u64 > MAX_ELEMS) {
        return Err(err(format!(
            "shape {:?} spans more than the {MAX_ELEMS} elements synthcal accepts",
            t.dims
        )));
    }
    let n = numel as usize;
    let dt = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let check = |have: usize, unit: &str| {
        if have == n {
            Ok(())
        } else {
            Err(err(format!(
                "shape {shape:?} needs {n} values, the file holds {have} {unit}"
            )))
        }
    };
    let raw_items = |size: usize| -> Result<Option<&[u8]>, String> {
        let Some(r) = raw else { return Ok(None) };
        if r.len() != n * size {
            return Err(err(format!(
                "shape {shape:?} needs {} bytes of data, the file holds {}",
                n * size,
                r.len()
            )));
        }
        Ok(Some(r))
    };
    match dt {
        data_type::FLOAT => {
            let data: Vec<f32> = match raw_items(4)? {
                Some(r) => r
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                    .collect(),
                None => {
                    check(t.float_data.len(), "floats")?;
                    t.float_data.clone()
                }
            };
            Ok(Const::F32(crate::array::Array::new(&shape, data)))
        }
        DOUBLE => {
            let data: Vec<f32> = match raw_items(8)? {
                Some(r) => r
                    .chunks_exact(8)
                    .map(|c| f64::from_le_bytes(c.try_into().unwrap_or_default()) as f32)
                    .collect(),
                None => {
                    check(t.double_data.len(), "doubles")?;
                    t.double_data.iter().map(|&v| v as f32).collect()
                }
            };
            Ok(Const::F32(crate::array::Array::new(&shape, data)))
        }
        data_type::INT64 => {
            let data: Vec<i64> = match raw_items(8)? {
                Some(r) => r
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                    .collect(),
                None => {
                    check(t.int64_data.len(), "int64 values")?;
                    t.int64_data.clone()
                }
            };
            Ok(Const::I64(data))
        }
        data_type::INT32 => {
            let data: Vec<i64> = match raw_items(4)? {
                Some(r) => r
                    .chunks_exact(4)
                    .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64)
                    .collect(),
                None => {
                    check(t.int32_data.len(), "int32 values")?;
                    t.int32_data.iter().map(|&v| v as i64).collect()
                }
            };
            Ok(Const::I64(data))
        }
        data_type::INT8 | data_type::UINT8 => {
            let values: Vec<i32> = match raw_items(1)? {
                Some(r) if dt == data_type::INT8 => r.iter().map(|&b| b as i8 as i32).collect(),
                Some(r) => r.iter().map(|&b| b as i32).collect(),
                // Without raw data, 8-bit values are stored widened in `int32_data`.
                None => {
                    check(t.int32_data.len(), "int32 values")?;
                    let (lo, hi) = if dt == data_type::INT8 {
                        (-128, 127)
                    } else {
                        (0, 255)
                    };
                    if let Some(v) = t.int32_data.iter().find(|v| !(lo..=hi).contains(*v)) {
                        return Err(err(format!("value {v} does not fit its 8-bit type")));
                    }
                    t.int32_data.clone()
                }
            };
            Ok(Const::Int8 { dt, shape, values })
        }
        other => Err(err(format!(
            "data type {other} is not supported (FLOAT, DOUBLE, INT8, UINT8, INT32 and INT64 are)"
        ))),
    }
}

/// `TensorProto.DataType.DOUBLE`.
pub(super) const DOUBLE: i32 = 11;
