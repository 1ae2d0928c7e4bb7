//! In-memory tensor types shared by the readers and writers.

/// Element type a tensor had in the file it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    Bool,
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F16,
    BF16,
    F32,
    F64,
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::Bool | DType::U8 | DType::I8 => 1,
            DType::I16 | DType::U16 | DType::F16 | DType::BF16 => 2,
            DType::I32 | DType::U32 | DType::F32 => 4,
            DType::I64 | DType::U64 | DType::F64 => 8,
        }
    }

    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Decodes one element (`bytes.len() == self.size()`) to f32.
    /// Integers above 2^24 lose precision, which is fine for the counters
    /// (`num_batches_tracked`) that are the only integer tensors in checkpoints.
    pub(crate) fn decode_f32(self, bytes: &[u8], big_endian: bool) -> f32 {
        let mut b = [0u8; 8];
        let n = self.size().min(bytes.len());
        b[..n].copy_from_slice(&bytes[..n]);
        if big_endian {
            b[..n].reverse();
        }
        let u16v = u16::from_le_bytes([b[0], b[1]]);
        let u32v = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        let u64v = u64::from_le_bytes(b);
        match self {
            DType::Bool => (b[0] != 0) as u8 as f32,
            DType::U8 => b[0] as f32,
            DType::I8 => b[0] as i8 as f32,
            DType::I16 => u16v as i16 as f32,
            DType::U16 => u16v as f32,
            DType::I32 => u32v as i32 as f32,
            DType::U32 => u32v as f32,
            DType::I64 => u64v as i64 as f32,
            DType::U64 => u64v as f32,
            DType::F16 => f16_to_f32(u16v),
            DType::BF16 => f32::from_bits((u16v as u32) << 16),
            DType::F32 => f32::from_bits(u32v),
            DType::F64 => f64::from_bits(u64v) as f32,
        }
    }
}

/// IEEE half to single precision (exact: every f16 is representable as f32).
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let mant = (h & 0x3ff) as u32;
    let bits = match exp {
        0 if mant == 0 => sign,
        0 => {
            // subnormal: mant * 2^-24
            let v = mant as f32 / 16_777_216.0;
            return if sign != 0 { -v } else { v };
        }
        0x1f => sign | 0x7f80_0000 | (mant << 13),
        _ => sign | ((exp + 112) << 23) | (mant << 13),
    };
    f32::from_bits(bits)
}

/// Owned tensor payload. Float types are widened to f32; i32 and i8 stay
/// as they are because quantized models store them exactly.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorValues {
    F32(Vec<f32>),
    I32(Vec<i32>),
    I8(Vec<i8>),
}

/// Borrowed tensor payload, e.g. for writing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TensorSlice<'a> {
    F32(&'a [f32]),
    I32(&'a [i32]),
    I8(&'a [i8]),
}

impl TensorSlice<'_> {
    pub fn len(&self) -> usize {
        match self {
            TensorSlice::F32(v) => v.len(),
            TensorSlice::I32(v) => v.len(),
            TensorSlice::I8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tensors by name, in file order.
pub type NamedTensors = Vec<(String, TensorData)>;

#[derive(Debug, Clone, PartialEq)]
pub struct TensorData {
    pub shape: Vec<usize>,
    pub values: TensorValues,
    /// Element type in the source file (e.g. `I64` for `num_batches_tracked`
    /// even though `values` holds f32).
    pub dtype_orig: DType,
}

impl TensorData {
    pub fn numel(&self) -> usize {
        self.as_slice().len()
    }

    /// True when the source tensor was floating point (weights, BN stats);
    /// false for integer bookkeeping tensors such as `num_batches_tracked`.
    pub fn is_float(&self) -> bool {
        self.dtype_orig.is_float()
    }

    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            TensorValues::F32(v) => Some(v),
            _ => None,
        }
    }

    /// The values as f32, converting integer payloads.
    pub fn to_f32(&self) -> Vec<f32> {
        match &self.values {
            TensorValues::F32(v) => v.clone(),
            TensorValues::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorValues::I8(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    pub fn as_slice(&self) -> TensorSlice<'_> {
        match &self.values {
            TensorValues::F32(v) => TensorSlice::F32(v),
            TensorValues::I32(v) => TensorSlice::I32(v),
            TensorValues::I8(v) => TensorSlice::I8(v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_conversions() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
        assert_eq!(DType::BF16.decode_f32(&[0x80, 0x3f], false), 1.0);
        assert_eq!(DType::I64.decode_f32(&(-5i64).to_le_bytes(), false), -5.0);
        assert_eq!(DType::F32.decode_f32(&1.5f32.to_be_bytes(), true), 1.5);
    }
}
