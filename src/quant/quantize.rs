//! The one call an app makes: a calibration source and options in, an INT8 model out, with
//! its provenance recorded in the model.

use super::{accuracy_aware, default_quantization, QuantOptions, QuantizedModel};
use crate::calib::CalibSource;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::models::Model;
use std::sync::Arc;

/// The post-training quantization algorithm.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Algorithm {
    // `--help` shows each `help` text; the doc comments, with their links, are the library's.
    /// OpenVINO POT's DefaultQuantization: every conv and linear layer in INT8.
    #[default]
    #[cfg_attr(
        feature = "cli",
        value(help = "OpenVINO POT's DefaultQuantization: every conv and linear layer in INT8")
    )]
    Default,
    /// Then revert the most harmful layers to FP32 until the top-1 drop on the labelled
    /// calibration set is within [`QuantOptions::max_drop`].
    #[cfg_attr(
        feature = "cli",
        value(
            help = "Then revert the most harmful layers to FP32 until the top-1 drop on the \
                      labelled calibration set is within --max-drop"
        )
    )]
    AccuracyAware,
    /// AdaRound: learn each layer's weight rounding on the calibration set (see
    /// [`QuantOptions::adaround`]).
    #[cfg_attr(
        feature = "cli",
        value(
            name = "adaround",
            help = "AdaRound: learn each layer's weight rounding on the calibration set \
                    (--iters, --lr, --reg-weight)"
        )
    )]
    AdaRound,
    /// BRECQ: learn each block's weight rounding and activation steps on the calibration set
    /// (see [`QuantOptions::adaround`]; [`super::AdaRoundOptions::brecq`] has its defaults).
    #[cfg_attr(
        feature = "cli",
        value(
            help = "BRECQ: learn each block's weight rounding and activation steps on the \
                      calibration set (--iters, --lr, --act-lr, --qdrop)"
        )
    )]
    Brecq,
}

/// Quantizes `model` with images from `source` (see [`QuantOptions`] for the choices).
///
/// The returned model records its provenance (see [`QuantizedModel::provenance`]).
pub fn quantize(
    gpu: &Arc<Gpu>,
    model: &Model,
    source: &CalibSource,
    opts: &QuantOptions,
) -> Result<QuantizedModel> {
    check_options(model, opts)?;
    let calib = source.load(gpu, Some(model), &opts.hooks)?;
    let seed = match source {
        CalibSource::Real { seed, .. }
        | CalibSource::Gan { seed, .. }
        | CalibSource::Fractal { seed, .. }
        | CalibSource::Noise { seed, .. }
        | CalibSource::Distill { seed, .. } => format!(", seed {seed}"),
        CalibSource::Folder(_) | CalibSource::Images(_) => String::new(),
    };
    let what = format!("{} ({} images{seed})", calib.source(), calib.len());
    quantize_described(gpu, model, &calib, opts, what)
}

/// [`quantize`] with a calibration set already in memory (labelled with the model's classes).
pub fn quantize_with_set(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
) -> Result<QuantizedModel> {
    check_options(model, opts)?;
    let what = format!("{} ({} images)", calib.source(), calib.len());
    quantize_described(gpu, model, calib, opts, what)
}

/// Options that would fail (or panic) only after long work are refused before it: a zero
/// batch or bias-correction subset, learned rounding's settings, and layer names to keep in
/// FP32 that name no quantizable layer.
fn check_options(model: &Model, opts: &QuantOptions) -> Result<()> {
    if opts.batch == 0 {
        return Err(Error::Invalid(
            "quantize: the batch must be at least 1".into(),
        ));
    }
    if opts.bias_correction && opts.bias_subset == 0 {
        return Err(Error::Invalid(
            "quantize: bias correction needs a subset of at least 1 image".into(),
        ));
    }
    if matches!(opts.algorithm, Algorithm::AdaRound | Algorithm::Brecq) {
        opts.adaround.check()?;
    }
    if opts.keep_fp32.is_empty() {
        return Ok(());
    }
    let (graph, _) = super::default::prepare(model)?;
    let names: Vec<&str> = super::default::quantizable(&graph)
        .into_iter()
        .map(|l| graph.nodes[l].name.as_str())
        .collect();
    match opts.keep_fp32.iter().find(|n| !names.contains(&n.as_str())) {
        Some(name) => Err(not_a_layer(name, names)),
        None => Ok(()),
    }
}

/// The error for a name to keep in FP32 that is none of `layers`.
fn not_a_layer<'a>(name: &str, layers: impl IntoIterator<Item = &'a str>) -> Error {
    let layers: Vec<&str> = layers.into_iter().collect();
    Error::Invalid(format!(
        "keep in FP32: {name} is no quantized layer's name; layers: {}",
        layers.join(", ")
    ))
}

/// [`quantize_with_set`], recording `calibration` as the set's description.
fn quantize_described(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
    calibration: String,
) -> Result<QuantizedModel> {
    let mut q = match opts.algorithm {
        Algorithm::Default => default_quantization(gpu, model, calib, opts)?,
        Algorithm::AccuracyAware => {
            let (mut q, r) = accuracy_aware(gpu, model, calib, opts, opts.max_drop)?;
            let report = serde_json::to_string(&r).map_err(|e| Error::Invalid(e.to_string()))?;
            q.meta.insert("accuracy_aware".into(), report);
            q
        }
        Algorithm::AdaRound => {
            let (mut q, r) = super::adaround::adaround(gpu, model, calib, opts)?;
            let report = serde_json::json!({ "options": opts.adaround, "layers": r });
            q.meta.insert("adaround".into(), report.to_string());
            q
        }
        Algorithm::Brecq => {
            let (mut q, r) = super::brecq::brecq(gpu, model, calib, opts)?;
            let report = serde_json::json!({ "options": opts.adaround, "blocks": r });
            q.meta.insert("brecq".into(), report.to_string());
            q
        }
    };
    for name in &opts.keep_fp32 {
        let node = q
            .layers
            .keys()
            .copied()
            .find(|&l| q.graph.nodes[l].name == *name)
            .ok_or_else(|| {
                not_a_layer(
                    name,
                    q.layers.keys().map(|&l| q.graph.nodes[l].name.as_str()),
                )
            })?;
        q = q.clone_without(node);
    }
    if q.layers.is_empty() {
        return Err(Error::Invalid(
            "no layer is left in INT8 (the layers to keep in FP32 name them all)".into(),
        ));
    }
    let algorithm = match opts.algorithm {
        Algorithm::Default => "default".to_string(),
        Algorithm::AccuracyAware => format!("accuracy-aware (max drop {})", opts.max_drop),
        Algorithm::AdaRound => "adaround".to_string(),
        Algorithm::Brecq => "brecq".to_string(),
    };
    let meta = [
        ("algorithm", algorithm),
        ("estimator", format!("{:?}", opts.estimator)),
        (
            "bias_correction",
            (opts.bias_correction
                && !matches!(opts.algorithm, Algorithm::AdaRound | Algorithm::Brecq))
            .to_string(),
        ),
        (
            "depthwise_per_channel",
            opts.depthwise_per_channel.to_string(),
        ),
        ("synthcal_version", env!("CARGO_PKG_VERSION").to_string()),
        ("calibration", calibration),
    ];
    for (k, v) in meta {
        q.meta.insert(k.into(), v);
    }
    // Only where they differ from POT's recipe, so that its files stay as they were.
    if opts.weight_range != super::WeightRange::MinMax {
        q.meta
            .insert("weight_range".into(), format!("{:?}", opts.weight_range));
    }
    if (opts.wbits, opts.abits) != (8, 8) || opts.add_bits.is_some_and(|b| b != opts.abits) {
        q.meta.insert("bits".into(), bits_label(opts));
    }
    Ok(q)
}

/// `W8A8`, or e.g. `W4A4 (first and last layers W8A8)`.
fn bits_label(opts: &QuantOptions) -> String {
    let mut label = format!("W{}A{}", opts.wbits, opts.abits);
    if opts.ends_at_8bit && (opts.wbits, opts.abits) != (8, 8) {
        label += " (first and last layers W8A8)";
    }
    match opts.add_bits {
        Some(b) if b != opts.abits && opts.int8_ops == super::Int8Ops::All => {
            label + &format!(", add inputs {b}-bit")
        }
        _ => label,
    }
}
