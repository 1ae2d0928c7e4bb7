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
    noise_images_at(n, seed, [data::IMG_SIDE; 2])
}

/// [`noise_images`] of `size` (`[height, width]`); at 32x32, the same images.
pub fn noise_images_at(n: usize, seed: u64, [h, w]: [usize; 2]) -> Result<Dataset> {
    noise_images_shaped(n, seed, [3, h, w])
}

/// [`noise_images`] of `shape` (`[channels, height, width]`); RGB at 32x32, the same images.
pub fn noise_images_shaped(n: usize, seed: u64, [c, h, w]: [usize; 3]) -> Result<Dataset> {
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};
    let each = c * h * w;
    crate::limits::check_alloc(&format!("{n} noise images"), &[n, each + 1])?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let d = Normal::new(127.5f32, 64.0).map_err(|e| Error::Invalid(e.to_string()))?;
    let pixels = (0..n * each)
        .map(|_| d.sample(&mut rng).round().clamp(0.0, 255.0) as u8)
        .collect();
    let labels = (0..n).map(|i| (i % 10) as data::Label).collect();
    let names = data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let images = data::Images::with_channels(pixels, c, h, w)?;
    Ok(Dataset::from_images(
        images,
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
    /// An image folder with one subfolder of images per class (stretched to the model's
    /// input size where they differ).
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
    /// Images the caller already has (at the model's input size: they are not resized).
    Images(Dataset),
}

impl CalibSource {
    /// The calibration images at `model`'s input shape (RGB 32x32 without a model), labelled
    /// with its classes (matched by name for real images; spread round-robin for noise and
    /// fractals). Noise, fractals and distilled images are made at that size; CIFAR-10, GAN
    /// and image-folder images of another size are stretched to it with
    /// [`data::RESIZE_FILTER`] (the dataset's source says so); `Images` are taken as they
    /// are. `Distill` needs the model.
    ///
    /// Noise and distilled images have the model's channels, whatever their count. The other
    /// sources make RGB images: for a 1-channel model they become gray (BT.601 luma,
    /// [`data::Images::to_channels`]); a model of any other count refuses them.
    pub fn load(&self, gpu: &Arc<Gpu>, model: Option<&Model>, hooks: &Hooks) -> Result<Dataset> {
        let shape = model.map_or([3, data::IMG_SIDE, data::IMG_SIDE], |m| m.input_shape());
        self.load_at(gpu, model, shape, hooks)
    }

    /// The source's name in messages.
    fn name(&self) -> &'static str {
        match self {
            CalibSource::Real { .. } => "real",
            CalibSource::Gan { .. } => "gan",
            CalibSource::Folder(_) => "folder",
            CalibSource::Fractal { .. } => "fractal",
            CalibSource::Noise { .. } => "noise",
            CalibSource::Distill { .. } => "distill",
            CalibSource::Images(_) => "images",
        }
    }

    fn load_at(
        &self,
        gpu: &Arc<Gpu>,
        model: Option<&Model>,
        [channels, h, w]: [usize; 3],
        hooks: &Hooks,
    ) -> Result<Dataset> {
        let size = [h, w];
        let rgb_only = matches!(
            self,
            CalibSource::Real { .. }
                | CalibSource::Gan { .. }
                | CalibSource::Folder(_)
                | CalibSource::Fractal { .. }
        );
        // Refused before anything is loaded or generated.
        if rgb_only && ![1, 3].contains(&channels) {
            return Err(Error::Invalid(format!(
                "the {} calibration source makes RGB images, and the model takes \
                 {channels}-channel ones (only 1-channel models get them, as gray); use \
                 --calib noise or distill",
                self.name()
            )));
        }
        let gray = |ds: Dataset| -> Result<Dataset> {
            match rgb_only {
                true => Ok(ds.to_channels(channels)?),
                false => Ok(ds),
            }
        };
        let to_model = |ds: Dataset| -> Result<Dataset> {
            let ds = gray(ds)?;
            match model {
                Some(m) => Ok(ds.map_classes(&m.class_names)?),
                None => Ok(ds),
            }
        };
        let unlabelled = |ds: Dataset| -> Result<Dataset> {
            let ds = gray(ds)?;
            match model {
                Some(m) => Ok(ds.round_robin_classes(&m.class_names)?),
                None => Ok(ds),
            }
        };
        // Generated sources hold per_class x 10 images of `size` at least (RGB at first).
        let check = |per_class: usize| {
            let what = format!("{per_class} calibration images per class");
            crate::limits::check_alloc(&what, &[per_class, 10, channels.max(3) * h * w])
        };
        match self {
            CalibSource::Real {
                data: dir,
                per_class,
                seed,
            } => {
                let train = data::load_cifar10_bin(dir, data::Split::Train)?;
                // Drawn first, so that only the chosen images are resized.
                let subset = data::balanced_subset(&train, *per_class, *seed)?;
                to_model(subset.resized(size)?)
            }
            CalibSource::Noise { per_class, seed } => {
                check(*per_class)?;
                unlabelled(noise_images_shaped(
                    per_class * 10,
                    *seed,
                    [channels, h, w],
                )?)
            }
            CalibSource::Fractal { per_class, seed } => {
                check(*per_class)?;
                let points = fractal::DEFAULT_POINTS;
                unlabelled(fractal::fractal_images(
                    gpu, *per_class, *seed, points, size, hooks,
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
                // The generator makes 32x32 images by construction.
                to_model(ds.resized(size)?)
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
            CalibSource::Folder(dir) => to_model(data::load_image_folder_at(
                dir,
                size,
                data::ResizePolicy::Resize,
            )?),
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
