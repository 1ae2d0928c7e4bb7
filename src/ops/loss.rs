//! The scalar losses of GAN training and distillation, and ZeroQ's batch-norm statistics loss,
//! with their gradients (`shaders/grad.wgsl`).
//!
//! Pieces: shader `shaders/grad.wgsl`; CPU references and tests in `tests/grad.rs`.

use super::bytes_of;
use super::checks::same_shape;
use super::grad::{Params, SHADER};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Stream, Tensor};

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
