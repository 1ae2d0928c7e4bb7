//! AdaRound's soft-quantized weights (Nagel et al. 2020) on the GPU, with the regularizer and
//! the reconstruction gradient that the per-layer loop needs, and CPU references for the tests.
//!
//! `W~ = scale[c] * clamp(floor(W / scale) + h(V), lo, hi)` with
//! `h(V) = clamp(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1)`; the regularizer is
//! `sum(1 - |2 h(V) - 1|^beta)`.
//!
//! Pieces: shader `shaders/adaround.wgsl`; the weight gradient is the tape's
//! (`conv2d_grad::weight_grad_padded`); the algorithm in `quant::adaround`.

use super::bytes_of;
use super::checks::same_shape;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("adaround");

/// h(V)'s stretch: the sigmoid is stretched to (GAMMA, ZETA), then clamped to [0, 1].
pub const ZETA: f64 = 1.1;
/// See [`ZETA`].
pub const GAMMA: f64 = -0.1;

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    per: u32,
    relu: u32,
    _pad: u32,
    lo: f32,
    hi: f32,
    beta: f32,
    w: f32,
}

/// The fixed part of one layer's soft quantization: the floors of `W / scale`, the
/// per-output-channel scales and the integer range.
#[derive(Clone, Debug)]
pub struct SoftQuant {
    floor: Tensor,
    scale: Tensor,
    per: usize,
    lo: f32,
    hi: f32,
}

/// The rectified sigmoid h(V).
pub fn h(v: f64) -> f64 {
    (1.0 / (1.0 + (-v).exp()) * (ZETA - GAMMA) + GAMMA).clamp(0.0, 1.0)
}

/// Floors of `w * (1 / scale[c])` and the V with h(V) equal to the remainders, for weights
/// with `per` elements per output channel.
pub fn init(w: &[f32], scale: &[f32], per: usize) -> (Vec<f32>, Vec<f32>) {
    let mut floor = Vec::with_capacity(w.len());
    let mut v = Vec::with_capacity(w.len());
    for (i, &x) in w.iter().enumerate() {
        let q = x * (1.0 / scale[i / per.max(1)]);
        let f = q.floor();
        let r = ((q - f) as f64 - GAMMA) / (ZETA - GAMMA);
        floor.push(f);
        v.push((r / (1.0 - r)).ln() as f32);
    }
    (floor, v)
}

/// The learned integers: `clamp(floor + [h(V) >= 0.5], lo, hi)`.
pub fn hard_round(floor: &[f32], v: &[f32], lo: i32, hi: i32) -> Vec<i8> {
    floor
        .iter()
        .zip(v)
        .map(|(&f, &v)| (f as i32 + i32::from(h(v as f64) >= 0.5)).clamp(lo, hi) as i8)
        .collect()
}

/// CPU reference of [`SoftQuant::weight`], in f64.
pub fn soft_weight_cpu(
    floor: &[f32],
    v: &[f64],
    scale: &[f32],
    per: usize,
    (lo, hi): (i32, i32),
) -> Vec<f64> {
    floor
        .iter()
        .zip(v)
        .enumerate()
        .map(|(i, (&f, &v))| scale[i / per] as f64 * (f as f64 + h(v)).clamp(lo as f64, hi as f64))
        .collect()
}

/// CPU reference of the regularizer `sum(1 - |2 h(V) - 1|^beta)`, in f64.
pub fn reg_cpu(v: &[f64], beta: f64) -> f64 {
    v.iter()
        .map(|&v| 1.0 - (2.0 * h(v) - 1.0).abs().powf(beta))
        .sum()
}

fn launch(
    s: &mut Stream,
    entry: &'static str,
    p: Params,
    tensors: &[&Tensor],
    threads: usize,
) -> Result<()> {
    s.dispatch(
        SHADER,
        entry,
        &[],
        bytes_of(&p),
        tensors,
        grid_1d(threads, 256),
    )
}

impl SoftQuant {
    /// Uploads the floors (from [`init`]) and scales of weights `[co, ...]` with `per`
    /// elements per output channel, integers in `[lo, hi]`.
    pub fn new(
        gpu: &Gpu,
        floor: &[f32],
        scale: &[f32],
        shape: &[usize],
        (lo, hi): (i32, i32),
    ) -> Result<SoftQuant> {
        let n: usize = shape.iter().product();
        let per = n / scale.len().max(1);
        if shape.first() != Some(&scale.len()) || floor.len() != n || per == 0 || lo > hi {
            return shape_err(
                "adaround",
                format!(
                    "weights {shape:?}, {} floors, {} scales, range [{lo}, {hi}]",
                    floor.len(),
                    scale.len()
                ),
            );
        }
        Ok(SoftQuant {
            floor: gpu.upload_f32(shape, floor)?,
            scale: gpu.upload_f32(&[scale.len()], scale)?,
            per,
            lo: lo as f32,
            hi: hi as f32,
        })
    }

    fn params(&self) -> Params {
        Params {
            n: self.floor.numel() as u32,
            per: self.per as u32,
            lo: self.lo,
            hi: self.hi,
            ..Default::default()
        }
    }

    /// The soft-quantized weights W~(V), shaped like the weights.
    pub fn weight(&self, s: &mut Stream, v: &Tensor) -> Result<Tensor> {
        same_shape("adaround weight", &self.floor, v)?;
        let out = s.gpu().alloc("adaround", self.floor.shape(), DType::F32)?;
        let t = [&self.floor, v, &self.scale, &out];
        launch(s, "soft_weight", self.params(), &t, v.numel())?;
        Ok(out)
    }

    /// dL/dV from dL/dW~.
    pub fn backward(&self, s: &mut Stream, v: &Tensor, dw: &Tensor) -> Result<Tensor> {
        same_shape("adaround backward", &self.floor, v)?;
        same_shape("adaround backward", &self.floor, dw)?;
        let out = s.gpu().alloc("adaround", v.shape(), DType::F32)?;
        let t = [&self.floor, v, &self.scale, dw, &out];
        launch(s, "soft_weight_backward", self.params(), &t, v.numel())?;
        Ok(out)
    }
}

/// `g += weight * d/dV sum(1 - |2 h(V) - 1|^beta)`, in place.
pub fn reg_grad_add(s: &mut Stream, v: &Tensor, g: &Tensor, weight: f32, beta: f32) -> Result<()> {
    same_shape("adaround regularizer", v, g)?;
    let p = Params {
        n: v.numel() as u32,
        beta,
        w: weight,
        ..Default::default()
    };
    launch(s, "reg_grad_add", p, &[v, g], v.numel())
}

/// Per-workgroup partial sums of a reduction; the host adds them up ([`sum`]).
fn partials(s: &mut Stream, entry: &'static str, p: Params, t: &[&Tensor]) -> Result<Tensor> {
    let n = p.n as usize;
    let out = s
        .gpu()
        .alloc("adaround", &[n.div_ceil(256).max(1)], DType::F32)?;
    let mut all = t.to_vec();
    all.push(&out);
    launch(s, entry, p, &all, n)?;
    Ok(out)
}

/// The regularizer's partial sums (see [`sum`]).
pub fn reg_partials(s: &mut Stream, v: &Tensor, beta: f32) -> Result<Tensor> {
    let p = Params {
        n: v.numel() as u32,
        beta,
        ..Default::default()
    };
    partials(s, "reg_partial", p, &[v])
}

/// Partial sums of `(y - t)^2` (see [`sum`]).
pub fn sq_err_partials(s: &mut Stream, y: &Tensor, t: &Tensor) -> Result<Tensor> {
    same_shape("squared error", y, t)?;
    let p = Params {
        n: y.numel() as u32,
        ..Default::default()
    };
    partials(s, "sq_err_partial", p, &[y, t])
}

/// The total of partial sums read back as bytes, in f64.
pub fn sum(bytes: &[u8]) -> f64 {
    bytemuck::pod_collect_to_vec::<u8, f32>(bytes)
        .iter()
        .map(|&x| x as f64)
        .sum()
}

/// `w * (y - t)`: the gradient of `w / 2 * sum((y - t)^2)`.
pub fn recon_grad(s: &mut Stream, y: &Tensor, t: &Tensor, w: f32) -> Result<Tensor> {
    recon_grad_masked(s, y, t, w, false)
}

/// [`recon_grad`], and with `relu` the gradient before the ReLU whose output `y` is:
/// zero where `y <= 0`.
pub fn recon_grad_masked(
    s: &mut Stream,
    y: &Tensor,
    t: &Tensor,
    w: f32,
    relu: bool,
) -> Result<Tensor> {
    same_shape("reconstruction gradient", y, t)?;
    let out = s.gpu().alloc("adaround", y.shape(), DType::F32)?;
    let p = Params {
        n: y.numel() as u32,
        relu: relu as u32,
        w,
        ..Default::default()
    };
    launch(s, "recon_grad", p, &[y, t, &out], y.numel())?;
    Ok(out)
}

#[cfg(test)]
#[path = "adaround_tests.rs"]
mod tests;
