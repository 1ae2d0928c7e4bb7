//! Accuracy evaluation: batched inference on the GPU, top-1 and per-class accuracy, images/s.

use crate::data::Dataset;
use crate::error::Result;
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::infer::{argmax_rows, check_classes, for_each_batch, fp32_runner, logits};
use crate::models::{self, Model, Normalization};
use crate::progress::Hooks;
use crate::quant::QuantizedModel;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

pub mod chart;
pub mod diagnose;
pub mod eigen;
pub mod fidelity;
pub mod score;
pub use fidelity::{fidelity, Fidelity};

/// What [`evaluate`] measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    /// The model, as the caller named it.
    pub model: String,
    /// Its architecture.
    pub arch: String,
    /// The images' provenance.
    pub data: String,
    /// The GPU adapter.
    pub adapter: String,
    /// Images evaluated.
    pub images: usize,
    /// Images classified correctly.
    pub correct: usize,
    /// Top-1 accuracy, percent.
    pub top1: f64,
    /// Top-1 per class.
    pub per_class: Vec<ClassAccuracy>,
    /// Throughput (after a warm-up that compiles the pipelines).
    pub images_per_sec: f64,
    /// Wall time of the timed pass.
    pub seconds: f64,
}

/// Top-1 of one class.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassAccuracy {
    /// The class name.
    pub class: String,
    /// Its images.
    pub images: usize,
    /// Top-1 accuracy, percent.
    pub top1: f64,
}

/// Top-1 overall and per class.
pub fn accuracy(
    pred: &[usize],
    labels: &[crate::data::Label],
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
    /// An FP32 model.
    Fp32(Model),
    /// An INT8 model.
    Int8(QuantizedModel),
}

impl Classifier {
    /// Loads an INT8 model file (by its metadata, or a QDQ .onnx file) or any FP32 weights file.
    pub fn load(path: &Path, arch: Option<&str>) -> Result<Classifier> {
        if crate::onnx::is_onnx_path(path) && crate::onnx::is_qdq_file(path)? {
            return Ok(Classifier::Int8(crate::onnx::load_qdq(path)?));
        }
        if !crate::onnx::is_onnx_path(path)
            && crate::io::detect_format(path)? == crate::io::Format::Safetensors
        {
            let (_, meta) = crate::io::read_safetensors(path)?;
            if meta
                .get("format")
                .is_some_and(|f| f == crate::quant::model::FORMAT)
            {
                return Ok(Classifier::Int8(QuantizedModel::load(path)?));
            }
        }
        Ok(Classifier::Fp32(models::load_model(path, arch)?))
    }

    /// The architecture name.
    pub fn arch(&self) -> &str {
        match self {
            Classifier::Fp32(m) => &m.arch.name,
            Classifier::Int8(q) => &q.arch,
        }
    }

    /// The input images' size, `[height, width]`.
    pub fn input_size(&self) -> [usize; 2] {
        match self {
            Classifier::Fp32(m) => m.arch.input_size,
            Classifier::Int8(q) => q.input_size,
        }
    }

    /// The input image shape, `[channels, height, width]`.
    pub fn input_shape(&self) -> [usize; 3] {
        match self {
            Classifier::Fp32(m) => m.input_shape(),
            Classifier::Int8(q) => q.input_shape(),
        }
    }

    /// One name per output, in output order.
    pub fn class_names(&self) -> &[String] {
        match self {
            Classifier::Fp32(m) => &m.class_names,
            Classifier::Int8(q) => &q.class_names,
        }
    }

    /// The input normalization.
    pub fn norm(&self) -> Normalization {
        match self {
            Classifier::Fp32(m) => m.arch.norm.clone(),
            Classifier::Int8(q) => q.norm.clone(),
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
    crate::infer::check_input(ds.images(), c.input_shape(), c.arch())?;
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
    q: &QuantizedModel,
    ds: &Dataset,
    gpu_logits: &[f32],
    hooks: &Hooks,
) -> Result<(usize, usize)> {
    check_classes(ds, &q.class_names)?;
    let k = q.class_names.len();
    crate::infer::check_logits("cross-check", gpu_logits.len(), ds.len(), k)?;
    let gpu_pred = argmax_rows(gpu_logits, k);
    let mut bar = hooks.task("cpu check", ds.len() as u64);
    let mut diff = 0;
    for_each_batch(ds, q.norm.clone(), 50, |r, x| {
        let x = crate::array::Array::new(&[r.len(), ds.channels(), ds.height(), ds.width()], x);
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

/// An INT8 model against its FP32 source on the same images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Comparison {
    /// The FP32 model's result.
    pub fp32: EvalReport,
    /// The INT8 model's result.
    pub int8: EvalReport,
    /// Top-1 drop, agreement, flips, logit RMSE, KL and McNemar of INT8 against FP32.
    pub fidelity: Fidelity,
}

/// `--vs`: McNemar between `--model` (A) and another model (B) on the same images.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Paired {
    /// Model A's result.
    pub a: EvalReport,
    /// Model B's result.
    pub b: EvalReport,
    /// Images only A classifies correctly.
    pub a_right_b_wrong: usize,
    /// Images only B classifies correctly.
    pub a_wrong_b_right: usize,
    /// McNemar's exact p-value for the difference.
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
        let refused = |e: crate::Error| {
            let msg = e.to_string();
            assert!(msg.contains("eleven") && msg.contains("unicorn"), "{msg}");
        };
        refused(check_classes(&ds, &model.class_names).unwrap_err());
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let (runner, feat) = score::feature_runner(&gpu, &model).unwrap();
        let refg = score::Gaussian {
            mean: vec![0.0; 64],
            cov: vec![0.0; 64 * 64],
        };
        refused(score::quality(&runner, feat, &model, &ds, &refg).unwrap_err());
        let (graph, params) = crate::quant::default::prepare(&model).unwrap();
        let q = QuantizedModel {
            arch: model.arch.name.clone(),
            norm: model.arch.norm.clone(),
            input_channels: 3,
            input_size: model.arch.input_size,
            class_names: model.class_names.clone(),
            graph,
            params,
            layers: Default::default(),
            values: Default::default(),
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
