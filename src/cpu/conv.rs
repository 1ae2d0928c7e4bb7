//! Reference conv2d: NCHW input, PyTorch weight layout [Co, Ci/groups, KH, KW].

use crate::array::Array;
use crate::ops::{conv2d::Conv2dParams, Act};

/// out = act(conv(x, w) + bias + residual). Panics on bad shapes (the GPU op checks them).
pub fn conv2d(
    x: &Array,
    w: &Array,
    bias: Option<&Array>,
    p: &Conv2dParams,
    residual: Option<&Array>,
    act: Act,
) -> Array {
    let [n, ci, h, wd] = x.shape[..] else {
        panic!("x must be 4-d")
    };
    let [co, cig, kh, kw] = w.shape[..] else {
        panic!("w must be 4-d")
    };
    let g = p.groups;
    assert!(ci == cig * g && co % g == 0, "channels");
    let oh = p.out_size(0, h, kh).expect("kernel fits");
    let ow = p.out_size(1, wd, kw).expect("kernel fits");
    let cog = co / g;
    let mut out = Array::zeros(&[n, co, oh, ow]);
    for b in 0..n {
        for o in 0..co {
            let gi = o / cog;
            for y in 0..oh {
                for xo in 0..ow {
                    let mut acc = bias.map_or(0.0, |b| b.data[o]);
                    for c in 0..cig {
                        let cin = gi * cig + c;
                        for i in 0..kh {
                            let iy =
                                (y * p.stride[0] + i * p.dilation[0]) as isize - p.pad[0] as isize;
                            if iy < 0 || iy >= h as isize {
                                continue;
                            }
                            for j in 0..kw {
                                let ix = (xo * p.stride[1] + j * p.dilation[1]) as isize
                                    - p.pad[1] as isize;
                                if ix < 0 || ix >= wd as isize {
                                    continue;
                                }
                                let xv =
                                    x.data[((b * ci + cin) * h + iy as usize) * wd + ix as usize];
                                acc += xv * w.data[((o * cig + c) * kh + i) * kw + j];
                            }
                        }
                    }
                    let idx = ((b * co + o) * oh + y) * ow + xo;
                    if let Some(r) = residual {
                        acc += r.data[idx];
                    }
                    out.data[idx] = act.apply(acc);
                }
            }
        }
    }
    out
}

/// dW of `y = conv2d(x, W)` (padding `pad`, stride, groups) from dy, in f64: the reference for
/// the GPU weight gradients.
pub fn weight_grad(
    x: &Array,
    dy: &Array,
    [co, cig, kh, kw]: [usize; 4],
    (stride, pad, groups): (usize, usize, usize),
) -> Vec<f64> {
    let [n, c, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let (oh, ow) = (dy.shape[2], dy.shape[3]);
    let cog = co / groups;
    let mut dw = vec![0f64; co * cig * kh * kw];
    for b in 0..n {
        for o in 0..co {
            for ci in 0..cig {
                let xc = (o / cog) * cig + ci;
                for u in 0..kh {
                    for v in 0..kw {
                        let mut acc = 0f64;
                        for i in 0..oh {
                            for j in 0..ow {
                                let (y, xx) = (i * stride + u, j * stride + v);
                                if y < pad || xx < pad || y - pad >= h || xx - pad >= w {
                                    continue;
                                }
                                let xv = x.data[((b * c + xc) * h + y - pad) * w + xx - pad];
                                acc += xv as f64 * dy.data[((b * co + o) * oh + i) * ow + j] as f64;
                            }
                        }
                        dw[((o * cig + ci) * kh + u) * kw + v] += acc;
                    }
                }
            }
        }
    }
    dw
}
