//! Accuracy evaluation: batched inference on the GPU, top-1 and per-class accuracy, images/s.

use crate::data::{self, Dataset};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::models::{self, Model};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, Default)]
pub enum SplitArg {
    #[default]
    Test,
    Train,
}

#[derive(clap::Args, Debug, Clone)]
pub struct EvalArgs {
    /// The classifier: a .safetensors file from `synthcal import`, or a PyTorch checkpoint
    /// (.th legacy or .pt zip format) read directly.
    #[arg(long)]
    pub model: PathBuf,
    /// Architecture name (see `synthcal models`); detected from the tensors when omitted.
    #[arg(long)]
    pub arch: Option<String>,
    /// Images: a CIFAR-10 binary folder (`cifar-10-batches-bin`) or an image folder with one
    /// subfolder per class.
    #[arg(long)]
    pub data: PathBuf,
    /// Which CIFAR-10 split to use (ignored for image folders).
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Images per GPU submit.
    #[arg(long, default_value_t = 250)]
    pub batch: usize,
    /// Evaluate only the first N images.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Resize image-folder images that are not 32x32 (default: reject them).
    #[arg(long)]
    pub resize: bool,
    /// Keep BatchNorm as separate ops instead of folding it into the preceding convs.
    #[arg(long)]
    pub no_fold: bool,
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

/// Loads `--data`: CIFAR-10 binaries if the folder holds them, else an image folder.
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
pub fn logits(runner: &Runner, model: &Model, ds: &Dataset, batch: usize, mut progress: impl FnMut(usize)) -> Result<Vec<f32>> {
    if batch == 0 {
        return Err(Error::Invalid("--batch must be at least 1".into()));
    }
    let norm = model.arch.norm;
    let mut out = Vec::with_capacity(ds.len() * 10);
    let mut start = 0;
    while start < ds.len() {
        let end = (start + batch).min(ds.len());
        let x = ds.to_f32_normalized(start..end, norm.mean, norm.std);
        out.extend(runner.logits(&x, end - start, [32, 32])?);
        progress(end - start);
        start = end;
    }
    Ok(out)
}

pub fn argmax_rows(logits: &[f32], classes: usize) -> Vec<usize> {
    logits
        .chunks(classes)
        .map(|r| {
            r.iter()
                .enumerate()
                .fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best })
                .0
        })
        .collect()
}

/// Top-1 overall and per class.
pub fn accuracy(pred: &[usize], labels: &[u8], class_names: &[String]) -> (usize, Vec<ClassAccuracy>) {
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

/// Builds the GPU runner for a model (BN folded unless `no_fold`).
pub fn runner(gpu: &Arc<Gpu>, model: &Model, no_fold: bool) -> Result<Runner> {
    let mut params = model.params.clone();
    let graph = if no_fold {
        model.arch.graph.clone()
    } else {
        crate::graph::passes::optimize_for_inference(&model.arch.graph, &mut params)?
    };
    Runner::new(gpu.clone(), graph, &params)
}

pub fn evaluate(gpu: &Arc<Gpu>, model: &Model, ds: &Dataset, args: &EvalArgs) -> Result<EvalReport> {
    let runner = runner(gpu, model, args.no_fold)?;
    let bar = crate::progress::bar(ds.len() as u64, "eval", args.quiet);
    // Warm-up: compiles every pipeline once so that images/s measures steady-state speed.
    let warm = ds.subset(&[0])?;
    logits(&runner, model, &warm, 1, |_| {})?;
    let t = Instant::now();
    let l = logits(&runner, model, ds, args.batch, |n| bar.inc(n as u64))?;
    let secs = t.elapsed().as_secs_f64();
    bar.finish_and_clear();
    let pred = argmax_rows(&l, model.class_names.len());
    let (correct, per_class) = accuracy(&pred, ds.labels(), ds.class_names());
    Ok(EvalReport {
        model: args.model.display().to_string(),
        arch: model.arch.name.clone(),
        data: ds.source().to_string(),
        adapter: gpu.info.name.clone(),
        images: ds.len(),
        correct,
        top1: 100.0 * correct as f64 / ds.len().max(1) as f64,
        per_class,
        images_per_sec: ds.len() as f64 / secs,
        seconds: secs,
    })
}

/// `synthcal eval`.
pub fn run(gpu: &Arc<Gpu>, args: &EvalArgs) -> Result<()> {
    let model = models::load_model(&args.model, args.arch.as_deref())?;
    let mut ds = load_data(&args.data, args.split, args.resize)?;
    if let Some(n) = args.limit {
        let idx: Vec<usize> = (0..n.min(ds.len())).collect();
        ds = ds.subset(&idx)?;
    }
    let r = evaluate(gpu, &model, &ds, args)?;
    println!("model:    {} ({})", r.model, r.arch);
    println!("data:     {} ({} images)", r.data, r.images);
    println!("adapter:  {}", r.adapter);
    println!("top-1:    {:.2}% ({}/{})", r.top1, r.correct, r.images);
    println!("speed:    {:.1} images/s ({:.1} s)", r.images_per_sec, r.seconds);
    println!("per class:");
    for c in &r.per_class {
        println!("  {:<12} {:6.2}%  ({} images)", c.class, c.top1, c.images);
    }
    if let Some(p) = &args.json {
        let json = serde_json::to_vec_pretty(&r).map_err(|e| Error::Invalid(e.to_string()))?;
        crate::io::write_atomic(p, &json)?;
    }
    Ok(())
}
