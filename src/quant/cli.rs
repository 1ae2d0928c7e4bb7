//! `synthcal quantize`.

use super::{default_quantization, QuantOptions, RangeEstimator};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Algorithm {
    Default,
    AccuracyAware,
}

#[derive(clap::Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// The FP32 classifier (.safetensors, .th or .pt).
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture name; detected from the tensors when omitted.
    #[arg(long)]
    pub arch: Option<String>,
    /// Calibration images: `real` (a class-balanced subset of the CIFAR-10 training set found
    /// with --data), `gan` (images from the committed DiStyleGAN generator) or `gan:PATH`
    /// (another generator file), `fractal` (IFS fractals), `noise` (Gaussian noise images),
    /// `distill` (ZeroQ data-free images optimized against the model's BatchNorm statistics), a
    /// CIFAR-10 binary folder (like `real`), or an image folder (`folder:PATH` or a path; one
    /// subfolder per class).
    #[arg(long, value_parser = crate::calib::parse_source)]
    pub calib: String,
    #[command(flatten)]
    pub set: crate::calib::cli::CalibSetArgs,
    /// `default` (POT DefaultQuantization) or `accuracy-aware` (then revert the most harmful
    /// layers to FP32 until the top-1 drop on the labeled calibration set is within --max-drop).
    #[arg(long, value_enum, default_value = "default")]
    pub algorithm: Algorithm,
    /// AccuracyAware: largest acceptable top-1 drop on the calibration set, a fraction in
    /// [0, 1) (absolute: 0.01 = 1 pp).
    #[arg(long, default_value_t = 0.01, value_parser = crate::limits::real::<f64>(0.0..1.0))]
    pub max_drop: f64,
    /// Activation range estimator.
    #[arg(long, value_enum, default_value = "pot")]
    pub estimator: RangeEstimator,
    /// Quantize depthwise-conv inputs per channel (OpenVINO POT's choice). Off by default:
    /// with POT's range estimator it cost ShuffleNetV2 x0.5 4.99 pp of top-1 here, against 0.29
    /// per tensor.
    #[arg(long)]
    pub depthwise_per_channel: bool,
    /// Skip FastBiasCorrection.
    #[arg(long)]
    pub no_bias_correction: bool,
    /// Images per GPU submit (1 to 10,000).
    #[arg(long, default_value_t = 250, value_parser = crate::limits::int(1, crate::limits::MAX_BATCH))]
    pub batch: usize,
    /// Keep this conv/linear layer in FP32 (by its name, e.g. `layer1.0.conv1`; repeatable).
    #[arg(long = "keep-fp32", value_name = "LAYER")]
    pub keep_fp32: Vec<String>,
    /// Output INT8 model (.safetensors, written atomically).
    #[arg(short, long)]
    pub output: PathBuf,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

/// The CIFAR-10 binary folder: $SYNTHCAL_DATA, else data/cifar-10-batches-bin under the
/// shared folder.
pub fn default_data() -> PathBuf {
    std::env::var_os("SYNTHCAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::data::shared_dir().join("data/cifar-10-batches-bin"))
}

pub fn run(gpu: &Arc<Gpu>, args: &QuantizeArgs) -> Result<()> {
    let mut inputs = crate::calib::source_inputs(&args.calib, &args.set.data_dir());
    inputs.push(args.model.clone());
    let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    crate::io::check_output_file(&args.output, &inputs)?;
    let model = models::load_model(&args.model, args.arch.as_deref())?;
    let calib = args.set.load(gpu, &args.calib, Some(&model))?;
    let opts = QuantOptions {
        estimator: args.estimator,
        bias_correction: !args.no_bias_correction,
        batch: args.batch,
        quiet: args.quiet,
        depthwise_per_channel: args.depthwise_per_channel,
        ..QuantOptions::default()
    };
    let mut q = match args.algorithm {
        Algorithm::Default => {
            let mut q = default_quantization(gpu, &model, &calib, &opts)?;
            q.meta.insert("algorithm".into(), "default".into());
            q
        }
        Algorithm::AccuracyAware => {
            let (mut q, r) = super::accuracy_aware(gpu, &model, &calib, &opts, args.max_drop)?;
            println!(
                "accuracy-aware: calibration top-1 FP32 {:.2}%, default INT8 {:.2}%, final {:.2}%; reverted to FP32: [{}]{}",
                r.fp32_top1,
                r.default_top1,
                r.final_top1,
                r.reverted.join(", "),
                if r.rejected.is_empty() { String::new() } else { format!("; reverting made worse (kept INT8): [{}]", r.rejected.join(", ")) }
            );
            q.meta.insert(
                "algorithm".into(),
                format!("accuracy-aware (max drop {})", args.max_drop),
            );
            q.meta.insert(
                "accuracy_aware".into(),
                serde_json::to_string(&r).map_err(|e| Error::Invalid(e.to_string()))?,
            );
            q
        }
    };
    for name in &args.keep_fp32 {
        let node = q
            .layers
            .keys()
            .copied()
            .find(|&l| q.graph.nodes[l].name == *name)
            .ok_or_else(|| {
                let names: Vec<&str> = q
                    .layers
                    .keys()
                    .map(|&l| q.graph.nodes[l].name.as_str())
                    .collect();
                Error::Invalid(format!(
                    "--keep-fp32 {name}: no quantized layer of that name; layers: {}",
                    names.join(", ")
                ))
            })?;
        q = q.clone_without(node);
    }
    q.meta
        .insert("estimator".into(), format!("{:?}", args.estimator));
    q.meta.insert(
        "bias_correction".into(),
        (!args.no_bias_correction).to_string(),
    );
    q.meta.insert(
        "calibration".into(),
        format!(
            "{} ({} images, seed {})",
            calib.source(),
            calib.len(),
            args.set.seed
        ),
    );
    q.meta
        .insert("source_model".into(), args.model.display().to_string());
    if q.layers.is_empty() {
        return Err(Error::Invalid(format!(
            "no layer is left in INT8 (--keep-fp32 names them all); {} not written",
            args.output.display()
        )));
    }
    q.save(&args.output)?;
    println!(
        "{}: {} layers INT8, FP32: [{}] -> {}",
        q.arch,
        q.layers.len(),
        q.fp32_layers().join(", "),
        args.output.display()
    );
    Ok(())
}
