//! `synthcal quantize`.

use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models;
use crate::quant::{
    quantize, AccuracyAwareReport, AdaRoundOptions, Algorithm, QuantOptions, RangeEstimator,
    WeightRange,
};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(clap::Args, Debug, Clone)]
pub struct QuantizeArgs {
    /// The FP32 classifier (.safetensors, .th, .pt or .onnx).
    /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
    #[arg(long, value_parser = super::defaults::model_arg)]
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
    /// `default` (POT DefaultQuantization), `accuracy-aware` (then revert the most harmful
    /// layers to FP32 until the top-1 drop on the labeled calibration set is within
    /// --max-drop), `adaround` (learn each layer's weight rounding on the calibration set;
    /// no bias correction) or `brecq` (learn each block's weight rounding and activation
    /// steps; no bias correction).
    #[arg(long, value_enum, default_value = "default")]
    pub algorithm: Algorithm,
    /// AccuracyAware: largest acceptable top-1 drop on the calibration set, a fraction in
    /// [0, 1) (absolute: 0.01 = 1 pp).
    #[arg(long, default_value_t = 0.01, value_parser = super::args::real::<f64>(0.0..1.0))]
    pub max_drop: f64,
    /// AdaRound / BRECQ: Adam steps per layer / per block [default: 200 / 300].
    #[arg(long, value_parser = super::args::int(0usize, 1_000_000))]
    pub iters: Option<usize>,
    /// AdaRound and BRECQ: Adam's learning rate on the rounding variables.
    #[arg(long, default_value_t = AdaRoundOptions::default().lr, value_parser = super::args::real::<f32>(1e-9..1.0))]
    pub lr: f32,
    /// AdaRound and BRECQ: weight of the rounding regularizer (lambda).
    #[arg(long, default_value_t = AdaRoundOptions::default().reg_weight, value_parser = super::args::real::<f32>(0.0..1e6))]
    pub reg_weight: f32,
    /// BRECQ: Adam's learning rate on the activation step sizes (LSQ); 0 keeps the
    /// calibrated formats.
    #[arg(long, default_value_t = AdaRoundOptions::brecq().act_lr, value_parser = super::args::real::<f32>(0.0..1.0))]
    pub act_lr: f32,
    /// BRECQ: QDrop's probability of dropping an activation element's quantization in a
    /// learning step (0: off).
    #[arg(long, default_value_t = AdaRoundOptions::brecq().qdrop, value_parser = super::args::real::<f32>(0.0..=1.0))]
    pub qdrop: f32,
    /// AdaRound and BRECQ: calibration images used (evenly spaced over the set).
    #[arg(long, default_value_t = AdaRoundOptions::default().images, value_parser = super::args::int(1usize, 100_000))]
    pub adaround_images: usize,
    /// `pot`: OpenVINO POT's DefaultQuantization exactly, as the study ran it (POT's range
    /// estimator, max|w| weights); it cannot be combined with --estimator / --weight-range.
    #[arg(long, value_enum, conflicts_with_all = ["estimator", "weight_range"])]
    pub preset: Option<Preset>,
    /// Activation range estimator [default: mse, the best fidelity measured (logit RMSE
    /// against FP32) on ResNet-20 at W8A8].
    #[arg(long, value_enum)]
    pub estimator: Option<RangeEstimator>,
    /// How each output channel's weight clipping range is chosen [default: min-max].
    #[arg(long, value_enum)]
    pub weight_range: Option<WeightRange>,
    /// Bits per weight (per-channel symmetric). 7 is for ONNX Runtime on x86 CPUs without
    /// VNNI: its integer kernels sum pairs of 8-bit products in 16 bits, which 8-bit weights
    /// can overflow (its `reduce_range`).
    #[arg(long, default_value_t = 8, value_parser = bits(&[8, 7, 6, 4, 3, 2]))]
    pub wbits: u32,
    /// Bits per activation (per tensor).
    #[arg(long, default_value_t = 8, value_parser = bits(&[8, 6, 4]))]
    pub abits: u32,
    /// Keep the first and the last quantized layer at 8-bit weights and inputs (the convention
    /// of BRECQ and GENIE at low bit widths).
    #[arg(long)]
    pub first_last_8bit: bool,
    /// Quantize depthwise-conv inputs per channel (OpenVINO POT's choice). Off by default:
    /// on ShuffleNetV2 x0.5 it costs far more top-1 than one range per tensor (see the README).
    #[arg(long)]
    pub depthwise_per_channel: bool,
    /// Which ops compute in integers: `all` (adds, pooling, concat, shuffles too; the
    /// default) or `layers` (conv and linear only, the rest in f32; `--preset pot`'s choice).
    #[arg(long, value_enum)]
    pub int8_ops: Option<crate::quant::Int8Ops>,
    /// Bits of the values that no conv or linear layer reads on the end-to-end integer path:
    /// the inputs of residual adds and concats, such as a residual block's last conv output
    /// [default: --abits]. Every layer's weights and inputs keep --wbits/--abits; 8 here keeps
    /// the adds' inputs as BRECQ's and QDrop's W4A4 nearly do (they leave them unrounded).
    #[arg(long, value_parser = bits(&[8, 6, 4]))]
    pub add_bits: Option<u32>,
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

/// A parser of a bit width among `allowed`.
pub(super) fn bits(
    allowed: &'static [u32],
) -> impl Fn(&str) -> std::result::Result<u32, String> + Clone {
    move |s| {
        s.parse::<u32>()
            .ok()
            .filter(|b| allowed.contains(b))
            .ok_or_else(|| format!("`{s}` is not one of {allowed:?}"))
    }
}

/// A named recipe.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq)]
pub enum Preset {
    /// OpenVINO POT's DefaultQuantization (the study's recipe).
    Pot,
}

/// `synthcal quantize`.
pub fn run(gpu: &Arc<Gpu>, args: &QuantizeArgs) -> Result<()> {
    super::defaults::check_models([args.model.as_path()])?;
    let mut inputs = args.set.inputs(&args.calib)?;
    inputs.push(args.model.clone());
    let inputs: Vec<&std::path::Path> = inputs.iter().map(|p| p.as_path()).collect();
    crate::io::check_output_file(&args.output, &inputs)?;
    let model = models::load_model(&args.model, args.arch.as_deref())?;
    let source = args.set.source(&args.calib)?;
    let base = match args.preset {
        Some(Preset::Pot) => QuantOptions::pot(),
        None => QuantOptions::default(),
    };
    let opts = QuantOptions {
        algorithm: args.algorithm,
        max_drop: args.max_drop,
        keep_fp32: args.keep_fp32.clone(),
        estimator: args.estimator.unwrap_or(base.estimator),
        weight_range: args.weight_range.unwrap_or(base.weight_range),
        wbits: args.wbits,
        abits: args.abits,
        ends_at_8bit: args.first_last_8bit,
        bias_correction: !args.no_bias_correction,
        batch: args.batch,
        hooks: super::bars::hooks(args.quiet),
        depthwise_per_channel: args.depthwise_per_channel,
        int8_ops: args.int8_ops.unwrap_or(base.int8_ops),
        add_bits: args.add_bits,
        adaround: {
            let d = match args.algorithm {
                Algorithm::Brecq => AdaRoundOptions::brecq(),
                _ => AdaRoundOptions::default(),
            };
            AdaRoundOptions {
                iters: args.iters.unwrap_or(d.iters),
                lr: args.lr,
                reg_weight: args.reg_weight,
                images: args.adaround_images,
                act_lr: args.act_lr,
                qdrop: args.qdrop,
                ..d
            }
        },
        ..base
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
    if let Some(r) = q.meta.get("adaround") {
        print_adaround(r)?;
    }
    if let Some(r) = q.meta.get("brecq") {
        print_brecq(r)?;
    }
    q.meta
        .insert("source_model".into(), args.model.display().to_string());
    q.save(&args.output)?;
    // Which layer runs at which width, grouped: "W8A8: conv1, fc; W4A4: layer1.0.conv1, ...".
    let mut widths: Vec<((u32, u32), Vec<String>)> = Vec::new();
    for b in q.layer_bits() {
        let key = (b.weights, b.inputs);
        match widths.iter_mut().find(|(k, _)| *k == key) {
            Some((_, names)) => names.push(b.name),
            None => widths.push((key, vec![b.name])),
        }
    }
    for ((w, a), names) in &widths {
        println!("W{w}A{a}: {}", names.join(", "));
    }
    println!(
        "{}: {} layers INT8, FP32: [{}] -> {}",
        q.arch,
        q.layers.len(),
        q.fp32_layers().join(", "),
        args.output.display()
    );
    Ok(())
}

/// One line per layer: the output error with round-to-nearest and with learned rounding.
fn print_adaround(report: &str) -> Result<()> {
    let r: serde_json::Value =
        serde_json::from_str(report).map_err(|e| Error::Invalid(e.to_string()))?;
    let layers: Vec<crate::quant::LayerReport> =
        serde_json::from_value(r["layers"].clone()).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut total = 0.0;
    for l in &layers {
        println!(
            "adaround {}: output MSE {:.4e} (nearest) -> {:.4e}, {} of {} weights rounded otherwise, {:.1} s ({:.3} s/step)",
            l.name, l.rtn_mse, l.mse, l.changed, l.weights, l.seconds, l.seconds_per_step
        );
        total += l.seconds;
    }
    println!("adaround: {} layers in {total:.0} s", layers.len());
    Ok(())
}

/// One line per block: the block output error with round-to-nearest and with learning.
fn print_brecq(report: &str) -> Result<()> {
    let r: serde_json::Value =
        serde_json::from_str(report).map_err(|e| Error::Invalid(e.to_string()))?;
    let blocks: Vec<crate::quant::BlockReport> =
        serde_json::from_value(r["blocks"].clone()).map_err(|e| Error::Invalid(e.to_string()))?;
    let mut total = 0.0;
    for b in &blocks {
        let steps: Vec<String> = b
            .steps
            .iter()
            .map(|(n, a, c)| format!("{n} {a:.4}->{c:.4}"))
            .collect();
        println!(
            "brecq [{}]: output MSE {:.4e} (nearest) -> {:.4e}, {} of {} weights rounded otherwise, steps [{}], {:.1} s ({:.3} s/step)",
            b.layers.join(", "), b.rtn_mse, b.mse, b.changed, b.weights, steps.join(", "), b.seconds, b.seconds_per_step
        );
        total += b.seconds;
    }
    println!("brecq: {} blocks in {total:.0} s", blocks.len());
    Ok(())
}
