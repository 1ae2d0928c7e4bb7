//! Reductions: row statistics (min, max, abs-max, sum) for calibration, and the channel and
//! chunk sums that bias and weight gradients need (`sum_channels`, `sum_chunks`).
//!
//! Pieces: shaders `shaders/stats.wgsl` and `shaders/grad.wgsl` (the sums); CPU reference
//! `row_stats_cpu` below; tests below and in `tests/grad.rs` (the sums, through bias gradients).

use super::bytes_of;
use super::checks::ncs;
use super::grad::{Params as GradParams, SHADER as GRAD};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("stats");

/// Values per row: min, max, abs-max, sum.
pub const STATS: usize = 4;

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    len: u32,
    _pad: [u32; 2],
}

/// For x viewed as `[rows, numel / rows]`: an f32 tensor `[rows, 4]` of (min, max, abs-max, sum).
pub fn row_stats(s: &mut Stream, x: &Tensor, rows: usize) -> Result<Tensor> {
    const OP: &str = "row_stats";
    if x.dtype() != DType::F32 {
        return shape_err(OP, format!("expected f32, got {:?}", x.dtype()));
    }
    if rows == 0 || !x.numel().is_multiple_of(rows) {
        return shape_err(
            OP,
            format!("{:?} does not split into {rows} rows", x.shape()),
        );
    }
    let out = s.gpu().alloc(OP, &[rows, STATS], DType::F32)?;
    let p = Params {
        rows: rows as u32,
        len: (x.numel() / rows) as u32,
        _pad: [0; 2],
    };
    s.dispatch(
        SHADER,
        "row_stats",
        &[],
        bytes_of(&p),
        &[x, &out],
        grid_1d(rows, 64),
    )?;
    Ok(out)
}

/// CPU reference (the sum in the kernel's sequential order).
pub fn row_stats_cpu(x: &[f32], rows: usize) -> Vec<f32> {
    x.chunks(x.len() / rows)
        .flat_map(|r| {
            let lo = r.iter().copied().fold(f32::INFINITY, f32::min);
            let hi = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let sum = r[1..].iter().fold(r[0], |s, v| s + v);
            [lo, hi, lo.abs().max(hi.abs()), sum]
        })
        .collect()
}

/// `out[c]` = sum of x `[N, C, ...]` over every dim but 1 (bias gradients).
pub fn sum_channels(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    let (n, c, sp) = ncs("sum_channels", x)?;
    let p = GradParams {
        c: c as u32,
        s: sp as u32,
        outer: n as u32,
        ..Default::default()
    };
    let out = s.gpu().alloc("sum_channels", &[c], DType::F32)?;
    let groups = grid_1d(c, 1);
    s.dispatch(GRAD, "sum_channels", &[], bytes_of(&p), &[x, &out], groups)?;
    Ok(out)
}

/// out = sum over dim 0 of x `[K, ...]`, shaped like one slice `shape`.
pub fn sum_chunks(s: &mut Stream, x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let k = x.numel() / n.max(1);
    if x.dtype() != DType::F32 || n == 0 || k * n != x.numel() {
        return shape_err(
            "sum_chunks",
            format!("{:?} is not [K, {shape:?}]", x.shape()),
        );
    }
    let p = GradParams {
        n: n as u32,
        outer: k as u32,
        ..Default::default()
    };
    let out = s.gpu().alloc("sum_chunks", shape, DType::F32)?;
    s.dispatch(
        GRAD,
        "sum_chunks",
        &[],
        bytes_of(&p),
        &[x, &out],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::testing::gpu;

    #[test]
    fn matches_cpu_exactly() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (shape, rows) in [
            (vec![4, 3, 5, 5], 4),
            (vec![4, 3, 5, 5], 12),
            (vec![1, 7], 1),
            (vec![130, 2], 130),
        ] {
            let x = Array::random(&shape, rows as u64);
            let t = g.upload_f32(&shape, &x.data).unwrap();
            let mut s = g.stream();
            let o = row_stats(&mut s, &t, rows).unwrap();
            s.submit();
            assert_eq!(
                g.read_f32(&o).unwrap(),
                row_stats_cpu(&x.data, rows),
                "{shape:?} / {rows}"
            );
        }
    }

    #[test]
    fn rejects_uneven_rows() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let t = g.upload_f32(&[5], &[0.0; 5]).unwrap();
        assert!(row_stats(&mut g.stream(), &t, 2).is_err());
    }
}
