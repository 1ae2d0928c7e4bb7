//! Shape and dtype checks shared by the layout, pooling and normalization ops.

use crate::error::{shape_err, Result};
use crate::gpu::{DType, Tensor};

pub(crate) fn dtype(op: &'static str, t: &Tensor, want: DType) -> Result<()> {
    if t.dtype() != want {
        return shape_err(
            op,
            format!(
                "expected {want:?}, got {:?} of shape {:?}",
                t.dtype(),
                t.shape()
            ),
        );
    }
    Ok(())
}

/// `[N, C, ...rest]` as `(N, C, prod(rest))`: the view every channel-wise kernel works on.
pub(crate) fn ncs(op: &'static str, t: &Tensor) -> Result<(usize, usize, usize)> {
    dtype(op, t, DType::F32)?;
    match t.shape() {
        [n, c, rest @ ..] => Ok((*n, *c, rest.iter().product())),
        s => shape_err(
            op,
            format!("expected at least 2 dims [N, C, ...], got {s:?}"),
        ),
    }
}

/// A 4-d f32 tensor `[N, C, H, W]`.
pub(crate) fn nchw(op: &'static str, t: &Tensor) -> Result<[usize; 4]> {
    dtype(op, t, DType::F32)?;
    t.dims::<4>(op)
}

/// f32 tensors of one shape.
pub(crate) fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
    if a.shape() != b.shape() || a.dtype() != DType::F32 || b.dtype() != DType::F32 {
        return shape_err(
            op,
            format!(
                "f32 tensors of one shape needed, got {:?} and {:?}",
                a.shape(),
                b.shape()
            ),
        );
    }
    Ok(())
}
