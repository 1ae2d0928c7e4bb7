//! Batch normalization over dim 1 of `[N, C]` (1d) or `[N, C, H, W]` (2d; any `[N, C, ...]`):
//! the inference form with running statistics and a fused activation, and the training form
//! that computes batch statistics on the GPU and updates the running ones in place.
//!
//! Pieces: shader `shaders/norm.wgsl`; backward `batch_norm_backward` below (`shaders/grad.wgsl`);
//! CPU reference `cpu::batchnorm`; tests below and in `tests/grad.rs` (backward).

use super::checks::same_shape;
use super::checks::{dtype, ncs};
use super::grad::{Params as GradParams, SHADER as GRAD};
use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("norm");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    c: u32,
    s: u32,
    total: u32,
    eps: f32,
    momentum: f32,
    _p0: u32,
    slope: f32,
    stat_is_var: u32,
    _pad: [u32; 3],
}

/// A batch-norm layer's parameters and running statistics, all f32 `[C]`.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
    pub eps: f32,
    /// Weight of the new batch statistic in the running average (PyTorch's `momentum`).
    pub momentum: f32,
}

impl BatchNorm {
    /// With PyTorch's defaults: eps 1e-5, momentum 0.1.
    pub fn new(gamma: Tensor, beta: Tensor, running_mean: Tensor, running_var: Tensor) -> Self {
        BatchNorm {
            gamma,
            beta,
            running_mean,
            running_var,
            eps: 1e-5,
            momentum: 0.1,
        }
    }

    /// The layer that multiplies channel c by `scale[c]` (and shifts by nothing): a frozen
    /// batch norm's backward.
    pub fn scaling(gpu: &Gpu, scale: &[f32]) -> Result<Self> {
        let c = scale.len();
        let mut bn = BatchNorm::new(
            gpu.upload_f32(&[c], scale)?,
            gpu.upload_f32(&[c], &vec![0.0; c])?,
            gpu.upload_f32(&[c], &vec![0.0; c])?,
            gpu.upload_f32(&[c], &vec![1.0; c])?,
        );
        bn.eps = 0.0;
        Ok(bn)
    }

    /// A freshly initialized layer: gamma 1, beta 0, running mean 0, running var 1.
    pub fn init(gpu: &Gpu, c: usize) -> Result<Self> {
        let (ones, zeros) = (vec![1.0; c], vec![0.0; c]);
        Ok(BatchNorm::new(
            gpu.upload_f32(&[c], &ones)?,
            gpu.upload_f32(&[c], &zeros)?,
            gpu.upload_f32(&[c], &zeros)?,
            gpu.upload_f32(&[c], &ones)?,
        ))
    }

    fn check(&self, op: &'static str, x: &Tensor) -> Result<(usize, usize, usize)> {
        let (n, c, s) = ncs(op, x)?;
        let named = [
            ("gamma", &self.gamma),
            ("beta", &self.beta),
            ("running_mean", &self.running_mean),
            ("running_var", &self.running_var),
        ];
        for (name, t) in named {
            dtype(op, t, DType::F32)?;
            if t.shape() != [c] {
                return shape_err(
                    op,
                    format!(
                        "{name} has shape {:?}, input {:?} needs [{c}]",
                        t.shape(),
                        x.shape()
                    ),
                );
            }
        }
        Ok((n, c, s))
    }

    fn params(&self, (n, c, s): (usize, usize, usize), act: Act, stat_is_var: bool) -> Params {
        Params {
            n: n as u32,
            c: c as u32,
            s: s as u32,
            total: (n * c * s) as u32,
            eps: self.eps,
            momentum: self.momentum,
            _p0: 0,
            slope: act.code().1,
            stat_is_var: stat_is_var as u32,
            _pad: [0; 3],
        }
    }
}

/// What the training form returns; `mean` and `inv_std` (`[C]`) are what backward needs.
#[derive(Clone, Debug)]
pub struct BatchStats {
    pub y: Tensor,
    pub mean: Tensor,
    /// 1 / sqrt(biased batch variance + eps).
    pub inv_std: Tensor,
}

/// Inference: y = act((x - running_mean) / sqrt(running_var + eps) * gamma + beta).
pub fn batch_norm(s: &mut Stream, x: &Tensor, bn: &BatchNorm, act: Act) -> Result<Tensor> {
    let dims = bn.check("batch_norm", x)?;
    let p = bn.params(dims, act, true);
    let y = s.gpu().alloc("batch_norm", x.shape(), DType::F32)?;
    let t = [
        x,
        &bn.gamma,
        &bn.beta,
        &bn.running_mean,
        &bn.running_var,
        &y,
    ];
    apply(s, &p, act, &t)?;
    Ok(y)
}

/// y = act((x - mean) * inv_std * gamma + beta) over `t` = [x, gamma, beta, mean, stat, y]; the
/// vec4 form where each channel's plane is a multiple of 4 long.
fn apply(s: &mut Stream, p: &Params, act: Act, t: &[&Tensor; 6]) -> Result<()> {
    let n = p.total as usize;
    let (entry, threads) = if p.s.is_multiple_of(4) {
        ("apply4", n / 4)
    } else {
        ("apply", n)
    };
    let consts = [super::elementwise::act_const(act)];
    s.dispatch(
        SHADER,
        entry,
        &consts,
        bytes_of(p),
        t,
        grid_1d(threads, 256),
    )
}

/// The batch mean and 1 / sqrt(biased variance + eps) per channel (`[C]` each), one workgroup
/// per channel; updates `bn`'s running statistics in place, as training does.
pub fn batch_stats(s: &mut Stream, x: &Tensor, bn: &BatchNorm) -> Result<(Tensor, Tensor)> {
    let op = "batch_stats";
    let dims = bn.check(op, x)?;
    let (n, c, sp) = dims;
    if n * sp < 2 {
        return shape_err(
            op,
            format!(
                "need more than 1 value per channel, got input {:?}",
                x.shape()
            ),
        );
    }
    let gpu = s.gpu();
    let p = bn.params(dims, Act::Identity, false);
    let mean = gpu.alloc(op, &[c], DType::F32)?;
    let inv_std = gpu.alloc(op, &[c], DType::F32)?;
    let t = [x, &mean, &inv_std, &bn.running_mean, &bn.running_var];
    let entry = if sp.is_multiple_of(4) {
        "stats4"
    } else {
        "stats"
    };
    s.dispatch(SHADER, entry, &[], bytes_of(&p), &t, [c as u32, 1, 1])?;
    Ok((mean, inv_std))
}

/// Training: normalizes with the batch mean and biased variance, and updates `bn`'s running
/// statistics in place (running_var with the unbiased variance), as `nn.BatchNorm` in train mode.
pub fn batch_norm_train(
    s: &mut Stream,
    x: &Tensor,
    bn: &BatchNorm,
    act: Act,
) -> Result<BatchStats> {
    let op = "batch_norm_train";
    let (mean, inv_std) = batch_stats(s, x, bn)?;
    let dims = bn.check(op, x)?;
    let p = bn.params(dims, act, false);
    let y = s.gpu().alloc(op, x.shape(), DType::F32)?;
    apply(s, &p, act, &[x, &bn.gamma, &bn.beta, &mean, &inv_std, &y])?;
    Ok(BatchStats { y, mean, inv_std })
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
    let p = GradParams {
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
        GRAD,
        if sp.is_multiple_of(4) {
            "bn_reduce4"
        } else {
            "bn_reduce"
        },
        &[],
        bytes_of(&p),
        &[x, dy, mean, inv_std, &dgamma, &dbeta],
        [c as u32, 1, 1],
    )?;
    let t = [x, dy, mean, inv_std, gamma, &dgamma, &dbeta, &dx];
    s.dispatch(
        GRAD,
        "bn_apply",
        &[],
        bytes_of(&p),
        &t,
        grid_1d(x.numel(), 256),
    )?;
    Ok((dx, dgamma, dbeta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn layer(g: &Gpu, c: usize, seed: u64) -> (BatchNorm, [Array; 4]) {
        let gamma = Array::random(&[c], seed).map(|v| v + 1.5);
        let beta = Array::random(&[c], seed + 1);
        let mean = Array::random(&[c], seed + 2);
        let var = Array::random(&[c], seed + 3).map(|v| v + 1.2);
        let up = |a: &Array| g.upload_f32(&[c], &a.data).unwrap();
        let bn = BatchNorm::new(up(&gamma), up(&beta), up(&mean), up(&var));
        (bn, [gamma, beta, mean, var])
    }

    fn check_inference(shape: &[usize], act: Act, seed: u64) {
        let g = gpu();
        let (bn, [gamma, beta, mean, var]) = layer(&g, shape[1], seed);
        let x = Array::random(shape, seed + 9).map(|v| v * 3.0);
        let mut s = g.stream();
        let y = batch_norm(&mut s, &g.upload_f32(shape, &x.data).unwrap(), &bn, act).unwrap();
        s.submit();
        let want = cpu::batchnorm::batch_norm(
            &x,
            &gamma.data,
            &beta.data,
            &mean.data,
            &var.data,
            1e-5,
            act,
        );
        let err = Array::new(shape, g.read_f32(&y).unwrap()).max_rel_err(&want.data);
        assert!(err < 1e-4, "{shape:?} {act:?}: {err}");
    }

    fn check_train(shape: &[usize], offset: f32, seed: u64) {
        let g = gpu();
        let c = shape[1];
        let (bn, [gamma, beta, mut rmean, mut rvar]) = layer(&g, c, seed);
        // An offset far from zero checks that the variance is computed centered.
        let x = Array::random(shape, seed + 9).map(|v| v * 2.0 + offset);
        let mut s = g.stream();
        let out = batch_norm_train(
            &mut s,
            &g.upload_f32(shape, &x.data).unwrap(),
            &bn,
            Act::Relu,
        )
        .unwrap();
        s.submit();
        let want = cpu::batchnorm::batch_norm_train(
            &x,
            &gamma.data,
            &beta.data,
            &mut rmean.data,
            &mut rvar.data,
            1e-5,
            0.1,
            Act::Relu,
        );
        let read = |t: &Tensor| Array::new(t.shape(), g.read_f32(t).unwrap());
        assert!(read(&out.y).max_rel_err(&want.y.data) < 1e-4, "y {shape:?}");
        assert!(
            read(&out.mean).max_rel_err(&want.mean) < 1e-4,
            "mean {shape:?}"
        );
        assert!(
            read(&out.inv_std).max_rel_err(&want.inv_std) < 1e-4,
            "inv_std {shape:?}"
        );
        assert!(
            read(&bn.running_mean).max_rel_err(&rmean.data) < 1e-4,
            "running_mean {shape:?}"
        );
        assert!(
            read(&bn.running_var).max_rel_err(&rvar.data) < 1e-4,
            "running_var {shape:?}"
        );
    }

    #[test]
    fn inference_matches_cpu_2d_and_1d() {
        crate::ops::skip_without_gpu!();
        check_inference(&[2, 3, 5, 7], Act::Identity, 1);
        check_inference(&[3, 16, 8, 8], Act::Relu, 2);
        check_inference(&[1, 5, 1, 1], Act::LeakyRelu(0.2), 3);
        check_inference(&[7, 33], Act::Relu6, 4);
        check_inference(&[4, 10], Act::Tanh, 5);
    }

    #[test]
    fn training_matches_pytorch_semantics() {
        crate::ops::skip_without_gpu!();
        check_train(&[4, 3, 5, 7], 0.0, 1);
        check_train(&[2, 8, 17, 17], 0.0, 2); // more elements per channel than threads
        check_train(&[5, 6], 0.0, 3); // 1d
        check_train(&[2, 1], 0.0, 4); // the smallest batch that trains
        check_train(&[8, 4, 16, 16], 100.0, 5); // large mean: needs the centered variance
        check_train(&[3, 5, 2, 2], 0.0, 6); // four elements a load, fewer loads than threads
    }

    #[test]
    fn training_updates_running_stats_cumulatively() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let bn = BatchNorm::init(&g, 2).unwrap();
        let x = g.upload_f32(&[2, 2], &[1.0, 10.0, 3.0, 30.0]).unwrap();
        let mut s = g.stream();
        for _ in 0..2 {
            batch_norm_train(&mut s, &x, &bn, Act::Identity).unwrap();
        }
        s.submit();
        // Per step: mean' = 0.9 mean + 0.1 m; var' = 0.9 var + 0.1 * unbiased var.
        let rm = g.read_f32(&bn.running_mean).unwrap();
        let rv = g.read_f32(&bn.running_var).unwrap();
        let step = |r: f32, v: f32| 0.9 * (0.9 * r + 0.1 * v) + 0.1 * v;
        let want_m = [step(0.0, 2.0), step(0.0, 20.0)];
        let want_v = [step(1.0, 2.0), step(1.0, 200.0)];
        assert!(Array::new(&[2], rm).max_rel_err(&want_m) < 1e-5);
        assert!(Array::new(&[2], rv).max_rel_err(&want_v) < 1e-5);
    }

    #[test]
    fn rejects_bad_shapes() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let bn = BatchNorm::init(&g, 3).unwrap();
        let x = g.upload_f32(&[2, 4, 2, 2], &[0.0; 32]).unwrap();
        let err = batch_norm(&mut g.stream(), &x, &bn, Act::Identity)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("batch_norm") && err.contains("[2, 4, 2, 2]") && err.contains("[4]"),
            "{err}"
        );
        let x = g.upload_f32(&[6], &[0.0; 6]).unwrap();
        assert!(batch_norm(&mut g.stream(), &x, &bn, Act::Identity).is_err());
        let one = g.upload_f32(&[1, 3], &[0.0; 3]).unwrap();
        let err = batch_norm_train(&mut g.stream(), &one, &bn, Act::Identity)
            .unwrap_err()
            .to_string();
        assert!(err.contains("more than 1 value"), "{err}");
        let ints = g.upload_i32(&[2, 3], &[0; 6]).unwrap();
        assert!(batch_norm(&mut g.stream(), &ints, &bn, Act::Identity).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(12))]
        #[test]
        fn random_shapes(n in 1usize..5, c in 1usize..9, h in 1usize..11, w in 1usize..11, seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            check_inference(&[n, c, h, w], Act::Relu, seed);
            if n * h * w > 1 {
                check_train(&[n, c, h, w], 0.0, seed);
            }
        }
    }
}
