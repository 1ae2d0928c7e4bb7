//! Runs a graph on the GPU: every node is recorded on one stream (one submit per batch), and
//! each intermediate is dropped, returning its buffer to the pool, right after its last reader.

use super::int8::{self, Int8Plan};
use super::walk::{Step, Values};
use super::{bn_names, Graph, Op, Params, ValueId};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream, Tensor};
use crate::ops;
use crate::ops::pool::Pool;
use crate::quant::int8::{QAdd, QFormat};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Called after each node is recorded: (stream, node, output shape).
pub(crate) type NodeHook<'h, 'g> = dyn FnMut(&mut Stream<'g>, ValueId, &[usize]) -> Result<()> + 'h;

/// A graph with its parameters resident on the GPU.
pub struct Runner {
    pub gpu: Arc<Gpu>,
    pub graph: Graph,
    weights: HashMap<String, Tensor>,
    conv_weights: HashMap<String, ops::conv2d::ConvWeight>,
    /// Conv/linear nodes that run as INT8 kernels instead (quantize input, integer conv).
    quantized: HashMap<ValueId, ops::qconv::QConv2d>,
    /// The integer path: int8 values and their formats.
    plan: Int8Plan,
}

/// A value as a runner holds it: f32, or int8 in its format.
#[derive(Clone, Debug)]
pub enum Held {
    F32(Tensor),
    Int8(ops::qconv::QTensor),
}

/// Where a walk starts: the graph input, or a value held already (then only the `needed`
/// nodes run).
enum Start<'a> {
    Input(&'a Tensor),
    At {
        from: ValueId,
        x: &'a Held,
        needed: Vec<bool>,
    },
}

/// The graph output plus any values the caller asked to keep (calibration taps, backward).
pub struct Outputs {
    pub output: Tensor,
    pub kept: HashMap<ValueId, Tensor>,
}

impl Runner {
    /// Uploads every parameter the graph reads.
    pub fn new(gpu: Arc<Gpu>, graph: Graph, params: &Params) -> Result<Runner> {
        Runner::with_quantized(gpu, graph, params, &HashMap::new())
    }

    /// Like `new`, but the given conv/linear nodes run with real integer arithmetic (their
    /// FP32 parameters are not needed).
    pub fn with_quantized(
        gpu: Arc<Gpu>,
        graph: Graph,
        params: &Params,
        layers: &HashMap<ValueId, crate::quant::int8::QConv>,
    ) -> Result<Runner> {
        Runner::with_int8(gpu, graph, params, layers, &Default::default())
    }

    /// Like `with_quantized`, with the formats of the values that own one (add, pool and
    /// layer outputs): those nodes and the data movement between them run on int8 data
    /// (see `graph::int8`).
    pub fn with_int8(
        gpu: Arc<Gpu>,
        graph: Graph,
        params: &Params,
        layers: &HashMap<ValueId, crate::quant::int8::QConv>,
        values: &BTreeMap<ValueId, QFormat>,
    ) -> Result<Runner> {
        let mut quantized = HashMap::new();
        // Layers read only by another quantized layer requantize straight into its format.
        let plan = graph.int8_plan(layers, values);
        for (&v, q) in &plan.layers {
            if !graph.nodes.get(v).is_some_and(|n| n.is_quantizable()) {
                return Err(Error::Invalid(format!(
                    "node {v} is not a quantizable conv/linear"
                )));
            }
            quantized.insert(v, ops::qconv::QConv2d::new(&gpu, q)?);
        }
        let fp32_nodes = Graph {
            nodes: (0..graph.nodes.len())
                .filter(|i| !quantized.contains_key(i))
                .map(|i| graph.nodes[i].clone())
                .collect(),
            output: 0,
        };
        // Conv weights go to the GPU in the conv kernel's own layout; the rest as they are.
        let mut conv_weights = HashMap::new();
        for n in &fp32_nodes.nodes {
            if let Op::Conv2d { weight, groups, .. } = &n.op {
                let a = params.get(weight)?;
                let w = ops::conv2d::prepare_conv_weight(&gpu, &a.shape, &a.data, *groups)?;
                conv_weights.insert(weight.clone(), w);
            }
        }
        let mut weights = HashMap::new();
        for name in fp32_nodes.param_names() {
            if !conv_weights.contains_key(&name) {
                let a = params.get(&name)?;
                weights.insert(name, gpu.upload_f32(&a.shape, &a.data)?);
            }
        }
        Ok(Runner {
            gpu,
            graph,
            weights,
            conv_weights,
            quantized,
            plan,
        })
    }

    /// The nodes that compute on int8 data, in order (quantized layers and int8 ops).
    pub fn int8_nodes(&self) -> Vec<ValueId> {
        self.plan.int8_nodes()
    }

    /// Bytes of the quantized layers' weight buffers on the GPU.
    pub fn int8_weight_bytes(&self) -> u64 {
        self.quantized.values().map(|q| q.weight_bytes()).sum()
    }

    /// Re-uploads every quantized layer's weights one per byte, the layout of 8-bit layers
    /// (low-bit ones get nibbles at load), to compare the two.
    pub fn use_byte_weights(&mut self) -> Result<()> {
        for q in self.quantized.values_mut() {
            let desc = q.desc().clone();
            let path = q.path;
            *q = ops::qconv::QConv2d::with_layout(
                &self.gpu,
                &desc,
                ops::qconv::WeightLayout::Bytes,
            )?;
            q.path = path;
        }
        Ok(())
    }

    fn w(&self, name: &str) -> Result<&Tensor> {
        self.weights
            .get(name)
            .ok_or_else(|| Error::Invalid(format!("parameter `{name}` was not uploaded")))
    }

    /// The PyTorch shape of FP32 conv node `i`'s weight, if it is one.
    pub fn conv_weight_shape(&self, i: ValueId) -> Option<[usize; 4]> {
        match &self.graph.nodes.get(i)?.op {
            Op::Conv2d { weight, .. } => self.conv_weights.get(weight).map(|w| w.shape()),
            _ => None,
        }
    }

    /// Whether node `i` runs as an INT8 kernel.
    pub fn is_quantized(&self, i: ValueId) -> bool {
        self.quantized.contains_key(&i)
    }

    /// The weight shape of conv/linear node `i`: `[co, ci/groups, kh, kw]` or `[out, in]`.
    pub fn layer_weight_shape(&self, i: ValueId) -> Option<Vec<usize>> {
        if let Some(q) = self.quantized.get(&i) {
            return Some(q.desc().weights.shape.to_vec());
        }
        let l = self.graph.nodes.get(i)?.op.layer()?;
        if l.linear {
            return self.weights.get(l.weight).map(|t| t.shape().to_vec());
        }
        self.conv_weight_shape(i).map(|s| s.to_vec())
    }

    /// Records FP32 conv/linear node `i` on `x` with activation `act` (the node's own, or
    /// Identity for pre-activation statistics).
    pub fn layer(
        &self,
        s: &mut Stream,
        i: ValueId,
        x: &Tensor,
        residual: Option<&Tensor>,
        act: crate::graph::Act,
    ) -> Result<Tensor> {
        let Some(l) = self.graph.nodes.get(i).and_then(|n| n.op.layer()) else {
            return Err(Error::Invalid(format!(
                "node {i} is not a conv/linear layer"
            )));
        };
        let bias = l.bias.map(|b| self.w(b)).transpose()?;
        if l.linear {
            return ops::matmul::linear(s, x, self.w(l.weight)?, bias, act);
        }
        let w = self.conv_weights.get(l.weight).ok_or_else(|| {
            Error::Invalid(format!("conv weight `{}` was not prepared", l.weight))
        })?;
        ops::conv2d::conv2d(s, x, w, bias, &l.conv_params(), residual, act)
    }

    /// Records the forward pass of `input` on `s`; `keep` lists values to return besides the output.
    pub fn forward(&self, s: &mut Stream, input: &Tensor, keep: &[ValueId]) -> Result<Outputs> {
        self.forward_hooked(s, input, keep, &mut |_, _, _| Ok(()))
    }

    /// `forward`, calling `hook(stream, node, output shape)` right after each node is recorded
    /// (the profiler's timestamps and per-node submits).
    pub(crate) fn forward_hooked<'g>(
        &self,
        s: &mut Stream<'g>,
        input: &Tensor,
        keep: &[ValueId],
        hook: &mut NodeHook<'_, 'g>,
    ) -> Result<Outputs> {
        let (mut values, qvalues) = self.walk(s, Start::Input(input), keep, hook)?;
        // An int8 output (a model that rounds its logits) is dequantized at the end.
        let out = self.graph.output;
        if let (None, Some(q)) = (values.get(out), qvalues.get(out)) {
            let y = self.dequantize(s, out, q)?;
            values.set(out, y);
        }
        let kept = keep
            .iter()
            .filter_map(|&v| values.get(v).cloned().map(|t| (v, t)))
            .collect();
        let output = values
            .take(self.graph.output)
            .ok_or_else(|| Error::Invalid("graph produced no output".into()))?;
        Ok(Outputs { output, kept })
    }

    /// The format the runner holds value `v` in (None: f32).
    pub fn int8_format(&self, v: ValueId) -> Option<QFormat> {
        self.plan.formats.get(&v).copied()
    }

    /// Records only the nodes that value `to` depends on, starting from value `from` as `x`
    /// holds it instead of from the graph input (a cut point that `to` depends on the input
    /// through), and returns `to` as the runner holds it. The same kernels run on the same
    /// data as in `forward`, so the result is the same bits.
    pub fn forward_from(
        &self,
        s: &mut Stream,
        from: ValueId,
        x: &Held,
        to: ValueId,
    ) -> Result<Held> {
        if from == to {
            return Ok(x.clone());
        }
        let needed = self.graph.needed_from(from, to)?;
        let start = Start::At { from, x, needed };
        let (mut values, mut qvalues) = self.walk(s, start, &[], &mut |_, _, _| Ok(()))?;
        match (qvalues.take(to), values.take(to)) {
            (Some(q), _) => Ok(Held::Int8(q)),
            (None, Some(t)) => Ok(Held::F32(t)),
            _ => Err(Error::Invalid(format!("value {to} was not computed"))),
        }
    }

    /// Value `v` held as `x`, in f32 (as `forward` keeps it).
    pub fn held_f32(&self, s: &mut Stream, v: ValueId, x: &Held) -> Result<Tensor> {
        match x {
            Held::F32(t) => Ok(t.clone()),
            Held::Int8(q) => self.dequantize(s, v, q),
        }
    }

    /// Records the nodes `start` asks for; returns the f32 and the int8 values left.
    fn walk<'g>(
        &self,
        s: &mut Stream<'g>,
        start: Start,
        keep: &[ValueId],
        hook: &mut NodeHook<'_, 'g>,
    ) -> Result<(Values<Tensor>, Values<ops::qconv::QTensor>)> {
        let mut values: Values<Tensor> = Values::new(&self.graph);
        // Outputs of chained quantized layers: packed int8 in the consumer's input format.
        let mut qvalues: Values<ops::qconv::QTensor> = Values::new(&self.graph);
        let (input, needed) = match start {
            Start::Input(x) => (Some(x), None),
            Start::At { from, x, needed } => {
                match x {
                    Held::F32(t) => values.set(from, t.clone()),
                    Held::Int8(q) => qvalues.set(from, q.clone()),
                }
                (None, Some(needed))
            }
        };
        // Residual adds fused into their conv, in whole passes only (a partial walk may stop
        // at the conv's own output).
        let fusable = match needed {
            None => self.fusable_adds(),
            Some(_) => HashMap::new(),
        };
        let mut fused = Vec::new();
        let order = self.plan.schedule(&self.graph, &fusable);
        for step in self.graph.walk_in(order) {
            let (i, node) = (step.id, step.node);
            if needed.as_ref().is_some_and(|m| !m[i]) {
                continue;
            }
            if let Some(&f) = self.plan.formats.get(&i) {
                if self.plan.is_int8_op(i) {
                    let y = if fused.contains(&i) {
                        qvalues.take(i).ok_or_else(|| {
                            Error::Invalid(format!("{}: fused add missing", node.name))
                        })?
                    } else {
                        int8::gpu_node(s, node, f, &qvalues)?
                    };
                    if keep.contains(&i) {
                        values.set(i, self.dequantize(s, i, &y)?);
                    }
                    hook(s, i, &y.shape)?;
                    qvalues.set(i, y);
                    free(&step, keep, &mut values, &mut qvalues);
                    continue;
                }
            }
            // A layer takes an int8 input in its own format; every other reader of an int8
            // value gets it dequantized (once, kept until the value dies).
            let int8_input = node
                .inputs
                .first()
                .and_then(|&v| qvalues.get(v))
                .filter(|x| self.plan.takes_int8(i, x.fmt));
            if int8_input.is_none() {
                for &v in &node.inputs {
                    if let (None, Some(q)) = (values.get(v), qvalues.get(v)) {
                        let y = self.dequantize(s, v, q)?;
                        values.set(v, y);
                    }
                }
            }
            let arg = |k: usize| values.input(node, k);
            let out = match &node.op {
                _ if self.quantized.contains_key(&i) => {
                    let q = &self.quantized[&i];
                    let owned;
                    let qx = match int8_input {
                        Some(qx) => qx,
                        None => {
                            owned = q.quantize_input(s, arg(0)?)?;
                            &owned
                        }
                    };
                    if let Some(y) = self.forward_add(s, i, q, qx, &fusable, &qvalues, keep)? {
                        let j = fusable[&i].0;
                        hook(s, i, &y.shape)?;
                        qvalues.set(j, y);
                        fused.push(j);
                        free(&step, keep, &mut values, &mut qvalues);
                        continue;
                    }
                    match q.forward(s, qx)? {
                        // The kernel writes [N, out, 1, 1] for a linear layer.
                        ops::qconv::QOut::F32(y) => match node.op {
                            Op::Linear { .. } => {
                                let n = qx.shape[0];
                                y.reshape(&[n, y.numel() / n])?
                            }
                            _ => y,
                        },
                        ops::qconv::QOut::Q(y) => {
                            // A caller that keeps an int8 value gets it dequantized.
                            if keep.contains(&i) {
                                values.set(i, self.dequantize(s, i, &y)?);
                            }
                            hook(s, i, &y.shape)?;
                            qvalues.set(i, y);
                            free(&step, keep, &mut values, &mut qvalues);
                            continue;
                        }
                    }
                }
                Op::Input => input
                    .ok_or_else(|| Error::Invalid(format!("{}: no graph input", node.name)))?
                    .clone(),
                Op::Conv2d { act, .. } | Op::Linear { act, .. } => {
                    let residual = if node.inputs.len() > 1 {
                        Some(arg(1)?)
                    } else {
                        None
                    };
                    self.layer(s, i, arg(0)?, residual, *act)?
                }
                Op::BatchNorm { prefix, eps, act } => {
                    let [g, b, m, v] = bn_names(prefix);
                    let mut bn = ops::batchnorm::BatchNorm::new(
                        self.w(&g)?.clone(),
                        self.w(&b)?.clone(),
                        self.w(&m)?.clone(),
                        self.w(&v)?.clone(),
                    );
                    bn.eps = *eps;
                    ops::batchnorm::batch_norm(s, arg(0)?, &bn, *act)?
                }
                Op::Act(a) => ops::elementwise::act(s, arg(0)?, *a)?,
                Op::Add { act } => ops::elementwise::add(s, arg(0)?, arg(1)?, *act)?,
                Op::ShortcutA { pad } => ops::layout::shortcut_a(s, arg(0)?, *pad)?,
                Op::Concat => ops::layout::concat(s, &values.inputs(node)?)?,
                Op::SliceChannels { start, len } => {
                    ops::layout::slice_channels(s, arg(0)?, *start..start + len)?
                }
                Op::ChannelShuffle { groups } => ops::layout::channel_shuffle(s, arg(0)?, *groups)?,
                op @ (Op::MaxPool { .. } | Op::AvgPool { .. }) => {
                    let how = match op {
                        Op::AvgPool { count_pad, .. } => Pool::average(*count_pad),
                        _ => Pool::Max,
                    };
                    let win = op.pool_window().expect("a pool op");
                    ops::pool::pool2d(s, arg(0)?, how, &win)?
                }
                Op::GlobalAvgPool => ops::pool::global_avg_pool(s, arg(0)?)?,
                Op::Pad { pads, mode } => ops::pad2d::pad2d(s, arg(0)?, *pads, *mode)?,
                Op::Softmax => ops::softmax::softmax(s, arg(0)?)?,
                Op::Lrn {
                    size,
                    alpha,
                    beta,
                    bias,
                } => ops::lrn::lrn(s, arg(0)?, *size, *alpha, *beta, *bias)?,
                Op::Flatten => arg(0)?.flatten()?,
            };
            hook(s, i, out.shape())?;
            values.set(i, out);
            free(&step, keep, &mut values, &mut qvalues);
        }
        Ok((values, qvalues))
    }

    /// Layer `i` with the residual add it feeds (`fusable`), where the add's other input is
    /// ready, the layer's own output is not asked for, and the layer has an int8 output.
    #[allow(clippy::too_many_arguments)]
    fn forward_add(
        &self,
        s: &mut Stream,
        i: ValueId,
        q: &ops::qconv::QConv2d,
        qx: &ops::qconv::QTensor,
        fusable: &HashMap<ValueId, (ValueId, bool)>,
        qvalues: &Values<ops::qconv::QTensor>,
        keep: &[ValueId],
    ) -> Result<Option<ops::qconv::QTensor>> {
        let Some(&(j, conv_first)) = fusable.get(&i) else {
            return Ok(None);
        };
        let add = &self.graph.nodes[j];
        let (Op::Add { act }, Some(conv), Some(&out)) =
            (&add.op, q.desc().output, self.plan.formats.get(&j))
        else {
            return Ok(None);
        };
        let Some(res) = qvalues.get(add.inputs[conv_first as usize]) else {
            return Ok(None);
        };
        if keep.contains(&i) {
            return Ok(None);
        }
        let (a, b) = if conv_first {
            (conv, res.fmt)
        } else {
            (res.fmt, conv)
        };
        let desc = QAdd {
            a,
            b,
            act: *act,
            output: Some(out),
        };
        q.forward_add(s, qx, res, &desc, conv_first)
    }

    /// The residual add that layer `i` takes in (see `QConv2d::forward_add`).
    pub fn fused_add(&self, i: ValueId) -> Option<ValueId> {
        self.fusable_adds().get(&i).map(|&(j, _)| j)
    }

    /// The plan's fusable adds whose layer runs a kernel that takes them in.
    fn fusable_adds(&self) -> HashMap<ValueId, (ValueId, bool)> {
        self.plan.fusable_adds(&self.graph, |u| {
            self.quantized.get(&u).is_some_and(|q| q.fuses_add())
        })
    }

    /// Int8 value `v` in f32, shaped as the f32 ops expect it.
    fn dequantize(&self, s: &mut Stream, v: ValueId, q: &ops::qconv::QTensor) -> Result<Tensor> {
        ops::qconv::dequantize(s, q)?.reshape(&int8::f32_shape(&self.graph, v, q.shape))
    }

    /// Uploads a normalized NCHW batch of `n` images of `hw` pixels, runs it and reads the
    /// logits back (one submit). The channels are what the batch holds per pixel.
    pub fn logits(&self, batch: &[f32], n: usize, hw: [usize; 2]) -> Result<Vec<f32>> {
        let c = channels_of(batch.len(), n, hw)?;
        let x = self.gpu.upload_f32(&[n, c, hw[0], hw[1]], batch)?;
        let mut s = self.gpu.stream();
        let out = self.forward(&mut s, &x, &[])?.output;
        s.submit();
        self.gpu.read_f32(&out)
    }
}

/// The channels of a batch of `len` values holding `n` images of `hw` pixels.
pub(crate) fn channels_of(len: usize, n: usize, hw: [usize; 2]) -> Result<usize> {
    let pixels = n * hw[0] * hw[1];
    if pixels == 0 || len == 0 || !len.is_multiple_of(pixels) {
        return Err(Error::Invalid(format!(
            "{len} input values are not {n} images of {}x{} pixels and whole channels",
            hw[0], hw[1]
        )));
    }
    Ok(len / pixels)
}

/// Drops the values whose last reader was this step's node, unless kept.
fn free(
    step: &Step,
    keep: &[ValueId],
    values: &mut Values<Tensor>,
    qvalues: &mut Values<ops::qconv::QTensor>,
) {
    for &v in &step.dead {
        qvalues.take(v);
        if !keep.contains(&v) {
            values.take(v);
        }
    }
}
