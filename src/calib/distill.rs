//! Data-free calibration images (ZeroQ, Cai et al. 2020): Gaussian-noise images optimized on
//! the GPU so that every BatchNorm layer of the classifier sees its stored running mean and
//! std. Loss: sum over BN layers and channels of (batch mean - running mean)^2 + (batch std -
//! running std)^2; Adam (lr 0.1) on the pixels in the model's normalized input space.
//! Labels are the classifier's own predictions.
//!
//! The classifier's graph is replayed on the autodiff tape (`graph::replay`) up to its last
//! BatchNorm: nothing after it enters the loss.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::{Gpu, Tensor};
use crate::graph::replay::{Frozen, Until};
use crate::graph::tape::{Tape, Var};
use crate::models::Model;
use crate::ops::adam::AdamConfig;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::sync::Arc;

/// Images of the `distill` source: one ZeroQ batch (its paper calibrates with 32). Every
/// image costs 500 forward and backward passes, which a CPU adapter pays dearly for;
/// `distill:N` asks for N.
pub const DEFAULT_IMAGES: usize = 32;

/// How the images are optimized.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DistillOptions {
    /// Images to make.
    pub images: usize,
    /// Adam steps per batch.
    pub iterations: usize,
    /// Images optimized together (their batch statistics enter the loss).
    pub batch: usize,
    /// Adam learning rate on the pixels.
    pub lr: f32,
    /// Seed of the starting noise.
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

/// The distilled images of one batch, in the model's normalized input space, and the final
/// loss.
fn distill_batch(
    gpu: &Arc<Gpu>,
    frozen: &mut Frozen,
    n: usize,
    opts: &DistillOptions,
    batch_seed: u64,
    [c, h, w]: [usize; 3],
    bar: &mut crate::progress::Task,
) -> Result<(Vec<f32>, f32)> {
    let mut rng = StdRng::seed_from_u64(batch_seed);
    let init = crate::gan::generate::normal_noise(n * c * h * w, &mut rng);
    let x = gpu.upload_f32(&[n, c, h, w], &init)?;
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
        let losses = frozen
            .replay(&mut t, &mut s, xv, Until::LastBatchNorm, true)?
            .stat_losses;
        let terms: Vec<(Var, f32)> = losses.iter().map(|&l| (l, 1.0)).collect();
        let grads = t.backward(&mut s, &terms)?;
        let gx = grads
            .get(xv)
            .ok_or_else(|| Error::Invalid("distill: no gradient reached the image".into()))?;
        crate::ops::adam::adam(&mut s, &x, gx, &m, &v, &adam, it as u64 + 1)?;
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
        bar.inc(1)?;
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
    hooks: &crate::progress::Hooks,
) -> Result<(Dataset, f32)> {
    if opts.images == 0 || opts.batch < 2 || opts.iterations == 0 {
        return Err(Error::Invalid(
            "distill: need images > 0, batch >= 2 and iterations > 0".into(),
        ));
    }
    if !(opts.lr > 0.0 && opts.lr.is_finite()) {
        return Err(Error::Invalid(format!(
            "distill: learning rate {} is not positive and finite",
            opts.lr
        )));
    }
    let [ch, h, w] = model.input_shape();
    // Pixels twice (the unlabeled set, then the labeled one) and the logits of each image.
    let each = 2 * ch * h * w + 4 * model.num_classes();
    crate::limits::check_alloc(&format!("distill:{}", opts.images), &[opts.images, each])?;
    let a = &model.arch;
    let mut frozen = Frozen::new(gpu, &a.name, a.graph.clone(), model.params.clone());
    let norm = &model.arch.norm;
    let batches = opts.images.div_ceil(opts.batch);
    let mut bar = hooks.task("distill", batches.saturating_mul(opts.iterations) as u64);
    let (mut pixels, mut loss_sum, mut done) = (Vec::new(), 0.0, 0);
    for start in (0..opts.images).step_by(opts.batch) {
        let n = opts.batch.min(opts.images - start).max(2);
        let seed = opts.seed ^ (start as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let (x, loss) = distill_batch(gpu, &mut frozen, n, opts, seed, [ch, h, w], &mut bar)?;
        let keep = (opts.images - start).min(n);
        for (k, &v) in x.iter().enumerate().take(keep * ch * h * w) {
            let c = (k / (h * w)) % ch;
            let u = v * norm.std[c] + norm.mean[c];
            pixels.push((u * 255.0).round().clamp(0.0, 255.0) as u8);
        }
        loss_sum += loss;
        done += 1;
        bar.message(&format!("BN loss {loss:.3}"));
    }
    bar.complete();
    let names = model.class_names.clone();
    let images = crate::data::Images::with_channels(pixels, ch, h, w)?;
    let unlabeled = Dataset::from_images(
        images.clone(),
        vec![0; opts.images],
        names.clone(),
        "distilled",
    )?;
    // Labels: the classifier's own prediction on the final (rounded) images.
    let runner = crate::infer::fp32_runner(gpu, model, false)?;
    let logits = crate::infer::logits(&runner, norm.clone(), &unlabeled, 250, &Default::default())?;
    let labels = crate::infer::argmax_rows(&logits, names.len())
        .into_iter()
        .map(|l| l as crate::data::Label)
        .collect();
    let ds = Dataset::from_images(
        images,
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
        let Some(gpu) = crate::testing::try_gpu() else {
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
            let (_, l1) = distill_images(&gpu, &model, &mk(1), &Default::default()).unwrap();
            let (d20, l20) = distill_images(&gpu, &model, &mk(20), &Default::default()).unwrap();
            assert!(l20 < bound * l1, "{name}: loss {l1} -> {l20}");
            let (again, _) = distill_images(&gpu, &model, &mk(20), &Default::default()).unwrap();
            assert_eq!(d20.pixels(), again.pixels(), "{name}");
        }
    }
}
