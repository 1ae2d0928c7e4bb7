//! `synthcal diagnose`: the per-layer report of an INT8 model against its FP32 source.

use super::eval::{load_data, SplitArg};
use crate::error::{Error, Result};
use crate::eval::diagnose::{diagnose, plot};
use crate::gpu::Gpu;
use crate::quant::QuantizedModel;
use std::path::PathBuf;
use std::sync::Arc;

/// `synthcal diagnose`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct DiagnoseArgs {
    /// The FP32 classifier the INT8 model was made from.
    /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub model: PathBuf,
    /// The INT8 model (from `synthcal quantize`).
    #[arg(long)]
    pub int8: PathBuf,
    /// Images: a CIFAR-10 binary folder or an image folder (one subfolder per class); gray
    /// (BT.601 luma) for a 1-channel model.
    #[arg(long)]
    pub data: PathBuf,
    /// Which CIFAR-10 split to use (ignored for image folders).
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Stretch images that are not of the model's input size to it (CIFAR-10's are 32x32;
    /// default: refuse them).
    #[arg(long)]
    pub resize: bool,
    /// Images for the per-layer statistics (the first N).
    #[arg(long, default_value_t = 500, value_parser = super::args::int(1, usize::MAX))]
    pub limit: usize,
    /// Images for the revert-one-layer ranking (the first N of those).
    #[arg(long, default_value_t = 200, value_parser = super::args::int(1, usize::MAX))]
    pub rank_images: usize,
    /// Write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write a bar chart of each layer's output and weight SQNR (dB) here, with labeled axes
    /// and a legend: PNG or SVG, by the extension (.png, .svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// `synthcal diagnose`.
pub fn run(gpu: &Arc<Gpu>, args: &DiagnoseArgs) -> Result<()> {
    super::defaults::check_models([args.model.as_path()])?;
    let inputs = [
        args.model.as_path(),
        args.int8.as_path(),
        args.data.as_path(),
    ];
    for out in [&args.json, &args.plot].into_iter().flatten() {
        crate::io::check_output_file(out, &inputs)?;
    }
    if let (Some(j), Some(p)) = (&args.json, &args.plot) {
        if j == p {
            return Err(crate::error::Error::Invalid(format!(
                "--json and --plot are the same file {}",
                j.display()
            )));
        }
    }
    let model = crate::models::load_model(&args.model, None)?;
    let q = QuantizedModel::load(&args.int8)?;
    let shape = model.input_shape();
    let ds = load_data(&args.data, args.split, shape, args.resize, Some(args.limit))?
        .map_classes(&model.class_names)?;
    let hooks = super::bars::hooks(args.quiet);
    let d = diagnose(gpu, &model, &q, &ds, args.rank_images, &hooks)?;
    println!(
        "{} images ({} for the revert ranking); {}",
        d.images,
        d.rank_images,
        ds.source()
    );
    super::eval::print_fidelity(&d.fidelity);
    println!("logit RMSE on the rank images: {:.4}\n", d.base_rmse);
    println!(
        "{:<28} {:>9} {:>9} {:>21} {:>21} {:>8} {:>12}",
        "layer", "out dB", "w dB", "range used", "range seen", "clip %", "RMSE if FP32"
    );
    for l in &d.layers {
        println!(
            "{:<28} {:>9.2} {:>9.2} {:>21} {:>21} {:>8.3} {:>12.4}",
            l.name,
            l.output_sqnr_db,
            l.weight_sqnr_db,
            format!("[{:.3}, {:.3}]", l.range[0], l.range[1]),
            format!("[{:.3}, {:.3}]", l.observed[0], l.observed[1]),
            l.clipped_pct,
            l.revert_rmse
        );
    }
    println!(
        "\nmost harmful (reverting lowers the logit RMSE most): {}",
        d.worst
            .iter()
            .take(5)
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if let Some(p) = &args.json {
        let j = serde_json::to_vec_pretty(&d).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::io::write_atomic(p, &j)?;
    }
    if let Some(p) = &args.plot {
        plot(&d, p)?;
    }
    Ok(())
}
