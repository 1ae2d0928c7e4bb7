//! Backward kernels of the pointwise, layout and normalization ops, the losses, Adam and the
//! spectral-norm pieces (`shaders/grad.wgsl`). CPU references live in the tests below and in
//! `tests/grad.rs`, which checks every backward against finite differences.

use super::checks::ncs;
use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("grad");

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    outer: u32,
    kind: u32,
    slope: f32,
    w: f32,
    eps: f32,
    b1: f32,
    b2: f32,
    bc1: f32,
    bc2: f32,
    h: u32,
    wd: u32,
    f: u32,
    count: f32,
}

fn same_shape(op: &'static str, a: &Tensor, b: &Tensor) -> Result<()> {
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

/// dx for y = act(x), from the output y (all supported activations are monotone).
pub fn act_backward(s: &mut Stream, y: &Tensor, dy: &Tensor, a: Act) -> Result<Tensor> {
    same_shape("act_backward", y, dy)?;
    let (kind, slope) = a.code();
    let n = y.numel();
    let p = Params {
        n: n as u32,
        kind,
        slope,
        ..Default::default()
    };
    let dx = s.gpu().alloc("act_backward", y.shape(), DType::F32)?;
    s.dispatch(
        SHADER,
        "act_backward",
        &[],
        bytes_of(&p),
        &[y, dy, &dx],
        grid_1d(n, 256),
    )?;
    Ok(dx)
}

/// dx `[N, 2C, ...]` of GLU over dim 1 from its input x and dy `[N, C, ...]`.
pub fn glu_backward(s: &mut Stream, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c2, sp) = ncs("glu_backward", x)?;
    let (dn, dc, dsp) = ncs("glu_backward", dy)?;
    if (dn, dc * 2, dsp) != (n, c2, sp) {
        return shape_err(
            "glu_backward",
            format!("dy {:?} does not match x {:?}", dy.shape(), x.shape()),
        );
    }
    let p = Params {
        n: dy.numel() as u32,
        s: (dc * sp) as u32,
        ..Default::default()
    };
    let dx = s.gpu().alloc("glu_backward", x.shape(), DType::F32)?;
    s.dispatch(
        SHADER,
        "glu_backward",
        &[],
        bytes_of(&p),
        &[x, dy, &dx],
        grid_1d(dy.numel(), 256),
    )?;
    Ok(dx)
}

/// dx `[N, C, H, W]` of nearest upsampling by `f` from dy `[N, C, H*f, W*f]`.
pub fn upsample_backward(s: &mut Stream, dy: &Tensor, f: usize) -> Result<Tensor> {
    let [n, c, h, w] = super::checks::nchw("upsample_backward", dy)?;
    if f == 0 || h % f != 0 || w % f != 0 {
        return shape_err(
            "upsample_backward",
            format!("dy {:?} is not a x{f} upsample", dy.shape()),
        );
    }
    let shape = [n, c, h / f, w / f];
    let total: usize = shape.iter().product();
    let p = Params {
        n: total as u32,
        h: (h / f) as u32,
        wd: (w / f) as u32,
        f: f as u32,
        ..Default::default()
    };
    let dx = s.gpu().alloc("upsample_backward", &shape, DType::F32)?;
    s.dispatch(
        SHADER,
        "upsample_backward",
        &[],
        bytes_of(&p),
        &[dy, &dx],
        grid_1d(total, 256),
    )?;
    Ok(dx)
}

/// Gradients of training-mode batch norm (identity activation) given the forward input, its
/// batch mean and 1/std: returns (dx, dgamma, dbeta).
pub fn batch_norm_backward(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    gamma: &Tensor,
    mean: &Tensor,
    inv_std: &Tensor,
) -> Result<(Tensor, Tensor, Tensor)> {
    const OP: &str = "batch_norm_backward";
    same_shape(OP, x, dy)?;
    let (n, c, sp) = ncs(OP, x)?;
    for t in [gamma, mean, inv_std] {
        if t.shape() != [c] {
            return shape_err(
                OP,
                format!("per-channel tensor {:?} for x {:?}", t.shape(), x.shape()),
            );
        }
    }
    let p = Params {
        n: x.numel() as u32,
        c: c as u32,
        s: sp as u32,
        outer: n as u32,
        ..Default::default()
    };
    let g = s.gpu();
    let (dgamma, dbeta) = (
        g.alloc(OP, &[c], DType::F32)?,
        g.alloc(OP, &[c], DType::F32)?,
    );
    let dx = g.alloc(OP, x.shape(), DType::F32)?;
    s.dispatch(
        SHADER,
        "bn_reduce",
        &[],
        bytes_of(&p),
        &[x, dy, mean, inv_std, &dgamma, &dbeta],
        [c as u32, 1, 1],
    )?;
    let t = [x, dy, mean, inv_std, gamma, &dgamma, &dbeta, &dx];
    s.dispatch(
        SHADER,
        "bn_apply",
        &[],
        bytes_of(&p),
        &t,
        grid_1d(x.numel(), 256),
    )?;
    Ok((dx, dgamma, dbeta))
}

/// out[c] = sum of x `[N, C, ...]` over every dim but 1 (bias gradients).
pub fn sum_channels(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    let (n, c, sp) = ncs("sum_channels", x)?;
    let p = Params {
        c: c as u32,
        s: sp as u32,
        outer: n as u32,
        ..Default::default()
    };
    let out = s.gpu().alloc("sum_channels", &[c], DType::F32)?;
    let groups = grid_1d(c, 1);
    s.dispatch(
        SHADER,
        "sum_channels",
        &[],
        bytes_of(&p),
        &[x, &out],
        groups,
    )?;
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
    let p = Params {
        n: n as u32,
        outer: k as u32,
        ..Default::default()
    };
    let out = s.gpu().alloc("sum_chunks", shape, DType::F32)?;
    s.dispatch(
        SHADER,
        "sum_chunks",
        &[],
        bytes_of(&p),
        &[x, &out],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

/// Sets every element of `t` to zero.
pub fn zero(s: &mut Stream, t: &Tensor) -> Result<()> {
    let p = Params {
        n: t.numel() as u32,
        ..Default::default()
    };
    s.dispatch(
        SHADER,
        "zero",
        &[],
        bytes_of(&p),
        &[t],
        grid_1d(t.numel(), 256),
    )
}

/// The scalar losses, all means over the elements of x.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// mean relu(1 - sign * x): `sign` +1 for "real", -1 for "fake".
    Hinge { sign: f32 },
    /// mean sign * x.
    Linear { sign: f32 },
    /// mean |x - target|.
    L1,
    /// mean |t| relu(1 - sign(t) x) for a target t of signed weights: several hinge terms
    /// over one concatenated batch.
    WeightedHinge,
    /// Softmax cross-entropy of logits x `[rows, classes]` against target class weights t
    /// (one-hot rows, or all-zero rows to leave a row out), mean over rows:
    /// sum_j t_j (logsumexp(x) - x_j).
    CrossEntropy,
}

impl Loss {
    fn params(self, x: &Tensor, w: f32) -> Params {
        let n = x.numel();
        let (kind, slope) = match self {
            Loss::Hinge { sign } => (0, sign),
            Loss::Linear { sign } => (1, sign),
            Loss::L1 => (2, 0.0),
            Loss::WeightedHinge => (3, 0.0),
            Loss::CrossEntropy => (4, 0.0),
        };
        let cols = match self {
            Loss::CrossEntropy => *x.shape().last().unwrap_or(&1),
            _ => 1,
        };
        Params {
            n: n as u32,
            c: cols as u32,
            kind,
            slope,
            w,
            count: (n / cols.max(1)) as f32,
            ..Default::default()
        }
    }

    fn check(self, x: &Tensor, target: Option<&Tensor>) -> Result<()> {
        match (self, target) {
            (Loss::CrossEntropy, _) if x.shape().len() != 2 => {
                shape_err("loss", "cross-entropy needs [rows, classes] logits")
            }
            (Loss::L1 | Loss::WeightedHinge | Loss::CrossEntropy, Some(t)) => {
                same_shape("loss", x, t)
            }
            (Loss::L1 | Loss::WeightedHinge | Loss::CrossEntropy, None) => {
                shape_err("loss", "needs a target")
            }
            _ => Ok(()),
        }
    }

    /// The loss value `[1]`.
    pub fn value(self, s: &mut Stream, x: &Tensor, target: Option<&Tensor>) -> Result<Tensor> {
        self.check(x, target)?;
        let out = s.gpu().alloc("loss", &[1], DType::F32)?;
        let p = self.params(x, 1.0);
        s.dispatch(
            SHADER,
            "loss_value",
            &[],
            bytes_of(&p),
            &[x, target.unwrap_or(x), &out],
            [1, 1, 1],
        )?;
        Ok(out)
    }

    /// d(w * loss)/dx.
    pub fn grad(
        self,
        s: &mut Stream,
        x: &Tensor,
        target: Option<&Tensor>,
        w: f32,
    ) -> Result<Tensor> {
        self.check(x, target)?;
        let out = s.gpu().alloc("loss_grad", x.shape(), DType::F32)?;
        let p = self.params(x, w);
        s.dispatch(
            SHADER,
            "loss_grad",
            &[],
            bytes_of(&p),
            &[x, target.unwrap_or(x), &out],
            grid_1d(x.numel(), 256),
        )?;
        Ok(out)
    }
}

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

/// Batch statistics of a BN input and the stored ones it is pulled towards (ZeroQ).
#[derive(Clone, Debug)]
pub struct StatLoss {
    pub mean: Tensor,
    /// 1 / sqrt(biased batch variance + eps).
    pub inv_std: Tensor,
    /// [running mean; sqrt(running var + eps)], `[2C]`.
    pub reference: Tensor,
}

fn stat_params(x: &Tensor, w: f32) -> Params {
    let sh = x.shape();
    Params {
        n: x.numel() as u32,
        c: sh[1] as u32,
        s: sh[2..].iter().product::<usize>() as u32,
        outer: sh[0] as u32,
        w,
        ..Default::default()
    }
}

/// ZeroQ's loss for one BN input x `[N, C, ...]`: sum over channels of the squared
/// differences between the batch mean and std and the stored `reference` (`[2C]`: running
/// mean, then sqrt(running var + eps)). `scratch` is a batch norm of C channels with the
/// layer's eps whose running statistics this overwrites. Returns the loss `[1]` and what
/// backward needs.
pub fn bn_stat_loss(
    s: &mut Stream,
    x: &Tensor,
    reference: &Tensor,
    scratch: &crate::ops::batchnorm::BatchNorm,
) -> Result<(Tensor, StatLoss)> {
    const OP: &str = "bn_stat_loss";
    let sh = x.shape();
    if sh.len() < 2 || reference.shape() != [2 * sh[1]] {
        return shape_err(
            OP,
            format!("input {sh:?} with reference {:?}", reference.shape()),
        );
    }
    let g = s.gpu();
    let (mean, inv_std) = crate::ops::batchnorm::batch_stats(s, x, scratch)?;
    let out = g.alloc(OP, &[1], DType::F32)?;
    s.dispatch(
        SHADER,
        "stat_value",
        &[],
        bytes_of(&stat_params(x, 1.0)),
        &[&mean, &inv_std, reference, &out],
        [1, 1, 1],
    )?;
    Ok((
        out,
        StatLoss {
            mean,
            inv_std,
            reference: reference.clone(),
        },
    ))
}

/// d(w * bn_stat_loss)/dx.
pub fn bn_stat_loss_backward(s: &mut Stream, x: &Tensor, st: &StatLoss, w: f32) -> Result<Tensor> {
    let out = s.gpu().alloc("bn_stat_loss_grad", x.shape(), DType::F32)?;
    s.dispatch(
        SHADER,
        "stat_grad",
        &[],
        bytes_of(&stat_params(x, w)),
        &[x, &st.mean, &st.inv_std, &st.reference, &out],
        grid_1d(x.numel(), 256),
    )?;
    Ok(out)
}
