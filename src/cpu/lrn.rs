//! Local response normalization across channels (ONNX LRN).

use crate::array::Array;

/// y = x / (bias + alpha / size * sum of x^2 over channels
/// [c - floor((size-1)/2), c + ceil((size-1)/2)])^beta, for x [N, C, H, W].
pub fn lrn(x: &Array, size: usize, alpha: f32, beta: f32, bias: f32) -> Array {
    let [_, c, h, w] = x.shape[..] else {
        panic!("lrn: 4-d input")
    };
    let hw = h * w;
    let data = (0..x.numel())
        .map(|i| {
            let (s, ch, n) = (i % hw, (i / hw) % c, i / (hw * c));
            let lo = ch.saturating_sub((size - 1) / 2);
            let hi = (ch + size / 2).min(c - 1);
            let sum: f32 = (lo..=hi)
                .map(|k| x.data[(n * c + k) * hw + s].powi(2))
                .sum();
            x.data[i] / (bias + alpha / size as f32 * sum).powf(beta)
        })
        .collect();
    Array::new(&x.shape, data)
}
