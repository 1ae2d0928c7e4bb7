//! Fake quantization of activations (quantize, then dequantize) at a per-tensor `QFormat`,
//! rounding exactly as `QFormat::quantize` does, with a straight-through backward and LSQ's
//! step-size gradient (Esser et al. 2020), for block reconstruction (`quant::brecq`).
//!
//! The step lives in a `[2]` tensor `[scale, 1 / scale]`: a fixed format carries the host's
//! f32 reciprocal (so the forward is bit-identical to the CPU's), a learned one keeps only
//! `[0]` meaningful (its gradient's `[1]` is zero, so Adam leaves it alone) and the kernel
//! divides.

use super::bytes_of;
use super::checks::same_shape;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};
use crate::quant::int8::QFormat;

const SHADER: Shader = crate::shader!("fake_quant");

/// Threads of the step gradient's first pass (each sums a strided share).
const THREADS: usize = 2048;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    learned: u32,
    lo: f32,
    hi: f32,
    threads: u32,
    _pad: [u32; 3],
}

/// A fake quantizer's integer range and whether its step is learned (the step itself is a
/// tape value, see [`FakeQuant::step`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FakeQuant {
    /// The representable integers (`QFormat::range`).
    pub lo: i32,
    /// See `lo`.
    pub hi: i32,
    /// Whether the step is learned (the kernels then divide by it).
    pub learned: bool,
}

impl FakeQuant {
    /// The quantizer of format `fmt`.
    pub fn new(fmt: QFormat, learned: bool) -> FakeQuant {
        let (lo, hi) = fmt.range();
        FakeQuant { lo, hi, learned }
    }

    /// The step tensor `[scale, 1 / scale]` of `fmt` (see the module docs).
    pub fn step(gpu: &Gpu, fmt: QFormat) -> Result<Tensor> {
        gpu.upload_f32(&[2], &[fmt.scale, 1.0 / fmt.scale])
    }

    fn params(&self, n: usize) -> Params {
        Params {
            n: n as u32,
            learned: self.learned as u32,
            lo: self.lo as f32,
            hi: self.hi as f32,
            threads: THREADS as u32,
            ..Default::default()
        }
    }

    fn check(&self, op: &'static str, step: &Tensor) -> Result<()> {
        if step.shape() != [2] || self.lo > self.hi {
            return shape_err(
                op,
                format!("step {:?}, range [{}, {}]", step.shape(), self.lo, self.hi),
            );
        }
        Ok(())
    }

    /// `clamp(rne(x * inv), lo, hi) * scale`.
    pub fn forward(&self, s: &mut Stream, x: &Tensor, step: &Tensor) -> Result<Tensor> {
        self.check("fake_quant", step)?;
        let y = s.gpu().alloc("fake_quant", x.shape(), DType::F32)?;
        let n = x.numel();
        let g = grid_1d(n, 256);
        let p = self.params(n);
        s.dispatch(SHADER, "forward", &[], bytes_of(&p), &[x, step, &y], g)?;
        Ok(y)
    }

    /// dL/dx: `dy` inside the representable range, zero outside.
    pub fn backward(
        &self,
        s: &mut Stream,
        x: &Tensor,
        step: &Tensor,
        dy: &Tensor,
    ) -> Result<Tensor> {
        self.check("fake_quant backward", step)?;
        same_shape("fake_quant backward", x, dy)?;
        let dx = s.gpu().alloc("fake_quant", x.shape(), DType::F32)?;
        let n = x.numel();
        let p = self.params(n);
        let t = [x, step, dy, &dx];
        s.dispatch(SHADER, "backward", &[], bytes_of(&p), &t, grid_1d(n, 256))?;
        Ok(dx)
    }

    /// dL/d(step) `[2]`: LSQ's sum of `dy * (q - x / s)` inside the range and `dy * lo` or
    /// `dy * hi` outside, in `[0]`; `[1]` is zero.
    pub fn step_grad(
        &self,
        s: &mut Stream,
        x: &Tensor,
        step: &Tensor,
        dy: &Tensor,
    ) -> Result<Tensor> {
        self.check("fake_quant step", step)?;
        same_shape("fake_quant step", x, dy)?;
        let gpu = s.gpu();
        let part = gpu.alloc("fake_quant", &[THREADS], DType::F32)?;
        let total = gpu.alloc("fake_quant", &[2], DType::F32)?;
        let p = self.params(x.numel());
        let t = [x, step, dy, &part];
        s.dispatch(
            SHADER,
            "step_partial",
            &[],
            bytes_of(&p),
            &t,
            grid_1d(THREADS, 256),
        )?;
        s.dispatch(
            SHADER,
            "step_sum",
            &[],
            bytes_of(&p),
            &[&part, &total],
            [1, 1, 1],
        )?;
        Ok(total)
    }
}

/// CPU reference of the forward: `QFormat::quantize`, then `dequantize`.
pub fn forward_cpu(x: &[f32], fmt: QFormat) -> Vec<f32> {
    x.iter().map(|&v| fmt.dequantize(fmt.quantize(v))).collect()
}

/// CPU reference of the backward.
pub fn backward_cpu(x: &[f32], dy: &[f32], fmt: QFormat) -> Vec<f32> {
    let (lo, hi) = fmt.range();
    let inv = 1.0 / fmt.scale;
    x.iter()
        .zip(dy)
        .map(|(&v, &d)| {
            let r = v * inv;
            if r >= lo as f32 && r <= hi as f32 {
                d
            } else {
                0.0
            }
        })
        .collect()
}

/// CPU reference of the LSQ step gradient, summed in f64; `x / s` is the f32 product the
/// forward rounds, so the CPU and GPU agree on which side of a tie each value falls.
pub fn step_grad_cpu(x: &[f32], dy: &[f32], fmt: QFormat) -> f64 {
    let (lo, hi) = fmt.range();
    let (lo, hi) = (lo as f64, hi as f64);
    let inv = 1.0 / fmt.scale;
    x.iter()
        .zip(dy)
        .map(|(&v, &d)| {
            let r = (v * inv) as f64;
            let t = if r < lo {
                lo
            } else if r > hi {
                hi
            } else {
                r.round_ties_even() - r
            };
            d as f64 * t
        })
        .sum()
}

#[cfg(test)]
#[path = "fake_quant_tests.rs"]
mod tests;
