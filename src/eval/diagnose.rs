//! Where an INT8 model loses accuracy, layer by layer.
//!
//! For every quantized layer: the SQNR of its output (the INT8 model's value against the
//! FP32 model's, so it includes the error carried in from earlier layers), the SQNR of its
//! weights, the activation range calibration chose against the range the FP32 inputs really
//! take (and the share of inputs clipped), and how much the logit RMSE falls when that layer
//! alone is reverted to FP32.

use super::{fidelity, Fidelity};
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::graph::{Op, ValueId};
use crate::infer::logits;
use crate::quant::QuantizedModel;
use serde::Serialize;
use std::path::Path;
use std::sync::Arc;

/// One quantized layer's diagnosis.
#[derive(Debug, Clone, Serialize)]
pub struct LayerDiagnosis {
    /// Its node in the graph.
    pub node: ValueId,
    /// Its name.
    pub name: String,
    /// SQNR of its output against FP32 (dB).
    pub output_sqnr_db: f64,
    /// SQNR of its weights (dB).
    pub weight_sqnr_db: f64,
    /// The input range the INT8 format represents.
    pub range: [f32; 2],
    /// The FP32 input's observed min and max on these images.
    pub observed: [f32; 2],
    /// Inputs outside the represented range (%).
    pub clipped_pct: f64,
    /// Logit RMSE against FP32 with only this layer reverted to FP32 (rank images).
    pub revert_rmse: f64,
}

/// The per-layer report of an INT8 model against its FP32 source.
#[derive(Debug, Clone, Serialize)]
pub struct Diagnosis {
    /// Images the statistics cover.
    pub images: usize,
    /// Images of the revert-one-layer ranking.
    pub rank_images: usize,
    /// Top-1 and logit fidelity on the images.
    pub fidelity: Fidelity,
    /// Logit RMSE of the INT8 model on the rank images.
    pub base_rmse: f64,
    /// Every quantized layer, in graph order.
    pub layers: Vec<LayerDiagnosis>,
    /// Layer names, most harmful first (largest RMSE reduction when reverted).
    pub worst: Vec<String>,
}

fn sqnr_db(signal: f64, noise: f64) -> f64 {
    if noise <= 0.0 {
        return f64::INFINITY;
    }
    10.0 * (signal / noise).log10()
}

fn rmse(a: &[f32], b: &[f32]) -> f64 {
    let s: f64 = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum();
    (s / a.len().max(1) as f64).sqrt()
}

fn weight_sqnr(q: &QuantizedModel, l: ValueId) -> Result<f64> {
    let name = match &q.graph.nodes[l].op {
        Op::Conv2d { weight, .. } | Op::Linear { weight, .. } => weight,
        _ => return Err(Error::Invalid(format!("node {l} is not a conv/linear"))),
    };
    let w = q.params.get(name)?;
    let qw = &q.layers[&l].weights;
    let per = w.numel() / qw.scale.len().max(1);
    let (mut sig, mut noise) = (0.0f64, 0.0f64);
    for (i, &v) in w.data.iter().enumerate() {
        let d = qw.q[i] as f32 * qw.scale[i / per];
        sig += (v as f64).powi(2);
        noise += ((v - d) as f64).powi(2);
    }
    Ok(sqnr_db(sig, noise))
}

/// Runs the diagnosis of `q` (checked against the FP32 `model` it was made from) on `ds`.
pub fn diagnose(
    gpu: &Arc<Gpu>,
    model: &crate::models::Model,
    q: &QuantizedModel,
    ds: &crate::data::Dataset,
    rank_images: usize,
    hooks: &crate::progress::Hooks,
) -> Result<Diagnosis> {
    let (graph, params) = crate::quant::default::prepare(model)?;
    if model.arch.name != q.arch
        || graph.nodes.len() != q.graph.nodes.len()
        || model.class_names != q.class_names
    {
        return Err(Error::Invalid(format!(
            "the INT8 model ({}) was not made from this FP32 model ({})",
            q.arch, model.arch.name
        )));
    }
    // An INT8 file keeps FP32 weights only for its FP32 layers: take them all from the source.
    let q = &QuantizedModel {
        arch: q.arch.clone(),
        norm: q.norm.clone(),
        input_channels: q.input_channels,
        input_size: q.input_size,
        class_names: q.class_names.clone(),
        graph: q.graph.clone(),
        params,
        layers: q.layers.clone(),
        values: q.values.clone(),
        meta: q.meta.clone(),
    };
    crate::infer::check_classes(ds, &q.class_names)?;
    let fp = Runner::new(gpu.clone(), q.graph.clone(), &q.params)?;
    let int8 = q.runner(gpu)?;
    let ids: Vec<ValueId> = q.layers.keys().copied().collect();
    let inputs: Vec<ValueId> = ids.iter().map(|&l| q.graph.nodes[l].inputs[0]).collect();
    let mut keep: Vec<ValueId> = ids.clone();
    keep.extend(&inputs);
    let n_layers = ids.len();
    let (mut sig, mut noise) = (vec![0.0f64; n_layers], vec![0.0f64; n_layers]);
    let (mut lo, mut hi) = (
        vec![f32::INFINITY; n_layers],
        vec![f32::NEG_INFINITY; n_layers],
    );
    let (mut clipped, mut seen) = (vec![0usize; n_layers], vec![0usize; n_layers]);
    let ranges: Vec<[f32; 2]> = ids
        .iter()
        .map(|l| {
            // At the format's own bits and zero point (a 4-bit input spans 15 steps, not 255).
            let f = q.layers[l].input;
            let (lo, hi) = f.range();
            [lo as f32 * f.scale, hi as f32 * f.scale]
        })
        .collect();
    let (mut lf, mut lq) = (Vec::new(), Vec::new());
    let mut bar = hooks.task("diagnose", ds.len() as u64);
    crate::infer::for_each_batch(ds, q.norm.clone(), 100, |r, x| {
        let x = gpu.upload_f32(&[r.len(), ds.channels(), ds.height(), ds.width()], &x)?;
        let mut s = gpu.stream();
        let a = fp.forward(&mut s, &x, &keep)?;
        let b = int8.forward(&mut s, &x, &ids)?;
        let mut reads = vec![&a.output, &b.output];
        for k in 0..n_layers {
            reads.push(&a.kept[&ids[k]]);
            reads.push(&b.kept[&ids[k]]);
            reads.push(&a.kept[&inputs[k]]);
        }
        let back = s.submit_and_read(&reads)?;
        let f32s = |i: usize| -> Vec<f32> { bytemuck::pod_collect_to_vec(&back[i]) };
        let (ya, yb) = (f32s(0), f32s(1));
        lf.extend_from_slice(&ya[..a.output.numel()]);
        lq.extend_from_slice(&yb[..b.output.numel()]);
        for k in 0..n_layers {
            let (va, vb, vi) = (f32s(2 + 3 * k), f32s(3 + 3 * k), f32s(4 + 3 * k));
            let n = a.kept[&ids[k]].numel();
            for (u, w) in va[..n].iter().zip(&vb[..n]) {
                sig[k] += (*u as f64).powi(2);
                noise[k] += ((u - w) as f64).powi(2);
            }
            let half = q.layers[&ids[k]].input.scale / 2.0;
            for &v in &vi[..a.kept[&inputs[k]].numel()] {
                lo[k] = lo[k].min(v);
                hi[k] = hi[k].max(v);
                clipped[k] += (v < ranges[k][0] - half || v > ranges[k][1] + half) as usize;
                seen[k] += 1;
            }
        }
        bar.inc(r.len() as u64)?;
        Ok(())
    })?;
    bar.complete();
    let classes = q.class_names.len();
    let fid = fidelity(&lf, &lq, ds.labels(), classes)?;
    // Revert one layer at a time on the rank images.
    let rank = rank_images.min(ds.len()).max(1);
    let sub = ds.subset(&(0..rank).collect::<Vec<_>>())?;
    let base_rmse = rmse(&lf[..rank * classes], &lq[..rank * classes]);
    let mut bar = hooks.task("revert", n_layers as u64);
    let mut layers = Vec::new();
    for k in 0..n_layers {
        let r = q.clone_without(ids[k]).runner(gpu)?;
        let l = logits(&r, q.norm.clone(), &sub, 100, &Default::default())?;
        layers.push(LayerDiagnosis {
            node: ids[k],
            name: q.graph.nodes[ids[k]].name.clone(),
            output_sqnr_db: sqnr_db(sig[k], noise[k]),
            weight_sqnr_db: weight_sqnr(q, ids[k])?,
            range: ranges[k],
            observed: [lo[k], hi[k]],
            clipped_pct: 100.0 * clipped[k] as f64 / seen[k].max(1) as f64,
            revert_rmse: rmse(&lf[..rank * classes], &l),
        });
        bar.inc(1)?;
    }
    bar.complete();
    let mut order: Vec<&LayerDiagnosis> = layers.iter().collect();
    order.sort_by(|a, b| a.revert_rmse.total_cmp(&b.revert_rmse));
    let worst = order.iter().map(|l| l.name.clone()).collect();
    Ok(Diagnosis {
        images: ds.len(),
        rank_images: rank,
        fidelity: fid,
        base_rmse,
        layers,
        worst,
    })
}

/// Writes the per-layer SQNR chart (see [`layer_sqnr`]) as PNG or SVG, by `path`'s extension.
pub fn plot(d: &Diagnosis, path: &Path) -> Result<()> {
    layer_sqnr(d).write(path)
}

/// The `diagnose` chart: per-layer SQNR of the INT8 output and weights (dB), one group per
/// layer; an infinite SQNR (an exact layer) is printed as "∞" with no bar.
pub fn layer_sqnr(d: &Diagnosis) -> super::chart::BarChart {
    let finite = |v: f64| v.is_finite().then_some(v);
    let mut chart = super::chart::BarChart::new(
        "Per-layer SQNR of the INT8 model against FP32",
        "layer",
        "SQNR (dB, higher is better)",
        d.layers.iter().map(|l| l.name.clone()).collect(),
    )
    .series(
        "output",
        d.layers.iter().map(|l| finite(l.output_sqnr_db)).collect(),
    )
    .series(
        "weights",
        d.layers.iter().map(|l| finite(l.weight_sqnr_db)).collect(),
    );
    chart.decimals = 1;
    chart.missing_label = "∞".into();
    chart
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An exact layer (infinite SQNR) has no bar but a printed "∞".
    #[test]
    fn sqnr_chart_shows_infinite_as_a_label() {
        let layer = |name: &str, out: f64, w: f64| crate::eval::diagnose::LayerDiagnosis {
            node: 0,
            name: name.into(),
            output_sqnr_db: out,
            weight_sqnr_db: w,
            range: [0.0, 1.0],
            observed: [0.0, 1.0],
            clipped_pct: 0.0,
            revert_rmse: 0.0,
        };
        let d = Diagnosis {
            images: 1,
            rank_images: 1,
            fidelity: crate::eval::fidelity::example(0.0),
            base_rmse: 0.0,
            layers: vec![
                layer("conv1", 31.25, f64::INFINITY),
                layer("fc", 18.0, 40.0),
            ],
            worst: Vec::new(),
        };
        let c = layer_sqnr(&d);
        assert_eq!(c.groups, ["conv1", "fc"]);
        assert_eq!(c.series[1].1, [None, Some(40.0)]);
        let texts = crate::eval::chart::svg_texts(&c.render_svg().unwrap());
        for want in [
            "∞", "31.2", "18.0", "40.0", "output", "weights", "conv1", "fc",
        ] {
            assert!(texts.iter().any(|t| t == want), "{want:?} not in {texts:?}");
        }
    }
}
