//! BRECQ (Li et al. 2021): AdaRound's learned rounding, reconstructed block by block instead
//! of layer by layer, with the activation step sizes learned jointly (LSQ, Esser et al. 2020),
//! as BRECQ's code does.
//!
//! Blocks come from the graph (`graph::blocks`). Per block, in graph order: the input is what
//! the quantized model feeds it (earlier blocks already learned), the target the FP32 model's
//! block output. The block is replayed on the tape (`graph::replay`) with every quantized
//! layer's weights soft-quantized from its own V, and every value the INT8 model rounds (a
//! layer's input, an int8 layer/add/concat/pool output of the integer path) passed through a
//! fake quantizer at its format. The loss is AdaRound's: the block output's squared error
//! (summed over channels, averaged over samples and positions) plus `reg_weight` times the
//! rounding regularizer of all the block's layers with the annealed beta; Adam on all the
//! block's V (`lr`) and on its activation steps (`act_lr`, 0: the calibrated formats stay).
//! The learned steps are written back into the model's formats, so the INT8 model runs them.
//!
//! QDrop (Wei et al. 2022, `qdrop` > 0): in each learning step every fake quantizer drops
//! each element's quantization with that probability (a fresh mask per step and quantizer),
//! and the block input takes the FP32 model's value where its own mask drops (as QDrop's code
//! mixes the quantized and FP32 inputs); error measurement and the result drop nothing.

use super::adaround::{
    learned_rounding_start, mix, permutation, positions, samples, AdaRoundOptions,
};
use super::cursor::Batches;
use super::default::QuantOptions;
use super::int8::{QFormat, QWeights};
use super::model::QuantizedModel;
use super::scheme::MIN_SCALE;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream, Tensor};
use crate::graph::blocks::Block;
use crate::graph::exec::Runner;
use crate::graph::replay::{Frozen, Hooks};
use crate::graph::tape::{Tape, Var};
use crate::graph::{Graph, ValueId};
use crate::models::Model;
use crate::ops::adam::{adam, AdamConfig};
use crate::ops::adaround::{self as k, SoftQuant};
use crate::ops::fake_quant::{drop_mix, drop_threshold, FakeQuant};
use std::collections::HashMap;
use std::sync::Arc;

/// What learning did to one block.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BlockReport {
    /// The block's quantized layers (node names).
    pub layers: Vec<String>,
    /// Mean squared block-output error per element with round-to-nearest weights and the
    /// calibrated formats.
    pub rtn_mse: f64,
    /// The same with the learned rounding and steps.
    pub mse: f64,
    /// Weights rounded otherwise than to nearest.
    pub changed: usize,
    /// The block's weight count.
    pub weights: usize,
    /// Each learned activation step: (value name, calibrated scale, learned scale).
    pub steps: Vec<(String, f32, f32)>,
    /// Wall time of the block (data and steps).
    pub seconds: f64,
    /// Wall time per step (the steps alone).
    pub seconds_per_step: f64,
}

/// A value the INT8 model rounds inside a block, at its format.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quantizer {
    /// The value rounded.
    pub value: ValueId,
    /// Its format.
    pub fmt: QFormat,
}

/// One block's quantized layers and quantizers.
pub struct BlockQuant {
    /// The block.
    pub block: Block,
    /// Per layer of the block: the round-to-nearest weights and the FP32 ones (flat).
    pub layers: Vec<(QWeights, Vec<f32>)>,
    /// The quantizers, each once.
    pub quantizers: Vec<Quantizer>,
    /// The quantizer a layer's input goes through (absent: the input is already int8 in the
    /// layer's format).
    inputs: HashMap<ValueId, usize>,
    /// The quantizer a node's output goes through.
    outputs: HashMap<ValueId, usize>,
}

impl BlockQuant {
    /// The block's quantizers as the INT8 model `q` runs it (`graph::int8`): a layer's input
    /// unless it arrives int8 in the layer's format, and every int8 value that owns a format.
    pub fn new(q: &QuantizedModel, block: &Block) -> Result<BlockQuant> {
        let layers: HashMap<_, _> = q.layers.iter().map(|(k, v)| (*k, v.clone())).collect();
        let plan = q.graph.int8_plan(&layers, &q.values);
        let mut quantizers: Vec<Quantizer> = Vec::new();
        let mut index = |qz: Quantizer| match quantizers.iter().position(|o| *o == qz) {
            Some(i) => i,
            None => {
                quantizers.push(qz);
                quantizers.len() - 1
            }
        };
        let (mut inputs, mut outputs) = (HashMap::new(), HashMap::new());
        let mut weights = Vec::new();
        for &i in &block.nodes {
            let node = &q.graph.nodes[i];
            if let Some(l) = q.layers.get(&i) {
                if l.input_channel_scales.is_some() {
                    return Err(Error::Invalid(format!(
                        "brecq: {} quantizes its input per channel (--depthwise-per-channel); \
                         block reconstruction takes per-tensor formats",
                        node.name
                    )));
                }
                let v = node.inputs[0];
                if !plan.formats.get(&v).is_some_and(|&f| plan.takes_int8(i, f)) {
                    inputs.insert(
                        i,
                        index(Quantizer {
                            value: v,
                            fmt: l.input,
                        }),
                    );
                }
                let spec = node.op.layer().expect("a quantized layer");
                weights.push((l.weights.clone(), q.params.get(spec.weight)?.data.clone()));
            }
            if let Some(&fmt) = plan.formats.get(&i).filter(|_| node.op.owns_int8_format()) {
                outputs.insert(i, index(Quantizer { value: i, fmt }));
            }
        }
        Ok(BlockQuant {
            block: block.clone(),
            layers: weights,
            quantizers,
            inputs,
            outputs,
        })
    }
}

/// The block's weights in one replay.
pub enum Weights<'a> {
    /// Soft-quantized from V, per layer.
    Soft(&'a [SoftQuant], &'a [Tensor]),
    /// Fixed, per layer.
    Fixed(&'a [Tensor]),
}

/// The hooks of one replay of a block; keeps the tape values of V and of the steps.
pub struct Replay<'a> {
    /// The block.
    pub bq: &'a BlockQuant,
    /// Its weights.
    pub weights: Weights<'a>,
    /// Per quantizer, its step tensor `[scale, 1 / scale]` (see `ops::fake_quant`).
    pub steps: &'a [Tensor],
    /// Whether the steps are learned (trainable leaves; the kernels divide).
    pub learn_steps: bool,
    /// V on the tape, per layer (soft weights only).
    pub v: Vec<Option<Var>>,
    /// The steps on the tape, per quantizer.
    pub step_vars: Vec<Option<Var>>,
    /// QDrop: (threshold, seed); quantizer `qi` draws its mask from `seed + qi + 1` (the
    /// block input from `seed`).
    pub drop: Option<(u32, u32)>,
}

impl<'a> Replay<'a> {
    /// A replay of `bq` with `weights` and quantizer `steps`.
    pub fn new(bq: &'a BlockQuant, weights: Weights<'a>, steps: &'a [Tensor], learn: bool) -> Self {
        Replay {
            bq,
            weights,
            steps,
            learn_steps: learn,
            v: vec![None; bq.layers.len()],
            step_vars: vec![None; bq.quantizers.len()],
            drop: None,
        }
    }

    /// The replay with QDrop at `threshold` (`ops::fake_quant::drop_threshold`), the masks
    /// seeded from `seed`.
    pub fn with_drop(self, threshold: u32, seed: u32) -> Self {
        Replay {
            drop: Some((threshold, seed)),
            ..self
        }
    }

    fn quantize(&mut self, t: &mut Tape, s: &mut Stream, qi: usize, x: Var) -> Result<Var> {
        let step = match self.step_vars[qi] {
            Some(v) => v,
            None => {
                let v = t.leaf(self.steps[qi].clone(), self.learn_steps);
                self.step_vars[qi] = Some(v);
                v
            }
        };
        let mut fq = FakeQuant::new(self.bq.quantizers[qi].fmt, self.learn_steps);
        if let Some((thr, seed)) = self.drop {
            fq = fq.with_drop(thr, seed.wrapping_add(qi as u32 + 1));
        }
        t.fake_quant(s, x, step, fq)
    }
}

impl Hooks for Replay<'_> {
    fn weight(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId) -> Result<Option<Var>> {
        let Some(li) = self.bq.block.layers.iter().position(|&l| l == i) else {
            return Ok(None);
        };
        Ok(Some(match &self.weights {
            Weights::Soft(sq, v) => {
                let vv = t.leaf(v[li].clone(), true);
                self.v[li] = Some(vv);
                t.soft_quant(s, vv, &sq[li])?
            }
            Weights::Fixed(w) => t.leaf(w[li].clone(), false),
        }))
    }

    fn layer_input(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId, x: Var) -> Result<Var> {
        match self.bq.inputs.get(&i) {
            Some(&qi) => self.quantize(t, s, qi, x),
            None => Ok(x),
        }
    }

    fn output(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId, y: Var) -> Result<Var> {
        match self.bq.outputs.get(&i) {
            Some(&qi) => self.quantize(t, s, qi, y),
            None => Ok(y),
        }
    }
}

/// The integer weights of a layer as f32 values `q * scale`.
fn dequantized(gpu: &Gpu, w: &QWeights, q: &[i8]) -> Result<Tensor> {
    let per = q.len() / w.scale.len().max(1);
    let data: Vec<f32> = q
        .iter()
        .enumerate()
        .map(|(i, &v)| v as f32 * w.scale[i / per])
        .collect();
    gpu.upload_f32(&w.shape, &data)
}

/// The fixed step tensors of formats `fmts`.
fn fixed_steps(gpu: &Gpu, fmts: &[QFormat]) -> Result<Vec<Tensor>> {
    fmts.iter().map(|&f| FakeQuant::step(gpu, f)).collect()
}

/// The mean squared output error per element of the block with fixed weights and steps, over
/// all samples of `x` and `t`.
pub fn block_error(
    gpu: &Gpu,
    frozen: &mut Frozen,
    bq: &BlockQuant,
    weights: &[Tensor],
    fmts: &[QFormat],
    (x, target): (&Tensor, &Tensor),
) -> Result<f64> {
    let steps = fixed_steps(gpu, fmts)?;
    let n = x.shape()[0];
    let chunk = 128;
    let mut total = 0.0;
    for start in (0..n).step_by(chunk) {
        let m = chunk.min(n - start);
        let mut s = gpu.stream();
        let xb = samples(&mut s, x, None, (start, m))?;
        let tb = samples(&mut s, target, None, (start, m))?;
        let mut tape = Tape::new();
        let xv = tape.leaf(xb, false);
        let mut hooks = Replay::new(bq, Weights::Fixed(weights), &steps, false);
        let y = frozen.replay_block(&mut tape, &mut s, &bq.block, xv, &mut hooks)?;
        let e = k::sq_err_partials(&mut s, tape.value(y), &tb)?;
        total += k::sum(&s.submit_and_read(&[&e])?[0]);
    }
    Ok(total / target.numel() as f64)
}

/// What [`learn_block`] found.
pub struct LearnedBlock {
    /// The learned integer weights, per layer.
    pub q: Vec<Vec<i8>>,
    /// The learned formats, per quantizer (the calibrated ones when steps are not learned).
    pub fmts: Vec<QFormat>,
    /// Wall time of the steps alone.
    pub step_seconds: f64,
}

/// The block's inputs from the quantized model, its FP32 inputs (QDrop only) and its FP32
/// outputs, over the same samples.
pub struct BlockData {
    /// The quantized model's values at the block input.
    pub x: Tensor,
    /// The FP32 model's values there (with `qdrop` > 0).
    pub x_fp: Option<Tensor>,
    /// The FP32 model's block output.
    pub target: Tensor,
}

/// Learns one block's rounding (and steps, with `opts.act_lr > 0`) on `data`; `step(k)` is
/// called after every `k` more steps (its error stops the work).
pub fn learn_block(
    gpu: &Gpu,
    frozen: &mut Frozen,
    bq: &BlockQuant,
    data: &BlockData,
    opts: &AdaRoundOptions,
    seed: u32,
    step: &mut dyn FnMut(usize) -> Result<()>,
) -> Result<LearnedBlock> {
    opts.check()?;
    let mut sqs = Vec::new();
    let mut vs = Vec::new();
    let mut floors = Vec::new();
    for (qw, w) in &bq.layers {
        let per = qw.q.len() / qw.scale.len().max(1);
        let qmax = QWeights::qmax(qw.bits);
        let (floor, v0) = k::init(w, &qw.scale, per);
        sqs.push(SoftQuant::new(
            gpu,
            &floor,
            &qw.scale,
            &qw.shape,
            (-qmax, qmax),
        )?);
        vs.push(gpu.upload_f32(&qw.shape, &v0)?);
        floors.push((floor, qmax));
    }
    let zeros = |t: &Tensor| gpu.upload_f32(t.shape(), &vec![0.0; t.numel()]);
    let moments = |ts: &[Tensor]| -> Result<Vec<(Tensor, Tensor)>> {
        ts.iter().map(|t| Ok((zeros(t)?, zeros(t)?))).collect()
    };
    let v_moments = moments(&vs)?;
    let fmts0: Vec<QFormat> = bq.quantizers.iter().map(|q| q.fmt).collect();
    let learn = opts.act_lr > 0.0;
    let steps = fixed_steps(gpu, &fmts0)?;
    let s_moments = moments(&steps)?;
    let cfg = |lr: f32| AdamConfig {
        lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let n = data.x.shape()[0];
    let batch = opts.batch.min(n);
    let drop = drop_threshold(opts.qdrop)?;
    let (xs, fs, ts) = {
        let mut s = gpu.stream();
        let order = permutation(n, seed as u64);
        let xs = samples(&mut s, &data.x, Some(&order), (0, 0))?;
        let fs = match (&data.x_fp, drop) {
            (Some(f), 1..) => Some(samples(&mut s, f, Some(&order), (0, 0))?),
            _ => None,
        };
        let ts = samples(&mut s, &data.target, Some(&order), (0, 0))?;
        s.submit();
        (xs, fs, ts)
    };
    let started = std::time::Instant::now();
    let mut t = 0;
    while t < opts.iters {
        let count = opts.per_submit.min(opts.iters - t);
        let mut s = gpu.stream();
        for _ in 0..count {
            let start = (mix(((seed as u64) << 32) ^ t as u64) % n as u64) as usize;
            let mut xb = samples(&mut s, &xs, None, (start, batch))?;
            let tb = samples(&mut s, &ts, None, (start, batch))?;
            // One seed per block and step; the block input and each quantizer offset it.
            let step_seed = mix(((seed as u64) << 32) ^ (t as u64) ^ 0x5144_524f_5000_0000) as u32;
            if let Some(fb) = &fs {
                let fb = samples(&mut s, fb, None, (start, batch))?;
                xb = drop_mix(&mut s, &xb, &fb, drop, step_seed)?;
            }
            let mut tape = Tape::new();
            let xv = tape.leaf(xb, false);
            let mut hooks = Replay::new(bq, Weights::Soft(&sqs, &vs), &steps, learn);
            if drop > 0 {
                hooks = hooks.with_drop(drop, step_seed);
            }
            let y = frozen.replay_block(&mut tape, &mut s, &bq.block, xv, &mut hooks)?;
            let yv = tape.value(y);
            let dy = k::recon_grad(&mut s, yv, &tb, 2.0 / positions(yv))?;
            let grads = tape.backward_seeded(&mut s, &[(y, dy)], &[])?;
            let (reg, beta) = opts.schedule(t);
            t += 1;
            for (li, v) in vs.iter().enumerate() {
                let g = match hooks.v[li].and_then(|vv| grads.get(vv)) {
                    Some(g) => g.clone(),
                    None => zeros(v)?,
                };
                if reg > 0.0 {
                    k::reg_grad_add(&mut s, v, &g, reg, beta)?;
                }
                let (m, mv) = &v_moments[li];
                adam(&mut s, v, &g, m, mv, &cfg(opts.lr), t as u64)?;
            }
            if learn {
                for (qi, st) in steps.iter().enumerate() {
                    if let Some(g) = hooks.step_vars[qi].and_then(|sv| grads.get(sv)) {
                        let (m, mv) = &s_moments[qi];
                        adam(&mut s, st, g, m, mv, &cfg(opts.act_lr), t as u64)?;
                    }
                }
            }
        }
        s.submit();
        gpu.wait()?;
        step(count)?;
    }
    let step_seconds = started.elapsed().as_secs_f64();
    let mut q = Vec::new();
    for ((floor, qmax), v) in floors.iter().zip(&vs) {
        q.push(k::hard_round(floor, &gpu.read_f32(v)?, -qmax, *qmax));
    }
    let mut fmts = fmts0;
    if learn {
        for (f, st) in fmts.iter_mut().zip(&steps) {
            f.scale = gpu.read_f32(st)?[0].max(MIN_SCALE);
        }
    }
    Ok(LearnedBlock {
        q,
        fmts,
        step_seconds,
    })
}

/// Both models' values at the cut points BRECQ has reached (see `cursor`).
struct Cursor {
    images: Batches,
    fp: Batches,
    quant: Batches,
    /// How often the quantized model's values were recomputed from the images.
    restarts: usize,
}

impl Cursor {
    fn start(
        gpu: &Gpu,
        graph: &Graph,
        calib: &Dataset,
        model: &Model,
        opts: &QuantOptions,
    ) -> Result<Cursor> {
        let images = Batches::images(gpu, graph, calib, model, opts.batch)?;
        Ok(Cursor {
            fp: images.clone(),
            quant: images.clone(),
            images,
            restarts: 0,
        })
    }

    /// The block's data: the quantized model's values at its input (`quant` holds the blocks
    /// learned so far), the FP32 model's at its output (and with `with_fp` at its input).
    /// Afterwards the FP32 model stands at the block's output.
    fn block_data(
        &mut self,
        (fp, quant): (&Runner, &Runner),
        block: &Block,
        opts: &QuantOptions,
        with_fp: bool,
    ) -> Result<BlockData> {
        let cancel = &opts.hooks.cancel;
        let same = &mut |_: &mut Stream, t: Tensor| Ok(t);
        if self
            .quant
            .advance(quant, block.input, &self.images, cancel)?
        {
            self.restarts += 1;
        }
        self.fp.advance(fp, block.input, &self.images, cancel)?;
        let x = self.quant.collect(quant, block.input, cancel, same)?;
        let x_fp = match with_fp {
            true => Some(self.fp.collect(fp, block.input, cancel, same)?),
            false => None,
        };
        self.fp.advance(fp, block.output, &self.images, cancel)?;
        let target = self.fp.collect(fp, block.output, cancel, same)?;
        Ok(BlockData { x, x_fp, target })
    }
}

/// Writes the learned step of quantizer `old` into the model: the value's own format and
/// every layer that reads the value at that format.
fn write_format(q: &mut QuantizedModel, old: Quantizer, new: QFormat) {
    if q.values.get(&old.value) == Some(&old.fmt) {
        q.values.insert(old.value, new);
    }
    let readers: Vec<ValueId> = q
        .layers
        .keys()
        .copied()
        .filter(|&l| q.graph.nodes[l].inputs.first() == Some(&old.value))
        .collect();
    for l in readers {
        let layer = q.layers.get_mut(&l).expect("a layer of the model");
        if layer.input == old.fmt {
            layer.input = new;
        }
    }
}

/// BRECQ on every block of `model`, in graph order, starting from DefaultQuantization's
/// scales and activation formats (without bias correction).
pub fn brecq(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
) -> Result<(QuantizedModel, Vec<BlockReport>)> {
    let ao = &opts.adaround;
    let (mut q, calib, fp) = learned_rounding_start(gpu, model, calib, opts)?;
    let mut frozen = Frozen::new(gpu, &model.arch.name, q.graph.clone(), q.params.clone());
    let blocks = q.graph.blocks(|v| q.layers.contains_key(&v));
    let mut bar = opts
        .hooks
        .task("brecq", blocks.len().saturating_mul(ao.iters) as u64);
    let mut reports = Vec::new();
    let mut cursor = Cursor::start(gpu, &q.graph, &calib, model, opts)?;
    for (bi, block) in blocks.iter().enumerate() {
        let started = std::time::Instant::now();
        let quant = q.runner(gpu)?;
        let data = cursor.block_data((&fp, &quant), block, opts, ao.qdrop > 0.0)?;
        drop(quant);
        let bq = BlockQuant::new(&q, block)?;
        let learned = learn_block(gpu, &mut frozen, &bq, &data, ao, bi as u32, &mut |k| {
            bar.inc(k as u64)
        })?;
        let fmts0: Vec<QFormat> = bq.quantizers.iter().map(|z| z.fmt).collect();
        let rtn: Vec<Tensor> = bq
            .layers
            .iter()
            .map(|(w, _)| dequantized(gpu, w, &w.q))
            .collect::<Result<_>>()?;
        let hard: Vec<Tensor> = bq
            .layers
            .iter()
            .zip(&learned.q)
            .map(|((w, _), q)| dequantized(gpu, w, q))
            .collect::<Result<_>>()?;
        let data = (&data.x, &data.target);
        let rtn_mse = block_error(gpu, &mut frozen, &bq, &rtn, &fmts0, data)?;
        let mse = block_error(gpu, &mut frozen, &bq, &hard, &learned.fmts, data)?;
        let names: Vec<String> = block
            .layers
            .iter()
            .map(|&l| q.graph.nodes[l].name.clone())
            .collect();
        let mut changed = 0;
        let mut weights = 0;
        for ((w, _), l) in bq.layers.iter().zip(&learned.q) {
            changed += w.q.iter().zip(l).filter(|(a, b)| a != b).count();
            weights += l.len();
        }
        let mut steps = Vec::new();
        for (z, f) in bq.quantizers.iter().zip(&learned.fmts) {
            if ao.act_lr > 0.0 {
                steps.push((q.graph.nodes[z.value].name.clone(), z.fmt.scale, f.scale));
            }
            write_format(&mut q, *z, *f);
        }
        for (&l, learned_q) in block.layers.iter().zip(learned.q) {
            q.layers
                .get_mut(&l)
                .expect("a layer of the model")
                .weights
                .q = learned_q;
        }
        bar.message(&format!(
            "{}: block output MSE {rtn_mse:.3e} -> {mse:.3e}",
            names.join("+")
        ));
        reports.push(BlockReport {
            layers: names,
            rtn_mse,
            mse,
            changed,
            weights,
            steps,
            seconds: started.elapsed().as_secs_f64(),
            seconds_per_step: learned.step_seconds / ao.iters.max(1) as f64,
        });
    }
    bar.complete();
    Ok((q, reports))
}

#[cfg(test)]
#[path = "brecq_tests.rs"]
mod tests;
