//! Integer reference for the int8 gathers and pools that `quant::int8_ops` specifies.

use crate::cpu::pool::window_taps;
use crate::error::Result;
use crate::ops::pad2d::{padded_shape, PadMode};
use crate::ops::pool::Window;
use crate::ops::Pads;
use crate::quant::int8::{shift_rne, QArray, QFormat};
use crate::quant::int8_ops::{gap_multiplier, pool_shape, QAvgPool, QGather};

/// Reference channel gather (shortcut A, slice, shuffle, concat).
pub fn gather(g: &QGather, a: &QArray, b: Option<&QArray>) -> Result<QArray> {
    let p = g.params()?;
    let [n, ca, h, w] = a.shape;
    let os = g.check_inputs((a.fmt, a.shape), b.map(|x| (x.fmt, x.shape)))?;
    let [_, co, oh, ow] = os;
    let mut q = Vec::with_capacity(n * co * oh * ow);
    for bi in 0..n {
        for &m in &g.map {
            for y in 0..oh {
                for x in 0..ow {
                    let at = |src: &QArray, c: usize, cs: usize| {
                        src.q[((bi * cs + c) * h + y * g.stride) * w + x * g.stride]
                    };
                    let v = match m {
                        -1 => 0,
                        m if (m as usize) < ca => at(a, m as usize, ca) * p.ma,
                        m => {
                            let (src, cb) = (b.expect("checked above"), g.b.map_or(0, |d| d.1));
                            at(src, m as usize - ca, cb) * p.mb
                        }
                    };
                    q.push(shift_rne(v, p.shift).clamp(p.lo, p.hi));
                }
            }
        }
    }
    Ok(QArray {
        shape: os,
        q,
        fmt: g.output,
    })
}

/// Reference max pooling of any undilated window (padding never wins), in the input's format.
pub fn max_pool(x: &QArray, win: &Window) -> Result<QArray> {
    let os = pool_shape("int8 max pool", x.shape, win)?;
    // `pool_shape` leaves a real pixel in every window.
    let lo = x.fmt.range().0;
    let q = windows(x, win, os, |vals, _, _| vals.max().unwrap_or(lo));
    Ok(QArray {
        shape: os,
        q,
        fmt: x.fmt,
    })
}

/// `reduce` over each window's real values, for output shape `os`, in output order.
fn windows(
    x: &QArray,
    win: &Window,
    [_, _, oh, ow]: [usize; 4],
    mut reduce: impl FnMut(&mut dyn Iterator<Item = i32>, usize, usize) -> i32,
) -> Vec<i32> {
    let [n, c, h, w] = x.shape;
    let mut q = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut vals = window_taps(win, (h, w), plane, oy, ox).map(|j| x.q[j]);
                q.push(reduce(&mut vals, oy, ox));
            }
        }
    }
    q
}

/// Reference spatial padding in the input's format (a constant fill quantized).
pub fn pad2d(x: &QArray, pads: Pads, mode: PadMode) -> Result<QArray> {
    let [n, c, h, w] = x.shape;
    let os = padded_shape(x.shape, pads, mode)
        .map_err(|e| crate::Error::Invalid(format!("int8 pad of {:?}: {e}", x.shape)))?;
    let [_, _, oh, ow] = os;
    let fill = match mode {
        PadMode::Constant(v) => x.fmt.quantize(v),
        _ => 0,
    };
    let mut q = Vec::with_capacity(n * c * oh * ow);
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let sy = crate::cpu::pad2d::source(oy, pads.begin[0], h, mode);
                let sx = crate::cpu::pad2d::source(ox, pads.begin[1], w, mode);
                q.push(match (sy, sx) {
                    (Some(sy), Some(sx)) => x.q[(plane * h + sy) * w + sx],
                    _ => fill,
                });
            }
        }
    }
    Ok(QArray {
        shape: os,
        q,
        fmt: x.fmt,
    })
}

/// Reference global average pooling to `[N, C, 1, 1]` in `output`.
pub fn global_avg_pool(x: &QArray, output: QFormat) -> Result<QArray> {
    let [n, c, h, w] = x.shape;
    let m = gap_multiplier(x.fmt, h * w, output)?;
    let (lo, hi) = output.range();
    let q =
        x.q.chunks(h * w)
            .map(|plane| {
                let sum: i32 = plane.iter().sum();
                (sum as f32 * m)
                    .round_ties_even()
                    .clamp(lo as f32, hi as f32) as i32
            })
            .collect();
    Ok(QArray {
        shape: [n, c, 1, 1],
        q,
        fmt: output,
    })
}

/// Reference average pooling: each window's exact sum times its divisor's multiplier, rounded
/// half to even and clamped in the output format.
pub fn avg_pool(x: &QArray, pool: &QAvgPool) -> Result<QArray> {
    let os = pool.out_shape(x.shape)?;
    let m = pool.multipliers()?;
    let (lo, hi) = pool.output.range();
    let hw = [x.shape[2], x.shape[3]];
    let q = windows(x, &pool.window, os, |vals, oy, ox| {
        let sum: i32 = vals.sum();
        let v = (sum as f32 * m[pool.divisor(hw, oy, ox)]).round_ties_even();
        v.clamp(lo as f32, hi as f32) as i32
    });
    Ok(QArray {
        shape: os,
        q,
        fmt: pool.output,
    })
}

/// Reference flatten to `[N, C * H * W, 1, 1]`: the values stay, in the input's format.
pub fn flatten(x: &QArray) -> QArray {
    let [n, c, h, w] = x.shape;
    QArray {
        shape: [n, c * h * w, 1, 1],
        ..x.clone()
    }
}
