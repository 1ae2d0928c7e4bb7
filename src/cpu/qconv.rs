//! Integer reference for the INT8 kernels: plain loops over the scheme that `quant::int8`
//! specifies (formats, requantization constants, weight quantization).

use crate::array::Array;
use crate::error::{shape_err, Result};
use crate::quant::int8::{shift_rne, QAdd, QArray, QConv};

/// Reference quantized residual add.
pub fn qadd(add: &QAdd, a: &QArray, b: &QArray) -> Result<QResult> {
    if a.shape != b.shape || a.fmt != add.a || b.fmt != add.b {
        return shape_err("qadd", format!("{:?} + {:?} for {add:?}", a.shape, b.shape));
    }
    let p = add.params()?;
    let total = a.q.iter().zip(&b.q).map(|(&x, &y)| x * p.ma + y * p.mb);
    Ok(match add.output {
        None => QResult::F32(Array::new(
            &a.shape,
            total.map(|t| add.act.apply(t as f32 * p.scale)).collect(),
        )),
        Some(fmt) => QResult::Q(QArray {
            shape: a.shape,
            q: total
                .map(|t| shift_rne(t, p.shift).clamp(p.lo, p.hi))
                .collect(),
            fmt,
        }),
    })
}

/// Quantized conv2d output: f32 (`output: None`) or requantized.
#[derive(Clone, Debug, PartialEq)]
pub enum QResult {
    F32(Array),
    Q(QArray),
}

/// The i32 accumulators `sum(w * x) + bias_q` in NCHW order (padding is the real value 0).
fn accumulate(conv: &QConv, x: &QArray, bias_q: &[i32]) -> Result<(Vec<i32>, [usize; 4])> {
    let os = conv.out_shape("qconv", x.shape)?;
    let [n, co, oh, ow] = os;
    let [_, c, h, w] = x.shape;
    let [_, cig, kh, kw] = conv.weights.shape;
    let cog = co / conv.groups;
    let mut out = Vec::with_capacity(n * co * oh * ow);
    for b in 0..n {
        for (o, &bq) in bias_q.iter().enumerate().take(co) {
            let g = o / cog;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut acc = bq;
                    for i in 0..cig {
                        let ci = g * cig + i;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let [dy, dx] = conv.dilation;
                                let [pt, pl] = conv.pad.begin.map(|p| p as isize);
                                let iy = (oy * conv.stride + ky * dy) as isize - pt;
                                let ix = (ox * conv.stride + kx * dx) as isize - pl;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xv = x.q[((b * c + ci) * h + iy as usize) * w + ix as usize];
                                let wv = conv.weights.q[((o * cig + i) * kh + ky) * kw + kx];
                                acc = acc.wrapping_add(xv * wv as i32);
                            }
                        }
                    }
                    out.push(acc);
                }
            }
        }
    }
    Ok((out, os))
}

/// Reference quantized conv2d / linear with the fused epilogue.
pub fn qconv2d(conv: &QConv, x: &QArray) -> Result<QResult> {
    if x.fmt != conv.input {
        return shape_err(
            "qconv",
            format!("input format {:?} != {:?}", x.fmt, conv.input),
        );
    }
    let rq = conv.requant()?;
    let (acc, shape) = accumulate(conv, x, &rq.bias_q)?;
    let hw = shape[2] * shape[3];
    let chan = |i: usize| (i / hw) % shape[1];
    Ok(match conv.output {
        None => QResult::F32(Array::new(
            &shape,
            acc.iter()
                .enumerate()
                .map(|(i, &a)| conv.act.apply(a as f32 * rq.scale[chan(i)]))
                .collect(),
        )),
        Some(fmt) => QResult::Q(QArray {
            shape,
            q: acc
                .iter()
                .enumerate()
                .map(|(i, &a)| {
                    let v = (a as f32 * rq.scale[chan(i)]).round_ties_even();
                    v.clamp(rq.lo as f32, rq.hi as f32) as i32
                })
                .collect(),
            fmt,
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::Act;
    use crate::quant::int8::{QConv, QFormat, QWeights};

    #[test]
    fn conv_matches_float_conv_within_quantization_error() {
        // 1x1 conv = per-pixel dot product, checked against a float computation.
        let x = QArray {
            shape: [1, 2, 1, 2],
            q: vec![10, 20, 30, 40],
            fmt: QFormat::unsigned(0.1),
        };
        let conv = QConv {
            weights: QWeights {
                shape: [1, 2, 1, 1],
                bits: 8,
                q: vec![3, -2],
                scale: vec![0.5],
            },
            bias: Some(vec![1.0]),
            stride: 1,
            pad: 0.into(),
            dilation: [1, 1],
            groups: 1,
            input: x.fmt,
            input_channel_scales: None,
            act: Act::Identity,
            output: None,
        };
        let QResult::F32(y) = qconv2d(&conv, &x).unwrap() else {
            panic!()
        };
        // (3*10 - 2*30) * 0.05 + 1 = -0.5 ; (3*20 - 2*40) * 0.05 + 1 = 0
        assert!(
            (y.data[0] + 0.5).abs() < 1e-6 && y.data[1].abs() < 1e-6,
            "{:?}",
            y.data
        );
    }
}
