//! Accuracy evaluation: batched inference on the GPU, top-1 and per-class accuracy, images/s.

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::models::{self, Model, Normalization};
use crate::quant::QuantModel;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub mod chart;
pub mod diagnose;
pub mod eigen;
pub mod fidelity;
pub mod reproduce;
pub mod score;
pub use fidelity::{fidelity, Fidelity};

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum SplitArg {
    #[default]
    Test,
    Train,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The classifier: a .safetensors file from `synthcal import` or `synthcal quantize`, or a
    /// PyTorch checkpoint (.th legacy or .pt zip format) read directly.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture name (see `synthcal models`); detected from the tensors when omitted.
    #[arg(long)]
    pub arch: Option<String>,
    /// Images: a CIFAR-10 binary folder (`cifar-10-batches-bin`) or an image folder with one
    /// subfolder per class. Classes are matched to the model's class names by name (ignoring
    /// case); a class the model does not have is an error.
    #[arg(long)]
    pub data: PathBuf,
    /// Which CIFAR-10 split to use (ignored for image folders).
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Images per GPU submit (1 to 10,000).
    #[arg(long, default_value_t = 250, value_parser = crate::limits::int(1, crate::limits::MAX_BATCH))]
    pub batch: usize,
    /// Evaluate only the first N images (N >= 1).
    #[arg(long, value_parser = crate::limits::int(1, usize::MAX))]
    pub limit: Option<usize>,
    /// Resize image-folder images that are not 32x32 (default: reject them).
    #[arg(long)]
    pub resize: bool,
    /// Keep BatchNorm as separate ops instead of folding it into the preceding convs.
    #[arg(long)]
    pub no_fold: bool,
    /// The FP32 model an INT8 `--model` was made from: prints both accuracies and the drop.
    #[arg(long)]
    pub fp32: Option<PathBuf>,
    /// Another model (e.g. INT8 from another calibration source) to compare with `--model` on
    /// the same images: McNemar's paired test says whether their top-1 differ beyond chance.
    #[arg(long)]
    pub vs: Option<PathBuf>,
    /// For an INT8 model: also run the CPU integer simulation of the same model on every image
    /// and count the predictions where it and the GPU disagree.
    #[arg(long)]
    pub cross_check: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub arch: String,
    pub data: String,
    pub adapter: String,
    pub images: usize,
    pub correct: usize,
    pub top1: f64,
    pub per_class: Vec<ClassAccuracy>,
    pub images_per_sec: f64,
    pub seconds: f64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassAccuracy {
    pub class: String,
    pub images: usize,
    pub top1: f64,
}

/// Loads `--data`: CIFAR-10 binaries if the folder holds them, else an image folder. The
/// labels are the data's own; [`Dataset::map_classes`] puts them onto a model's classes.
pub fn load_data(path: &Path, split: SplitArg, resize: bool) -> Result<Dataset> {
    let is_cifar = path.is_file()
        || ["test_batch.bin", "data_batch_1.bin", "cifar-10-batches-bin"]
            .iter()
            .any(|f| path.join(f).exists());
    if is_cifar {
        let split = match split {
            SplitArg::Test => data::Split::Test,
            SplitArg::Train => data::Split::Train,
        };
        Ok(data::load_cifar10_bin(path, split)?)
    } else {
        let policy = if resize {
            data::ResizePolicy::Resize
        } else {
            data::ResizePolicy::Reject
        };
        Ok(data::load_image_folder(path, policy)?)
    }
}

/// Logits for every image of `ds` (row-major [N, classes]), `batch` images per submit.
pub fn logits(
    runner: &Runner,
    norm: Normalization,
    ds: &Dataset,
    batch: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(ds.len() * 10);
    for_each_batch(ds, norm, batch, |r, x| {
        out.extend(runner.logits(&x, r.len(), [32, 32])?);
        progress(r.len());
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f(range, images)` on `ds` in order, `batch` normalized images at a time.
pub fn for_each_batch(
    ds: &Dataset,
    norm: Normalization,
    batch: usize,
    mut f: impl FnMut(std::ops::Range<usize>, Vec<f32>) -> Result<()>,
) -> Result<()> {
    if batch == 0 {
        return Err(Error::Invalid("--batch must be at least 1".into()));
    }
    let mut start = 0;
    while start < ds.len() {
        let end = (start + batch).min(ds.len());
        f(
            start..end,
            ds.to_f32_normalized(start..end, norm.mean, norm.std),
        )?;
        start = end;
    }
    Ok(())
}

/// Refuses a dataset whose class list is not `classes` (a model's, in output order): its
/// labels would be read against the wrong logits. Map it first with [`Dataset::map_classes`].
pub fn check_classes(ds: &Dataset, classes: &[String]) -> Result<()> {
    if ds.class_names() == classes {
        return Ok(());
    }
    Err(Error::Invalid(format!(
        "{}: its classes ({}) are not the model's ({})",
        ds.source(),
        ds.class_names().join(", "),
        classes.join(", ")
    )))
}

/// The index of each row's largest logit; `classes` is the row width, the model's output
/// count (never a dataset's class count).
pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                    if v > best.1 {
                        (i, v)
                    } else {
                        best
                    }
                })
                .0
        })
        .collect()
}

/// Top-1 overall and per class.
pub fn accuracy(
    pred: &[usize],
    labels: &[u8],
    class_names: &[String],
) -> (usize, Vec<ClassAccuracy>) {
    let k = class_names.len();
    let (mut hit, mut tot) = (vec![0usize; k], vec![0usize; k]);
    for (&p, &l) in pred.iter().zip(labels) {
        let l = l as usize;
        if l < k {
            tot[l] += 1;
            hit[l] += (p == l) as usize;
        }
    }
    let per = (0..k)
        .map(|c| ClassAccuracy {
            class: class_names[c].clone(),
            images: tot[c],
            top1: 100.0 * hit[c] as f64 / tot[c].max(1) as f64,
        })
        .collect();
    (hit.iter().sum(), per)
}

/// An FP32 model or an INT8 one, as `synthcal eval` takes either.
pub enum Classifier {
    Fp32(Model),
    Int8(QuantModel),
}

impl Classifier {
    /// Loads an INT8 model file (by its metadata) or any FP32 weights file.
    pub fn load(path: &Path, arch: Option<&str>) -> Result<Classifier> {
        if crate::io::detect_format(path)? == crate::io::Format::Safetensors {
            let (_, meta) = crate::io::read_safetensors(path)?;
            if meta
                .get("format")
                .is_some_and(|f| f == crate::quant::model::FORMAT)
            {
                return Ok(Classifier::Int8(QuantModel::load(path)?));
            }
        }
        Ok(Classifier::Fp32(models::load_model(path, arch)?))
    }

    pub fn arch(&self) -> &str {
        match self {
            Classifier::Fp32(m) => &m.arch.name,
            Classifier::Int8(q) => &q.arch,
        }
    }

    /// One name per output, in output order.
    pub fn class_names(&self) -> &[String] {
        match self {
            Classifier::Fp32(m) => &m.class_names,
            Classifier::Int8(q) => &q.class_names,
        }
    }

    pub fn norm(&self) -> Normalization {
        match self {
            Classifier::Fp32(m) => m.arch.norm,
            Classifier::Int8(q) => q.norm,
        }
    }

    /// The GPU runner (FP32: BatchNorm folded unless `no_fold`).
    pub fn runner(&self, gpu: &Arc<Gpu>, no_fold: bool) -> Result<Runner> {
        match self {
            Classifier::Fp32(model) => fp32_runner(gpu, model, no_fold),
            Classifier::Int8(q) => q.runner(gpu),
        }
    }
}

/// The GPU runner of an FP32 model (BatchNorm folded unless `no_fold`).
pub fn fp32_runner(gpu: &Arc<Gpu>, model: &Model, no_fold: bool) -> Result<Runner> {
    let mut params = model.params.clone();
    let graph = if no_fold {
        model.arch.graph.clone()
    } else {
        crate::graph::passes::optimize_for_inference(&model.arch.graph, &mut params)?
    };
    Runner::new(gpu.clone(), graph, &params)
}

/// Top-1 of `c` on `ds` (labelled with `c`'s classes), with per-class accuracy, speed, and
/// the logits.
pub fn evaluate(
    gpu: &Arc<Gpu>,
    c: &Classifier,
    ds: &Dataset,
    args: &EvalArgs,
    label: &str,
) -> Result<(EvalReport, Vec<f32>)> {
    check_classes(ds, c.class_names())?;
    let runner = c.runner(gpu, args.no_fold)?;
    let bar = crate::progress::bar(ds.len() as u64, label, args.quiet);
    // Warm-up: compiles every pipeline once so that images/s measures steady-state speed.
    let warm = ds.subset(&[0])?;
    logits(&runner, c.norm(), &warm, 1, |_| {})?;
    let t = Instant::now();
    let l = logits(&runner, c.norm(), ds, args.batch, |n| bar.inc(n as u64))?;
    let secs = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let pred = argmax_rows(&l, c.class_names().len());
    let (correct, per_class) = accuracy(&pred, ds.labels(), c.class_names());
    let report = EvalReport {
        model: label.to_string(),
        arch: c.arch().to_string(),
        data: ds.source().to_string(),
        adapter: gpu.info.name.clone(),
        images: ds.len(),
        correct,
        top1: 100.0 * correct as f64 / ds.len().max(1) as f64,
        per_class,
        images_per_sec: ds.len() as f64 / secs,
        seconds: secs,
    };
    Ok((report, l))
}

/// Runs the CPU integer simulation of `q` on every image and counts disagreements with the
/// GPU predictions in `gpu_logits`.
pub fn cross_check(
    q: &QuantModel,
    ds: &Dataset,
    gpu_logits: &[f32],
    quiet: bool,
) -> Result<(usize, usize)> {
    check_classes(ds, &q.class_names)?;
    let k = q.class_names.len();
    let gpu_pred = argmax_rows(gpu_logits, k);
    let bar = crate::progress::bar(ds.len() as u64, "cpu check", quiet);
    let mut diff = 0;
    for_each_batch(ds, q.norm, 50, |r, x| {
        let x = crate::cpu::Array::new(&[r.len(), 3, 32, 32], x);
        let cpu = q.cpu_logits(&x)?;
        diff += argmax_rows(&cpu.data, k)
            .iter()
            .zip(&gpu_pred[r.clone()])
            .filter(|(a, b)| a != b)
            .count();
        bar.inc(r.len() as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    Ok((ds.len(), diff))
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    pub fp32: EvalReport,
    pub int8: EvalReport,
    /// Top-1 drop, agreement, flips, logit RMSE, KL and McNemar of INT8 against FP32.
    pub fidelity: Fidelity,
}

/// `--vs`: McNemar between `--model` (A) and another model (B) on the same images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paired {
    pub a: EvalReport,
    pub b: EvalReport,
    pub a_right_b_wrong: usize,
    pub a_wrong_b_right: usize,
    pub mcnemar_p: f64,
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
    for c in &r.per_class {
        println!("  {:<12} {:6.2}%  ({} images)", c.class, c.top1, c.images);
    }
}

/// `synthcal eval`.
pub fn run(gpu: &Arc<Gpu>, args: &EvalArgs) -> Result<()> {
    if let Some(p) = &args.json {
        let inputs = [
            Some(&args.model),
            Some(&args.data),
            args.fp32.as_ref(),
            args.vs.as_ref(),
        ];
        let inputs: Vec<&Path> = inputs.into_iter().flatten().map(|p| p.as_path()).collect();
        crate::io::check_output_file(p, &inputs)?;
    }
    let model = Classifier::load(&args.model, args.arch.as_deref())?;
    let mut ds =
        load_data(&args.data, args.split, args.resize)?.map_classes(model.class_names())?;
    if let Some(n) = args.limit {
        let idx: Vec<usize> = (0..n.min(ds.len())).collect();
        ds = ds.subset(&idx)?;
    }
    let label = args.model.display().to_string();
    let (r, l) = evaluate(gpu, &model, &ds, args, &label)?;
    print_report(&r);
    if let (true, Classifier::Int8(q)) = (args.cross_check, &model) {
        let (n, diff) = cross_check(q, &ds, &l, args.quiet)?;
        println!("cross-check: GPU INT8 and CPU integer simulation disagree on {diff} of {n} predictions");
    }
    let k = model.class_names().len();
    let mut json = serde_json::json!({ "model": r });
    if let Some(fp) = &args.fp32 {
        let base = Classifier::load(fp, args.arch.as_deref())?;
        let (rf, lf) = evaluate(gpu, &base, &ds, args, &fp.display().to_string())?;
        let cmp = Comparison {
            fidelity: fidelity(&lf, &l, ds.labels(), k),
            fp32: rf,
            int8: r.clone(),
        };
        println!();
        print_fidelity(&cmp.fidelity);
        json["comparison"] = serde_json::to_value(&cmp).unwrap_or_default();
    }
    if let Some(other) = &args.vs {
        let b = Classifier::load(other, args.arch.as_deref())?;
        let (rb, lb) = evaluate(gpu, &b, &ds, args, &other.display().to_string())?;
        let (ab, ba, p) = fidelity::paired(&l, &lb, ds.labels(), k);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn resnet20(classes: usize) -> Model {
        let a = models::arch_with_classes("resnet20", classes).unwrap();
        let p = models::random_params(&a, 1);
        Model::new(a, p).unwrap()
    }

    #[test]
    fn model_width_gives_the_default_class_names() {
        assert_eq!(resnet20(10).class_names[9], "truck");
        assert_eq!(resnet20(4).class_names, ["0", "1", "2", "3"]);
    }

    /// An 11th class (an extra classes.txt line) would make the logits be read 11 wide.
    #[test]
    fn consumers_refuse_a_dataset_not_on_the_model_classes() {
        let model = resnet20(10);
        let mut names = model.class_names.clone();
        names.push("unicorn".into());
        let ds = Dataset::new(vec![0; 2 * data::IMG_BYTES], vec![0, 10], names, "eleven").unwrap();
        let refused = |e: Error| {
            let msg = e.to_string();
            assert!(msg.contains("eleven") && msg.contains("unicorn"), "{msg}");
        };
        refused(check_classes(&ds, &model.class_names).unwrap_err());
        let gpu = Gpu::default_adapter().unwrap();
        let (runner, feat) = score::feature_runner(&gpu, &model).unwrap();
        let refg = score::Gaussian {
            mean: vec![0.0; 64],
            cov: vec![0.0; 64 * 64],
        };
        refused(score::quality(&runner, feat, &model, &ds, &refg).unwrap_err());
        let (graph, params) = crate::quant::default::prepare(&model).unwrap();
        let q = QuantModel {
            arch: model.arch.name.clone(),
            norm: model.arch.norm,
            class_names: model.class_names.clone(),
            graph,
            params,
            layers: Default::default(),
            meta: Default::default(),
        };
        refused(
            diagnose::diagnose(&gpu, &model, &q, &ds, 1, true)
                .err()
                .unwrap(),
        );
        refused(cross_check(&q, &ds, &[], true).unwrap_err());
        let opts = crate::quant::QuantOptions::default();
        refused(
            crate::quant::default_quantization(&gpu, &model, &ds, &opts)
                .err()
                .unwrap(),
        );
    }
}
