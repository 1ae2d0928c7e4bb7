//! 2-d pooling with PyTorch semantics (floor or ceil mode; avg counts the padding or not; max
//! pads with -inf).

use crate::array::Array;
use crate::ops::pool::{Pool, Window};

/// Indices in plane `plane` of x (planes of h x w) of output (oy, ox)'s window taps, in scan
/// order, padding left out.
pub(crate) fn window_taps(
    win: &Window,
    (h, w): (usize, usize),
    plane: usize,
    oy: usize,
    ox: usize,
) -> impl Iterator<Item = usize> + '_ {
    let (k, stride) = (win.kernel, win.stride);
    let ([ph, pw], [dh, dw]) = (win.pads.begin, win.dilation);
    (0..k * k).filter_map(move |t| {
        let iy = (oy * stride + t / k * dh)
            .checked_sub(ph)
            .filter(|&v| v < h)?;
        let ix = (ox * stride + t % k * dw)
            .checked_sub(pw)
            .filter(|&v| v < w)?;
        Some((plane * h + iy) * w + ix)
    })
}

/// Any pooling window (see `ops::pool::Window`); the GPU's `pool2d`.
pub fn pool2d(x: &Array, how: Pool, win: &Window) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("pool: 4-d input")
    };
    let size = |a, s| win.out_size(a, s).expect("window fits");
    let (oh, ow) = (size(0, h), size(1, w));
    let mut out = Array::zeros(&[n, c, oh, ow]);
    for (o, y) in out.data.iter_mut().enumerate() {
        let (nc, oy, ox) = (o / (oh * ow), (o / ow) % oh, o % ow);
        let vals: Vec<f32> = window_taps(win, (h, w), nc, oy, ox)
            .map(|j| x.data[j])
            .collect();
        *y = match how {
            Pool::Max => vals.iter().copied().fold(f32::NEG_INFINITY, f32::max),
            // Divided by the window clipped to the padded input (the padding counts as zeros)
            // or by its real elements (ONNX `count_include_pad = 0`).
            Pool::Avg | Pool::AvgOfReal => {
                let d = win.divisor(how == Pool::Avg, [h, w], oy, ox).max(1);
                vals.iter().sum::<f32>() / d as f32
            }
        };
    }
    out
}

pub fn avg_pool2d(x: &Array, k: usize, stride: usize, pad: usize) -> Array {
    pool2d(x, Pool::Avg, &Window::new(k, stride, pad))
}

/// Average pooling that leaves the padding out of each window's count.
pub fn avg_pool2d_exclude_pad(x: &Array, k: usize, stride: usize, pad: usize) -> Array {
    pool2d(x, Pool::AvgOfReal, &Window::new(k, stride, pad))
}

pub fn max_pool2d(x: &Array, k: usize, stride: usize, pad: usize) -> Array {
    pool2d(x, Pool::Max, &Window::new(k, stride, pad))
}

/// The gradient of `pool2d(x, how, win)` (scatter form): a max window's `dy` goes to its
/// first maximum in scan order, an average window's to each real element over its divisor.
pub fn pool2d_backward(x: &Array, dy: &Array, how: Pool, win: &Window) -> Array {
    let [_, _, h, w] = x.shape[..] else {
        panic!("pool2d_backward: 4-d input")
    };
    let (oh, ow) = (dy.shape[2], dy.shape[3]);
    let mut dx = Array::zeros(&x.shape);
    for (o, &g) in dy.data.iter().enumerate() {
        let (nc, oy, ox) = (o / (oh * ow), (o / ow) % oh, o % ow);
        let taps = window_taps(win, (h, w), nc, oy, ox);
        match how {
            Pool::Max => {
                let first = taps.reduce(|best, j| if x.data[j] > x.data[best] { j } else { best });
                if let Some(j) = first {
                    dx.data[j] += g;
                }
            }
            Pool::Avg | Pool::AvgOfReal => {
                let d = win.divisor(how == Pool::Avg, [h, w], oy, ox).max(1) as f32;
                for j in taps {
                    dx.data[j] += g / d;
                }
            }
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
