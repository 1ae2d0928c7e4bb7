//! Data movement: channel concat/split/slice/shuffle, nearest upsampling, the ResNet
//! option-A shortcut.

use crate::array::Array;

/// `[N, C, ...rest]` as `(N, C, prod(rest))`.
pub fn ncs(shape: &[usize]) -> (usize, usize, usize) {
    (shape[0], shape[1], shape[2..].iter().product())
}

fn with_channels(shape: &[usize], c: usize) -> Vec<usize> {
    let mut s = shape.to_vec();
    s[1] = c;
    s
}

pub fn concat(xs: &[&Array]) -> Array {
    let (n, _, s) = ncs(&xs[0].shape);
    let c: usize = xs.iter().map(|x| x.shape[1]).sum();
    let mut data = Vec::with_capacity(n * c * s);
    for b in 0..n {
        for x in xs {
            let cs = x.shape[1] * s;
            data.extend_from_slice(&x.data[b * cs..(b + 1) * cs]);
        }
    }
    Array::new(&with_channels(&xs[0].shape, c), data)
}

/// x[:, range] along dim 1.
pub fn slice_channels(x: &Array, range: std::ops::Range<usize>) -> Array {
    let (n, c, s) = ncs(&x.shape);
    let mut data = Vec::with_capacity(n * range.len() * s);
    for b in 0..n {
        data.extend_from_slice(&x.data[(b * c + range.start) * s..(b * c + range.end) * s]);
    }
    Array::new(&with_channels(&x.shape, range.len()), data)
}

/// `[N, g*c, ...]` viewed as `[N, g, c, ...]`, transposed to `[N, c, g, ...]`.
pub fn channel_shuffle(x: &Array, groups: usize) -> Array {
    let (n, ct, s) = ncs(&x.shape);
    let c = ct / groups;
    let mut data = Vec::with_capacity(x.numel());
    for b in 0..n {
        for k in 0..c {
            for g in 0..groups {
                let src = (b * ct + g * c + k) * s;
                data.extend_from_slice(&x.data[src..src + s]);
            }
        }
    }
    Array::new(&x.shape, data)
}

pub fn upsample_nearest(x: &Array, f: usize) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("upsample: 4-d input")
    };
    let mut out = Array::zeros(&[n, c, h * f, w * f]);
    for (i, o) in out.data.iter_mut().enumerate() {
        let (ox, oy, nc) = (i % (w * f), (i / (w * f)) % (h * f), i / (w * f * h * f));
        *o = x.data[(nc * h + oy / f) * w + ox / f];
    }
    out
}

/// F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad)).
pub fn shortcut_a(x: &Array, pad: usize) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("shortcut_a: 4-d input")
    };
    let (oh, ow) = (h.div_ceil(2), w.div_ceil(2));
    let mut out = Array::zeros(&[n, c + 2 * pad, oh, ow]);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..oh {
                for xx in 0..ow {
                    out.data[((b * (c + 2 * pad) + ch + pad) * oh + y) * ow + xx] =
                        x.data[((b * c + ch) * h + 2 * y) * w + 2 * xx];
                }
            }
        }
    }
    out
}
