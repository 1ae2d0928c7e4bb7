//! The Adam optimizer step (`shaders/grad.wgsl`).
//!
//! Pieces: shader `shaders/grad.wgsl`; tests in `tests/grad.rs`.

use super::bytes_of;
use super::checks::same_shape;
use super::grad::{Params, SHADER};
use crate::error::Result;
use crate::gpu::{grid_1d, Stream, Tensor};

/// Adam's hyperparameters (by default the GAN's: lr 2e-4 and its betas; PyTorch's epsilon).
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::ops::skip_without_gpu;
    use crate::testing::gpu;

    /// Three steps match PyTorch's update (bias-corrected moments, eps outside the root),
    /// computed in f64 from the same gradients. A large eps makes its placement visible.
    #[test]
    fn steps_match_pytorch_adam() {
        skip_without_gpu!();
        let g = gpu();
        let n = 300;
        let cfg = AdamConfig {
            lr: 0.01,
            eps: 0.1,
            ..Default::default()
        };
        let x0 = Array::random(&[n], 1);
        let (x, m, v) = (
            g.upload_f32(&[n], &x0.data).unwrap(),
            g.upload_f32(&[n], &vec![0.0; n]).unwrap(),
            g.upload_f32(&[n], &vec![0.0; n]).unwrap(),
        );
        let mut want: Vec<f64> = x0.data.iter().map(|&a| a as f64).collect();
        let (mut wm, mut wv) = (vec![0f64; n], vec![0f64; n]);
        let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
        for t in 1..=3u64 {
            let grad = Array::random(&[n], 10 + t);
            let gt = g.upload_f32(&[n], &grad.data).unwrap();
            let mut s = g.stream();
            adam(&mut s, &x, &gt, &m, &v, &cfg, t).unwrap();
            s.submit();
            for i in 0..n {
                let gi = grad.data[i] as f64;
                wm[i] = b1 * wm[i] + (1.0 - b1) * gi;
                wv[i] = b2 * wv[i] + (1.0 - b2) * gi * gi;
                let mh = wm[i] / (1.0 - b1.powi(t as i32));
                let vh = wv[i] / (1.0 - b2.powi(t as i32));
                want[i] -= cfg.lr as f64 * mh / (vh.sqrt() + cfg.eps as f64);
            }
        }
        let got = g.read_f32(&x).unwrap();
        for (i, (&a, &b)) in got.iter().zip(&want).enumerate() {
            assert!((a as f64 - b).abs() < 1e-6, "element {i}: {a} vs {b}");
        }
    }

    #[test]
    fn mismatched_buffers_are_errors() {
        skip_without_gpu!();
        let g = gpu();
        let a = g.upload_f32(&[4], &[0.0; 4]).unwrap();
        let b = g.upload_f32(&[5], &[0.0; 5]).unwrap();
        let mut s = g.stream();
        let cfg = AdamConfig::default();
        assert!(adam(&mut s, &a, &b, &a, &a, &cfg, 1).is_err());
    }
}
