//! Class-balanced generation with a trained generator.

use super::model::Generator;
use super::train::{normal_noise, one_hot};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::tape::Tape;
use crate::io::{write_safetensors_typed, TensorSlice};
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::path::Path;

/// Images per forward pass.
const BATCH: usize = 250;

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
    bar: Option<&indicatif::ProgressBar>,
) -> Result<(Dataset, Vec<f32>)> {
    if truncation.is_some_and(|t| t.is_nan() || t <= 0.0) {
        return Err(Error::Invalid("--truncation must be positive".into()));
    }
    let (classes, zd) = (g.cfg.classes, g.cfg.z_dim);
    if per_class == 0 {
        return Err(Error::Invalid("--per-class must be at least 1".into()));
    }
    let labels: Vec<u8> = (0..classes)
        .flat_map(|c| std::iter::repeat_n(c as u8, per_class))
        .collect();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut noise = normal_noise(labels.len() * zd, &mut rng);
    if let Some(t) = truncation {
        for z in noise.iter_mut() {
            while z.abs() > t {
                *z = normal_noise(1, &mut rng)[0];
            }
        }
    }
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
        if let Some(bar) = bar {
            bar.inc(b as u64);
        }
    }
    let names: Vec<String> = if classes == 10 {
        data::CIFAR10_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        (0..classes).map(|c| format!("class{c}")).collect()
    };
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
