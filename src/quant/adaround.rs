//! AdaRound (Nagel et al. 2020): learn, layer by layer, whether each weight rounds up or down,
//! by minimizing the layer's output reconstruction error on the calibration set.
//!
//! Per layer: `W~ = s * clamp(floor(W / s) + h(V), lo, hi)` (see `ops::adaround`) for the
//! per-channel scale `s` that the weight range estimator chose, and the loss
//! `|act(W~ x_q + b) - act(W x + b)|^2` summed over channels and averaged over samples and
//! positions (the reference code's `lp_loss`) plus `reg_weight * sum(1 - |2 h(V) - 1|^beta)`,
//! beta annealed from 20 to 2 after a warm-up without the regularizer. The input `x_q` is the
//! one the quantized model feeds the layer (earlier layers already learned, the input
//! quantized to its calibrated format), the target the FP32 model's output on its own input
//! (the paper's asymmetric reconstruction). Activation ranges stay as calibrated; no bias
//! correction follows. Everything runs on the GPU: the layer's inputs and targets are
//! computed once, batches are copied from them on the GPU, several steps per submit (see
//! `learn_layer` for what makes a step cheap on lavapipe).

use super::cursor::Batches;
use super::default::{default_quantization, QuantOptions};
use super::int8::{QConv, QWeights};
use super::model::QuantizedModel;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{DType, Gpu, Stream, Tensor};
use crate::graph::exec::Runner;
use crate::graph::tape::{Tape, Var};
use crate::graph::ValueId;
use crate::models::Model;
use crate::ops::adam::{adam, AdamConfig};
use crate::ops::adaround::{self as k, SoftQuant};
use crate::ops::conv2d::{conv2d, Conv2dParams};
use crate::ops::conv2d_grad;
use crate::ops::{qconv, Act};
use std::collections::HashMap;
use std::sync::Arc;

/// BRECQ's default steps per block (see [`AdaRoundOptions::brecq`]).
pub const BRECQ_ITERS: usize = 300;

/// AdaRound's settings; the defaults are the paper's but for `iters` (see its doc).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AdaRoundOptions {
    /// Adam steps per layer: 200 by default, so that ResNet-20 stays within 30 minutes on a
    /// 2-core lavapipe (measured in the README); the paper takes 10,000.
    pub iters: usize,
    /// Adam's learning rate on V.
    pub lr: f32,
    /// The rounding regularizer's weight (lambda).
    pub reg_weight: f32,
    /// Fraction of the steps before the regularizer starts.
    pub warmup: f32,
    /// The regularizer's exponent, annealed linearly from the first to the second.
    pub beta: (f32, f32),
    /// Samples per step.
    pub batch: usize,
    /// Calibration images used (evenly spaced over the set).
    pub images: usize,
    /// Steps recorded per GPU submit.
    pub per_submit: usize,
    /// BRECQ: Adam's learning rate on the activation step sizes (LSQ; BRECQ's 4e-5); 0 keeps
    /// the calibrated formats. AdaRound ignores it.
    #[serde(default = "act_lr")]
    pub act_lr: f32,
    /// BRECQ: QDrop's probability (Wei et al. 2022) that an activation element's fake
    /// quantization is dropped in a learning step (and the block input's, which then takes
    /// the FP32 model's value); 0 is plain BRECQ. AdaRound ignores it.
    #[serde(default)]
    pub qdrop: f32,
}

fn act_lr() -> f32 {
    4e-5
}

impl Default for AdaRoundOptions {
    fn default() -> Self {
        AdaRoundOptions {
            iters: 200,
            lr: 1e-3,
            reg_weight: 0.01,
            warmup: 0.2,
            beta: (20.0, 2.0),
            batch: 32,
            images: 1024,
            per_submit: 20,
            act_lr: act_lr(),
            qdrop: 0.0,
        }
    }
}

impl AdaRoundOptions {
    /// BRECQ's settings: the paper's but for `iters` (steps per block), which keeps
    /// ResNet-20 within 30 minutes on lavapipe (the paper takes 20,000), with QDrop at its
    /// paper's 0.5 (see README.md for the measurement).
    pub fn brecq() -> Self {
        AdaRoundOptions {
            iters: BRECQ_ITERS,
            qdrop: 0.5,
            ..Default::default()
        }
    }

    pub(crate) fn check(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Invalid(format!("adaround: {m}")));
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return bad(format!("learning rate {} is not positive", self.lr));
        }
        if !(self.reg_weight >= 0.0 && self.reg_weight.is_finite()) {
            return bad(format!("regularizer weight {}", self.reg_weight));
        }
        let beta_ok = |b: f32| b >= 1.0 && b.is_finite();
        if !((0.0..=1.0).contains(&self.warmup) && beta_ok(self.beta.0) && beta_ok(self.beta.1)) {
            return bad(format!("warm-up {} / beta {:?}", self.warmup, self.beta));
        }
        if !(self.act_lr >= 0.0 && self.act_lr.is_finite()) {
            return bad(format!("activation learning rate {}", self.act_lr));
        }
        if !(0.0..=1.0).contains(&self.qdrop) {
            return bad(format!("qdrop probability {}", self.qdrop));
        }
        if self.batch == 0 || self.images == 0 || self.per_submit == 0 {
            return bad("batch, images and steps per submit must be positive".into());
        }
        Ok(())
    }

    /// (regularizer weight, beta) at step `t`: nothing during the warm-up, then beta decays
    /// linearly from `beta.0` to `beta.1`.
    pub fn schedule(&self, t: usize) -> (f32, f32) {
        let warm = (self.warmup as f64 * self.iters as f64) as usize;
        if t < warm {
            return (0.0, self.beta.0);
        }
        let rel = (t - warm) as f64 / (self.iters - warm).max(1) as f64;
        let (b0, b1) = (self.beta.0 as f64, self.beta.1 as f64);
        (
            self.reg_weight,
            (b1 + (b0 - b1) * (1.0 - rel).max(0.0)) as f32,
        )
    }
}

/// What learning did to one layer.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerReport {
    /// The layer's node name.
    pub name: String,
    /// Mean squared output error per element with round-to-nearest weights.
    pub rtn_mse: f64,
    /// The same with the learned rounding.
    pub mse: f64,
    /// Weights rounded otherwise than to nearest.
    pub changed: usize,
    /// The layer's weight count.
    pub weights: usize,
    /// Wall time of the layer (data and steps).
    pub seconds: f64,
    /// Wall time per step (the steps alone).
    #[serde(default)]
    pub seconds_per_step: f64,
}

/// One layer's problem, resident on the GPU.
pub struct LayerProblem<'a> {
    /// The round-to-nearest weights (their scales and bits are kept).
    pub weights: &'a QWeights,
    /// The FP32 weights, flat in the order of `weights.q`.
    pub w: &'a [f32],
    /// The FP32 bias `[co]`.
    pub bias: Option<Tensor>,
    /// Stride, padding and groups (a linear layer is a 1x1 conv).
    pub p: Conv2dParams,
    /// The layer's fused activation.
    pub act: Act,
    /// The inputs `[N, ci, h, w]`.
    pub x: Tensor,
    /// The target outputs `[N, co, oh, ow]`.
    pub target: Tensor,
}

/// The learned integer weights and the layer's errors before and after.
pub struct Learned {
    /// The learned integer weights.
    pub q: Vec<i8>,
    /// Mean squared output error per element with round-to-nearest weights.
    pub rtn_mse: f64,
    /// The same with the learned ones.
    pub mse: f64,
    /// Wall time of the steps alone.
    pub step_seconds: f64,
}

/// The soft-quantized layer on a batch, recorded on `tape`: returns (V, output).
fn forward(
    tape: &mut Tape,
    s: &mut Stream,
    prob: &LayerProblem,
    sq: &SoftQuant,
    v: &Tensor,
    x: Tensor,
) -> Result<(Var, Var)> {
    let vv = tape.leaf(v.clone(), true);
    let xv = tape.leaf(x, false);
    let b = prob.bias.clone().map(|b| tape.leaf(b, false));
    let w = tape.soft_quant(s, vv, sq)?;
    let y = tape.conv2d(s, xv, w, b, prob.p)?;
    let y = match prob.act {
        Act::Identity => y,
        a => tape.act(s, y, a)?,
    };
    Ok((vv, y))
}

/// The reconstruction loss's divisor: samples times positions.
pub(crate) fn positions(y: &Tensor) -> f32 {
    (y.numel() / y.shape()[1].max(1)) as f32
}

/// The AdaRound loss (reconstruction, regularizer unweighted) of V on samples `x`, `t`.
pub fn loss(
    gpu: &Gpu,
    prob: &LayerProblem,
    sq: &SoftQuant,
    v: &Tensor,
    (x, t): (Tensor, &Tensor),
    beta: f32,
) -> Result<(f64, f64)> {
    let mut tape = Tape::new();
    let mut s = gpu.stream();
    let (_, y) = forward(&mut tape, &mut s, prob, sq, v, x)?;
    let y = tape.value(y);
    let err = k::sq_err_partials(&mut s, y, t)?;
    let reg = k::reg_partials(&mut s, v, beta)?;
    let div = positions(y) as f64;
    let back = s.submit_and_read(&[&err, &reg])?;
    Ok((k::sum(&back[0]) / div, k::sum(&back[1])))
}

/// The mean squared output error per element of the layer with integer weights `q`.
fn hard_error(gpu: &Gpu, prob: &LayerProblem, q: &[i8]) -> Result<f64> {
    let qw = prob.weights;
    let per = q.len() / qw.scale.len();
    let w: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * qw.scale[i / per])
        .collect();
    let w = gpu.upload_f32(&qw.shape, &w)?;
    let n = prob.x.shape()[0];
    let (xs, ts) = (prob.x.numel() / n, prob.target.numel() / n);
    let chunk = 256;
    let mut total = 0.0;
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let mut s = gpu.stream();
        let mut shape = prob.x.shape().to_vec();
        shape[0] = m;
        let x = gpu.alloc("adaround", &shape, DType::F32)?;
        s.copy(&prob.x, (start * xs * 4) as u64, &x, 0, (m * xs * 4) as u64);
        let mut shape = prob.target.shape().to_vec();
        shape[0] = m;
        let t = gpu.alloc("adaround", &shape, DType::F32)?;
        let off = (start * ts * 4) as u64;
        s.copy(&prob.target, off, &t, 0, (m * ts * 4) as u64);
        let y = crate::ops::conv2d_grad::conv2d_train(&mut s, &x, &w, prob.bias.as_ref(), &prob.p)?;
        let y = match prob.act {
            Act::Identity => y,
            a => crate::ops::elementwise::act(&mut s, &y, a)?,
        };
        let e = k::sq_err_partials(&mut s, &y, &t)?;
        total += k::sum(&s.submit_and_read(&[&e])?[0]);
    }
    Ok(total / prob.target.numel() as f64)
}

/// splitmix64: the permutation's and the batch windows' random stream.
pub(crate) fn mix(x: u64) -> u64 {
    let z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    let z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A seeded random permutation of `0..n` (Fisher-Yates).
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (mix(seed ^ mix(i as u64)) % (i as u64 + 1)) as usize;
        p.swap(i, j);
    }
    p
}

/// Copies samples `order[k]` of `src` `[N, ...]` to sample `k` of a new tensor, or with
/// `order` None the `len` samples from `start` on, wrapping around.
pub(crate) fn samples(
    s: &mut Stream,
    src: &Tensor,
    order: Option<&[usize]>,
    (start, len): (usize, usize),
) -> Result<Tensor> {
    let n = src.shape()[0];
    let per = (src.numel() / n * 4) as u64;
    let mut shape = src.shape().to_vec();
    shape[0] = order.map_or(len, <[usize]>::len);
    let dst = s.gpu().alloc("adaround", &shape, DType::F32)?;
    match order {
        Some(o) => {
            for (k, &i) in o.iter().enumerate() {
                s.copy(src, i as u64 * per, &dst, k as u64 * per, per);
            }
        }
        None => {
            let first = len.min(n - start);
            s.copy(src, start as u64 * per, &dst, 0, first as u64 * per);
            if first < len {
                s.copy(src, 0, &dst, first as u64 * per, (len - first) as u64 * per);
            }
        }
    }
    Ok(dst)
}

/// Learns one layer's rounding; `step(k)` is called after every `k` more steps (its error,
/// e.g. a cancellation, stops the work).
///
/// The samples are put in a seeded random order once, inputs zero-padded once; a step's
/// batch is `batch` consecutive samples from a random start (two buffer copies, where a
/// gather kernel per step cost as much as the conv on lavapipe). The step itself runs without
/// the tape: conv with its activation fused, the reconstruction gradient through a ReLU in
/// one kernel, and the weight gradient of `ops::conv2d_grad::weight_grad_padded`.
pub fn learn_layer(
    gpu: &Gpu,
    prob: &LayerProblem,
    opts: &AdaRoundOptions,
    seed: u32,
    step: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<Learned> {
    opts.check()?;
    let qw = prob.weights;
    let per = qw.q.len() / qw.scale.len().max(1);
    let p = prob.p;
    if prob.w.len() != qw.q.len()
        || prob.x.shape().len() != 4
        || prob.target.shape().len() != 4
        || qw.shape.len() != 4
        || p.stride[0] != p.stride[1]
        || p.dilation[0] != p.dilation[1]
    {
        return Err(Error::Invalid(format!(
            "adaround: {} weights for {:?}, inputs {:?}, targets {:?}, {p:?} (equal strides and \
             dilations on both axes only)",
            prob.w.len(),
            qw.shape,
            prob.x.shape(),
            prob.target.shape()
        )));
    }
    let w_shape = [qw.shape[0], qw.shape[1], qw.shape[2], qw.shape[3]];
    let qmax = QWeights::qmax(qw.bits);
    let (floor, v0) = k::init(prob.w, &qw.scale, per);
    let sq = SoftQuant::new(gpu, &floor, &qw.scale, &qw.shape, (-qmax, qmax))?;
    let v = gpu.upload_f32(&qw.shape, &v0)?;
    let zeros = vec![0.0f32; v0.len()];
    let (m, mv) = (
        gpu.upload_f32(&qw.shape, &zeros)?,
        gpu.upload_f32(&qw.shape, &zeros)?,
    );
    let cfg = AdamConfig {
        lr: opts.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let n = prob.x.shape()[0];
    let batch = opts.batch.min(n);
    let (xs, ts) = {
        let mut s = gpu.stream();
        let order = permutation(n, seed as u64);
        let xp = conv2d_grad::pad_input(&mut s, &prob.x, p.pads())?;
        let xs = samples(&mut s, &xp, Some(&order), (0, 0))?;
        let ts = samples(&mut s, &prob.target, Some(&order), (0, 0))?;
        s.submit();
        (xs, ts)
    };
    let unpadded = Conv2dParams {
        pad: [0, 0],
        pad_end: [0, 0],
        ..p
    };
    let started = std::time::Instant::now();
    let mut t = 0;
    while t < opts.iters {
        let steps = opts.per_submit.min(opts.iters - t);
        let mut s = gpu.stream();
        for _ in 0..steps {
            let start = (mix(((seed as u64) << 32) ^ t as u64) % n as u64) as usize;
            let xb = samples(&mut s, &xs, None, (start, batch))?;
            let tb = samples(&mut s, &ts, None, (start, batch))?;
            let w = sq.weight(&mut s, &v)?;
            let cw = conv2d_grad::weight_layout(&mut s, &w, p.groups)?;
            let y = conv2d(
                &mut s,
                &xb,
                &cw,
                prob.bias.as_ref(),
                &unpadded,
                None,
                prob.act,
            )?;
            let scale = 2.0 / positions(&y);
            let dy = match prob.act {
                Act::Identity => k::recon_grad(&mut s, &y, &tb, scale)?,
                Act::Relu => k::recon_grad_masked(&mut s, &y, &tb, scale, true)?,
                a => {
                    let d = k::recon_grad(&mut s, &y, &tb, scale)?;
                    crate::ops::elementwise::act_backward(&mut s, &y, &d, a)?
                }
            };
            let dw = conv2d_grad::weight_grad_padded(
                &mut s,
                &xb,
                &dy,
                w_shape,
                p.stride[0],
                p.dilation[0],
                p.groups,
            )?;
            let g = sq.backward(&mut s, &v, &dw)?;
            let (reg, beta) = opts.schedule(t);
            if reg > 0.0 {
                k::reg_grad_add(&mut s, &v, &g, reg, beta)?;
            }
            t += 1;
            adam(&mut s, &v, &g, &m, &mv, &cfg, t as u64)?;
        }
        s.submit();
        gpu.wait()?;
        step(steps)?;
    }
    let step_seconds = started.elapsed().as_secs_f64();
    let q = k::hard_round(&floor, &gpu.read_f32(&v)?, -qmax, qmax);
    Ok(Learned {
        rtn_mse: hard_error(gpu, prob, &qw.q)?,
        mse: hard_error(gpu, prob, &q)?,
        q,
        step_seconds,
    })
}

/// `[N, K]` as `[N, K, 1, 1]` (linear layers run as 1x1 convs).
fn as_4d(t: Tensor) -> Result<Tensor> {
    match *t.shape() {
        [n, c] => t.reshape(&[n, c, 1, 1]),
        _ => Ok(t),
    }
}

/// The layer's input from the quantized model (rounded to the layer's input format) and its
/// FP32 output, over the calibration set: both models run on from `cursor`'s values at the
/// last cut point before the layer, which move there first.
pub(super) fn layer_data(
    (fp, quant): (&Runner, &Runner),
    (l, layer): (ValueId, &QConv),
    cursor: &mut LayerCursor,
    opts: &QuantOptions,
) -> Result<(Tensor, Tensor)> {
    let gpu = &fp.gpu;
    let cancel = &opts.hooks.cancel;
    let input = fp.graph.nodes[l].inputs[0];
    let cut = cursor
        .cuts
        .iter()
        .rev()
        .copied()
        .find(|&c| c <= input && fp.graph.needed_from(c, l).is_ok())
        .unwrap_or(cursor.images.at());
    cursor.quant.advance(quant, cut, &cursor.images, cancel)?;
    cursor.fp.advance(fp, cut, &cursor.images, cancel)?;
    let q = qconv::QConv2d::new(gpu, layer)?;
    // Per-channel input scales have no f32 round trip here; they see the raw input.
    let x = cursor.quant.collect(
        quant,
        input,
        cancel,
        &mut |s, x| match layer.input_channel_scales {
            None => {
                let qx = q.quantize_input(s, &x)?;
                qconv::dequantize(s, &qx)
            }
            Some(_) => as_4d(x),
        },
    )?;
    let t = cursor.fp.collect(fp, l, cancel, &mut |_, t| as_4d(t))?;
    Ok((x, t))
}

/// Both models' values at the cut points AdaRound has reached (see `cursor`).
pub(super) struct LayerCursor {
    pub cuts: Vec<ValueId>,
    pub images: Batches,
    pub fp: Batches,
    pub quant: Batches,
}

/// What AdaRound and BRECQ start from: DefaultQuantization's scales and activation formats
/// (without bias correction), the `images` calibration images they learn on (evenly spaced
/// over the set), and the FP32 model that gives their targets.
pub(super) fn learned_rounding_start(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
) -> Result<(QuantizedModel, Dataset, Runner)> {
    let ao = &opts.adaround;
    ao.check()?;
    let base = QuantOptions {
        bias_correction: false,
        ..opts.clone()
    };
    let q = default_quantization(gpu, model, calib, &base)?;
    let n = calib.len().min(ao.images);
    let picks: Vec<usize> = (0..n).map(|i| i * calib.len() / n).collect();
    let calib = calib.subset(&picks)?;
    let fp = Runner::new(gpu.clone(), q.graph.clone(), &q.params)?;
    Ok((q, calib, fp))
}

/// AdaRound on every quantized layer of `model`, in graph order, starting from
/// DefaultQuantization's scales and activation formats (without bias correction).
pub fn adaround(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
) -> Result<(QuantizedModel, Vec<LayerReport>)> {
    let ao = &opts.adaround;
    let (mut q, calib, fp) = learned_rounding_start(gpu, model, calib, opts)?;
    let ids: Vec<ValueId> = q.layers.keys().copied().collect();
    let mut bar = opts
        .hooks
        .task("adaround", ids.len().saturating_mul(ao.iters) as u64);
    let mut reports = Vec::new();
    let images = Batches::images(gpu, &q.graph, &calib, model, opts.batch)?;
    let mut cursor = LayerCursor {
        cuts: q.graph.cut_points(),
        fp: images.clone(),
        quant: images.clone(),
        images,
    };
    for (i, &l) in ids.iter().enumerate() {
        let started = std::time::Instant::now();
        let name = q.graph.nodes[l].name.clone();
        let done: HashMap<ValueId, QConv> =
            ids[..i].iter().map(|d| (*d, q.layers[d].clone())).collect();
        let quant = Runner::with_quantized(gpu.clone(), q.graph.clone(), &q.params, &done)?;
        let (x, target) = layer_data((&fp, &quant), (l, &q.layers[&l]), &mut cursor, opts)?;
        drop(quant);
        let spec = q.graph.nodes[l]
            .op
            .layer()
            .ok_or_else(|| Error::Invalid(format!("{name} is not conv/linear")))?;
        let w = q.params.get(spec.weight)?;
        let bias = spec
            .bias
            .map(|b| {
                q.params
                    .get(b)
                    .and_then(|a| gpu.upload_f32(&[a.numel()], &a.data))
            })
            .transpose()?;
        let layer = &q.layers[&l];
        let prob = LayerProblem {
            weights: &layer.weights,
            w: &w.data,
            bias,
            p: spec.conv_params(),
            act: spec.act,
            x,
            target,
        };
        let learned = learn_layer(gpu, &prob, ao, i as u32, &mut |k| bar.inc(k as u64))?;
        let changed = learned
            .q
            .iter()
            .zip(&layer.weights.q)
            .filter(|(a, b)| a != b)
            .count();
        bar.message(&format!(
            "{name}: output MSE {:.3e} -> {:.3e}",
            learned.rtn_mse, learned.mse
        ));
        reports.push(LayerReport {
            name,
            rtn_mse: learned.rtn_mse,
            mse: learned.mse,
            changed,
            weights: learned.q.len(),
            seconds: started.elapsed().as_secs_f64(),
            seconds_per_step: learned.step_seconds / ao.iters.max(1) as f64,
        });
        q.layers
            .get_mut(&l)
            .expect("a layer of the model")
            .weights
            .q = learned.q;
    }
    bar.complete();
    Ok((q, reports))
}

#[cfg(test)]
#[path = "adaround_tests.rs"]
mod tests;
