//! Calibration sources: where the images that set the INT8 ranges come from.

pub mod distill;
pub mod fractal;

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::Model;
use crate::progress::Hooks;
use std::path::PathBuf;
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

/// A [`CalibSource::Distill`] set holds at most this many images (each costs 500 forward and
/// backward passes; more than the CIFAR-10 training set is never a calibration set).
pub const MAX_DISTILL_IMAGES: usize = 50_000;

/// Where the images that set the INT8 ranges come from.
#[derive(Debug, Clone)]
pub enum CalibSource {
    /// A class-balanced draw from the CIFAR-10 training set in `data` (the official binary
    /// folder): `per_class` images of each class, drawn with `seed`.
    Real {
        /// The `cifar-10-batches-bin` folder (or its parent).
        data: PathBuf,
        /// Images per class.
        per_class: usize,
        /// Seed of the draw.
        seed: u64,
    },
    /// Images from a DiStyleGAN generator file, `per_class` of each class.
    Gan {
        /// The generator (`.safetensors` from `train-gan`).
        generator: PathBuf,
        /// Images per class.
        per_class: usize,
        /// Seed of the noise.
        seed: u64,
    },
    /// An image folder with one subfolder of images per class.
    Folder(PathBuf),
    /// Iterated-function-system fractals (no class: labels are spread over the model's).
    Fractal {
        /// Images per class.
        per_class: usize,
        /// Seed of the fractal parameters.
        seed: u64,
    },
    /// Gaussian-noise images (no class: labels are spread over the model's).
    Noise {
        /// Images per class.
        per_class: usize,
        /// Seed of the noise.
        seed: u64,
    },
    /// ZeroQ images optimized against the model's BatchNorm statistics, labelled by the model.
    Distill {
        /// How many images (1 to [`MAX_DISTILL_IMAGES`]).
        images: usize,
        /// Seed of the starting noise.
        seed: u64,
    },
    /// Images the caller already has.
    Images(Dataset),
}

impl CalibSource {
    /// The calibration images, labelled with `model`'s classes (matched by name for real
    /// images; spread round-robin for noise and fractals). `Distill` needs the model.
    pub fn load(&self, gpu: &Arc<Gpu>, model: Option<&Model>, hooks: &Hooks) -> Result<Dataset> {
        let to_model = |ds: Dataset| -> Result<Dataset> {
            match model {
                Some(m) => Ok(ds.map_classes(&m.class_names)?),
                None => Ok(ds),
            }
        };
        let unlabelled = |ds: Dataset| -> Result<Dataset> {
            match model {
                Some(m) => Ok(ds.round_robin_classes(&m.class_names)?),
                None => Ok(ds),
            }
        };
        // Generated sources hold per_class x 10 images of 3072 bytes at least.
        let check = |per_class: usize| {
            let what = format!("{per_class} calibration images per class");
            crate::limits::check_alloc(&what, &[per_class, 10, data::IMG_BYTES])
        };
        match self {
            CalibSource::Real {
                data: dir,
                per_class,
                seed,
            } => {
                let train = data::load_cifar10_bin(dir, data::Split::Train)?;
                to_model(data::balanced_subset(&train, *per_class, *seed)?)
            }
            CalibSource::Noise { per_class, seed } => {
                check(*per_class)?;
                unlabelled(noise_images(per_class * 10, *seed)?)
            }
            CalibSource::Fractal { per_class, seed } => {
                check(*per_class)?;
                let points = fractal::DEFAULT_POINTS;
                unlabelled(fractal::fractal_images(
                    gpu, *per_class, *seed, points, hooks,
                )?)
            }
            CalibSource::Gan {
                generator,
                per_class,
                seed,
            } => {
                check(*per_class)?;
                let (g, _) = crate::gan::load_generator(gpu, generator)?;
                let (ds, _) =
                    crate::gan::generate::generate(gpu, &g, *per_class, *seed, None, hooks)?;
                to_model(ds)
            }
            CalibSource::Distill { images, seed } => {
                if !(1..=MAX_DISTILL_IMAGES).contains(images) {
                    return Err(Error::Invalid(format!(
                        "distill: {images} images; expected 1..={MAX_DISTILL_IMAGES}"
                    )));
                }
                let model = model.ok_or_else(|| {
                    Error::Invalid("the distill source needs the classifier".into())
                })?;
                let opts = distill::DistillOptions::zeroq(*images, *seed);
                Ok(distill::distill_images(gpu, model, &opts, hooks)?.0)
            }
            CalibSource::Folder(dir) => {
                to_model(data::load_image_folder(dir, data::ResizePolicy::Reject)?)
            }
            CalibSource::Images(ds) => to_model(ds.clone()),
        }
    }

    /// The files or folders this source reads (so that an output never replaces one).
    pub fn inputs(&self) -> Vec<PathBuf> {
        match self {
            CalibSource::Real { data, .. } => vec![data.clone()],
            CalibSource::Gan { generator, .. } => vec![generator.clone()],
            CalibSource::Folder(p) => vec![p.clone()],
            _ => Vec::new(),
        }
    }
}
