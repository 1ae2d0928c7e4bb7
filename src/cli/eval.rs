//! `synthcal eval`: top-1 of an FP32 or INT8 model, optionally against its FP32 source or
//! another model, as text and JSON.

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::eval::{
    cross_check, evaluate, fidelity, Classifier, Comparison, EvalReport, Fidelity, Paired,
};
use crate::gpu::Gpu;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A CIFAR-10 split.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum SplitArg {
    /// The 10,000 test images.
    #[default]
    Test,
    /// The 50,000 training images.
    Train,
}

impl SplitArg {
    /// The library's split.
    pub fn split(self) -> data::Split {
        match self {
            SplitArg::Test => data::Split::Test,
            SplitArg::Train => data::Split::Train,
        }
    }
}

/// Loads `--data` (CIFAR-10 binaries or an image folder) as images of `shape` (`[channels,
/// height, width]`), the first `limit` of them; `resize` stretches images of another size
/// (CIFAR-10's are 32x32), else they are an error. Only the kept images are resized. The
/// images are RGB: a 1-channel model gets them as gray (BT.601 luma), a model of another
/// count than 1 or 3 cannot take them.
pub fn load_data(
    path: &Path,
    split: SplitArg,
    [channels, h, w]: [usize; 3],
    resize: bool,
    limit: Option<usize>,
) -> Result<Dataset> {
    if ![1, 3].contains(&channels) {
        return Err(Error::Invalid(format!(
            "{}: its images are RGB (or gray), and the model takes {channels}-channel ones",
            path.display()
        )));
    }
    let policy = match resize {
        true => data::ResizePolicy::Resize,
        false => data::ResizePolicy::Reject,
    };
    let ds = data::load_first(path, split.split(), [h, w], policy, limit).map_err(|e| match e {
        e @ data::DataError::WrongSize { .. } => {
            Error::Invalid(format!("{e} (--resize stretches them)"))
        }
        e => e.into(),
    })?;
    Ok(ds.to_channels(channels)?)
}

/// `synthcal eval`'s flags.
#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The classifier: a .safetensors file from `synthcal import` or `synthcal quantize`, a
    /// PyTorch checkpoint (.th legacy or .pt zip format) read directly, or an ONNX file (a QDQ
    /// file runs as INT8).
    /// Or a shared checkpoint by its short name, as `reproduce --models` takes them.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub model: PathBuf,
    /// Architecture name (see `synthcal models`); detected from the tensors when omitted.
    #[arg(long)]
    pub arch: Option<String>,
    /// Images: a CIFAR-10 binary folder (`cifar-10-batches-bin`) or an image folder with one
    /// subfolder per class. Classes are matched to the model's class names by name (ignoring
    /// case); a class the model does not have is an error. A 1-channel (grayscale) model
    /// reads them as gray: BT.601 luma, 0.299 R + 0.587 G + 0.114 B, rounded.
    #[arg(long)]
    pub data: PathBuf,
    /// Which CIFAR-10 split to use (ignored for image folders).
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Images per GPU submit (1 to 10,000).
    #[arg(long, default_value_t = 250, value_parser = super::args::int(1, crate::limits::MAX_BATCH))]
    pub batch: usize,
    /// Evaluate only the first N images (N >= 1).
    #[arg(long, value_parser = super::args::int(1, usize::MAX))]
    pub limit: Option<usize>,
    /// Stretch images that are not of the model's input size to it (CIFAR-10's are 32x32;
    /// default: refuse them).
    #[arg(long)]
    pub resize: bool,
    /// Keep BatchNorm as separate ops instead of folding it into the preceding convs.
    #[arg(long)]
    pub no_fold: bool,
    /// The FP32 model an INT8 `--model` was made from: prints both accuracies and the drop.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub fp32: Option<PathBuf>,
    /// Another model (e.g. INT8 from another calibration source) to compare with `--model` on
    /// the same images: McNemar's paired test says whether their top-1 differ beyond chance.
    #[arg(long, value_parser = super::defaults::model_arg)]
    pub vs: Option<PathBuf>,
    /// For an INT8 model: also run the CPU integer simulation of the same model on every image
    /// and count the predictions where it and the GPU disagree.
    #[arg(long)]
    pub cross_check: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Also write one CSV row per image: its index, true class (index and name), predicted
    /// class (index and name) and the model's logits, one column per class.
    #[arg(long, value_name = "FILE.csv")]
    pub predictions: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// Prints the fidelity block of `synthcal eval --fp32`.
pub fn print_fidelity(f: &Fidelity) {
    println!(
        "FP32 top-1: {:.2}%   INT8 top-1: {:.2}%   drop: {:.2} pp",
        f.fp32_top1, f.int8_top1, f.drop
    );
    println!(
        "agreement: {:.2}%   flips: {} FP32-right/INT8-wrong, {} FP32-wrong/INT8-right   McNemar p = {:.3}",
        f.agreement, f.fp32_right_int8_wrong, f.fp32_wrong_int8_right, f.mcnemar_p
    );
    println!(
        "logits: RMSE {:.4} ({:.4} of the FP32 logits' std)   KL(FP32 || INT8) {:.5} nats",
        f.logit_rmse, f.logit_rmse_rel, f.kl
    );
}

fn print_report(r: &EvalReport) {
    println!("model:    {} ({})", r.model, r.arch);
    println!("data:     {} ({} images)", r.data, r.images);
    println!("adapter:  {}", r.adapter);
    println!("top-1:    {:.2}% ({}/{})", r.top1, r.correct, r.images);
    println!(
        "speed:    {:.1} images/s ({:.1} s)",
        r.images_per_sec, r.seconds
    );
    println!("per class:");
    // Classes without images are left out (an ImageNet model on a few classes' images).
    for c in r.per_class.iter().filter(|c| c.images > 0) {
        println!("  {:<12} {:6.2}%  ({} images)", c.class, c.top1, c.images);
    }
}

/// `synthcal eval`.
pub fn run(gpu: &Arc<Gpu>, args: &EvalArgs) -> Result<()> {
    let models = [Some(&args.model), args.fp32.as_ref(), args.vs.as_ref()];
    super::defaults::check_models(models.into_iter().flatten().map(|p| p.as_path()))?;
    let inputs = [
        Some(&args.model),
        Some(&args.data),
        args.fp32.as_ref(),
        args.vs.as_ref(),
    ];
    let inputs: Vec<&Path> = inputs.into_iter().flatten().map(|p| p.as_path()).collect();
    for out in [&args.json, &args.predictions].into_iter().flatten() {
        crate::io::check_output_file(out, &inputs)?;
    }
    if args.json.is_some() && args.json == args.predictions {
        return Err(Error::Invalid(
            "--json and --predictions name the same file".into(),
        ));
    }
    let model = Classifier::load(&args.model, args.arch.as_deref())?;
    // Every model loads before the first evaluation, so a bad file fails at once.
    let load = |p: &Option<PathBuf>| -> Result<Option<Classifier>> {
        p.as_ref()
            .map(|p| Classifier::load(p, args.arch.as_deref()))
            .transpose()
    };
    let (base, versus) = (load(&args.fp32)?, load(&args.vs)?);
    let ds = load_data(
        &args.data,
        args.split,
        model.input_shape(),
        args.resize,
        args.limit,
    )?
    .map_classes(model.class_names())?;
    let label = args.model.display().to_string();
    let hooks = super::bars::hooks(args.quiet);
    let (r, l) = evaluate(gpu, &model, &ds, args.batch, args.no_fold, &label, &hooks)?;
    print_report(&r);
    if let Some(p) = &args.predictions {
        crate::io::write_atomic(p, predictions_csv(&ds, &l, model.class_names()).as_bytes())?;
    }
    if let (true, Classifier::Int8(q)) = (args.cross_check, &model) {
        let (n, diff) = cross_check(q, &ds, &l, &hooks)?;
        println!("cross-check: GPU INT8 and CPU integer simulation disagree on {diff} of {n} predictions");
    }
    let k = model.class_names().len();
    let mut json = serde_json::json!({ "model": r });
    if let (Some(fp), Some(base)) = (&args.fp32, base) {
        let (rf, lf) = evaluate(
            gpu,
            &base,
            &ds,
            args.batch,
            args.no_fold,
            &fp.display().to_string(),
            &hooks,
        )?;
        let cmp = Comparison {
            fidelity: fidelity(&lf, &l, ds.labels(), k)?,
            fp32: rf,
            int8: r.clone(),
        };
        println!();
        print_fidelity(&cmp.fidelity);
        json["comparison"] = serde_json::to_value(&cmp).unwrap_or_default();
    }
    if let (Some(other), Some(b)) = (&args.vs, versus) {
        let (rb, lb) = evaluate(
            gpu,
            &b,
            &ds,
            args.batch,
            args.no_fold,
            &other.display().to_string(),
            &hooks,
        )?;
        let (ab, ba, p) = fidelity::paired(&l, &lb, ds.labels(), k)?;
        println!();
        println!(
            "vs {}: top-1 {:.2}% vs {:.2}%; {ab} images only --model gets right, {ba} only --vs; McNemar p = {p:.3}",
            other.display(),
            r.top1,
            rb.top1
        );
        let paired = Paired {
            a: r.clone(),
            b: rb,
            a_right_b_wrong: ab,
            a_wrong_b_right: ba,
            mcnemar_p: p,
        };
        json["vs"] = serde_json::to_value(&paired).unwrap_or_default();
    }
    let json = serde_json::to_vec_pretty(&json);
    if let Some(p) = &args.json {
        let json = json.map_err(|e| Error::Invalid(e.to_string()))?;
        crate::io::write_atomic(p, &json)?;
    }
    Ok(())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `--predictions`: one row per image of `ds`, with `logits` read `classes.len()` wide.
fn predictions_csv(ds: &Dataset, logits: &[f32], classes: &[String]) -> String {
    let k = classes.len();
    let mut out = String::from("index,label_index,label,predicted_index,predicted");
    for c in classes {
        out += &format!(",{}", csv_field(&format!("logit_{c}")));
    }
    out.push('\n');
    let pred = crate::infer::argmax_rows(logits, k);
    for (i, (row, &p)) in logits.chunks(k).zip(&pred).enumerate() {
        let l = ds.labels()[i] as usize;
        out += &format!(
            "{i},{l},{},{p},{}",
            csv_field(&classes[l]),
            csv_field(&classes[p])
        );
        for v in row {
            // `{:?}` prints the shortest text that reads back as the same f32.
            out += &format!(",{v:?}");
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predictions_csv_has_a_row_per_image_with_exact_logits() {
        let names: Vec<String> = ["cat", "dog, big"].iter().map(|s| s.to_string()).collect();
        let ds =
            Dataset::new(vec![0; 2 * data::IMG_BYTES], vec![1, 0], names.clone(), "t").unwrap();
        let logits = [0.1f32, -2.5, 3.0, 1e-7];
        let csv = predictions_csv(&ds, &logits, &names);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(
            lines,
            [
                "index,label_index,label,predicted_index,predicted,logit_cat,\"logit_dog, big\"",
                "0,1,\"dog, big\",0,cat,0.1,-2.5",
                "1,0,cat,0,cat,3.0,1e-7",
            ]
        );
        let back: f32 = "1e-7".parse().unwrap();
        assert_eq!(back, logits[3]);
    }
}
