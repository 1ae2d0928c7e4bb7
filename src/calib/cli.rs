//! `synthcal calib-data`: writes any calibration source as a class-folder PNG dataset.

use super::calibration_set;
use crate::data;
use crate::error::Result;
use crate::gpu::Gpu;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct CalibDataArgs {
    /// The source: `real`, `gan`, `gan:PATH`, `fractal`, `noise`, `distill` (needs --model),
    /// `folder:PATH` (as `quantize --calib`).
    pub source: String,
    /// Output folder: one subfolder of PNGs per class (then usable as `--calib folder:DIR`).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Images per class.
    #[arg(long, default_value_t = 500)]
    pub per_class: usize,
    /// Seed of the draw or generation (same seed, same images).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// CIFAR-10 binary folder for `real` (default: $SYNTHCAL_DATA, else
    /// ../shared/data/cifar-10-batches-bin).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// The FP32 classifier whose BatchNorm statistics `distill` matches.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Also write a sample grid PNG here (one row per class, up to 10 images each).
    #[arg(long, value_name = "PNG")]
    pub grid: Option<PathBuf>,
}

pub fn run(gpu: &Arc<Gpu>, args: &CalibDataArgs) -> Result<()> {
    let model = match &args.model {
        Some(p) => Some(crate::models::load_model(p, None)?),
        None => None,
    };
    let ds = calibration_set(
        gpu,
        &args.source,
        args.data.as_deref(),
        args.per_class,
        args.seed,
        model.as_ref(),
    )?;
    data::save_image_folder(&ds, &args.output)?;
    if let Some(png) = &args.grid {
        data::sample_grid_png(&ds, 1, args.per_class.min(10), png)?;
    }
    println!(
        "{} images ({}) written to {}",
        ds.len(),
        ds.source(),
        args.output.display()
    );
    Ok(())
}
