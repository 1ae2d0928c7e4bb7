//! Fake quantization of activations (quantize, then dequantize) at a per-tensor `QFormat`,
//! rounding exactly as `QFormat::quantize` does, with a straight-through backward and LSQ's
//! step-size gradient (Esser et al. 2020), for block reconstruction (`quant::brecq`).
//!
//! The step lives in a `[2]` tensor `[scale, 1 / scale]`: a fixed format carries the host's
//! f32 reciprocal (so the forward is bit-identical to the CPU's), a learned one keeps only
//! `[0]` meaningful (its gradient's `[1]` is zero, so Adam leaves it alone) and the kernel
//! divides.
//!
//! QDrop (Wei et al. 2022): a quantizer `with_drop(p, seed)` passes each element unquantized
//! with probability `p`, decided by a hash of the seed and the element's index ([`dropped`],
//! the same on the CPU and the GPU), so a fresh seed per step gives a fresh mask. A dropped
//! element's gradient passes straight and it adds nothing to the step's gradient.

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
    drop: u32,
    seed: u32,
    _pad: u32,
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
    /// QDrop's threshold: element i is dropped when `hash(hash(i) ^ seed) >> 8` is below it
    /// (`p * 2^24`; 0 never drops).
    pub drop: u32,
    /// QDrop's seed.
    pub seed: u32,
}

/// QDrop's threshold of drop probability `p` (see [`FakeQuant::drop`]), or an error when `p`
/// is not in [0, 1].
pub fn drop_threshold(p: f32) -> Result<u32> {
    if !(0.0..=1.0).contains(&p) {
        return Err(crate::error::Error::Invalid(format!(
            "qdrop: drop probability {p} is not in [0, 1]"
        )));
    }
    Ok((p as f64 * (1u64 << 24) as f64).round() as u32)
}

/// lowbias32 (C. Wellons), as the shader's `hash`.
pub fn hash(v: u32) -> u32 {
    let mut h = v;
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^= h >> 16;
    h
}

/// Whether QDrop drops element `i` at `threshold` and `seed` (the kernels' rule).
pub fn dropped(i: usize, threshold: u32, seed: u32) -> bool {
    (hash(hash(i as u32) ^ seed) >> 8) < threshold
}

/// The drop mask of `n` elements.
pub fn drop_mask(n: usize, threshold: u32, seed: u32) -> Vec<bool> {
    (0..n).map(|i| dropped(i, threshold, seed)).collect()
}

impl FakeQuant {
    /// The quantizer of format `fmt`.
    pub fn new(fmt: QFormat, learned: bool) -> FakeQuant {
        let (lo, hi) = fmt.range();
        FakeQuant {
            lo,
            hi,
            learned,
            drop: 0,
            seed: 0,
        }
    }

    /// The quantizer with QDrop at `threshold` ([`drop_threshold`]) and `seed`.
    pub fn with_drop(self, threshold: u32, seed: u32) -> FakeQuant {
        FakeQuant {
            drop: threshold,
            seed,
            ..self
        }
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
            drop: self.drop,
            seed: self.seed,
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

    /// `clamp(rne(x * inv), lo, hi) * scale`, or `x` where dropped.
    pub fn forward(&self, s: &mut Stream, x: &Tensor, step: &Tensor) -> Result<Tensor> {
        self.check("fake_quant", step)?;
        let y = s.gpu().alloc("fake_quant", x.shape(), DType::F32)?;
        let n = x.numel();
        let g = grid_1d(n, 256);
        let p = self.params(n);
        s.dispatch(SHADER, "forward", &[], bytes_of(&p), &[x, step, &y], g)?;
        Ok(y)
    }

    /// dL/dx: `dy` inside the representable range or where dropped, zero elsewhere.
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
    /// `dy * hi` outside (nothing where dropped), in `[0]`; `[1]` is zero.
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

/// QDrop at a block's input: `fp` where dropped, else `quant` (same shapes); `threshold` and
/// `seed` as [`FakeQuant::with_drop`].
pub fn drop_mix(
    s: &mut Stream,
    quant: &Tensor,
    fp: &Tensor,
    threshold: u32,
    seed: u32,
) -> Result<Tensor> {
    same_shape("drop_mix", quant, fp)?;
    let y = s.gpu().alloc("drop_mix", quant.shape(), DType::F32)?;
    let n = quant.numel();
    let p = Params {
        n: n as u32,
        drop: threshold,
        seed,
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "drop_mix",
        &[],
        bytes_of(&p),
        &[quant, fp, &y],
        grid_1d(n, 256),
    )?;
    Ok(y)
}

/// CPU reference of [`drop_mix`].
pub fn drop_mix_cpu(quant: &[f32], fp: &[f32], mask: &[bool]) -> Vec<f32> {
    (quant.iter().zip(fp).zip(mask))
        .map(|((&q, &f), &d)| if d { f } else { q })
        .collect()
}

/// Whether `mask` drops element `i` (a short mask drops nothing past its end).
fn is_dropped(mask: &[bool], i: usize) -> bool {
    mask.get(i).copied().unwrap_or(false)
}

/// CPU reference of the forward: `QFormat::quantize`, then `dequantize`.
pub fn forward_cpu(x: &[f32], fmt: QFormat) -> Vec<f32> {
    forward_dropped_cpu(x, fmt, &[])
}

/// The same where `mask` drops nothing, `x` where it does.
pub fn forward_dropped_cpu(x: &[f32], fmt: QFormat, mask: &[bool]) -> Vec<f32> {
    x.iter()
        .enumerate()
        .map(|(i, &v)| {
            if is_dropped(mask, i) {
                v
            } else {
                fmt.dequantize(fmt.quantize(v))
            }
        })
        .collect()
}

/// CPU reference of the backward.
pub fn backward_cpu(x: &[f32], dy: &[f32], fmt: QFormat) -> Vec<f32> {
    backward_dropped_cpu(x, dy, fmt, &[])
}

/// The same with `mask`'s dropped elements passing `dy`.
pub fn backward_dropped_cpu(x: &[f32], dy: &[f32], fmt: QFormat, mask: &[bool]) -> Vec<f32> {
    let (lo, hi) = fmt.range();
    let inv = 1.0 / fmt.scale;
    x.iter()
        .zip(dy)
        .enumerate()
        .map(|(i, (&v, &d))| {
            let r = v * inv;
            if (r >= lo as f32 && r <= hi as f32) || is_dropped(mask, i) {
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
    step_grad_dropped_cpu(x, dy, fmt, &[])
}

/// The same without `mask`'s dropped elements.
pub fn step_grad_dropped_cpu(x: &[f32], dy: &[f32], fmt: QFormat, mask: &[bool]) -> f64 {
    let (lo, hi) = fmt.range();
    let (lo, hi) = (lo as f64, hi as f64);
    let inv = 1.0 / fmt.scale;
    x.iter()
        .zip(dy)
        .enumerate()
        .map(|(i, (&v, &d))| {
            let r = (v * inv) as f64;
            let t = if is_dropped(mask, i) {
                0.0
            } else if r < lo {
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
