//! Quality of a calibration set, judged by a CIFAR-10 classifier (no InceptionV3 offline, so
//! the metrics are named for what they use):
//! - **classifier score**: exp(E_x KL(p(y|x) || p(y))), the Inception Score's formula with the
//!   classifier's softmax, over the whole set (one split). 1 = uninformative, 10 = confident
//!   and balanced over the ten classes.
//! - **classifier FID**: the Frechet distance between Gaussians fitted to the classifier's
//!   penultimate features (the last linear layer's input) of the set and of the real test
//!   set. 0 = the same feature statistics.
//! - **agreement**: the share of images the classifier assigns to their intended class.

use super::eigen::sym_eigen;
use crate::data::Dataset;
use crate::error::{Error, Result};
use crate::gpu::Gpu;
use crate::graph::exec::Runner;
use crate::graph::Op;
use crate::infer::argmax_rows;
use crate::models::Model;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How a classifier judges a set of images (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quality {
    /// exp(E KL(p(y|x) || p(y))): 1 = uninformative, the class count = confident and balanced.
    pub classifier_score: f64,
    /// Frechet distance of penultimate features against the real test set.
    pub classifier_fid: f64,
    /// Percent.
    pub agreement: f64,
}

/// Mean and covariance of feature vectors (f64).
pub struct Gaussian {
    /// Mean.
    pub mean: Vec<f64>,
    /// Covariance, row-major `[dim, dim]`.
    pub cov: Vec<f64>,
}

impl Gaussian {
    /// Fits rows of `dim` features; an error unless `x` holds at least one whole row and no
    /// partial one.
    pub fn fit(x: &[f32], dim: usize) -> Result<Gaussian> {
        if dim == 0 || x.is_empty() || !x.len().is_multiple_of(dim) {
            return Err(Error::Invalid(format!(
                "{} features are not rows of {dim}",
                x.len()
            )));
        }
        let n = x.len() / dim;
        let mut mean = vec![0f64; dim];
        for row in x.chunks(dim) {
            for (m, &v) in mean.iter_mut().zip(row) {
                *m += v as f64;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n as f64);
        let mut cov = vec![0f64; dim * dim];
        let mut d = vec![0f64; dim];
        for row in x.chunks(dim) {
            for (k, &v) in row.iter().enumerate() {
                d[k] = v as f64 - mean[k];
            }
            for i in 0..dim {
                let di = d[i];
                for j in i..dim {
                    cov[i * dim + j] += di * d[j];
                }
            }
        }
        let denom = (n.max(2) - 1) as f64;
        for i in 0..dim {
            for j in i..dim {
                let v = cov[i * dim + j] / denom;
                cov[i * dim + j] = v;
                cov[j * dim + i] = v;
            }
        }
        Ok(Gaussian { mean, cov })
    }
}

/// Symmetric PSD square root (negative eigenvalues from rounding are clipped to 0).
fn sqrt_psd(a: &[f64], n: usize) -> Vec<f64> {
    let (w, v) = sym_eigen(a, n);
    let mut out = vec![0f64; n * n];
    for (k, vk) in v.chunks(n.max(1)).enumerate() {
        let s = w[k].max(0.0).sqrt();
        for (i, row) in out.chunks_mut(n.max(1)).enumerate() {
            let vik = vk[i] * s;
            for (o, vj) in row.iter_mut().zip(vk) {
                *o += vik * vj;
            }
        }
    }
    out
}

fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0f64; n * n];
    for i in 0..n {
        for k in 0..n {
            let aik = a[i * n + k];
            for j in 0..n {
                c[i * n + j] += aik * b[k * n + j];
            }
        }
    }
    c
}

/// |m1 - m2|^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), with tr (S1 S2)^(1/2) computed as
/// tr (A S2 A)^(1/2) for A = S1^(1/2) (a symmetric PSD form of the same eigenvalues).
pub fn frechet(a: &Gaussian, b: &Gaussian) -> f64 {
    let n = a.mean.len();
    let dm: f64 = a
        .mean
        .iter()
        .zip(&b.mean)
        .map(|(x, y)| (x - y).powi(2))
        .sum();
    let sa = sqrt_psd(&a.cov, n);
    let m = matmul(&matmul(&sa, &b.cov, n), &sa, n);
    let (w, _) = sym_eigen(&m, n);
    let tr_sqrt: f64 = w.iter().map(|x| x.max(0.0).sqrt()).sum();
    let tr = |c: &[f64]| (0..n).map(|i| c[i * n + i]).sum::<f64>();
    (dm + tr(&a.cov) + tr(&b.cov) - 2.0 * tr_sqrt).max(0.0)
}

/// exp(E_x KL(p(y|x) || p(y))) over softmax rows of `logits`; 1 (no information) when there
/// are no rows, or rows of no width.
pub fn classifier_score(logits: &[f32], classes: usize) -> f64 {
    if classes == 0 {
        return 1.0;
    }
    let probs: Vec<Vec<f64>> = logits
        .chunks(classes)
        .map(|r| {
            let mx = r.iter().cloned().fold(f32::MIN, f32::max) as f64;
            let e: Vec<f64> = r.iter().map(|&v| (v as f64 - mx).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect()
        })
        .collect();
    let n = probs.len().max(1) as f64;
    let mut marginal = vec![0f64; classes];
    for p in &probs {
        for (m, v) in marginal.iter_mut().zip(p) {
            *m += v / n;
        }
    }
    let kl: f64 = probs
        .iter()
        .map(|p| {
            p.iter()
                .zip(&marginal)
                .filter(|(&v, _)| v > 0.0)
                .map(|(&v, &m)| v * (v / m).ln())
                .sum::<f64>()
        })
        .sum::<f64>()
        / n;
    kl.exp()
}

/// The FP32 runner of `model` and the id of its penultimate value (the input of the last
/// linear layer).
pub fn feature_runner(gpu: &Arc<Gpu>, model: &Model) -> Result<(Runner, usize)> {
    let runner = crate::infer::fp32_runner(gpu, model, false)?;
    let feat = runner
        .graph
        .nodes
        .iter()
        .rev()
        .find(|n| matches!(n.op, Op::Linear { .. }))
        .and_then(|n| n.inputs.first().copied())
        .ok_or_else(|| Error::Invalid(format!("{}: no final linear layer", model.arch.name)))?;
    Ok((runner, feat))
}

/// Logits `[N, classes]` and penultimate features `[N, dim]` of every image; returns dim.
pub fn logits_and_features(
    runner: &Runner,
    feat: usize,
    model: &Model,
    ds: &Dataset,
) -> Result<(Vec<f32>, Vec<f32>, usize)> {
    let (mut logits, mut feats) = (Vec::new(), Vec::new());
    let mut dim = 0;
    crate::infer::for_each_batch(ds, model.arch.norm.clone(), 250, |r, x| {
        let n = r.len();
        let x = runner
            .gpu
            .upload_f32(&[n, ds.channels(), ds.height(), ds.width()], &x)?;
        let mut s = runner.gpu.stream();
        let out = runner.forward(&mut s, &x, &[feat])?;
        let f = out
            .kept
            .get(&feat)
            .ok_or_else(|| Error::Invalid("penultimate value not kept".into()))?
            .clone();
        s.submit();
        logits.extend(runner.gpu.read_f32(&out.output)?);
        let fv = runner.gpu.read_f32(&f)?;
        dim = fv.len() / n;
        feats.extend(fv);
        Ok(())
    })?;
    Ok((logits, feats, dim))
}

/// The three metrics of `set` against reference features of the real test set.
pub fn quality(
    runner: &Runner,
    feat: usize,
    model: &Model,
    set: &Dataset,
    reference: &Gaussian,
) -> Result<Quality> {
    crate::infer::check_classes(set, &model.class_names)?;
    let classes = model.num_classes();
    let (logits, feats, dim) = logits_and_features(runner, feat, model, set)?;
    if dim != reference.mean.len() {
        return Err(Error::Invalid(format!(
            "features of {dim} dims against a reference of {}",
            reference.mean.len()
        )));
    }
    let pred = argmax_rows(&logits, classes);
    let hits = pred
        .iter()
        .zip(set.labels())
        .filter(|(&p, &l)| p == l as usize)
        .count();
    Ok(Quality {
        classifier_score: classifier_score(&logits, classes),
        classifier_fid: frechet(&Gaussian::fit(&feats, dim)?, reference),
        agreement: 100.0 * hits as f64 / set.len().max(1) as f64,
    })
}

/// The reference Gaussian: penultimate features of `test`.
pub fn reference(runner: &Runner, feat: usize, model: &Model, test: &Dataset) -> Result<Gaussian> {
    let (_, f, dim) = logits_and_features(runner, feat, model, test)?;
    Gaussian::fit(&f, dim)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frechet_of_known_gaussians() {
        // Diagonal covariances: |dm|^2 + sum (sqrt(a) - sqrt(b))^2.
        let a = Gaussian {
            mean: vec![0.0, 1.0],
            cov: vec![4.0, 0.0, 0.0, 1.0],
        };
        let b = Gaussian {
            mean: vec![1.0, 1.0],
            cov: vec![1.0, 0.0, 0.0, 9.0],
        };
        let want = 1.0 + (2.0f64 - 1.0).powi(2) + (1.0f64 - 3.0).powi(2);
        assert!((frechet(&a, &b) - want).abs() < 1e-9);
        assert!(frechet(&a, &a).abs() < 1e-9);
    }

    #[test]
    fn a_set_judged_against_itself_has_zero_fid() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let a = crate::models::arch("resnet20").unwrap();
        let params = crate::models::random_params(&a, 5);
        let model = Model::new(crate::models::arch("resnet20").unwrap(), params).unwrap();
        let set = crate::calib::noise_images(30, 1).unwrap();
        let (runner, feat) = feature_runner(&gpu, &model).unwrap();
        let refg = reference(&runner, feat, &model, &set).unwrap();
        assert_eq!(refg.mean.len(), 64);
        let q = quality(&runner, feat, &model, &set, &refg).unwrap();
        assert!(q.classifier_fid.abs() < 1e-3, "{q:?}");
        let other = crate::calib::noise_images(30, 2).unwrap();
        let q2 = quality(&runner, feat, &model, &other, &refg).unwrap();
        assert!(q2.classifier_fid > q.classifier_fid, "{q2:?}");
        assert!((0.0..=100.0).contains(&q.agreement));
    }

    #[test]
    fn classifier_score_bounds() {
        // Confident and balanced: the number of classes; uniform: 1.
        let mut confident = Vec::new();
        for i in 0..20 {
            let mut r = vec![0f32; 4];
            r[i % 4] = 50.0;
            confident.extend(r);
        }
        assert!((classifier_score(&confident, 4) - 4.0).abs() < 1e-6);
        assert!((classifier_score(&[0.0; 40], 4) - 1.0).abs() < 1e-12);
        assert_eq!(classifier_score(&[1.0; 4], 0), 1.0);
        assert_eq!(classifier_score(&[], 4), 1.0);
    }

    #[test]
    fn gaussian_fit_takes_whole_rows_only() {
        let g = Gaussian::fit(&[1.0, 2.0, 3.0, 6.0], 2).unwrap();
        assert_eq!(g.mean, vec![2.0, 4.0]);
        assert_eq!(g.cov, vec![2.0, 4.0, 4.0, 8.0]);
        for (x, dim) in [(&[1.0f32, 2.0, 3.0][..], 2), (&[1.0][..], 0), (&[][..], 2)] {
            assert!(Gaussian::fit(x, dim).is_err(), "{x:?} / {dim}");
        }
    }
}
