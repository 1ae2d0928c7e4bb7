//! Accuracy evaluation: batched inference on the GPU, top-1 and per-class accuracy, images/s.

use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::models::{self, Model, Normalization};
use crate::progress::Hooks;
use crate::quant::QuantModel;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub mod chart;
pub mod diagnose;
pub mod eigen;
pub mod fidelity;
pub mod score;
pub use fidelity::{fidelity, Fidelity};

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

/// Logits for every image of `ds` (row-major [N, classes]), `batch` images per submit.
pub fn logits(
    runner: &Runner,
    norm: Normalization,
    ds: &Dataset,
    batch: usize,
    hooks: &Hooks,
) -> Result<Vec<f32>> {
    let mut out = Vec::with_capacity(ds.len() * 10);
    let mut task = hooks.task("logits", ds.len() as u64);
    for_each_batch(ds, norm, batch, |r, x| {
        out.extend(runner.logits(&x, r.len(), [ds.height(), ds.width()])?);
        task.inc(r.len() as u64)
    })?;
    task.complete();
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
        return Err(Error::Invalid("a batch must hold at least 1 image".into()));
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
    batch: usize,
    no_fold: bool,
    label: &str,
    hooks: &Hooks,
) -> Result<(EvalReport, Vec<f32>)> {
    check_classes(ds, c.class_names())?;
    let runner = c.runner(gpu, no_fold)?;
    // Warm-up: compiles every pipeline once so that images/s measures steady-state speed.
    let warm = ds.subset(&[0])?;
    logits(&runner, c.norm(), &warm, 1, &Hooks::default())?;
    let t = Instant::now();
    let l = logits(&runner, c.norm(), ds, batch, hooks)?;
    let secs = t.elapsed().as_secs_f64();
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
    hooks: &Hooks,
) -> Result<(usize, usize)> {
    check_classes(ds, &q.class_names)?;
    let k = q.class_names.len();
    let gpu_pred = argmax_rows(gpu_logits, k);
    let mut bar = hooks.task("cpu check", ds.len() as u64);
    let mut diff = 0;
    for_each_batch(ds, q.norm, 50, |r, x| {
        let x = crate::cpu::Array::new(&[r.len(), 3, ds.height(), ds.width()], x);
        let cpu = q.cpu_logits(&x)?;
        diff += argmax_rows(&cpu.data, k)
            .iter()
            .zip(&gpu_pred[r.clone()])
            .filter(|(a, b)| a != b)
            .count();
        bar.inc(r.len() as u64)
    })?;
    bar.complete();
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
        let ds = Dataset::new(
            vec![0; 2 * crate::data::IMG_BYTES],
            vec![0, 10],
            names,
            "eleven",
        )
        .unwrap();
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
            diagnose::diagnose(&gpu, &model, &q, &ds, 1, &Hooks::default())
                .err()
                .unwrap(),
        );
        refused(cross_check(&q, &ds, &[], &Hooks::default()).unwrap_err());
        let opts = crate::quant::QuantOptions::default();
        refused(
            crate::quant::default_quantization(&gpu, &model, &ds, &opts)
                .err()
                .unwrap(),
        );
    }
}
