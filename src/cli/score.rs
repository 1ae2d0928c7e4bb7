//! `synthcal score`: how good a calibration set looks to a classifier.

use crate::error::{Error, Result};
use crate::eval::score::{feature_runner, quality, reference};
use crate::eval::Classifier;
use crate::gpu::Gpu;
use std::path::PathBuf;
use std::sync::Arc;

/// `synthcal score`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct ScoreArgs {
    /// The images: an image folder, a CIFAR-10 binary folder, or a calibration source name
    /// (real, gan, gan:PATH, fractal, noise, distill) generated on the fly. RGB images are
    /// read as gray (BT.601 luma) by a 1-channel model.
    #[arg(value_parser = super::calib_data::parse_source)]
    pub set: String,
    /// The FP32 CIFAR-10 classifier that judges them.
    /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub model: PathBuf,
    /// The set when SET is a source name; the reference is --data's test split (or --data
    /// itself when it is an image folder), stretched to the model's input size where it
    /// differs, as the set is.
    #[command(flatten)]
    pub set_args: super::calib_data::CalibSetArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `synthcal score`.
pub fn run(gpu: &Arc<Gpu>, args: &ScoreArgs) -> Result<()> {
    super::defaults::check_models([args.model.as_path()])?;
    let Classifier::Fp32(model) = Classifier::load(&args.model, None)? else {
        return Err(Error::Invalid(
            "score needs an FP32 classifier, not an INT8 model".into(),
        ));
    };
    let test = super::eval::load_data(
        &args.set_args.data_dir(),
        super::eval::SplitArg::Test,
        model.input_shape(),
        true,
        None,
    )?
    .map_classes(&model.class_names)?;
    let set = args
        .set_args
        .load(gpu, &args.set, Some(&model), &super::bars::hooks(args.json))?;
    let (runner, feat) = feature_runner(gpu, &model)?;
    let refg = reference(&runner, feat, &model, &test)?;
    let q = quality(&runner, feat, &model, &set, &refg)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&q).map_err(|e| Error::Invalid(e.to_string()))?
        );
    } else {
        println!(
            "{} images ({}), judged by {}:\n  classifier score {:.3}\n  classifier FID   {:.3}\n  agreement        {:.2}%",
            set.len(),
            set.source(),
            model.arch.name,
            q.classifier_score,
            q.classifier_fid,
            q.agreement
        );
    }
    Ok(())
}
