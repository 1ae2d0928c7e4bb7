//! Data-free calibration images (ZeroQ, Cai et al. 2020): Gaussian-noise images optimized on
//! the GPU so that every BatchNorm layer of the classifier sees its stored running mean and
//! std. Loss: sum over BN layers and channels of (batch mean - running mean)^2 + (batch std -
//! running std)^2; Adam (lr 0.1) on the pixels in the model's normalized input space.
//! Labels are the classifier's own predictions.
//!
//! The classifier's graph is replayed on the autodiff tape up to its last BatchNorm (nothing
//! after it enters the loss), with BN in its frozen inference form. The option-A shortcut and
//! channel slices/shuffles are expressed as fixed 1x1 convolutions, which the tape
//! differentiates.

use crate::cpu::Array;
use crate::data::{Dataset, CIFAR10_CLASSES};
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::graph::tape::{Tape, Var};
use crate::graph::{bn_names, Op};
use crate::models::Model;
use crate::ops::batchnorm::BatchNorm;
use crate::ops::conv2d::Conv2dParams;
use crate::ops::grad::AdamConfig;
use crate::ops::Act;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::collections::HashMap;
use std::sync::Arc;

/// Images of the `distill` source: one ZeroQ batch (its paper calibrates with 32). Every
/// image costs 500 forward and backward passes, which a CPU adapter pays dearly for;
/// `distill:N` asks for N.
pub const DEFAULT_IMAGES: usize = 32;

/// How the images are optimized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillOptions {
    pub images: usize,
    pub iterations: usize,
    /// Images optimized together (their batch statistics enter the loss).
    pub batch: usize,
    pub lr: f32,
    pub seed: u64,
}

impl DistillOptions {
    /// ZeroQ's settings: Adam lr 0.1, 500 iterations, batches of 32.
    pub fn zeroq(images: usize, seed: u64) -> DistillOptions {
        DistillOptions {
            images,
            iterations: 500,
            batch: 32,
            lr: 0.1,
            seed,
        }
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

/// Fixed tensors of the replayed graph, uploaded once.
struct Consts {
    gpu: Arc<Gpu>,
    cache: HashMap<String, Tensor>,
    bns: HashMap<String, Arc<BnLayer>>,
}

impl Consts {
    fn batch_norm(&mut self, model: &Model, prefix: &str, eps: f32) -> Result<Arc<BnLayer>> {
        if let Some(l) = self.bns.get(prefix) {
            return Ok(l.clone());
        }
        let [gn, bn, mn, vn] = bn_names(prefix);
        let (ga, ba, ma, va) = (
            model.params.get(&gn)?,
            model.params.get(&bn)?,
            model.params.get(&mn)?,
            model.params.get(&vn)?,
        );
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

    fn get(
        &mut self,
        key: &str,
        shape: &[usize],
        make: impl FnOnce() -> Vec<f32>,
    ) -> Result<Tensor> {
        if let Some(t) = self.cache.get(key) {
            return Ok(t.clone());
        }
        let t = self.gpu.upload_f32(shape, &make())?;
        self.cache.insert(key.to_string(), t.clone());
        Ok(t)
    }
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

fn act_unless_identity(t: &mut Tape, s: &mut crate::gpu::Stream, y: Var, a: Act) -> Result<Var> {
    if a == Act::Identity {
        Ok(y)
    } else {
        t.act(s, y, a)
    }
}

/// The forward pass of `model` on the tape from image `x`; returns the BN-statistics losses.
fn replay(
    t: &mut Tape,
    s: &mut crate::gpu::Stream,
    model: &Model,
    consts: &mut Consts,
    x: Var,
) -> Result<Vec<Var>> {
    let g = &model.arch.graph;
    let last_bn = g
        .nodes
        .iter()
        .rposition(|n| matches!(n.op, Op::BatchNorm { .. }))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "distill: {} has no BatchNorm layers to match",
                model.arch.name
            ))
        })?;
    let mut vals: Vec<Option<Var>> = vec![None; g.nodes.len()];
    let mut losses = Vec::new();
    for (i, node) in g.nodes.iter().enumerate().take(last_bn + 1) {
        let arg = |k: usize| -> Result<Var> {
            node.inputs
                .get(k)
                .and_then(|&v| vals[v])
                .ok_or_else(|| Error::Invalid(format!("distill: {} input {k} missing", node.name)))
        };
        let channels = |t: &Tape, v: Var| t.value(v).shape()[1];
        let fixed = |t: &mut Tape, tensor: Tensor| t.leaf(tensor, false);
        let out = match &node.op {
            Op::Input => x,
            Op::Conv2d {
                weight,
                bias,
                stride,
                pad,
                groups,
                act,
            } => {
                let wa = model.params.get(weight)?;
                let w = consts.get(weight, &wa.shape, || wa.data.clone())?;
                let w = fixed(t, w);
                let b = match bias {
                    Some(b) => {
                        let ba = model.params.get(b)?;
                        let bt = consts.get(b, &ba.shape, || ba.data.clone())?;
                        Some(fixed(t, bt))
                    }
                    None => None,
                };
                let mut y =
                    t.conv2d(s, arg(0)?, w, b, Conv2dParams::new(*stride, *pad, *groups))?;
                if node.inputs.len() > 1 {
                    y = t.add(s, y, arg(1)?)?;
                }
                act_unless_identity(t, s, y, *act)?
            }
            Op::BatchNorm { prefix, eps, act } => {
                let xin = arg(0)?;
                let layer = consts.batch_norm(model, prefix, *eps)?;
                losses.push(t.bn_stat_loss(s, xin, &layer.reference, &layer.scratch)?);
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
                let c = channels(t, xin);
                let src: Vec<Option<usize>> = (0..c + 2 * pad)
                    .map(|o| (o >= *pad && o < pad + c).then(|| o - pad))
                    .collect();
                let w = consts.get(
                    &format!("{}#shortcut", node.name),
                    &[src.len(), c, 1, 1],
                    || selection(&src, c),
                )?;
                let w = fixed(t, w);
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
                let c = channels(t, xin);
                let src: Vec<Option<usize>> = (*start..start + len).map(Some).collect();
                let w = consts.get(&format!("{}#slice", node.name), &[*len, c, 1, 1], || {
                    selection(&src, c)
                })?;
                let w = fixed(t, w);
                t.conv2d(s, xin, w, None, Conv2dParams::new(1, 0, 1))?
            }
            Op::ChannelShuffle { groups } => {
                let xin = arg(0)?;
                let c = channels(t, xin);
                let per = c / groups;
                // Output channel o = k * groups + gi reads input gi * per + k.
                let src: Vec<Option<usize>> = (0..c)
                    .map(|o| Some((o % groups) * per + o / groups))
                    .collect();
                let w = consts.get(&format!("{}#shuffle", node.name), &[c, c, 1, 1], || {
                    selection(&src, c)
                })?;
                let w = fixed(t, w);
                t.conv2d(s, xin, w, None, Conv2dParams::new(1, 0, 1))?
            }
            Op::MaxPool {
                kernel,
                stride,
                pad,
            } => t.max_pool(s, arg(0)?, *kernel, *stride, *pad)?,
            Op::Flatten => {
                let xin = arg(0)?;
                let sh = t.value(xin).shape().to_vec();
                t.reshape(xin, &[sh[0], sh[1..].iter().product()])?
            }
            op => {
                return Err(Error::Invalid(format!(
                    "distill: {} uses {op:?} before its last BatchNorm, which has no backward yet",
                    model.arch.name
                )))
            }
        };
        vals[i] = Some(out);
    }
    Ok(losses)
}

/// The distilled images of one batch, in the model's normalized input space, and the final
/// loss.
fn distill_batch(
    gpu: &Arc<Gpu>,
    model: &Model,
    consts: &mut Consts,
    n: usize,
    opts: &DistillOptions,
    batch_seed: u64,
    bar: &indicatif::ProgressBar,
) -> Result<(Vec<f32>, f32)> {
    let mut rng = StdRng::seed_from_u64(batch_seed);
    let init = crate::gan::train::normal_noise(n * 3 * 32 * 32, &mut rng);
    let x = gpu.upload_f32(&[n, 3, 32, 32], &init)?;
    let zeros = vec![0f32; init.len()];
    let (m, v) = (
        gpu.upload_f32(x.shape(), &zeros)?,
        gpu.upload_f32(x.shape(), &zeros)?,
    );
    let adam = AdamConfig {
        lr: opts.lr,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
    };
    let mut last = 0.0;
    for it in 0..opts.iterations {
        let mut s = gpu.stream();
        let mut t = Tape::new();
        let xv = t.leaf(x.clone(), true);
        let losses = replay(&mut t, &mut s, model, consts, xv)?;
        let terms: Vec<(Var, f32)> = losses.iter().map(|&l| (l, 1.0)).collect();
        let grads = t.backward(&mut s, &terms)?;
        let gx = grads
            .get(xv)
            .ok_or_else(|| Error::Invalid("distill: no gradient reached the image".into()))?;
        crate::ops::grad::adam(&mut s, &x, gx, &m, &v, &adam, it as u64 + 1)?;
        if it + 1 == opts.iterations {
            let vals: Vec<Tensor> = losses.iter().map(|&l| t.value(l).clone()).collect();
            let refs: Vec<&Tensor> = vals.iter().collect();
            let bytes = s.submit_and_read(&refs)?;
            last = bytes
                .iter()
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .sum();
        } else {
            s.submit();
        }
        bar.inc(1);
    }
    if !last.is_finite() {
        return Err(Error::Invalid(format!(
            "distill: the BN-statistics loss diverged ({last})"
        )));
    }
    Ok((gpu.read_f32(&x)?, last))
}

/// ZeroQ images for `model`, labelled by its predictions. Returns the set and the mean final
/// loss per batch.
pub fn distill_images(
    gpu: &Arc<Gpu>,
    model: &Model,
    opts: &DistillOptions,
    quiet: bool,
) -> Result<(Dataset, f32)> {
    if opts.images == 0 || opts.batch < 2 || opts.iterations == 0 {
        return Err(Error::Invalid(
            "distill: need images > 0, batch >= 2 and iterations > 0".into(),
        ));
    }
    let mut consts = Consts {
        gpu: gpu.clone(),
        cache: HashMap::new(),
        bns: HashMap::new(),
    };
    let norm = model.arch.norm;
    let batches = opts.images.div_ceil(opts.batch);
    let bar = crate::progress::bar((batches * opts.iterations) as u64, "distill", quiet);
    let (mut pixels, mut loss_sum, mut done) = (Vec::new(), 0.0, 0);
    for start in (0..opts.images).step_by(opts.batch) {
        let n = opts.batch.min(opts.images - start).max(2);
        let seed = opts.seed ^ (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (x, loss) = distill_batch(gpu, model, &mut consts, n, opts, seed, &bar)?;
        let keep = (opts.images - start).min(n);
        for (k, &v) in x.iter().enumerate().take(keep * 3072) {
            let c = (k / 1024) % 3;
            let u = v * norm.std[c] + norm.mean[c];
            pixels.push((u * 255.0).round().clamp(0.0, 255.0) as u8);
        }
        loss_sum += loss;
        done += 1;
        bar.set_message(format!("BN loss {loss:.3}"));
    }
    bar.finish_and_clear();
    let names: Vec<String> = CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect();
    let unlabeled = Dataset::new(
        pixels.clone(),
        vec![0; opts.images],
        names.clone(),
        "distilled",
    )?;
    // Labels: the classifier's own prediction on the final (rounded) images.
    let runner = crate::eval::fp32_runner(gpu, model, false)?;
    let logits = crate::eval::logits(&runner, norm, &unlabeled, 250, |_| {})?;
    let labels = crate::eval::argmax_rows(&logits, names.len())
        .into_iter()
        .map(|l| l as u8)
        .collect();
    let ds = Dataset::new(
        pixels,
        labels,
        names,
        format!(
            "ZeroQ distilled from {} ({} iterations, seed {})",
            model.arch.name, opts.iterations, opts.seed
        ),
    )?;
    Ok((ds, loss_sum / done as f32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{arch, random_params};

    #[test]
    fn distillation_lowers_the_bn_loss_and_is_seeded() {
        let Ok(gpu) = Gpu::default_adapter() else {
            eprintln!("skipped: no GPU adapter");
            return;
        };
        let mk = |iterations| DistillOptions {
            images: 4,
            iterations,
            batch: 4,
            lr: 0.1,
            seed: 9,
        };
        // ShuffleNetV2 adds max pooling, channel slices, concatenation and shuffles; its random
        // weights give a much larger loss, which 20 steps lower less in proportion.
        for (name, bound) in [("resnet20", 0.7), ("shufflenetv2_x0_5", 0.9)] {
            let params = random_params(&arch(name).unwrap(), 3);
            let model = Model::new(arch(name).unwrap(), params).unwrap();
            let (_, l1) = distill_images(&gpu, &model, &mk(1), true).unwrap();
            let (d20, l20) = distill_images(&gpu, &model, &mk(20), true).unwrap();
            assert!(l20 < bound * l1, "{name}: loss {l1} -> {l20}");
            let (again, _) = distill_images(&gpu, &model, &mk(20), true).unwrap();
            assert_eq!(d20.pixels(), again.pixels(), "{name}");
        }
    }
}
