//! `synthcal quantize`.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models;
use crate::quant::{quantize, AccuracyAwareReport, Algorithm, QuantOptions, RangeEstimator};
use std::path::PathBuf;
use std::sync::Arc;

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
    #[arg(long, value_parser = super::calib_data::parse_source)]
    pub calib: String,
    #[command(flatten)]
    pub set: super::calib_data::CalibSetArgs,
    /// `default` (POT DefaultQuantization) or `accuracy-aware` (then revert the most harmful
    /// layers to FP32 until the top-1 drop on the labeled calibration set is within --max-drop).
    #[arg(long, value_enum, default_value = "default")]
    pub algorithm: Algorithm,
    /// AccuracyAware: largest acceptable top-1 drop on the calibration set, a fraction in
    /// [0, 1) (absolute: 0.01 = 1 pp).
    #[arg(long, default_value_t = 0.01, value_parser = super::args::real::<f64>(0.0..1.0))]
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
    #[arg(long, default_value_t = 250, value_parser = super::args::int(1, crate::limits::MAX_BATCH))]
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

/// `synthcal quantize`.
pub fn run(gpu: &Arc<Gpu>, args: &QuantizeArgs) -> Result<()> {
    let mut inputs = args.set.inputs(&args.calib)?;
    inputs.push(args.model.clone());
    let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    crate::io::check_output_file(&args.output, &inputs)?;
    let model = models::load_model(&args.model, args.arch.as_deref())?;
    let source = args.set.source(&args.calib)?;
    let opts = QuantOptions {
        algorithm: args.algorithm,
        max_drop: args.max_drop,
        keep_fp32: args.keep_fp32.clone(),
        estimator: args.estimator,
        bias_correction: !args.no_bias_correction,
        batch: args.batch,
        hooks: super::bars::hooks(args.quiet),
        depthwise_per_channel: args.depthwise_per_channel,
        ..QuantOptions::default()
    };
    let mut q = quantize(gpu, &model, &source, &opts)?;
    if let Some(r) = q.meta.get("accuracy_aware") {
        let r: AccuracyAwareReport =
            serde_json::from_str(r).map_err(|e| Error::Invalid(e.to_string()))?;
        println!(
            "accuracy-aware: calibration top-1 FP32 {:.2}%, default INT8 {:.2}%, final {:.2}%; reverted to FP32: [{}]{}",
            r.fp32_top1,
            r.default_top1,
            r.final_top1,
            r.reverted.join(", "),
            if r.rejected.is_empty() { String::new() } else { format!("; reverting made worse (kept INT8): [{}]", r.rejected.join(", ")) }
        );
    }
    q.meta
        .insert("source_model".into(), args.model.display().to_string());
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
