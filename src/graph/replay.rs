//! A frozen classifier on the autodiff tape: its graph replayed op by op with fixed weights
//! and inference-form BatchNorm, so gradients reach the input only. ZeroQ distillation
//! (`calib::distill`) stops at the last BatchNorm and matches its statistics; the GAN's
//! classifier guide (`gan::guide`) runs to the logits.
//!
//! Ops without a tape form of their own become fixed convolutions, which the tape
//! differentiates: the option-A shortcut and channel slices/shuffles are 1x1 selections,
//! global average pooling is a depthwise mean, and a linear layer is a 1x1 convolution.

use super::walk::Values;
use super::{bn_names, Graph, Op, Params, ValueId};
use crate::array::Array;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Stream, Tensor};
use crate::graph::tape::{Tape, Var};
use crate::ops::batchnorm::BatchNorm;
use crate::ops::conv2d::Conv2dParams;
use crate::ops::pool::Pool;
use crate::ops::Act;
use std::collections::HashMap;
use std::sync::Arc;

/// How far the graph is replayed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Until {
    /// To the last BatchNorm.
    LastBatchNorm,
    /// To the output logits.
    Logits,
}

/// What a replay produced: the last value and, when asked for, a BN-statistics loss per
/// BatchNorm layer (ZeroQ's: the batch's mean and std against the running ones).
pub struct Replayed {
    pub out: Var,
    pub stat_losses: Vec<Var>,
}

/// What block reconstruction (`quant::brecq`) changes in a replay: a layer's weights (its
/// own parameter when None), what a layer reads, and each node's output.
pub trait Hooks {
    /// Layer `i`'s weight on the tape (`[out, in, 1, 1]` for a linear layer), or None.
    fn weight(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId) -> Result<Option<Var>>;
    /// What layer `i` reads in place of its input `x`.
    fn layer_input(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId, x: Var) -> Result<Var>;
    /// What node `i`'s readers see in place of its output `y`.
    fn output(&mut self, t: &mut Tape, s: &mut Stream, i: ValueId, y: Var) -> Result<Var>;
}

/// No changes: the frozen model.
struct Plain;

impl Hooks for Plain {
    fn weight(&mut self, _: &mut Tape, _: &mut Stream, _: ValueId) -> Result<Option<Var>> {
        Ok(None)
    }
    fn layer_input(&mut self, _: &mut Tape, _: &mut Stream, _: ValueId, x: Var) -> Result<Var> {
        Ok(x)
    }
    fn output(&mut self, _: &mut Tape, _: &mut Stream, _: ValueId, y: Var) -> Result<Var> {
        Ok(y)
    }
}

/// A BatchNorm layer's tensors on the GPU: the layer, its backward scaling, the statistics
/// it is matched against ([running mean; running std]) and a scratch layer for the batch's.
struct BnLayer {
    bn: BatchNorm,
    grad: BatchNorm,
    reference: Tensor,
    scratch: BatchNorm,
}

/// A classifier's graph and fixed tensors, uploaded on first use and kept for later replays.
pub struct Frozen {
    gpu: Arc<Gpu>,
    /// The model's name, for errors.
    name: String,
    graph: Arc<Graph>,
    params: Params,
    cache: HashMap<String, Tensor>,
    bns: HashMap<String, Arc<BnLayer>>,
}

impl Frozen {
    /// `name` labels errors (a model name or path).
    pub fn new(gpu: &Arc<Gpu>, name: &str, graph: Graph, params: Params) -> Frozen {
        Frozen {
            gpu: gpu.clone(),
            name: name.to_string(),
            graph: Arc::new(graph),
            params,
            cache: HashMap::new(),
            bns: HashMap::new(),
        }
    }

    fn batch_norm(&mut self, prefix: &str, eps: f32) -> Result<Arc<BnLayer>> {
        if let Some(l) = self.bns.get(prefix) {
            return Ok(l.clone());
        }
        let [gn, bn, mn, vn] = bn_names(prefix);
        let p = &self.params;
        let (ga, ba, ma, va) = (p.get(&gn)?, p.get(&bn)?, p.get(&mn)?, p.get(&vn)?);
        let c = ga.data.len();
        let g = &self.gpu;
        let up = |a: &Array| g.upload_f32(&[c], &a.data);
        let mut layer = BatchNorm::new(up(ga)?, up(ba)?, up(ma)?, up(va)?);
        layer.eps = eps;
        let std: Vec<f32> = va.data.iter().map(|v| (v + eps).sqrt()).collect();
        let scale: Vec<f32> = ga.data.iter().zip(&std).map(|(g, sd)| g / sd).collect();
        let reference: Vec<f32> = ma.data.iter().chain(&std).copied().collect();
        let mut scratch = BatchNorm::init(g, c)?;
        scratch.eps = eps;
        let l = Arc::new(BnLayer {
            bn: layer,
            grad: BatchNorm::scaling(g, &scale)?,
            reference: g.upload_f32(&[2 * c], &reference)?,
            scratch,
        });
        self.bns.insert(prefix.to_string(), l.clone());
        Ok(l)
    }

    /// A constant on the tape, made (and uploaded) once per key (parameter names, or keys
    /// with a `#` that no parameter name has).
    pub fn constant(
        &mut self,
        t: &mut Tape,
        key: &str,
        shape: &[usize],
        make: impl FnOnce() -> Vec<f32>,
    ) -> Result<Var> {
        cached(&self.gpu, &mut self.cache, t, key, shape, make)
    }

    /// A parameter of the model as a constant, under `shape` (its own when None).
    fn param(&mut self, t: &mut Tape, name: &str, shape: Option<&[usize]>) -> Result<Var> {
        let a = self.params.get(name)?;
        let shape = shape.unwrap_or(&a.shape);
        cached(&self.gpu, &mut self.cache, t, name, shape, || {
            a.data.clone()
        })
    }

    /// The forward pass of the model on the tape from the normalized image batch `x`, with
    /// the BN-statistics losses when `stats`.
    pub fn replay(
        &mut self,
        t: &mut Tape,
        s: &mut Stream,
        x: Var,
        until: Until,
        stats: bool,
    ) -> Result<Replayed> {
        let g = self.graph.clone();
        let name = self.name.clone();
        let last = match until {
            Until::Logits => g.output,
            Until::LastBatchNorm => g
                .nodes
                .iter()
                .rposition(|n| matches!(n.op, Op::BatchNorm { .. }))
                .ok_or_else(|| {
                    Error::Invalid(format!("{name} has no BatchNorm layers to match"))
                })?,
        };
        let mut vals: Values<Var> = Values::new(&g);
        let mut stat_losses = Vec::new();
        let stats = stats.then_some(&mut stat_losses);
        let nodes: Vec<ValueId> = (0..=last).collect();
        self.run_nodes(t, s, &mut vals, x, &nodes, stats, &mut Plain)?;
        let out = vals
            .take(last)
            .ok_or_else(|| Error::Invalid(format!("replay of {name}: no output")))?;
        Ok(Replayed { out, stat_losses })
    }

    /// Replays `nodes` (in order) into `vals`, the `Input` node as `x`, collecting
    /// BN-statistics losses into `stats` when given.
    #[allow(clippy::too_many_arguments)]
    fn run_nodes(
        &mut self,
        t: &mut Tape,
        s: &mut Stream,
        vals: &mut Values<Var>,
        x: Var,
        nodes: &[ValueId],
        mut stats: Option<&mut Vec<Var>>,
        hooks: &mut dyn Hooks,
    ) -> Result<()> {
        let g = self.graph.clone();
        let name = self.name.clone();
        // The tape keeps every value for the backward, so nothing is freed.
        for &i in nodes {
            let node = &g.nodes[i];
            let arg = |k: usize| -> Result<Var> {
                vals.input(node, k)
                    .copied()
                    .map_err(|e| Error::Invalid(format!("replay of {name}: {e}")))
            };
            let shape = |t: &Tape, v: Var| t.value(v).shape().to_vec();
            let out = match &node.op {
                Op::Input => x,
                op @ (Op::Conv2d { .. } | Op::Linear { .. }) => {
                    let l = op.layer().expect("a conv or linear op");
                    let xin = hooks.layer_input(t, s, i, arg(0)?)?;
                    // A linear layer runs as a 1x1 conv on [n, k, 1, 1] with `out` channels.
                    let linear = if l.linear {
                        let [n, k] = [shape(t, xin)[0], shape(t, xin)[1]];
                        Some((n, k, self.params.get(l.weight)?.shape[0]))
                    } else {
                        None
                    };
                    let w = match (hooks.weight(t, s, i)?, linear) {
                        (Some(w), _) => w,
                        (None, Some((_, k, out))) => {
                            self.param(t, l.weight, Some(&[out, k, 1, 1]))?
                        }
                        (None, None) => self.param(t, l.weight, None)?,
                    };
                    let b = match l.bias {
                        Some(b) => Some(self.param(t, b, None)?),
                        None => None,
                    };
                    let y = match linear {
                        Some((n, k, out)) => {
                            let x4 = t.reshape(xin, &[n, k, 1, 1])?;
                            let y = t.conv2d(s, x4, w, b, l.conv_params())?;
                            t.reshape(y, &[n, out])?
                        }
                        None => {
                            let mut y = t.conv2d(s, xin, w, b, l.conv_params())?;
                            if node.inputs.len() > 1 {
                                y = t.add(s, y, arg(1)?)?;
                            }
                            y
                        }
                    };
                    act_unless_identity(t, s, y, l.act)?
                }
                Op::BatchNorm { prefix, eps, act } => {
                    let xin = arg(0)?;
                    let layer = self.batch_norm(prefix, *eps)?;
                    if let Some(stat_losses) = stats.as_deref_mut() {
                        stat_losses.push(t.bn_stat_loss(
                            s,
                            xin,
                            &layer.reference,
                            &layer.scratch,
                        )?);
                    }
                    let y = t.frozen_batch_norm(s, xin, &layer.bn, &layer.grad)?;
                    act_unless_identity(t, s, y, *act)?
                }
                Op::Act(a) => t.act(s, arg(0)?, *a)?,
                Op::Add { act } => {
                    let y = t.add(s, arg(0)?, arg(1)?)?;
                    act_unless_identity(t, s, y, *act)?
                }
                Op::ShortcutA { pad } => {
                    let xin = arg(0)?;
                    let c = shape(t, xin)[1];
                    let src: Vec<Option<usize>> = (0..c + 2 * pad)
                        .map(|o| (o >= *pad && o < pad + c).then(|| o - pad))
                        .collect();
                    let key = format!("{}#shortcut", node.name);
                    let w = self.constant(t, &key, &[src.len(), c, 1, 1], || selection(&src, c))?;
                    t.conv2d(s, xin, w, None, Conv2dParams::new(2, 0, 1))?
                }
                Op::Concat => {
                    let xs = (0..node.inputs.len())
                        .map(arg)
                        .collect::<Result<Vec<_>>>()?;
                    t.concat(s, &xs)?
                }
                Op::SliceChannels { start, len } => {
                    let xin = arg(0)?;
                    let c = shape(t, xin)[1];
                    let src: Vec<Option<usize>> = (*start..start + len).map(Some).collect();
                    let key = format!("{}#slice", node.name);
                    let w = self.constant(t, &key, &[*len, c, 1, 1], || selection(&src, c))?;
                    t.conv2d(s, xin, w, None, Conv2dParams::new(1, 0, 1))?
                }
                Op::ChannelShuffle { groups } => {
                    let xin = arg(0)?;
                    let c = shape(t, xin)[1];
                    let per = c / groups;
                    // Output channel o = k * groups + gi reads input gi * per + k.
                    let src: Vec<Option<usize>> = (0..c)
                        .map(|o| Some((o % groups) * per + o / groups))
                        .collect();
                    let key = format!("{}#shuffle", node.name);
                    let w = self.constant(t, &key, &[c, c, 1, 1], || selection(&src, c))?;
                    t.conv2d(s, xin, w, None, Conv2dParams::new(1, 0, 1))?
                }
                op @ (Op::MaxPool { .. } | Op::AvgPool { .. }) => {
                    let how = match op {
                        Op::AvgPool { count_pad, .. } => Pool::average(*count_pad),
                        _ => Pool::Max,
                    };
                    let win = op.pool_window().expect("a pooling op");
                    t.pool(s, arg(0)?, how, &win)?
                }
                Op::GlobalAvgPool => {
                    let xin = arg(0)?;
                    let [c, h, w] = [shape(t, xin)[1], shape(t, xin)[2], shape(t, xin)[3]];
                    let key = format!("{}#mean{c}x{h}x{w}", node.name);
                    let k = self.constant(t, &key, &[c, 1, h, w], || {
                        vec![1.0 / (h * w) as f32; c * h * w]
                    })?;
                    let p = Conv2dParams {
                        stride: [h, w],
                        pad: [0, 0],
                        pad_end: [0, 0],
                        dilation: [1, 1],
                        groups: c,
                    };
                    t.conv2d(s, xin, k, None, p)?
                }
                Op::Flatten => {
                    let xin = arg(0)?;
                    let sh = shape(t, xin);
                    t.reshape(xin, &[sh[0], sh[1..].iter().product()])?
                }
                Op::Pad { .. } => {
                    return Err(Error::Invalid(format!(
                        "replay of {name}: node `{}` (Pad) has no backward",
                        node.name
                    )))
                }
                Op::Lrn { .. } => {
                    return Err(Error::Invalid(format!(
                        "replay of {name}: node `{}` (LRN) has no backward",
                        node.name
                    )))
                }
                Op::Softmax => {
                    return Err(Error::Invalid(format!(
                        "replay of {name}: node `{}` (Softmax) has no backward; calibrate on the logits before it",
                        node.name
                    )))
                }
            };
            let out = hooks.output(t, s, i, out)?;
            vals.set(i, out);
        }
        Ok(())
    }

    /// Replays the nodes of `block` on `x` (the value of `block.input`) with `hooks`, and
    /// returns its output.
    pub fn replay_block(
        &mut self,
        t: &mut Tape,
        s: &mut Stream,
        block: &super::blocks::Block,
        x: Var,
        hooks: &mut dyn Hooks,
    ) -> Result<Var> {
        let mut vals: Values<Var> = Values::new(&self.graph);
        vals.set(block.input, x);
        self.run_nodes(t, s, &mut vals, x, &block.nodes, None, hooks)?;
        vals.take(block.output)
            .ok_or_else(|| Error::Invalid(format!("replay of {}: no block output", self.name)))
    }
}

/// The tensor cached under `key` (uploaded from `make()` on first use) as a constant on `t`.
fn cached(
    gpu: &Gpu,
    cache: &mut HashMap<String, Tensor>,
    t: &mut Tape,
    key: &str,
    shape: &[usize],
    make: impl FnOnce() -> Vec<f32>,
) -> Result<Var> {
    let tensor = match cache.get(key) {
        Some(tensor) => tensor.clone(),
        None => {
            let tensor = gpu.upload_f32(shape, &make())?;
            cache.insert(key.to_string(), tensor.clone());
            tensor
        }
    };
    Ok(t.leaf(tensor, false))
}

/// 1x1 convolution weight `[out, in, 1, 1]` that copies input channel `src[o]` to output o
/// (None: a zero channel).
fn selection(src: &[Option<usize>], inputs: usize) -> Vec<f32> {
    let mut w = vec![0f32; src.len() * inputs];
    for (o, s) in src.iter().enumerate() {
        if let Some(i) = s {
            w[o * inputs + i] = 1.0;
        }
    }
    w
}

fn act_unless_identity(t: &mut Tape, s: &mut Stream, y: Var, a: Act) -> Result<Var> {
    if a == Act::Identity {
        Ok(y)
    } else {
        t.act(s, y, a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{arch, random_params, Model};
    use rand::{Rng, SeedableRng};

    fn model(name: &str) -> Arc<Model> {
        let a = arch(name).unwrap();
        let p = random_params(&a, 4);
        Arc::new(Model::new(a, p).unwrap())
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..n).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Replayed logits (seeded with `dir`, a direction in input space) and <grad, dir>.
    fn logits_and_slope(
        gpu: &Arc<Gpu>,
        fz: &mut Frozen,
        x: &[f32],
        w: &[f32],
        dir: &[f32],
    ) -> (Vec<f32>, f32) {
        let mut s = gpu.stream();
        let mut t = Tape::new();
        let xv = t.leaf(gpu.upload_f32(&[2, 3, 32, 32], x).unwrap(), true);
        let out = fz
            .replay(&mut t, &mut s, xv, Until::Logits, false)
            .unwrap()
            .out;
        let seed = gpu.upload_f32(t.value(out).shape(), w).unwrap();
        let grads = t.backward_seeded(&mut s, &[(out, seed)], &[]).unwrap();
        let (y, gx) = (t.value(out).clone(), grads.get(xv).unwrap().clone());
        let bytes = s.submit_and_read(&[&y, &gx]).unwrap();
        let f = |b: &Vec<u8>| -> Vec<f32> {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        };
        let (y, gx) = (f(&bytes[0]), f(&bytes[1]));
        (y, gx.iter().zip(dir).map(|(g, d)| g * d).sum())
    }

    /// The replay to the logits matches the CPU reference forward (global average pooling and
    /// linear layers become convolutions on the tape), and its input gradient matches a
    /// central difference of the replayed forward along a random direction.
    #[test]
    fn replayed_logits_and_input_gradients_match() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        // The random-weight ResNets have many units near their kinks: any step that keeps f32
        // rounding small crosses some (measured: 0.7% to 5% between steps 1e-3 and 3e-2), so
        // they get 2%. ShuffleNetV2 stays within 2e-5 at steps up to 1e-2: it gets 0.1%, which
        // a gradient 0.5% off fails.
        for (name, tol) in [
            ("akamaster_resnet20", 2e-2),
            ("resnet20", 2e-2),
            ("shufflenetv2_x0_5", 1e-3),
        ] {
            let m = model(name);
            let x = random(2 * 3 * 32 * 32, 1);
            let want = crate::graph::cpu::forward(
                &m.arch.graph,
                &m.params,
                &Array::new(&[2, 3, 32, 32], x.clone()),
            )
            .unwrap();
            let mut fz = Frozen::new(&gpu, name, m.arch.graph.clone(), m.params.clone());
            let w = random(want.data.len(), 2);
            let dir = random(x.len(), 3);
            let (got, slope) = logits_and_slope(&gpu, &mut fz, &x, &w, &dir);
            let scale = want.data.iter().fold(1f32, |a, v| a.max(v.abs()));
            for (g, r) in got.iter().zip(&want.data) {
                assert!((g - r).abs() <= 1e-4 * scale, "{name}: {g} vs {r}");
            }
            // f(x) = <w, logits(x)>. The nets are piecewise linear (ReLU, max pooling), so the
            // central difference is exact between kinks; the step is small enough that few
            // units change sign, large enough that f32 rounding (~1e-7 of |f|/eps) is tiny.
            let eps = 1e-3f32;
            let f = |sign: f32, fz: &mut Frozen| {
                let xs: Vec<f32> = x
                    .iter()
                    .zip(&dir)
                    .map(|(a, d)| a + sign * eps * d)
                    .collect();
                let (y, _) = logits_and_slope(&gpu, fz, &xs, &w, &dir);
                y.iter()
                    .zip(&w)
                    .map(|(a, b)| *a as f64 * *b as f64)
                    .sum::<f64>()
            };
            let fd = ((f(1.0, &mut fz) - f(-1.0, &mut fz)) / (2.0 * eps as f64)) as f32;
            assert!(
                (fd - slope).abs() <= tol * slope.abs().max(1.0),
                "{name}: gradient {slope}, finite difference {fd}"
            );
        }
    }
}
