//! Class-balanced generation with a trained generator.

use super::model::Generator;
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::tape::Tape;
use crate::io::{write_safetensors_typed, TensorSlice};
use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use std::path::Path;

/// Images per forward pass.
const BATCH: usize = 250;

/// The smallest truncation: at t = 0.1 rejection sampling keeps 8% of the draws (the share of
/// N(0, 1) within +-t is about 0.8 t), and a smaller t leaves images of nearly no variety.
pub const MIN_TRUNCATION: f32 = 0.1;

/// Redraws of one noise value before [`truncate`] gives up: at t = 0.1 that happens with
/// probability 0.92^10000, i.e. never, but no t can make the loop run on.
const MAX_REDRAWS: usize = 10_000;

/// BigGAN's truncation trick: redraws every |z| > t from N(0, 1), at most `MAX_REDRAWS` times
/// per value.
pub fn truncate(noise: &mut [f32], t: f32, rng: &mut StdRng) -> Result<()> {
    use rand_distr::{Distribution, StandardNormal};
    for z in noise.iter_mut() {
        let mut tries = 0;
        while z.abs() > t {
            if tries == MAX_REDRAWS {
                return Err(Error::Invalid(format!(
                    "truncation {t}: no noise value within +-{t} in {MAX_REDRAWS} draws"
                )));
            }
            *z = StandardNormal.sample(rng);
            tries += 1;
        }
    }
    Ok(())
}

/// One-hot rows of `classes` values for `labels`.
pub fn one_hot(labels: &[data::Label], classes: usize) -> Vec<f32> {
    let mut v = vec![0.0; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = 1.0;
    }
    v
}

/// `n` values drawn from N(0, 1).
pub fn normal_noise(n: usize, rng: &mut StdRng) -> Vec<f32> {
    (0..n).map(|_| StandardNormal.sample(rng)).collect()
}

/// `per_class` images for every class (class-major order) from noise z ~ N(0, 1) drawn with
/// `seed`, with G in inference mode. `truncation` t < inf redraws every |z_i| > t (BigGAN's
/// truncation trick: more typical, less varied images). Returns the images and their noise
/// `[N, z_dim]`.
pub fn generate(
    gpu: &Gpu,
    g: &Generator,
    per_class: usize,
    seed: u64,
    truncation: Option<f32>,
    hooks: &crate::progress::Hooks,
) -> Result<(Dataset, Vec<f32>)> {
    if truncation.is_some_and(|t| !t.is_finite() || t < MIN_TRUNCATION) {
        return Err(Error::Invalid(format!(
            "truncation must be a finite number of at least {MIN_TRUNCATION}"
        )));
    }
    let (classes, zd) = (g.cfg.classes, g.cfg.z_dim);
    if per_class == 0 {
        return Err(Error::Invalid("images per class must be at least 1".into()));
    }
    // Per image: its label, noise, f32 pixels and u8 pixels.
    let each = 1 + 4 * zd + 5 * data::IMG_BYTES;
    crate::limits::check_alloc(
        &format!("{per_class} images per class"),
        &[per_class, classes, each],
    )?;
    let labels: Vec<data::Label> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c as data::Label, per_class))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut noise = normal_noise(labels.len() * zd, &mut rng);
    if let Some(t) = truncation {
        truncate(&mut noise, t, &mut rng)?;
    }
    let mut bar = hooks.task("generate", labels.len() as u64);
    let mut pixels = Vec::with_capacity(labels.len() * 3072);
    for start in (0..labels.len()).step_by(BATCH) {
        let end = (start + BATCH).min(labels.len());
        let b = end - start;
        let mut t = Tape::new();
        let mut s = gpu.stream();
        let p = g.params.on_tape(&mut t, false);
        let z = t.leaf(
            gpu.upload_f32(&[b, zd], &noise[start * zd..end * zd])?,
            false,
        );
        let c = t.leaf(
            gpu.upload_f32(&[b, classes], &one_hot(&labels[start..end], classes))?,
            false,
        );
        let x = g.forward(&mut t, &mut s, &p, z, c, false)?;
        let out = t.value(x).clone();
        s.submit();
        pixels.extend(gpu.read_f32(&out)?);
        bar.inc(b as u64)?;
    }
    let names: Vec<String> = if classes == 10 {
        data::CIFAR10_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..classes).map(|c| format!("class{c}")).collect()
    };
    bar.complete();
    let ds = Dataset::from_f32_unit_range(&pixels, labels, names, "DiStyleGAN samples")?;
    Ok((ds, noise))
}

/// Writes a generated set as a class-folder PNG dataset plus `noise.safetensors` (so it can
/// also serve as a teacher set).
pub fn save_generated(ds: &Dataset, noise: &[f32], z_dim: usize, dir: &Path) -> Result<()> {
    data::save_image_folder(ds, dir)?;
    let labels: Vec<i32> = ds.labels().iter().map(|&l| l as i32).collect();
    let mut meta = std::collections::BTreeMap::new();
    meta.insert("format".into(), "synthcal-noise-v1".into());
    let t = [
        ("noise", &[ds.len(), z_dim][..], TensorSlice::F32(noise)),
        ("labels", &[ds.len()][..], TensorSlice::I32(&labels)),
    ];
    write_safetensors_typed(dir.join("noise.safetensors"), &t, &meta)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_keeps_values_within_t_and_is_bounded() {
        let mut rng = StdRng::seed_from_u64(1);
        let mut z = normal_noise(2000, &mut rng);
        truncate(&mut z, 0.5, &mut rng).unwrap();
        assert!(z.iter().all(|v| v.abs() <= 0.5));
        // Still varied: not clamped to the edges.
        assert!(z.iter().filter(|v| v.abs() < 0.25).count() > 500);
        // A t that no draw meets ends with an error instead of looping.
        let mut z = vec![1.0f32; 3];
        let e = truncate(&mut z, 1e-30, &mut rng).unwrap_err().to_string();
        assert!(e.contains("truncation") && e.contains("10000 draws"), "{e}");
    }

    #[test]
    fn truncation_draws_match_plain_redraws() {
        // The bounded loop draws exactly what an unbounded redraw loop would (same images
        // for a seed as before the bound).
        let (mut a, mut b) = (StdRng::seed_from_u64(7), StdRng::seed_from_u64(7));
        let mut za = normal_noise(500, &mut a);
        let mut zb = normal_noise(500, &mut b);
        truncate(&mut za, 0.7, &mut a).unwrap();
        for z in zb.iter_mut() {
            while z.abs() > 0.7 {
                *z = normal_noise(1, &mut b)[0];
            }
        }
        assert_eq!(za, zb);
    }
}
