//! POT's DefaultQuantization: calibrate activation ranges on the GPU, quantize weights per
//! channel, then FastBiasCorrection.

use super::int8::{QConv, QWeights, WeightRange};
use super::model::QuantizedModel;
use super::observer::{host_row_stats, quantile_rows, Observer, RangeEstimator};
use super::scheme::activation_format_bits;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::graph::exec::Runner;
use crate::graph::{passes, Act, Graph, Op, Params, ValueId};
use crate::models::{Model, Normalization};
use crate::ops::{self, stats::STATS};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// How [`crate::quantize`] quantizes. The defaults are POT's DefaultQuantization with the
/// range estimator of best fidelity (MSE, measured in the README) and integer ops from end to
/// end ([`Int8Ops::All`]); [`QuantOptions::pot`] is POT's exact recipe.
#[derive(Clone, Debug)]
pub struct QuantOptions {
    /// Default (every layer INT8) or accuracy-aware (revert the most harmful ones).
    pub algorithm: super::Algorithm,
    /// Accuracy-aware: the largest acceptable top-1 drop on the calibration set, a fraction
    /// in [0, 1) (0.01 = 1 pp).
    pub max_drop: f64,
    /// Conv/linear layers kept in FP32, by node name (e.g. `layer1.0.conv1`).
    pub keep_fp32: Vec<String>,
    /// How activation ranges are estimated from the calibration statistics.
    pub estimator: RangeEstimator,
    /// Run FastBiasCorrection after quantizing the weights.
    pub bias_correction: bool,
    /// Calibration images used for FastBiasCorrection's statistics.
    pub bias_subset: usize,
    /// Images per GPU submit.
    pub batch: usize,
    /// Where progress goes, and the token that stops the work.
    pub hooks: crate::progress::Hooks,
    /// Depthwise-conv inputs per channel, as POT does. Off by default: on ShuffleNetV2 x0.5
    /// per-channel ranges cost far more top-1 than one per tensor (sparse channels have small
    /// mean-of-max ranges and clip their rare large values; figures in the README).
    pub depthwise_per_channel: bool,
    /// How each output channel's weight clipping range is chosen.
    pub weight_range: WeightRange,
    /// Bits per weight (2 to 8; per-channel symmetric, narrow range).
    pub wbits: u32,
    /// Bits per activation (2 to 8; per tensor).
    pub abits: u32,
    /// Keep the first and the last quantized layer at 8-bit weights and inputs (BRECQ's and
    /// GENIE's convention at low bit widths).
    pub ends_at_8bit: bool,
    /// Which ops compute in integers: every op between the input quantization and the logits
    /// (residual adds, pooling, concat, slices, shuffles too), or conv and linear layers only.
    pub int8_ops: Int8Ops,
    /// Bits of the int8 values that no conv or linear layer reads, on the end-to-end path:
    /// the inputs of residual adds and concats (a residual block's last conv output). `None`:
    /// the activation width. BRECQ's and QDrop's W4A4 leave the last conv's output unrounded
    /// before the add; 8 bits stays close to that while the network stays integer.
    pub add_bits: Option<u32>,
    /// AdaRound's settings (used by [`super::Algorithm::AdaRound`]).
    pub adaround: super::AdaRoundOptions,
}

/// Which ops of an INT8 model compute in integers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Int8Ops {
    /// End to end: int8 data flows through residual adds, pooling, concat, slices and
    /// shuffles, each value in its own calibrated format, and only the logits are f32 (what
    /// ONNX Runtime and OpenVINO run).
    #[default]
    All,
    /// Conv and linear layers only; everything between them runs in f32 (the mixed scheme).
    Layers,
}

impl QuantOptions {
    /// OpenVINO POT's DefaultQuantization exactly (the study's recipe): POT's range
    /// estimator, max|w| weights, FastBiasCorrection, 8 bits, integer conv and linear layers.
    pub fn pot() -> Self {
        QuantOptions {
            estimator: RangeEstimator::Pot,
            weight_range: WeightRange::MinMax,
            // Its files stay as they were (the study ran the mixed scheme).
            int8_ops: Int8Ops::Layers,
            ..Default::default()
        }
    }

    /// (weight bits, input bits) of quantized layer `k` of `count` (in graph order).
    pub fn bits_of(&self, k: usize, count: usize) -> (u32, u32) {
        if self.ends_at_8bit && (k == 0 || k + 1 == count) {
            (8, 8)
        } else {
            (self.wbits, self.abits)
        }
    }
}

impl Default for QuantOptions {
    fn default() -> Self {
        QuantOptions {
            algorithm: super::Algorithm::Default,
            max_drop: 0.01,
            keep_fp32: Vec::new(),
            estimator: RangeEstimator::Mse,
            bias_correction: true,
            bias_subset: 500,
            batch: 250,
            hooks: Default::default(),
            depthwise_per_channel: false,
            weight_range: WeightRange::MinMax,
            wbits: 8,
            abits: 8,
            ends_at_8bit: false,
            int8_ops: Int8Ops::All,
            add_bits: None,
            adaround: Default::default(),
        }
    }
}

/// The inference graph that quantization works on: a train-time RepVGG re-parameterized into
/// its deploy form, BatchNorm folded, activations fused into their producers (so that unsigned
/// ranges are seen after ReLU). Residual adds stay separate nodes (not fused into a conv), so
/// the integer path can run them.
pub fn prepare(model: &Model) -> Result<(Graph, Params)> {
    let name = &model.arch.name;
    if name.starts_with("repvgg_") && !name.ends_with("_deploy") {
        return prepare(&crate::models::repvgg::fuse_to_deploy(model)?);
    }
    let mut params = model.params.clone();
    let g = passes::fold_batchnorm(&model.arch.graph, &mut params)?;
    Ok((passes::fuse_activations(&g)?, params))
}

/// The conv/linear nodes of `g` that get INT8 kernels.
pub fn quantizable(g: &Graph) -> Vec<ValueId> {
    (0..g.nodes.len())
        .filter(|&i| g.nodes[i].is_quantizable())
        .collect()
}

fn batches(
    ds: &Dataset,
    batch: usize,
    norm: Normalization,
) -> impl Iterator<Item = (usize, Vec<f32>)> + '_ {
    (0..ds.len()).step_by(batch.max(1)).map(move |s| {
        let e = (s + batch).min(ds.len());
        (
            e - s,
            ds.images().to_f32_normalized(s..e, &norm.mean, &norm.std),
        )
    })
}

fn upload(gpu: &Gpu, ds: &Dataset, n: usize, x: &[f32]) -> Result<Tensor> {
    gpu.upload_f32(&[n, ds.channels(), ds.height(), ds.width()], x)
}

/// Per-sample range statistics of every quantized layer's input over the calibration set.
pub fn calibrate(
    runner: &Runner,
    layers: &[ValueId],
    calib: &Dataset,
    norm: Normalization,
    opts: &QuantOptions,
) -> Result<HashMap<ValueId, Observer>> {
    calibrate_values(runner, layers, &[], calib, norm, opts)
}

/// [`calibrate`], also observing the values `extra`.
pub fn calibrate_values(
    runner: &Runner,
    layers: &[ValueId],
    extra: &[ValueId],
    calib: &Dataset,
    norm: Normalization,
    opts: &QuantOptions,
) -> Result<HashMap<ValueId, Observer>> {
    let g = &runner.graph;
    let mut inputs: Vec<ValueId> = layers.iter().map(|&l| g.nodes[l].inputs[0]).collect();
    inputs.extend(extra);
    inputs.sort_unstable();
    inputs.dedup();
    // Inputs of depthwise layers are observed per channel (as POT does).
    let per_channel: Vec<ValueId> = layers
        .iter()
        .filter(|&&l| opts.depthwise_per_channel && is_depthwise(runner, l))
        .map(|&l| g.nodes[l].inputs[0])
        .collect();
    let mut obs: HashMap<ValueId, Observer> = HashMap::new();
    let mut bar = opts.hooks.task("calibrate", calib.len() as u64);
    for (n, x) in batches(calib, opts.batch, norm) {
        let gpu = &runner.gpu;
        let x = upload(gpu, calib, n, &x)?;
        let mut s = gpu.stream();
        let out = runner.forward(&mut s, &x, &inputs)?;
        // Rows of statistics per input: one per sample, or per (sample, channel).
        let rows: Vec<usize> = inputs
            .iter()
            .map(|i| {
                n * if per_channel.contains(i) {
                    out.kept[i].shape()[1]
                } else {
                    1
                }
            })
            .collect();
        let mut values = Vec::new();
        let stats = if opts.estimator.reads_values() {
            // Quantiles and histograms need the values themselves: read them back.
            s.submit();
            let mut v = Vec::new();
            for (k, &i) in inputs.iter().enumerate() {
                let x = gpu.read_f32(&out.kept[&i])?;
                if opts.estimator == RangeEstimator::Quantile {
                    v.push(quantile_rows(&x, rows[k]));
                } else {
                    v.push(host_row_stats(&x, rows[k]));
                    values.push(x);
                }
            }
            v
        } else {
            let t: Vec<Tensor> = inputs
                .iter()
                .zip(&rows)
                .map(|(i, &r)| ops::stats::row_stats(&mut s, &out.kept[i], r))
                .collect::<Result<_>>()?;
            let refs: Vec<&Tensor> = t.iter().collect();
            s.submit_and_read(&refs)?
                .into_iter()
                .map(|b| bytemuck::pod_collect_to_vec::<u8, f32>(&b))
                .collect()
        };
        for (k, ((i, st), &r)) in inputs.iter().zip(stats).zip(&rows).enumerate() {
            let o = obs.entry(*i).or_insert_with(|| Observer::new(r / n));
            o.push(&st[..r * STATS]);
            if let Some(x) = values.get(k) {
                o.hist.add(x);
            }
        }
        bar.inc(n as u64)?;
    }
    bar.complete();
    Ok(obs)
}

/// A depthwise conv (one input channel per group, one output channel per input channel).
fn is_depthwise(runner: &Runner, l: ValueId) -> bool {
    match &runner.graph.nodes[l].op {
        Op::Conv2d { groups, .. } if *groups > 1 => runner
            .conv_weight_shape(l)
            .is_some_and(|[co, cig, _, _]| cig == 1 && co == *groups),
        _ => false,
    }
}

/// The `bits`-bit input format of layer `l` from its input's observer: per channel for
/// depthwise layers observed per channel, else per tensor.
fn input_format(
    runner: &Runner,
    l: ValueId,
    o: &Observer,
    est: RangeEstimator,
    bits: u32,
) -> (super::int8::QFormat, Option<Vec<f32>>) {
    if o.channels > 1 && is_depthwise(runner, l) {
        let (fmt, scales) = super::scheme::channel_formats_bits(&o.ranges(est), bits);
        return (fmt, Some(scales));
    }
    let (lo, hi) = o.range(est, bits);
    (activation_format_bits(lo, hi, bits), None)
}

/// The INT8 description of conv/linear node `l` given its input format (f32 output, the node's
/// activation fused).
pub fn qconv_for(
    g: &Graph,
    params: &Params,
    l: ValueId,
    input: super::int8::QFormat,
    input_channel_scales: Option<Vec<f32>>,
) -> Result<QConv> {
    qconv_bits(
        g,
        params,
        l,
        (input, input_channel_scales),
        8,
        WeightRange::MinMax,
    )
}

/// [`qconv_for`] with `wbits`-bit weights clipped by `range`.
pub fn qconv_bits(
    g: &Graph,
    params: &Params,
    l: ValueId,
    (input, input_channel_scales): (super::int8::QFormat, Option<Vec<f32>>),
    wbits: u32,
    range: WeightRange,
) -> Result<QConv> {
    let Some(layer) = g.nodes.get(l).and_then(|n| n.op.layer()) else {
        return Err(Error::Invalid(format!("node {l} is not conv/linear")));
    };
    Ok(QConv {
        weights: QWeights::quantize_bits(params.get(layer.weight)?, wbits, range)?,
        bias: layer
            .bias
            .map(|b| params.get(b).map(|a| a.data.clone()))
            .transpose()?,
        stride: layer.stride,
        pad: layer.pad,
        dilation: layer.dilation,
        groups: layer.groups,
        input,
        input_channel_scales,
        act: layer.act,
        output: None,
    })
}

/// POT's FastBiasCorrection: for each quantized layer, shift its bias by the per-channel mean
/// difference between the FP32 layer and the INT8 layer on the same FP32 inputs.
fn correct_biases(
    runner: &Runner,
    layers: &mut BTreeMap<ValueId, QConv>,
    calib: &Dataset,
    norm: Normalization,
    opts: &QuantOptions,
) -> Result<()> {
    let gpu = &runner.gpu;
    let g = &runner.graph;
    let ids: Vec<ValueId> = layers.keys().copied().collect();
    let inputs: Vec<ValueId> = ids.iter().map(|&l| g.nodes[l].inputs[0]).collect();
    // Pre-activation layers: the correction compares linear outputs.
    let linear: HashMap<ValueId, ops::qconv::QConv2d> = ids
        .iter()
        .map(|&l| {
            let mut q = layers[&l].clone();
            q.act = Act::Identity;
            Ok((l, ops::qconv::QConv2d::new(gpu, &q)?))
        })
        .collect::<Result<_>>()?;
    let mut diff: HashMap<ValueId, Vec<f64>> = HashMap::new();
    let mut count: HashMap<ValueId, f64> = HashMap::new();
    let subset = calib.subset(&(0..opts.bias_subset.min(calib.len())).collect::<Vec<_>>())?;
    let mut bar = opts.hooks.task("bias corr", subset.len() as u64);
    for (n, x) in batches(&subset, opts.batch, norm) {
        let x = upload(gpu, &subset, n, &x)?;
        let mut s = gpu.stream();
        let out = runner.forward(&mut s, &x, &inputs)?;
        let mut sums = Vec::new();
        let mut spatial = Vec::new();
        for (&l, v) in ids.iter().zip(&inputs) {
            let xin = &out.kept[v];
            let fp = runner.layer(&mut s, l, xin, None, Act::Identity)?;
            let q = &linear[&l];
            let qx = q.quantize_input(&mut s, xin)?;
            let qy = q.forward(&mut s, &qx)?.into_f32()?;
            let c = fp.shape()[1];
            let rows = n * c;
            spatial.push(fp.numel() / rows);
            sums.push(ops::stats::row_stats(&mut s, &fp, rows)?);
            sums.push(ops::stats::row_stats(&mut s, &qy, rows)?);
        }
        let refs: Vec<&Tensor> = sums.iter().collect();
        let back = s.submit_and_read(&refs)?;
        for (k, &l) in ids.iter().enumerate() {
            let fp: Vec<f32> = bytemuck::pod_collect_to_vec(&back[2 * k]);
            let q: Vec<f32> = bytemuck::pod_collect_to_vec(&back[2 * k + 1]);
            let c = layers[&l].weights.shape[0];
            let d = diff.entry(l).or_insert_with(|| vec![0.0; c]);
            for r in 0..n * c {
                d[r % c] += (fp[r * STATS + 3] - q[r * STATS + 3]) as f64;
            }
            *count.entry(l).or_default() += (n * spatial[k]) as f64;
        }
        bar.inc(n as u64)?;
    }
    bar.complete();
    for (&l, q) in layers.iter_mut() {
        let d = &diff[&l];
        let elems = count[&l];
        let c = q.weights.shape[0];
        let b = q.bias.get_or_insert_with(|| vec![0.0; c]);
        for ch in 0..c {
            b[ch] += (d[ch] / elems) as f32;
        }
    }
    Ok(())
}

/// Fewer calibration images than this draw a warning.
pub const MIN_CALIBRATION_IMAGES: usize = 100;

/// DefaultQuantization of `model` calibrated on `calib` (whose classes must be the model's,
/// see [`crate::data::Dataset::map_classes`]).
pub fn default_quantization(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
) -> Result<QuantizedModel> {
    if calib.is_empty() {
        return Err(Error::Invalid("the calibration set is empty".into()));
    }
    let add_bits = opts.add_bits.unwrap_or(opts.abits);
    let widths = [
        ("weight", opts.wbits),
        ("activation", opts.abits),
        ("add input", add_bits),
    ];
    for (what, b) in widths {
        if !(2..=8).contains(&b) {
            return Err(Error::Invalid(format!(
                "{b} {what} bits (2 to 8 are supported)"
            )));
        }
    }
    crate::infer::check_classes(calib, &model.class_names)?;
    crate::infer::check_input(calib.images(), model.input_shape(), &model.arch.name)?;
    if calib.len() < MIN_CALIBRATION_IMAGES {
        log::warn!(
            "the calibration set has only {} image(s); with fewer than {MIN_CALIBRATION_IMAGES} \
             the activation ranges rest on too few samples to be reliable",
            calib.len()
        );
    }
    let (graph, params) = prepare(model)?;
    let runner = Runner::new(gpu.clone(), graph.clone(), &params)?;
    let ids = quantizable(&graph);
    let (roots, read_by) = match opts.int8_ops {
        Int8Ops::All => int8_roots(&graph, &ids),
        Int8Ops::Layers => Default::default(),
    };
    // Roots that no layer reads need statistics of their own.
    let extra: Vec<ValueId> = roots
        .iter()
        .copied()
        .filter(|r| !read_by.contains_key(r))
        .collect();
    let obs = calibrate_values(&runner, &ids, &extra, calib, model.arch.norm.clone(), opts)?;
    let mut layers = BTreeMap::new();
    for (k, &l) in ids.iter().enumerate() {
        let (wbits, abits) = opts.bits_of(k, ids.len());
        let o = &obs[&graph.nodes[l].inputs[0]];
        let input = input_format(&runner, l, o, opts.estimator, abits);
        let q = qconv_bits(&graph, &params, l, input, wbits, opts.weight_range)?;
        layers.insert(l, q);
    }
    if opts.bias_correction {
        correct_biases(&runner, &mut layers, calib, model.arch.norm.clone(), opts)?;
    }
    // A root takes the input format of the first layer that reads it (so that layer needs no
    // requantization), else its own statistics at the activation width.
    let mut values = BTreeMap::new();
    for &r in &roots {
        let f = match read_by.get(&r) {
            Some(l) => layers[l].input,
            None => {
                let (lo, hi) = obs[&r].range(opts.estimator, add_bits);
                activation_format_bits(lo, hi, add_bits)
            }
        };
        values.insert(r, f);
    }
    Ok(QuantizedModel {
        arch: model.arch.name.clone(),
        norm: model.arch.norm.clone(),
        input_channels: model.arch.input_channels,
        input_size: model.arch.input_size,
        class_names: model.class_names.clone(),
        graph,
        params,
        layers,
        values,
        meta: BTreeMap::new(),
    })
}

/// The values that own a format on the integer path when `layers` are quantized (see
/// `graph::int8`), and for each the first layer (of one per-tensor input) that reads it,
/// directly or through format-preserving ops.
fn int8_roots(g: &Graph, layers: &[ValueId]) -> (Vec<ValueId>, HashMap<ValueId, ValueId>) {
    // Any format shows which values the integer path reaches; the real ones come later.
    let any = super::int8::QFormat::signed(1.0);
    let probe: BTreeMap<ValueId, super::int8::QFormat> = (0..g.nodes.len())
        .filter(|&i| i != g.output && g.nodes[i].op.owns_int8_format())
        .map(|i| (i, any))
        .collect();
    let stub = |l: ValueId| {
        let act = g.nodes[l].op.layer().map_or(Act::Identity, |s| s.act);
        QConv::identity(any, act)
    };
    let stubs: HashMap<ValueId, QConv> = layers.iter().map(|&l| (l, stub(l))).collect();
    let plan = g.int8_plan(&stubs, &probe);
    let roots: Vec<ValueId> = probe
        .keys()
        .copied()
        .filter(|v| plan.formats.contains_key(v))
        .collect();
    let root_of = |mut v: ValueId| {
        while matches!(
            g.nodes[v].op,
            Op::ShortcutA { .. }
                | Op::SliceChannels { .. }
                | Op::ChannelShuffle { .. }
                | Op::MaxPool { .. }
                | Op::Pad { .. }
                | Op::Flatten
        ) && plan.formats.contains_key(&v)
        {
            v = g.nodes[v].inputs[0];
        }
        v
    };
    let mut read_by = HashMap::new();
    for &l in layers {
        let r = root_of(g.nodes[l].inputs[0]);
        if roots.contains(&r) {
            read_by.entry(r).or_insert(l);
        }
    }
    (roots, read_by)
}
