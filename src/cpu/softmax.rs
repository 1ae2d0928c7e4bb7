//! Row-wise ops over the last dim: softmax, log_softmax, argmax.

use crate::array::Array;

fn rows(x: &Array) -> std::slice::Chunks<'_, f32> {
    x.data
        .chunks(*x.shape.last().expect("softmax: at least 1-d"))
}

pub fn softmax(x: &Array) -> Array {
    let mut data = Vec::with_capacity(x.numel());
    for r in rows(x) {
        let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let sum: f64 = r.iter().map(|&v| ((v - m) as f64).exp()).sum();
        data.extend(r.iter().map(|&v| (((v - m) as f64).exp() / sum) as f32));
    }
    Array::new(&x.shape, data)
}

pub fn log_softmax(x: &Array) -> Array {
    let mut data = Vec::with_capacity(x.numel());
    for r in rows(x) {
        let m = r.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let lse = r.iter().map(|&v| ((v - m) as f64).exp()).sum::<f64>().ln();
        data.extend(r.iter().map(|&v| ((v - m) as f64 - lse) as f32));
    }
    Array::new(&x.shape, data)
}

/// Index of the first maximum of each row.
pub fn argmax(x: &Array) -> Vec<i32> {
    rows(x)
        .map(|r| {
            let mut best = 0;
            for (i, &v) in r.iter().enumerate() {
                if v > r[best] {
                    best = i;
                }
            }
            best as i32
        })
        .collect()
}
