//! The Adam optimizer step (`shaders/grad.wgsl`).

use super::bytes_of;
use super::checks::same_shape;
use super::grad::{Params, SHADER};
use crate::error::Result;
use crate::gpu::{grid_1d, Stream, Tensor};

/// Adam's hyperparameters (PyTorch's defaults but for the GAN betas).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdamConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 2e-4,
            beta1: 0.5,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One Adam step (step number `t` >= 1) over flat parameter, gradient and moment buffers.
pub fn adam(
    s: &mut Stream,
    x: &Tensor,
    g: &Tensor,
    m: &Tensor,
    v: &Tensor,
    cfg: &AdamConfig,
    t: u64,
) -> Result<()> {
    for o in [g, m, v] {
        same_shape("adam", x, o)?;
    }
    let p = Params {
        n: x.numel() as u32,
        w: cfg.lr,
        eps: cfg.eps,
        b1: cfg.beta1,
        b2: cfg.beta2,
        bc1: 1.0 - cfg.beta1.powi(t as i32),
        bc2: 1.0 - cfg.beta2.powi(t as i32),
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "adam",
        &[],
        bytes_of(&p),
        &[x, g, m, v],
        grid_1d(x.numel(), 256),
    )
}
