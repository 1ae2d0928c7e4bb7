//! `synthcal calib-data`: writes any calibration source as a class-folder PNG dataset.

use super::calibration_set;
use crate::data::{self, Dataset};
use crate::error::Result;
use crate::gpu::Gpu;
use std::path::PathBuf;
use std::sync::Arc;

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
    #[arg(long, default_value_t = 500, value_parser = crate::limits::int(1, crate::limits::MAX_PER_CLASS))]
    pub per_class: usize,
    /// Seed of the calibration set's draw or generation (same seed, same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

impl CalibSetArgs {
    pub fn data_dir(&self) -> PathBuf {
        self.data
            .clone()
            .unwrap_or_else(crate::quant::cli::default_data)
    }

    /// The calibration set of `source` (a name as `quantize --calib` takes it).
    pub fn load(
        &self,
        gpu: &Arc<Gpu>,
        source: &str,
        model: Option<&crate::models::Model>,
    ) -> Result<Dataset> {
        calibration_set(
            gpu,
            source,
            &self.data_dir(),
            self.per_class,
            self.seed,
            model,
        )
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct CalibDataArgs {
    /// The source: `real`, `gan`, `gan:PATH`, `fractal`, `noise`, `distill` (needs --model),
    /// `folder:PATH` (as `quantize --calib`).
    #[arg(value_parser = super::parse_source)]
    pub source: String,
    /// Output folder: one subfolder of PNGs per class (then usable as `--calib folder:DIR`).
    #[arg(short, long)]
    pub output: PathBuf,
    #[command(flatten)]
    pub set: CalibSetArgs,
    /// The FP32 classifier whose BatchNorm statistics `distill` matches.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also write a sample grid PNG here (one row per class, up to 10 images each).
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
}

pub fn run(gpu: &Arc<Gpu>, args: &CalibDataArgs) -> Result<()> {
    let mut inputs = super::source_inputs(&args.source, &args.set.data_dir());
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
    let model = match &args.model {
        Some(p) => Some(crate::models::load_model(p, None)?),
        None => None,
    };
    let ds = args.set.load(gpu, &args.source, model.as_ref())?;
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
