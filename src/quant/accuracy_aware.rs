//! POT's AccuracyAware quantization: start from DefaultQuantization and, while the top-1 drop
//! on the (labeled) calibration set exceeds `max_drop`, revert to FP32 the layer whose reversion
//! helps most on a ranking subset of the images that quantization changed most.

use super::default::{default_quantization, QuantOptions};
use super::model::QuantizedModel;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::ValueId;
use crate::infer::{argmax_rows, logits};
use crate::models::Model;
use std::collections::HashMap;
use std::sync::Arc;

/// Images in the ranking subset (POT's default).
pub const RANKING_SUBSET: usize = 300;

/// What the accuracy-aware search did (top-1 figures in percent, on the calibration set).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AccuracyAwareReport {
    /// The FP32 model's top-1.
    pub fp32_top1: f64,
    /// DefaultQuantization's top-1.
    pub default_top1: f64,
    /// The returned model's top-1.
    pub final_top1: f64,
    /// Layers reverted to FP32, in order.
    pub reverted: Vec<String>,
    /// Layers whose reversion made the calibration accuracy worse (kept INT8).
    pub rejected: Vec<String>,
}

fn run_logits(gpu: &Arc<Gpu>, q: &QuantizedModel, ds: &Dataset, batch: usize) -> Result<Vec<f32>> {
    logits(
        &q.runner(gpu)?,
        q.norm.clone(),
        ds,
        batch,
        &Default::default(),
    )
}

fn top1(l: &[f32], ds: &Dataset, k: usize) -> f64 {
    let hit = argmax_rows(l, k)
        .iter()
        .zip(ds.labels())
        .filter(|(p, &y)| **p == y as usize)
        .count();
    hit as f64 / ds.len().max(1) as f64
}

/// Squared distance of each image's logits to the FP32 logits.
fn distances(a: &[f32], b: &[f32], k: usize) -> Vec<f64> {
    a.chunks(k)
        .zip(b.chunks(k))
        .map(|(x, y)| x.iter().zip(y).map(|(u, v)| ((u - v) as f64).powi(2)).sum())
        .collect()
}

/// The INT8 layers a pass may revert: those not excluded, and none once a single one is left
/// (a model without an INT8 layer is no INT8 model).
fn revertible(int8: &[ValueId], excluded: &[ValueId]) -> Vec<ValueId> {
    if int8.len() <= 1 {
        return Vec::new();
    }
    int8.iter()
        .copied()
        .filter(|l| !excluded.contains(l))
        .collect()
}

/// Reverts layers until the calibration top-1 drop is at most `max_drop` (a fraction in
/// [0, 1)), or no reversion helps; at least one layer always stays INT8.
pub fn accuracy_aware(
    gpu: &Arc<Gpu>,
    model: &Model,
    calib: &Dataset,
    opts: &QuantOptions,
    max_drop: f64,
) -> Result<(QuantizedModel, AccuracyAwareReport)> {
    if !(0.0..1.0).contains(&max_drop) {
        return Err(Error::Invalid(format!(
            "maximum drop {max_drop}: must be a finite fraction in [0, 1) (0.01 = 1 pp)"
        )));
    }
    let mut q = default_quantization(gpu, model, calib, opts)?;
    let k = model.num_classes();
    let all_fp32 = QuantizedModel {
        class_names: q.class_names.clone(),
        layers: Default::default(),
        values: Default::default(),
        meta: Default::default(),
        arch: q.arch.clone(),
        norm: q.norm.clone(),
        input_channels: q.input_channels,
        input_size: q.input_size,
        graph: q.graph.clone(),
        params: q.params.clone(),
    };
    let fp_logits = run_logits(gpu, &all_fp32, calib, opts.batch)?;
    let fp_top1 = top1(&fp_logits, calib, k);
    let mut q_logits = run_logits(gpu, &q, calib, opts.batch)?;
    let mut acc = top1(&q_logits, calib, k);
    let mut report = AccuracyAwareReport {
        fp32_top1: 100.0 * fp_top1,
        default_top1: 100.0 * acc,
        final_top1: 100.0 * acc,
        reverted: vec![],
        rejected: vec![],
    };
    let mut excluded: Vec<ValueId> = Vec::new();
    let mut bar = opts.hooks.task("acc-aware", q.layers.len() as u64);
    while fp_top1 - acc > max_drop {
        // Every pass reverts or excludes one layer, so the loop ends.
        let candidates = revertible(&q.layers.keys().copied().collect::<Vec<_>>(), &excluded);
        if candidates.is_empty() {
            break;
        }
        // The ranking subset: the images whose logits quantization moved most.
        let d = distances(&q_logits, &fp_logits, k);
        let mut order: Vec<usize> = (0..calib.len()).collect();
        order.sort_by(|&a, &b| d[b].total_cmp(&d[a]));
        order.truncate(RANKING_SUBSET.min(calib.len()));
        let rank_set = calib.subset(&order)?;
        let fp_rank: Vec<f32> = order
            .iter()
            .flat_map(|&i| fp_logits[i * k..(i + 1) * k].to_vec())
            .collect();
        // Score each candidate: subset accuracy when reverted, ties by closeness to FP32.
        let mut scores: HashMap<ValueId, (f64, f64)> = HashMap::new();
        for &l in &candidates {
            let mut trial = q.clone_without(l);
            trial.meta.clear();
            let lg = run_logits(gpu, &trial, &rank_set, opts.batch)?;
            let dist: f64 = distances(&lg, &fp_rank, k).iter().sum();
            scores.insert(l, (top1(&lg, &rank_set, k), -dist));
        }
        let best = *candidates
            .iter()
            .max_by(|a, b| {
                scores[a]
                    .partial_cmp(&scores[b])
                    .unwrap_or(std::cmp::Ordering::Equal)
            })
            .expect("candidates are not empty");
        let trial = q.clone_without(best);
        let lg = run_logits(gpu, &trial, calib, opts.batch)?;
        let a = top1(&lg, calib, k);
        let name = q.graph.nodes[best].name.clone();
        bar.inc(1)?;
        if a < acc {
            // Reverting made it worse: keep the previous configuration, drop the candidate.
            excluded.push(best);
            report.rejected.push(name);
            continue;
        }
        q = trial;
        q_logits = lg;
        acc = a;
        report.reverted.push(name);
    }
    bar.complete();
    report.final_top1 = 100.0 * acc;
    Ok((q, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_int8_layer_is_never_a_candidate() {
        assert_eq!(revertible(&[3, 5, 8], &[5]), vec![3, 8]);
        assert_eq!(revertible(&[3, 5], &[]), vec![3, 5]);
        assert!(revertible(&[8], &[]).is_empty());
        assert!(revertible(&[], &[]).is_empty());
    }

    #[test]
    fn max_drop_outside_zero_to_one_is_refused_before_any_work() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let a = crate::models::arch("resnet20").unwrap();
        let model = Model::new(a.clone(), crate::models::random_params(&a, 1)).unwrap();
        let calib = crate::calib::noise_images(10, 0).unwrap();
        for bad in [-1.0, f64::NEG_INFINITY, f64::NAN, 1.0, 200.0] {
            let e = accuracy_aware(&gpu, &model, &calib, &QuantOptions::default(), bad)
                .err()
                .expect("refused")
                .to_string();
            assert!(
                e.contains("maximum drop") && e.contains("[0, 1)"),
                "{bad}: {e}"
            );
        }
    }
}
