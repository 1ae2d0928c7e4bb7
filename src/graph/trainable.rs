//! Trainable parameters on the GPU: every tensor of a network is a view into one flat buffer
//! (each start padded to 256 bytes), with flat gradient and Adam moment buffers beside it, so
//! one Adam dispatch updates the whole network.

use super::tape::{Grads, Tape, Var};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream, Tensor};
use crate::ops::adam::{adam, AdamConfig};
use crate::ops::elementwise::zero;
use std::collections::HashMap;

pub struct ParamSet {
    names: Vec<String>,
    starts: Vec<usize>,
    views: Vec<Tensor>,
    flat: Tensor,
    grad: Tensor,
    m: Tensor,
    v: Tensor,
    /// Adam steps taken.
    pub step: u64,
}

/// A network's parameters as tape leaves, by name.
pub struct TapeParams {
    vars: HashMap<String, Var>,
    order: Vec<Var>,
}

impl TapeParams {
    pub fn get(&self, name: &str) -> Result<Var> {
        self.vars
            .get(name)
            .copied()
            .ok_or_else(|| Error::Invalid(format!("no parameter named {name}")))
    }
}

impl ParamSet {
    pub fn new(gpu: &Gpu, params: &[(String, Array)]) -> Result<ParamSet> {
        if params.is_empty() {
            return Err(Error::Invalid("a parameter set needs parameters".into()));
        }
        let mut starts = Vec::new();
        let mut total = 0;
        for (_, a) in params {
            starts.push(total);
            total += a.numel().next_multiple_of(64);
        }
        let mut host = vec![0.0f32; total];
        for ((_, a), &st) in params.iter().zip(&starts) {
            host[st..st + a.numel()].copy_from_slice(&a.data);
        }
        let zeros = vec![0.0f32; total];
        let flat = gpu.upload_f32(&[total], &host)?;
        let views = params
            .iter()
            .zip(&starts)
            .map(|((_, a), &st)| flat.sub_view(st, &a.shape))
            .collect::<Result<Vec<_>>>()?;
        Ok(ParamSet {
            names: params.iter().map(|(n, _)| n.clone()).collect(),
            starts,
            views,
            grad: gpu.upload_f32(&[total], &zeros)?,
            m: gpu.upload_f32(&[total], &zeros)?,
            v: gpu.upload_f32(&[total], &zeros)?,
            flat,
            step: 0,
        })
    }

    /// Number of parameters (without the alignment padding).
    pub fn count(&self) -> usize {
        self.views.iter().map(|t| t.numel()).sum()
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.names
            .iter()
            .position(|n| n == name)
            .map(|i| &self.views[i])
            .ok_or_else(|| Error::Invalid(format!("no parameter named {name}")))
    }

    /// Puts every parameter on the tape: trainable leaves, or constants (a frozen network).
    pub fn on_tape(&self, tape: &mut Tape, trainable: bool) -> TapeParams {
        let order: Vec<Var> = self
            .views
            .iter()
            .map(|t| tape.leaf(t.clone(), trainable))
            .collect();
        TapeParams {
            vars: self
                .names
                .iter()
                .cloned()
                .zip(order.iter().copied())
                .collect(),
            order,
        }
    }

    /// Gathers the gradients into the flat buffer (zeros where none reached) and takes one
    /// Adam step over all parameters.
    pub fn adam_step(
        &mut self,
        s: &mut Stream,
        grads: &Grads,
        vars: &TapeParams,
        cfg: &AdamConfig,
    ) -> Result<()> {
        zero(s, &self.grad)?;
        for (var, &start) in vars.order.iter().zip(&self.starts) {
            if let Some(g) = grads.get(*var) {
                s.copy(g, 0, &self.grad, start as u64 * 4, g.bytes());
            }
        }
        self.step += 1;
        adam(s, &self.flat, &self.grad, &self.m, &self.v, cfg, self.step)
    }

    /// The parameters, read back.
    pub fn read(&self, gpu: &Gpu) -> Result<Vec<(String, Array)>> {
        let flat = gpu.read_f32(&self.flat)?;
        Ok(self
            .names
            .iter()
            .zip(&self.views)
            .zip(&self.starts)
            .map(|((n, t), &st)| {
                (
                    n.clone(),
                    Array::new(t.shape(), flat[st..st + t.numel()].to_vec()),
                )
            })
            .collect())
    }

    /// Adam's moments (flat, padded layout) for checkpoints.
    pub fn read_moments(&self, gpu: &Gpu) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((gpu.read_f32(&self.m)?, gpu.read_f32(&self.v)?))
    }

    /// Restores Adam's state written by [`ParamSet::read_moments`].
    pub fn load_moments(&mut self, gpu: &Gpu, m: &[f32], v: &[f32], step: u64) -> Result<()> {
        if m.len() != self.m.numel() || v.len() != self.v.numel() {
            return Err(Error::Invalid(format!(
                "optimizer state of {} / {} values does not fit {} parameters (padded)",
                m.len(),
                v.len(),
                self.m.numel()
            )));
        }
        gpu.write_f32(&self.m, m)?;
        gpu.write_f32(&self.v, v)?;
        self.step = step;
        Ok(())
    }
}
