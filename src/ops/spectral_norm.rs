//! Spectral normalization of a weight (PyTorch `spectral_norm`, training mode) and its
//! backward (`shaders/grad.wgsl`).
//!
//! Pieces: shader `shaders/grad.wgsl` (and `matmul`); tests in `tests/grad.rs` (the forward
//! against a CPU power iteration in f64, the backward against finite differences).

use super::bytes_of;
use super::checks::same_shape;
use super::grad::{Params, SHADER};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Stream, Tensor};

/// What spectral normalization's backward needs from its forward.
#[derive(Clone, Debug)]
pub struct SpectralState {
    /// W / sigma, W's shape.
    pub w_sn: Tensor,
    /// The updated left singular vector `[rows]`, right one `[cols]`, and sigma `[1]`.
    pub u: Tensor,
    pub v: Tensor,
    pub sigma: Tensor,
}

fn normalize(s: &mut Stream, x: &Tensor, eps: f32) -> Result<(Tensor, Tensor)> {
    let g = s.gpu();
    let (out, nrm) = (
        g.alloc("sn", &[x.numel()], DType::F32)?,
        g.alloc("sn", &[1], DType::F32)?,
    );
    let p = Params {
        n: x.numel() as u32,
        eps,
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "sn_normalize",
        &[],
        bytes_of(&p),
        &[x, &out, &nrm],
        [1, 1, 1],
    )?;
    Ok((out, nrm))
}

/// PyTorch `spectral_norm` forward in training mode: one power iteration from the persistent
/// `u` (`[rows]`, updated in place), sigma = |W v|, returns W / sigma. W is viewed as
/// `[rows = dim 0, cols = the rest]`.
pub fn spectral_norm(s: &mut Stream, w: &Tensor, u: &Tensor, eps: f32) -> Result<SpectralState> {
    const OP: &str = "spectral_norm";
    let rows = *w.shape().first().unwrap_or(&0);
    let cols = w.numel() / rows.max(1);
    if u.shape() != [rows] || w.dtype() != DType::F32 {
        return shape_err(OP, format!("u {:?} for weight {:?}", u.shape(), w.shape()));
    }
    let w2 = w.reshape(&[rows, cols])?;
    let wt_u = super::matmul::matmul(s, &u.reshape(&[1, rows])?, &w2, false, false)?;
    let (v, _) = normalize(s, &wt_u, eps)?;
    let wv = super::matmul::matmul(s, &v.reshape(&[1, cols])?, &w2, false, true)?;
    let (u_new, sigma) = normalize(s, &wv, eps)?;
    s.copy(&u_new, 0, u, 0, u.bytes());
    let w_sn = s.gpu().alloc(OP, w.shape(), DType::F32)?;
    let p = Params {
        n: w.numel() as u32,
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "sn_scale",
        &[],
        bytes_of(&p),
        &[w, &sigma, &w_sn],
        grid_1d(w.numel(), 256),
    )?;
    Ok(SpectralState {
        w_sn,
        u: u_new,
        v,
        sigma,
    })
}

/// dW from d(W / sigma), with u and v held constant as PyTorch does.
pub fn spectral_norm_backward(s: &mut Stream, st: &SpectralState, g: &Tensor) -> Result<Tensor> {
    same_shape("spectral_norm_backward", &st.w_sn, g)?;
    let n = g.numel();
    let dot = s.gpu().alloc("sn_dot", &[1], DType::F32)?;
    let p = Params {
        n: n as u32,
        s: st.v.numel() as u32,
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "sn_dot",
        &[],
        bytes_of(&p),
        &[g, &st.w_sn, &dot],
        [1, 1, 1],
    )?;
    let dw = s
        .gpu()
        .alloc("spectral_norm_backward", g.shape(), DType::F32)?;
    let t = [g, &st.u, &st.v, &st.sigma, &dot, &dw];
    s.dispatch(
        SHADER,
        "sn_backward",
        &[],
        bytes_of(&p),
        &t,
        grid_1d(n, 256),
    )?;
    Ok(dw)
}
