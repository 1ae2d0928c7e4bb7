//! Batch normalization over dim 1 of `[N, C, ...]` (f64 accumulation: this is the reference).

use super::layout::ncs;
use crate::array::Array;
use crate::ops::Act;

/// Inference form: y = act((x - mean) / sqrt(var + eps) * gamma + beta).
pub fn batch_norm(
    x: &Array,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    var: &[f32],
    eps: f32,
    act: Act,
) -> Array {
    let inv_std: Vec<f32> = var.iter().map(|v| 1.0 / (v + eps).sqrt()).collect();
    normalize(x, gamma, beta, mean, &inv_std, act)
}

fn normalize(
    x: &Array,
    gamma: &[f32],
    beta: &[f32],
    mean: &[f32],
    inv_std: &[f32],
    act: Act,
) -> Array {
    let (_, c, s) = ncs(&x.shape);
    let data = x
        .data
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let ch = (i / s) % c;
            act.apply((v - mean[ch]) * inv_std[ch] * gamma[ch] + beta[ch])
        })
        .collect();
    Array::new(&x.shape, data)
}

/// Output of the training form.
pub struct BnTrain {
    pub y: Array,
    pub mean: Vec<f32>,
    pub inv_std: Vec<f32>,
}

/// Training form: normalizes with the batch statistics and updates the running statistics like
/// PyTorch (running_var takes the unbiased batch variance).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_train(
    x: &Array,
    gamma: &[f32],
    beta: &[f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    eps: f32,
    momentum: f32,
    act: Act,
) -> BnTrain {
    let (n, c, s) = ncs(&x.shape);
    let count = (n * s) as f64;
    let channel = |ch: usize| (0..n).flat_map(move |b| (0..s).map(move |k| (b * c + ch) * s + k));
    let (mut mean, mut inv_std) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let m = channel(ch).map(|i| x.data[i] as f64).sum::<f64>() / count;
        let var = channel(ch)
            .map(|i| (x.data[i] as f64 - m).powi(2))
            .sum::<f64>()
            / count;
        mean[ch] = m as f32;
        inv_std[ch] = (1.0 / (var + eps as f64).sqrt()) as f32;
        let mo = momentum as f64;
        running_mean[ch] = ((1.0 - mo) * running_mean[ch] as f64 + mo * m) as f32;
        let unbiased = var * count / (count - 1.0);
        running_var[ch] = ((1.0 - mo) * running_var[ch] as f64 + mo * unbiased) as f32;
    }
    let y = normalize(x, gamma, beta, &mean, &inv_std, act);
    BnTrain { y, mean, inv_std }
}
