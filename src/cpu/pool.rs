//! 2-d pooling with PyTorch semantics (floor mode; avg counts padding; max pads with -inf).

use super::Array;

fn pool(x: &Array, k: usize, stride: usize, pad: usize, max: bool) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("pool: 4-d input")
    };
    let (oh, ow) = (
        (h + 2 * pad - k) / stride + 1,
        (w + 2 * pad - k) / stride + 1,
    );
    let mut out = Array::zeros(&[n, c, oh, ow]);
    for nc in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut acc = if max { f32::NEG_INFINITY } else { 0.0 };
                for ky in 0..k {
                    for kx in 0..k {
                        let (iy, ix) = (
                            (oy * stride + ky) as isize - pad as isize,
                            (ox * stride + kx) as isize - pad as isize,
                        );
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x.data[(nc * h + iy as usize) * w + ix as usize];
                        acc = if max { acc.max(v) } else { acc + v };
                    }
                }
                out.data[(nc * oh + oy) * ow + ox] = if max { acc } else { acc / (k * k) as f32 };
            }
        }
    }
    out
}

pub fn avg_pool2d(x: &Array, k: usize, stride: usize, pad: usize) -> Array {
    pool(x, k, stride, pad, false)
}

pub fn max_pool2d(x: &Array, k: usize, stride: usize, pad: usize) -> Array {
    pool(x, k, stride, pad, true)
}

/// The gradient of `max_pool2d` (scatter form): each window's `dy` goes to its first maximum
/// in scan order.
pub fn max_pool2d_backward(x: &Array, dy: &Array, k: usize, stride: usize, pad: usize) -> Array {
    let [_, _, h, w] = x.shape[..] else {
        panic!("max_pool2d_backward: 4-d input")
    };
    let (oh, ow) = (dy.shape[2], dy.shape[3]);
    let mut dx = Array::zeros(&x.shape);
    for (o, &g) in dy.data.iter().enumerate() {
        let (nc, oy, ox) = (o / (oh * ow), (o / ow) % oh, o % ow);
        let mut best: Option<(usize, f32)> = None;
        for ky in 0..k {
            for kx in 0..k {
                let (iy, ix) = (
                    (oy * stride + ky) as isize - pad as isize,
                    (ox * stride + kx) as isize - pad as isize,
                );
                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                    continue;
                }
                let j = (nc * h + iy as usize) * w + ix as usize;
                if best.is_none_or(|(_, b)| x.data[j] > b) {
                    best = Some((j, x.data[j]));
                }
            }
        }
        if let Some((j, _)) = best {
            dx.data[j] += g;
        }
    }
    dx
}

/// [N, C, H, W] -> [N, C].
pub fn global_avg_pool(x: &Array) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("global_avg_pool: 4-d input")
    };
    let data = x
        .data
        .chunks(h * w)
        .map(|p| p.iter().sum::<f32>() / (h * w) as f32)
        .collect();
    Array::new(&[n, c], data)
}
