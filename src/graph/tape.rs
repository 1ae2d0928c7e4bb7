//! Reverse-mode autodiff: every op runs on the GPU as it is called (recorded on the caller's
//! stream) and leaves a record; `backward` walks the records in reverse, one match arm per op,
//! and accumulates gradients. Values that no parameter influences carry no record work.

use crate::error::{Error, Result};
use crate::gpu::{Stream, Tensor};
use crate::ops::pool::{Pool, Window};
use crate::ops::{self, conv2d::Conv2dParams, loss::Loss, Act};

/// A value on the tape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Var(usize);

enum Rec {
    Leaf,
    Linear {
        x: Var,
        w: Var,
    },
    Conv {
        x: Var,
        w: Var,
        b: Option<Var>,
        p: Conv2dParams,
    },
    BatchNorm {
        x: Var,
        gamma: Var,
        beta: Var,
        mean: Tensor,
        inv_std: Tensor,
    },
    Glu {
        x: Var,
    },
    Act {
        x: Var,
        act: Act,
    },
    Upsample {
        x: Var,
        f: usize,
    },
    Pool {
        x: Var,
        how: Pool,
        win: Window,
    },
    Concat {
        xs: Vec<Var>,
    },
    Reshape {
        x: Var,
    },
    Add {
        a: Var,
        b: Var,
    },
    Mul {
        a: Var,
        b: Var,
    },
    SpectralNorm {
        w: Var,
        st: ops::spectral_norm::SpectralState,
    },
    Loss {
        x: Var,
        target: Option<Var>,
        loss: Loss,
    },
    StatLoss {
        x: Var,
        st: ops::loss::StatLoss,
    },
    /// AdaRound's soft-quantized weights W~(v).
    SoftQuant {
        v: Var,
        sq: ops::adaround::SoftQuant,
    },
    /// Fake quantization of x with step `step` (see `ops::fake_quant`).
    FakeQuant {
        x: Var,
        step: Var,
        fq: ops::fake_quant::FakeQuant,
    },
    /// Inference-form batch norm: dx = dy * gamma / sqrt(var + eps), applied by `grad_bn`.
    FrozenBn {
        x: Var,
        grad_bn: ops::batchnorm::BatchNorm,
    },
}

#[derive(Default)]
pub struct Tape {
    vals: Vec<Tensor>,
    recs: Vec<Rec>,
    needs_grad: Vec<bool>,
}

/// Gradients by value; `None` where no gradient reached.
pub struct Grads(Vec<Option<Tensor>>);

impl Grads {
    pub fn get(&self, v: Var) -> Option<&Tensor> {
        self.0.get(v.0).and_then(|g| g.as_ref())
    }
}

impl Tape {
    pub fn new() -> Tape {
        Tape::default()
    }

    pub fn value(&self, v: Var) -> &Tensor {
        &self.vals[v.0]
    }

    fn push(&mut self, t: Tensor, rec: Rec, inputs: &[Var]) -> Var {
        let needs = inputs.iter().any(|i| self.needs_grad[i.0]);
        self.vals.push(t);
        self.recs.push(if needs { rec } else { Rec::Leaf });
        self.needs_grad.push(needs);
        Var(self.vals.len() - 1)
    }

    /// A leaf: a trainable parameter when `trainable`, otherwise a constant (data).
    pub fn leaf(&mut self, t: Tensor, trainable: bool) -> Var {
        self.vals.push(t);
        self.recs.push(Rec::Leaf);
        self.needs_grad.push(trainable);
        Var(self.vals.len() - 1)
    }

    /// y = x w^T for x `[N, in]`, w `[out, in]`.
    pub fn linear(&mut self, s: &mut Stream, x: Var, w: Var) -> Result<Var> {
        let y = ops::matmul::linear(s, self.value(x), self.value(w), None, Act::Identity)?;
        Ok(self.push(y, Rec::Linear { x, w }, &[x, w]))
    }

    pub fn conv2d(
        &mut self,
        s: &mut Stream,
        x: Var,
        w: Var,
        b: Option<Var>,
        p: Conv2dParams,
    ) -> Result<Var> {
        let bias = b.map(|b| self.value(b).clone());
        let y = ops::conv2d_grad::conv2d_train(s, self.value(x), self.value(w), bias.as_ref(), &p)?;
        let mut inputs = vec![x, w];
        inputs.extend(b);
        Ok(self.push(y, Rec::Conv { x, w, b, p }, &inputs))
    }

    /// Training-mode batch norm over dim 1; updates `running` (mean, var) in place.
    pub fn batch_norm(
        &mut self,
        s: &mut Stream,
        x: Var,
        gamma: Var,
        beta: Var,
        running: (&Tensor, &Tensor),
    ) -> Result<Var> {
        let bn = ops::batchnorm::BatchNorm::new(
            self.value(gamma).clone(),
            self.value(beta).clone(),
            running.0.clone(),
            running.1.clone(),
        );
        let st = ops::batchnorm::batch_norm_train(s, self.value(x), &bn, Act::Identity)?;
        let rec = Rec::BatchNorm {
            x,
            gamma,
            beta,
            mean: st.mean,
            inv_std: st.inv_std,
        };
        Ok(self.push(st.y, rec, &[x, gamma, beta]))
    }

    pub fn glu(&mut self, s: &mut Stream, x: Var) -> Result<Var> {
        let y = ops::glu::glu(s, self.value(x))?;
        Ok(self.push(y, Rec::Glu { x }, &[x]))
    }

    pub fn act(&mut self, s: &mut Stream, x: Var, act: Act) -> Result<Var> {
        let y = ops::elementwise::act(s, self.value(x), act)?;
        Ok(self.push(y, Rec::Act { x, act }, &[x]))
    }

    pub fn upsample(&mut self, s: &mut Stream, x: Var, f: usize) -> Result<Var> {
        let y = ops::layout::upsample_nearest(s, self.value(x), f)?;
        Ok(self.push(y, Rec::Upsample { x, f }, &[x]))
    }

    /// Max or average pooling over any undilated window (`ops::pool::pool2d`).
    pub fn pool(&mut self, s: &mut Stream, x: Var, how: Pool, win: &Window) -> Result<Var> {
        if win.dilation != [1, 1] {
            return Err(Error::Invalid(format!(
                "pooling with dilation {:?} has no backward",
                win.dilation
            )));
        }
        let y = ops::pool::pool2d(s, self.value(x), how, win)?;
        let win = *win;
        Ok(self.push(y, Rec::Pool { x, how, win }, &[x]))
    }

    /// Concatenation over dim 1.
    pub fn concat(&mut self, s: &mut Stream, xs: &[Var]) -> Result<Var> {
        let ts: Vec<&Tensor> = xs.iter().map(|&v| self.value(v)).collect();
        let y = ops::layout::concat(s, &ts)?;
        Ok(self.push(y, Rec::Concat { xs: xs.to_vec() }, xs))
    }

    /// A view with another shape (flatten, or [N, C*H*W] -> [N, C, H, W]).
    pub fn reshape(&mut self, x: Var, shape: &[usize]) -> Result<Var> {
        let y = self.value(x).reshape(shape)?;
        Ok(self.push(y, Rec::Reshape { x }, &[x]))
    }

    pub fn add(&mut self, s: &mut Stream, a: Var, b: Var) -> Result<Var> {
        let y = ops::elementwise::add(s, self.value(a), self.value(b), Act::Identity)?;
        Ok(self.push(y, Rec::Add { a, b }, &[a, b]))
    }

    pub fn mul(&mut self, s: &mut Stream, a: Var, b: Var) -> Result<Var> {
        let y = ops::elementwise::mul(s, self.value(a), self.value(b))?;
        Ok(self.push(y, Rec::Mul { a, b }, &[a, b]))
    }

    /// W / sigma(W) with one power iteration from the persistent `u` (updated in place).
    pub fn spectral_norm(&mut self, s: &mut Stream, w: Var, u: &Tensor) -> Result<Var> {
        let st = ops::spectral_norm::spectral_norm(s, self.value(w), u, 1e-12)?;
        let y = st.w_sn.clone();
        Ok(self.push(y, Rec::SpectralNorm { w, st }, &[w]))
    }

    /// AdaRound's soft-quantized weights W~(v) (see `ops::adaround`).
    pub fn soft_quant(
        &mut self,
        s: &mut Stream,
        v: Var,
        sq: &ops::adaround::SoftQuant,
    ) -> Result<Var> {
        let y = sq.weight(s, self.value(v))?;
        let rec = Rec::SoftQuant { v, sq: sq.clone() };
        Ok(self.push(y, rec, &[v]))
    }

    /// Fake quantization of x (see `ops::fake_quant`); `step` holds `[scale, 1 / scale]` and
    /// gets LSQ's gradient when it is trainable.
    pub fn fake_quant(
        &mut self,
        s: &mut Stream,
        x: Var,
        step: Var,
        fq: ops::fake_quant::FakeQuant,
    ) -> Result<Var> {
        let y = fq.forward(s, self.value(x), self.value(step))?;
        Ok(self.push(y, Rec::FakeQuant { x, step, fq }, &[x, step]))
    }

    /// A scalar loss `[1]`; give it to `backward` with its weight.
    pub fn loss(&mut self, s: &mut Stream, x: Var, target: Option<Var>, loss: Loss) -> Result<Var> {
        let t = target.map(|t| self.value(t).clone());
        let y = loss.value(s, self.value(x), t.as_ref())?;
        let mut inputs = vec![x];
        inputs.extend(target);
        Ok(self.push(y, Rec::Loss { x, target, loss }, &inputs))
    }

    /// Inference-form (frozen) batch norm; gradients reach x only. `grad_bn` must scale by
    /// gamma / sqrt(var + eps) and shift by nothing (see `ops::batchnorm::BatchNorm::scaling`).
    pub fn frozen_batch_norm(
        &mut self,
        s: &mut Stream,
        x: Var,
        bn: &ops::batchnorm::BatchNorm,
        grad_bn: &ops::batchnorm::BatchNorm,
    ) -> Result<Var> {
        let y = ops::batchnorm::batch_norm(s, self.value(x), bn, Act::Identity)?;
        let rec = Rec::FrozenBn {
            x,
            grad_bn: grad_bn.clone(),
        };
        Ok(self.push(y, rec, &[x]))
    }

    /// ZeroQ's BN-statistics loss `[1]` of x against `reference` = [running mean; running
    /// std] (see `ops::loss::bn_stat_loss`, also for `scratch`); give it to `backward` like a
    /// `loss`.
    pub fn bn_stat_loss(
        &mut self,
        s: &mut Stream,
        x: Var,
        reference: &Tensor,
        scratch: &ops::batchnorm::BatchNorm,
    ) -> Result<Var> {
        let (y, st) = ops::loss::bn_stat_loss(s, self.value(x), reference, scratch)?;
        Ok(self.push(y, Rec::StatLoss { x, st }, &[x]))
    }

    /// Gradients of sum(weight * loss) over `losses` (each a `loss` value).
    pub fn backward(&self, s: &mut Stream, losses: &[(Var, f32)]) -> Result<Grads> {
        self.backward_seeded(s, &[], losses)
    }

    /// Gradients of sum(weight * loss) + sum(<seed, value>): `seeds` give d/d(value) directly.
    pub fn backward_seeded(
        &self,
        s: &mut Stream,
        seeds: &[(Var, Tensor)],
        losses: &[(Var, f32)],
    ) -> Result<Grads> {
        let mut g: Vec<Option<Tensor>> = vec![None; self.vals.len()];
        for (v, d) in seeds {
            if d.shape() != self.value(*v).shape() {
                return Err(Error::Invalid(format!(
                    "backward: seed {:?} for a value of shape {:?}",
                    d.shape(),
                    self.value(*v).shape()
                )));
            }
            self.accumulate(s, &mut g, *v, d.clone())?;
        }
        let mut weights = vec![0.0f32; self.vals.len()];
        for &(v, w) in losses {
            if !matches!(self.recs[v.0], Rec::Loss { .. } | Rec::StatLoss { .. }) {
                return Err(Error::Invalid(
                    "backward: seed values must be losses".into(),
                ));
            }
            weights[v.0] += w;
        }
        for i in (0..self.vals.len()).rev() {
            if let Rec::Loss { x, target, loss } = &self.recs[i] {
                if weights[i] != 0.0 && self.needs_grad[i] {
                    let t = target.map(|t| self.value(t));
                    let dx = loss.grad(s, self.value(*x), t, weights[i])?;
                    self.accumulate(s, &mut g, *x, dx)?;
                }
                continue;
            }
            if let Rec::StatLoss { x, st } = &self.recs[i] {
                if weights[i] != 0.0 && self.needs_grad[i] {
                    let dx = ops::loss::bn_stat_loss_backward(s, self.value(*x), st, weights[i])?;
                    self.accumulate(s, &mut g, *x, dx)?;
                }
                continue;
            }
            let Some(dy) = g[i].take() else { continue };
            self.backward_one(s, &mut g, i, &dy)?;
            if matches!(self.recs[i], Rec::Leaf) {
                g[i] = Some(dy);
            }
        }
        Ok(Grads(g))
    }

    fn accumulate(
        &self,
        s: &mut Stream,
        g: &mut [Option<Tensor>],
        v: Var,
        d: Tensor,
    ) -> Result<()> {
        if !self.needs_grad[v.0] {
            return Ok(());
        }
        let d = d.reshape(self.value(v).shape())?;
        g[v.0] = Some(match g[v.0].take() {
            None => d,
            Some(old) => ops::elementwise::add(s, &old, &d, Act::Identity)?,
        });
        Ok(())
    }

    fn backward_one(
        &self,
        s: &mut Stream,
        g: &mut [Option<Tensor>],
        i: usize,
        dy: &Tensor,
    ) -> Result<()> {
        let val = |v: &Var| self.value(*v);
        let wants = |v: &Var| self.needs_grad[v.0];
        match &self.recs[i] {
            Rec::Leaf | Rec::Loss { .. } | Rec::StatLoss { .. } => {}
            Rec::FrozenBn { x, grad_bn } => {
                let dx = ops::batchnorm::batch_norm(s, dy, grad_bn, Act::Identity)?;
                self.accumulate(s, g, *x, dx)?;
            }
            Rec::Linear { x, w } => {
                if wants(x) {
                    let dx = ops::matmul::matmul(s, dy, val(w), false, false)?;
                    self.accumulate(s, g, *x, dx)?;
                }
                if wants(w) {
                    let dw = ops::matmul::matmul(s, dy, val(x), true, false)?;
                    self.accumulate(s, g, *w, dw)?;
                }
            }
            Rec::Conv { x, w, b, p } => {
                if wants(x) {
                    let xs = val(x).dims::<4>("conv2d backward")?;
                    let dx = ops::conv2d_grad::conv2d_backward_data(s, dy, val(w), xs, p)?;
                    self.accumulate(s, g, *x, dx)?;
                }
                if wants(w) {
                    let ws = val(w).dims::<4>("conv2d backward")?;
                    let dw = ops::conv2d_grad::conv2d_backward_weight(s, val(x), dy, ws, p)?;
                    self.accumulate(s, g, *w, dw)?;
                }
                if let Some(b) = b.filter(|b| wants(b)) {
                    let db = ops::stats::sum_channels(s, dy)?;
                    self.accumulate(s, g, b, db)?;
                }
            }
            Rec::BatchNorm {
                x,
                gamma,
                beta,
                mean,
                inv_std,
            } => {
                let (dx, dgamma, dbeta) =
                    ops::batchnorm::batch_norm_backward(s, val(x), dy, val(gamma), mean, inv_std)?;
                self.accumulate(s, g, *x, dx)?;
                self.accumulate(s, g, *gamma, dgamma)?;
                self.accumulate(s, g, *beta, dbeta)?;
            }
            Rec::Glu { x } => {
                let dx = ops::glu::glu_backward(s, val(x), dy)?;
                self.accumulate(s, g, *x, dx)?;
            }
            Rec::Act { x, act } => {
                let dx = ops::elementwise::act_backward(s, &self.vals[i], dy, *act)?;
                self.accumulate(s, g, *x, dx)?;
            }
            Rec::Upsample { x, f } => {
                let dx = ops::layout::upsample_backward(s, dy, *f)?;
                self.accumulate(s, g, *x, dx)?;
            }
            Rec::Pool { x, how, win } => {
                let dx = ops::pool::pool2d_backward(s, val(x), dy, *how, win)?;
                self.accumulate(s, g, *x, dx)?;
            }
            Rec::Concat { xs } => {
                let mut start = 0;
                for x in xs {
                    let c = val(x).shape()[1];
                    if wants(x) {
                        let dx = ops::layout::slice_channels(s, dy, start..start + c)?;
                        self.accumulate(s, g, *x, dx)?;
                    }
                    start += c;
                }
            }
            Rec::Reshape { x } => self.accumulate(s, g, *x, dy.clone())?,
            Rec::Add { a, b } => {
                self.accumulate(s, g, *a, dy.clone())?;
                self.accumulate(s, g, *b, dy.clone())?;
            }
            Rec::Mul { a, b } => {
                if wants(a) {
                    let da = ops::elementwise::mul(s, dy, val(b))?;
                    self.accumulate(s, g, *a, da)?;
                }
                if wants(b) {
                    let db = ops::elementwise::mul(s, dy, val(a))?;
                    self.accumulate(s, g, *b, db)?;
                }
            }
            Rec::SoftQuant { v, sq } => {
                let dv = sq.backward(s, val(v), dy)?;
                self.accumulate(s, g, *v, dv)?;
            }
            Rec::FakeQuant { x, step, fq } => {
                if wants(x) {
                    let dx = fq.backward(s, val(x), val(step), dy)?;
                    self.accumulate(s, g, *x, dx)?;
                }
                if wants(step) {
                    let ds = fq.step_grad(s, val(x), val(step), dy)?;
                    self.accumulate(s, g, *step, ds)?;
                }
            }
            Rec::SpectralNorm { w, st } => {
                let dw = ops::spectral_norm::spectral_norm_backward(s, st, dy)?;
                self.accumulate(s, g, *w, dw)?;
            }
        }
        Ok(())
    }
}
