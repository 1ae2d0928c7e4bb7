//! Calibration sources: where the images that set the INT8 ranges come from.

pub mod cli;
pub mod distill;
pub mod fractal;

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Gaussian noise images: pixels ~ N(127.5, 64) rounded and clipped (about N(0, 1) after
/// CIFAR normalization), labels round-robin (noise has no class).
pub fn noise_images(n: usize, seed: u64) -> Result<Dataset> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    crate::limits::check_alloc(&format!("{n} noise images"), &[n, data::IMG_BYTES + 1])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = Normal::new(127.5f32, 64.0).map_err(|e| Error::Invalid(e.to_string()))?;
    let pixels = (0..n * 3072)
        .map(|_| d.sample(&mut rng).round().clamp(0.0, 255.0) as u8)
        .collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    let names = data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(Dataset::new(
        pixels,
        labels,
        names,
        format!("Gaussian noise (seed {seed})"),
    )?)
}

/// `distill:N` takes at most this many images (each costs 500 forward and backward passes;
/// more than the CIFAR-10 training set is never a calibration set).
pub const MAX_DISTILL_IMAGES: usize = 50_000;

/// The image count of a `distill` or `distill:N` source (None for other sources).
fn distill_images_of(spec: &str) -> Result<Option<usize>, String> {
    if spec == "distill" {
        return Ok(Some(distill::DEFAULT_IMAGES));
    }
    let Some(n) = spec.strip_prefix("distill:") else {
        return Ok(None);
    };
    match n.parse::<usize>() {
        Ok(v) if (1..=MAX_DISTILL_IMAGES).contains(&v) => Ok(Some(v)),
        _ => Err(format!(
            "expected distill:N with N an image count in 1..={MAX_DISTILL_IMAGES}"
        )),
    }
}

/// Checks a calibration source name when the command line is parsed (a clap value parser):
/// `distill:N` must have N in range; anything else is checked when it is loaded.
pub fn parse_source(spec: &str) -> Result<String, String> {
    distill_images_of(spec)?;
    Ok(spec.to_string())
}

/// Resolves `--calib` to a labeled dataset of 32x32 images: `real`, `fractal`, `noise`, `gan:PATH`
/// (a DiStyleGAN generator; `gan` alone is the committed one), `folder:PATH`, or a path.
/// Real images (CIFAR-10, folders) are labelled with `model`'s classes, matched by name.
pub fn calibration_set(
    gpu: &Arc<Gpu>,
    spec: &str,
    data_dir: &Path,
    per_class: usize,
    seed: u64,
    model: Option<&crate::models::Model>,
) -> Result<Dataset> {
    let to_model = |ds: Dataset| -> Result<Dataset> {
        match model {
            Some(m) => Ok(ds.map_classes(&m.class_names)?),
            None => Ok(ds),
        }
    };
    // Noise and fractals carry no class, so they take the model's class list, whatever it is.
    let unlabelled = |ds: Dataset| -> Result<Dataset> {
        match model {
            Some(m) => Ok(ds.round_robin_classes(&m.class_names)?),
            None => Ok(ds),
        }
    };
    let cifar = |dir: &Path| -> Result<Dataset> {
        let train = data::load_cifar10_bin(dir, data::Split::Train)?;
        to_model(data::balanced_subset(&train, per_class, seed)?)
    };
    if spec == "real" {
        return cifar(data_dir);
    }
    if ["noise", "fractal", "gan"].contains(&spec) || spec.starts_with("gan:") {
        // Generated sources hold per_class x 10 images of 3072 bytes at least.
        let flag = format!("--per-class {per_class}");
        crate::limits::check_alloc(&flag, &[per_class, 10, data::IMG_BYTES])?;
    }
    if spec == "noise" {
        return unlabelled(noise_images(per_class * 10, seed)?);
    }
    let distill = distill_images_of(spec).map_err(|e| Error::Invalid(format!("{spec}: {e}")))?;
    if let Some(images) = distill {
        let model = model.ok_or_else(|| {
            Error::Invalid("the distill source needs the classifier (--model)".into())
        })?;
        let opts = distill::DistillOptions::zeroq(images, seed);
        return Ok(distill::distill_images(gpu, model, &opts, false)?.0);
    }
    if spec == "fractal" {
        return unlabelled(fractal::fractal_images(
            gpu,
            per_class,
            seed,
            fractal::DEFAULT_POINTS,
            false,
        )?);
    }
    if spec == "gan" || spec.starts_with("gan:") {
        let path = spec
            .strip_prefix("gan:")
            .map(PathBuf::from)
            .unwrap_or_else(crate::gan::cli::default_generator);
        let (g, _) = crate::gan::load_generator(gpu, &path)?;
        let (ds, _) = crate::gan::generate::generate(gpu, &g, per_class, seed, None, None)?;
        return Ok(ds);
    }
    let p = Path::new(spec.strip_prefix("folder:").unwrap_or(spec));
    if !p.exists() {
        return Err(Error::Invalid(format!(
            "--calib {spec}: not a calibration source (real, gan, gan:PATH, fractal, noise, distill, folder:PATH) nor an existing folder"
        )));
    }
    if p.join("data_batch_1.bin").exists() || p.join("cifar-10-batches-bin").exists() {
        return cifar(p);
    }
    to_model(data::load_image_folder(p, data::ResizePolicy::Reject)?)
}

/// The files or folders that [`calibration_set`] reads for `spec` (for output-path checks).
pub fn source_inputs(spec: &str, data_dir: &Path) -> Vec<PathBuf> {
    match spec {
        "real" => vec![data_dir.to_path_buf()],
        "gan" => vec![crate::gan::cli::default_generator()],
        "noise" | "fractal" | "distill" => Vec::new(),
        _ if spec.starts_with("distill:") => Vec::new(),
        _ => match spec.strip_prefix("gan:") {
            Some(p) => vec![PathBuf::from(p)],
            None => vec![PathBuf::from(spec.strip_prefix("folder:").unwrap_or(spec))],
        },
    }
}
