//! `synthcal calib-data`: writes any calibration source as a class-folder PNG dataset.

use crate::calib::{distill, CalibSource, MAX_DISTILL_IMAGES};
use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::progress::Hooks;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// The calibration-set flags of quantize, calib-data, score and reproduce.
#[derive(clap::Args, Debug, Clone)]
pub struct CalibSetArgs {
    /// CIFAR-10 binary folder: the `real` source's training images, and the test split where
    /// the command evaluates (default: $SYNTHCAL_DATA, else data/cifar-10-batches-bin under
    /// $SYNTHCAL_SHARED or ../shared).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Calibration images per class (drawn from CIFAR-10 or generated; 1 to 10^8, and a
    /// generated set must fit in the available memory).
    #[arg(long, default_value_t = 500, value_parser = super::args::int(1, crate::limits::MAX_PER_CLASS))]
    pub per_class: usize,
    /// Seed of the calibration set's draw or generation (same seed, same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CalibSetArgs {
    /// `--data`, else the default CIFAR-10 folder.
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(super::defaults::default_data)
    }

    /// The source a `--calib` name stands for: `real`, `fractal`, `noise`, `distill[:N]`,
    /// `gan` (the committed generator) or `gan:PATH`, `folder:PATH`, or a path (a CIFAR-10
    /// binary folder or an image folder).
    pub fn source(&self, spec: &str) -> Result<CalibSource> {
        let (per_class, seed) = (self.per_class, self.seed);
        if ["noise", "fractal", "gan"].contains(&spec) || spec.starts_with("gan:") {
            // Checked here too, to name the flag: 10 classes of 3072-byte images at least.
            let flag = format!("--per-class {per_class}");
            crate::limits::check_alloc(&flag, &[per_class, 10, data::IMG_BYTES])?;
        }
        let distill =
            distill_images_of(spec).map_err(|e| Error::Invalid(format!("{spec}: {e}")))?;
        if let Some(images) = distill {
            return Ok(CalibSource::Distill { images, seed });
        }
        let real = |data: PathBuf| CalibSource::Real {
            data,
            per_class,
            seed,
        };
        Ok(match spec {
            "real" => real(self.data_dir()),
            "noise" => CalibSource::Noise { per_class, seed },
            "fractal" => CalibSource::Fractal { per_class, seed },
            "gan" => CalibSource::Gan {
                generator: super::defaults::default_generator(),
                per_class,
                seed,
            },
            _ => {
                if let Some(p) = spec.strip_prefix("gan:") {
                    return Ok(CalibSource::Gan {
                        generator: p.into(),
                        per_class,
                        seed,
                    });
                }
                let p = Path::new(spec.strip_prefix("folder:").unwrap_or(spec));
                if !p.exists() {
                    return Err(Error::Invalid(format!(
                        "--calib {spec}: not a calibration source (real, gan, gan:PATH, fractal, noise, distill, folder:PATH) nor an existing folder"
                    )));
                }
                if p.join("data_batch_1.bin").exists() || p.join("cifar-10-batches-bin").exists() {
                    real(p.to_path_buf())
                } else {
                    CalibSource::Folder(p.to_path_buf())
                }
            }
        })
    }

    /// The files or folders that `spec` reads (for the output-path checks, before loading).
    pub fn inputs(&self, spec: &str) -> Result<Vec<PathBuf>> {
        Ok(self.source(spec)?.inputs())
    }

    /// The calibration set of `source` (a name as `quantize --calib` takes it).
    pub fn load(
        &self,
        gpu: &Arc<Gpu>,
        source: &str,
        model: Option<&crate::models::Model>,
        hooks: &Hooks,
    ) -> Result<Dataset> {
        self.source(source)?.load(gpu, model, hooks)
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct CalibDataArgs {
    /// The source: `real`, `gan`, `gan:PATH`, `fractal`, `noise`, `distill` (needs --model),
    /// `folder:PATH` (as `quantize --calib`).
    #[arg(value_parser = parse_source)]
    pub source: String,
    /// Output folder: one subfolder of PNGs per class (then usable as `--calib folder:DIR`).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub set: CalibSetArgs,
    /// The FP32 classifier whose BatchNorm statistics `distill` matches. With it, every
    /// source is written at the model's input size (default 32x32) and with its class names.
    /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub model: Option<PathBuf>,
    /// Also write a sample grid PNG here (one row per class, up to 10 images each).
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(gpu: &Arc<Gpu>, args: &CalibDataArgs) -> Result<()> {
    let mut inputs = args.set.inputs(&args.source)?;
    inputs.extend(args.model.clone());
    let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    crate::io::check_output_dir(&args.output, &inputs)?;
    crate::io::output::check_new_or_empty(&args.output)?;
    // Created now so that a --grid inside it passes its check; removed again (while still
    // empty) when the command fails, so a refused run leaves nothing behind.
    let created = !args.output.exists();
    std::fs::create_dir_all(&args.output).map_err(|e| crate::io::Error::Io {
        path: args.output.clone(),
        source: e,
    })?;
    let result = write_set(gpu, args, &inputs);
    if result.is_err() && created {
        let _ = std::fs::remove_dir(&args.output);
    }
    result
}

fn write_set(gpu: &Arc<Gpu>, args: &CalibDataArgs, inputs: &[&std::path::Path]) -> Result<()> {
    if let Some(png) = &args.grid {
        crate::io::check_output_file(png, inputs)?;
    }
    super::defaults::check_models(args.model.iter().map(|p| p.as_path()))?;
    let model = match &args.model {
        Some(p) => Some(crate::models::load_model(p, None)?),
        None => None,
    };
    let hooks = super::bars::hooks(args.quiet);
    let ds = args.set.load(gpu, &args.source, model.as_ref(), &hooks)?;
    data::save_image_folder(&ds, &args.output)?;
    if let Some(png) = &args.grid {
        data::sample_grid_png(&ds, 1, args.set.per_class.min(10), png)?;
    }
    println!(
        "{} images ({}) written to {}",
        ds.len(),
        ds.source(),
        args.output.display()
    );
    Ok(())
}
