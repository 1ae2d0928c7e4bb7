//! The INT8 scheme the kernels and the CPU reference implement (OpenVINO POT "performance"):
//! weights 2- to 8-bit, symmetric per output channel over a narrow range ([-127, 127] at 8
//! bits); activations 2- to 8-bit per tensor (depthwise inputs optionally per channel), unsigned
//! ([0, 255] at 8 bits, after ReLU) or signed ([-128, 127]), zero point 0 unless imported from
//! an ONNX QDQ file.
//!
//! Requantization is defined so that it is bit-exact on any IEEE-754 device, with no fma hazard:
//! the bias is folded into the i32 accumulator (`bias_q = rne(bias / (x_scale * w_scale))`, as
//! int32 biases are in TFLite/OpenVINO), and the epilogue is ONE f32 multiply of that integer:
//! - f32 output: `act(f32(acc + bias_q) * (x_scale * w_scale[co]))`
//! - int8 output: `clamp(rne(f32(acc + bias_q) * (x_scale * w_scale[co] / out_scale)), lo, hi)`
//!
//! i32 -> f32 conversion and f32 multiplication are correctly rounded (Vulkan, WGSL, Rust), and
//! with no addition after the product nothing can be contracted into an fma. Per-channel
//! factors are computed once on the host in f64 and rounded to f32, so both sides multiply the
//! same f32 values. `rne` is round half to even (WGSL `round`, Rust `round_ties_even`).

use crate::array::Array;
use crate::error::{shape_err, Result};
use crate::ops::Act;

/// A per-tensor activation format. `q` below is the *real integer* (the value is `q * scale`);
/// an ONNX-style zero point shifts its range instead of being added to it, so every kernel
/// computes with `q` and zero points cost nothing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QFormat {
    /// Real value of one integer step.
    pub scale: f32,
    /// Unsigned storage (`[0, 2^bits - 1]` before the zero point) or signed
    /// (`[-2^(bits-1), 2^(bits-1) - 1]`).
    pub unsigned: bool,
    /// Bits per value, 2 to 8.
    pub bits: u32,
    /// The stored integer of real 0 (ONNX `zero_point`); `q = stored - zero_point`.
    pub zero_point: i32,
}

impl QFormat {
    /// 8-bit `[0, 255]` with step `scale`.
    pub fn unsigned(scale: f32) -> Self {
        QFormat {
            scale,
            unsigned: true,
            bits: 8,
            zero_point: 0,
        }
    }

    /// 8-bit `[-128, 127]` with step `scale`.
    pub fn signed(scale: f32) -> Self {
        QFormat {
            scale,
            unsigned: false,
            bits: 8,
            zero_point: 0,
        }
    }

    /// The same format with `bits` bits per value.
    pub fn with_bits(self, bits: u32) -> Self {
        QFormat { bits, ..self }
    }

    /// The same format with an ONNX-style zero point.
    pub fn with_zero_point(self, zero_point: i32) -> Self {
        QFormat { zero_point, ..self }
    }

    /// The stored integers' range, before the zero point is taken off.
    pub fn stored_range(self) -> (i32, i32) {
        let b = self.bits.clamp(1, 8);
        if self.unsigned {
            (0, (1 << b) - 1)
        } else {
            (-(1 << (b - 1)), (1 << (b - 1)) - 1)
        }
    }

    /// The representable range of `q` (the stored range less the zero point).
    pub fn range(self) -> (i32, i32) {
        let (lo, hi) = self.stored_range();
        // Saturating: a file's zero point is checked (`check`) after some uses of its range.
        (
            lo.saturating_sub(self.zero_point),
            hi.saturating_sub(self.zero_point),
        )
    }

    /// An error unless the format can be stored: 2 to 8 bits, a zero point inside the stored
    /// range, a positive finite scale.
    pub fn check(self) -> std::result::Result<(), String> {
        if !(2..=8).contains(&self.bits) {
            return Err(format!(
                "{} bits per value (2 to 8 are supported)",
                self.bits
            ));
        }
        let (lo, hi) = self.stored_range();
        if !(lo..=hi).contains(&self.zero_point) {
            return Err(format!(
                "zero point {} outside the stored range [{lo}, {hi}]",
                self.zero_point
            ));
        }
        if !(self.scale > 0.0 && self.scale.is_finite()) {
            return Err(format!("scale {} is not positive and finite", self.scale));
        }
        Ok(())
    }

    /// GPU tensors store `q - offset` as i8, so unsigned values fit the signed dot product:
    /// unsigned formats store `stored - 128`, signed ones `stored` itself.
    pub fn offset(self) -> i32 {
        if self.unsigned {
            128 - self.zero_point
        } else {
            -self.zero_point
        }
    }

    /// `clamp(rne(v * (1 / scale)))`: a multiply by the f32 reciprocal, because WGSL division is
    /// not correctly rounded.
    pub fn quantize(self, v: f32) -> i32 {
        let (lo, hi) = self.range();
        (v * (1.0 / self.scale))
            .round_ties_even()
            .clamp(lo as f32, hi as f32) as i32
    }

    /// The real value of integer `q`.
    pub fn dequantize(self, q: i32) -> f32 {
        q as f32 * self.scale
    }
}

/// A quantized activation in NCHW order, holding the real integer values (not the stored ones).
#[derive(Clone, Debug, PartialEq)]
pub struct QArray {
    /// `[N, C, H, W]` (a 2-d `[N, K]` is `[N, K, 1, 1]`).
    pub shape: [usize; 4],
    /// The integer values, NCHW.
    pub q: Vec<i32>,
    /// Their format.
    pub fmt: QFormat,
}

impl QArray {
    /// Quantizes a 2-d or 4-d array to `fmt`.
    pub fn quantize(x: &Array, fmt: QFormat) -> Result<QArray> {
        let shape = match *x.shape.as_slice() {
            [n, c, h, w] => [n, c, h, w],
            [n, k] => [n, k, 1, 1],
            _ => {
                return shape_err(
                    "quantize",
                    format!("expected 2-d or 4-d, got {:?}", x.shape),
                )
            }
        };
        let q = x.data.iter().map(|&v| fmt.quantize(v)).collect();
        Ok(QArray { shape, q, fmt })
    }

    /// The real values.
    pub fn dequantize(&self) -> Array {
        let data = self.q.iter().map(|&q| self.fmt.dequantize(q)).collect();
        Array::new(&self.shape, data)
    }
}

/// Weights `[co, ci / groups, kh, kw]` quantized per output channel (linear: `[out, in, 1, 1]`).
#[derive(Clone, Debug, PartialEq)]
pub struct QWeights {
    /// `[co, ci / groups, kh, kw]`.
    pub shape: [usize; 4],
    /// The integer weights, in `[-(2^(bits-1) - 1), 2^(bits-1) - 1]`.
    pub q: Vec<i8>,
    /// One scale per output channel.
    pub scale: Vec<f32>,
    /// Bits per weight, 2 to 8 (the kernels hold every width in one i8 each).
    pub bits: u32,
}

/// How each output channel's clipping range of the weights is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum WeightRange {
    /// max|w| (POT).
    #[default]
    #[cfg_attr(feature = "cli", value(alias = "minmax"))]
    MinMax,
    /// The clip with the least squared quantization error of the channel's weights.
    Mse,
}

impl QWeights {
    /// 8-bit symmetric narrow-range quantization: `scale = max|w| / 127` per output channel (a
    /// dead channel gets 1/127 so its bias stays finely representable).
    pub fn quantize(w: &Array) -> Result<QWeights> {
        Self::quantize_bits(w, 8, WeightRange::MinMax)
    }

    /// The largest integer of `bits`-bit narrow-range weights.
    pub fn qmax(bits: u32) -> i32 {
        (1 << (bits.clamp(2, 8) - 1)) - 1
    }

    /// Symmetric narrow-range `bits`-bit quantization per output channel: `scale = clip / qmax`
    /// with `clip` chosen by `range`.
    pub fn quantize_bits(w: &Array, bits: u32, range: WeightRange) -> Result<QWeights> {
        let shape = match *w.shape.as_slice() {
            [co, ci, kh, kw] => [co, ci, kh, kw],
            [o, i] => [o, i, 1, 1],
            _ => return shape_err("quantize weights", format!("got shape {:?}", w.shape)),
        };
        if !(2..=8).contains(&bits) {
            return shape_err(
                "quantize weights",
                format!("{bits} bits (2 to 8 supported)"),
            );
        }
        let qmax = Self::qmax(bits);
        let l = qmax as f32;
        let per = shape[1] * shape[2] * shape[3];
        let mut q = Vec::with_capacity(w.data.len());
        let mut scale = Vec::with_capacity(shape[0]);
        for row in w.data.chunks(per.max(1)) {
            let m = match range {
                WeightRange::MinMax => row.iter().fold(0.0f32, |m, v| m.max(v.abs())),
                WeightRange::Mse => super::histogram::weight_mse_clip(row, qmax as u32),
            };
            let s = if m > 0.0 { m / l } else { 1.0 / l };
            let inv = 1.0 / s;
            q.extend(
                row.iter()
                    .map(|&v| (v * inv).round_ties_even().clamp(-l, l) as i8),
            );
            scale.push(s);
        }
        Ok(QWeights {
            shape,
            q,
            scale,
            bits,
        })
    }

    /// Two weights per byte (element 2k in the low nibble, 2k + 1 in the high one, two's
    /// complement), for widths of at most 4 bits.
    pub fn pack(&self) -> Vec<i8> {
        self.q
            .chunks(2)
            .map(|p| {
                let lo = (p[0] as u8) & 0xf;
                let hi = (p.get(1).copied().unwrap_or(0) as u8) & 0xf;
                (lo | hi << 4) as i8
            })
            .collect()
    }

    /// The inverse of [`QWeights::pack`] for `n` weights (`packed` must hold `n.div_ceil(2)`).
    pub fn unpack(packed: &[i8], n: usize) -> Vec<i8> {
        // Shifting the nibble to the top and back sign-extends it.
        let nib = |b: u8| ((b << 4) as i8) >> 4;
        packed
            .iter()
            .flat_map(|&b| [nib(b as u8), nib((b as u8) >> 4)])
            .take(n)
            .collect()
    }
}

/// A quantized conv2d / linear layer as the host describes it (NCHW semantics).
#[derive(Clone, Debug, PartialEq)]
pub struct QConv {
    /// The quantized weights.
    pub weights: QWeights,
    /// The FP32 bias (quantized to i32 by [`QConv::requant`]).
    pub bias: Option<Vec<f32>>,
    /// Stride (both axes).
    pub stride: usize,
    /// Zero padding per side.
    pub pad: crate::ops::Pads,
    /// Tap spacing [h, w] (1: dense).
    pub dilation: [usize; 2],
    /// Channel groups (the channel count for depthwise).
    pub groups: usize,
    /// The input's activation format (fixed by calibration). With `input_channel_scales` its
    /// scale is the largest channel's; signedness is shared by all channels.
    pub input: QFormat,
    /// Depthwise layers only: one input scale per channel (POT quantizes depthwise inputs per
    /// channel). Output channel c reads only input channel c, so its epilogue uses scale c.
    pub input_channel_scales: Option<Vec<f32>>,
    /// The fused activation.
    pub act: Act,
    /// Requantize to this format, or write f32 when `None`.
    pub output: Option<QFormat>,
}

/// Per-output-channel epilogue constants (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct Requant {
    /// The bias in accumulator units, per output channel.
    pub bias_q: Vec<i32>,
    /// `x_scale * w_scale[co]` (f32 output) or that over `out_scale` (int8 output).
    pub scale: Vec<f32>,
    /// Output clamp with the activation folded in (int8 output only).
    pub lo: i32,
    /// Upper output clamp (int8 output only).
    pub hi: i32,
}

/// Bound on |bias_q| (2^30).
const LIMIT: f64 = 1073741824.0;

impl QConv {
    /// A 1x1 identity layer that reads format `input`: where only a layer's formats matter
    /// (planning the integer path, a value's Q/DQ pair).
    pub fn identity(input: QFormat, act: Act) -> QConv {
        QConv {
            weights: QWeights {
                shape: [1, 1, 1, 1],
                q: vec![1],
                scale: vec![1.0],
                bits: 8,
            },
            bias: None,
            stride: 1,
            pad: 0.into(),
            dilation: [1, 1],
            groups: 1,
            input,
            input_channel_scales: None,
            act,
            output: None,
        }
    }

    /// The input format of channel `c`.
    pub fn input_format(&self, c: usize) -> QFormat {
        match &self.input_channel_scales {
            Some(s) => QFormat {
                scale: s[c],
                ..self.input
            },
            None => self.input,
        }
    }

    /// Quantizes an f32 input for this layer (per channel when it has channel scales).
    pub fn quantize_input(&self, x: &Array) -> Result<QArray> {
        let mut q = QArray::quantize(x, self.input)?;
        if self.input_channel_scales.is_some() {
            let [_, c, h, w] = q.shape;
            for (i, (qv, &v)) in q.q.iter_mut().zip(&x.data).enumerate() {
                *qv = self.input_format(i / (h * w) % c).quantize(v);
            }
        }
        Ok(q)
    }

    /// The smallest input the layer fits: one image whose sides are the window a (dilated)
    /// kernel spans. Checking `out_shape` on it validates weights, bias and geometry.
    pub fn min_input(&self) -> [usize; 4] {
        let [_, cig, kh, kw] = self.weights.shape;
        let span = |k: usize, d: usize| k.saturating_sub(1).saturating_mul(d).saturating_add(1);
        let [dh, dw] = self.dilation;
        [
            1,
            cig.saturating_mul(self.groups),
            span(kh, dh),
            span(kw, dw),
        ]
    }

    /// Output shape for an `[n, c, h, w]` input, or a shape error.
    pub fn out_shape(&self, op: &'static str, x: [usize; 4]) -> Result<[usize; 4]> {
        let [co, cig, kh, kw] = self.weights.shape;
        let [n, c, h, w] = x;
        let g = self.groups;
        if g == 0 || co == 0 || cig * g != c || !co.is_multiple_of(g) {
            return shape_err(
                op,
                format!(
                    "weights {:?} with groups {g} do not fit input {x:?}",
                    self.weights.shape
                ),
            );
        }
        if self.weights.q.len() != co * cig * kh * kw || self.weights.scale.len() != co {
            return shape_err(op, "weight data or scales do not match the weight shape");
        }
        if self.bias.as_ref().is_some_and(|b| b.len() != co) {
            return shape_err(op, format!("bias length differs from {co} output channels"));
        }
        if let Some(cs) = &self.input_channel_scales {
            if cig != 1 || co != g || cs.len() != c || !cs.iter().all(|&s| s > 0.0 && s.is_finite())
            {
                return shape_err(op, "per-channel input scales need a depthwise layer and one positive scale per channel");
            }
        }
        let p = crate::ops::conv2d::Conv2dParams::new(self.stride, 0, g)
            .padded(self.pad)
            .dilated(self.dilation);
        match (p.out_size(0, h, kh), p.out_size(1, w, kw)) {
            (Some(oh), Some(ow)) => Ok([n, co, oh, ow]),
            _ => shape_err(
                op,
                format!(
                    "kernel {kh}x{kw} stride {} pad {} dilation {:?} on {h}x{w}",
                    self.stride, self.pad, self.dilation
                ),
            ),
        }
    }

    /// The epilogue constants; only clamp-like activations can be fused into int8 output.
    pub fn requant(&self) -> Result<Requant> {
        let co = self.weights.shape[0];
        if self.weights.scale.len() != co || self.bias.as_ref().is_some_and(|b| b.len() != co) {
            return shape_err(
                "qconv",
                format!("scales or bias do not match {co} channels"),
            );
        }
        if self
            .input_channel_scales
            .as_ref()
            .is_some_and(|cs| cs.len() != co)
        {
            return shape_err("qconv", "one input scale per channel needed");
        }
        let combined: Vec<f64> = (0..co)
            .map(|c| self.input_format(c).scale as f64 * self.weights.scale[c] as f64)
            .collect();
        let bias_q = (0..co)
            .map(|c| {
                let b = self.bias.as_ref().map_or(0.0, |b| b[c] as f64);
                // Clamped so that acc + bias_q cannot overflow for realistic layers.
                (b / combined[c]).round_ties_even().clamp(-LIMIT, LIMIT) as i32
            })
            .collect();
        check_act("qconv", self.act)?;
        let Some(out) = self.output else {
            let scale = combined.iter().map(|&s| s as f32).collect();
            return Ok(Requant {
                bias_q,
                scale,
                lo: 0,
                hi: 0,
            });
        };
        let (lo, hi) = fused_range("qconv", out, self.act)?;
        let os = out.scale as f64;
        let scale = combined.iter().map(|&s| (s / os) as f32).collect();
        Ok(Requant {
            bias_q,
            scale,
            lo,
            hi,
        })
    }
}

/// The kernels apply identity, ReLU, ReLU6 and leaky ReLU exactly; tanh / sigmoid /
/// hard swish are not fused.
fn check_act(op: &'static str, act: Act) -> Result<()> {
    if matches!(act, Act::Tanh | Act::Sigmoid | Act::HardSwish) {
        return shape_err(op, format!("{act:?} is not fused into int8 layers"));
    }
    Ok(())
}

/// The int8 output clamp with a ReLU / ReLU6 folded in: `rne` is monotonic, so clamping the
/// quantized value equals quantizing the clamped one.
fn fused_range(op: &'static str, out: QFormat, act: Act) -> Result<(i32, i32)> {
    let (lo, hi) = out.range();
    match act {
        Act::Identity => Ok((lo, hi)),
        Act::Relu => Ok((lo.max(0), hi)),
        Act::Relu6 => Ok((lo.max(0), hi.min(out.quantize(6.0)))),
        a => shape_err(op, format!("{a:?} cannot be fused into an int8 output")),
    }
}

/// Quantized residual add `act(a + b)` of two int8 tensors of one shape.
///
/// Exact integer math: `total = qa * ma + qb * mb` with `ma = rne(a_scale / unit * 2^shift)`
/// (and mb alike), `unit` the output scale (int8 output) or the larger input scale (f32 output),
/// and `shift` as large as keeps both multipliers <= 2^21 (so |total| < 2^30): int8 output is
/// `clamp(total >> shift rounded half to even)`, f32 output `act(f32(total) * (unit / 2^shift))`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QAdd {
    /// The first input's format.
    pub a: QFormat,
    /// The second input's format.
    pub b: QFormat,
    /// The fused activation.
    pub act: Act,
    /// Requantize to this format, or write f32 when `None`.
    pub output: Option<QFormat>,
}

/// The integer constants of a [`QAdd`] (see its docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AddParams {
    /// The first input's multiplier.
    pub ma: i32,
    /// The second input's multiplier.
    pub mb: i32,
    /// The right shift of the total.
    pub shift: u32,
    /// `unit / 2^shift` (f32 output).
    pub scale: f32,
    /// Lower output clamp (int8 output).
    pub lo: i32,
    /// Upper output clamp (int8 output).
    pub hi: i32,
}

impl QAdd {
    /// The constants, or an error when the scales are out of the exact range.
    pub fn params(&self) -> Result<AddParams> {
        let scales = [
            self.a.scale,
            self.b.scale,
            self.output.map_or(1.0, |o| o.scale),
        ];
        if !scales.iter().all(|&s| s > 0.0 && s.is_finite()) {
            return shape_err("qadd", "scales must be positive and finite");
        }
        let unit = self
            .output
            .map_or(self.a.scale.max(self.b.scale), |o| o.scale) as f64;
        let (ra, rb) = (self.a.scale as f64 / unit, self.b.scale as f64 / unit);
        const M: f64 = (1 << 21) as f64;
        if ra.max(rb) > M {
            return shape_err("qadd", "input scales exceed the output scale by over 2^21");
        }
        let mut shift = 0;
        while shift < 30 && ra.max(rb) * (1u64 << (shift + 1)) as f64 <= M {
            shift += 1;
        }
        let m = |r: f64| (r * (1u64 << shift) as f64).round_ties_even() as i32;
        check_act("qadd", self.act)?;
        let (lo, hi) = match self.output {
            Some(out) => fused_range("qadd", out, self.act)?,
            None => (0, 0),
        };
        let scale = (unit / (1u64 << shift) as f64) as f32;
        Ok(AddParams {
            ma: m(ra),
            mb: m(rb),
            shift,
            scale,
            lo,
            hi,
        })
    }
}

/// `v / 2^s` rounded half to even, with integer ops only (as the shader does it).
pub fn shift_rne(v: i32, s: u32) -> i32 {
    if s == 0 {
        return v;
    }
    let floor = v >> s;
    let (rem, half) = (v - (floor << s), 1 << (s - 1));
    floor + (rem > half || (rem == half && floor & 1 == 1)) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantize_rounds_half_to_even_and_clamps() {
        let f = QFormat::signed(0.5);
        let got: Vec<i32> = [0.25, 0.75, -0.25, 100.0, -100.0]
            .iter()
            .map(|&v| f.quantize(v))
            .collect();
        assert_eq!(got, [0, 2, 0, 127, -128]);
        assert_eq!(QFormat::unsigned(1.0).quantize(-3.0), 0);
    }

    #[test]
    fn zero_points_and_bits_shift_the_range_and_the_stored_offset() {
        // ONNX uint8 with zero point 10: stored [0, 255] is q in [-10, 245], stored - 128.
        let f = QFormat::unsigned(1.0).with_zero_point(10);
        assert_eq!(f.range(), (-10, 245));
        assert_eq!((f.quantize(-20.0), f.quantize(300.0)), (-10, 245));
        assert_eq!(f.offset(), 118);
        assert_eq!(-10 - f.offset(), -128);
        let s = QFormat::signed(1.0).with_zero_point(-3);
        assert_eq!((s.range(), s.offset()), ((-125, 130), 3));
        assert_eq!(QFormat::signed(1.0).with_bits(4).range(), (-8, 7));
        assert_eq!(QFormat::unsigned(1.0).with_bits(4).range(), (0, 15));
        assert!(QFormat::unsigned(1.0).with_zero_point(256).check().is_err());
        assert!(QFormat::signed(1.0).with_bits(9).check().is_err());
        assert!(QFormat::signed(0.0).check().is_err());
        assert!(QFormat::signed(0.5).with_bits(4).check().is_ok());
    }

    #[test]
    fn shift_rounds_half_to_even() {
        let got: Vec<i32> = [5, 6, 7, 10, -5, -6, -7, -10]
            .iter()
            .map(|&v| shift_rne(v, 2))
            .collect();
        // 1.25, 1.5, 1.75, 2.5, -1.25, -1.5, -1.75, -2.5
        assert_eq!(got, [1, 2, 2, 2, -1, -2, -2, -2]);
        assert_eq!(shift_rne(-3, 0), -3);
    }

    #[test]
    fn weights_use_narrow_range_per_channel() {
        let w = Array::new(&[2, 3], vec![1.0, -0.5, 0.25, 0.0, 0.0, 0.0]);
        let q = QWeights::quantize(&w).unwrap();
        assert_eq!(q.shape, [2, 3, 1, 1]);
        assert_eq!(&q.q[..3], &[127, -64, 32]);
        assert_eq!(q.scale[0], 1.0 / 127.0);
        let q4 = QWeights::quantize_bits(&w, 4, WeightRange::MinMax).unwrap();
        // -0.5 / (1/7) is -3.4999998 in f32, so no tie.
        assert_eq!(
            (&q4.q[..3], q4.scale[0], q4.bits),
            (&[7, -3, 2][..], 1.0 / 7.0, 4)
        );
        assert!(QWeights::quantize_bits(&w, 9, WeightRange::MinMax).is_err());
    }

    #[test]
    fn nibbles_pack_and_unpack() {
        let all: Vec<i8> = (-8..8).chain([3, -1, 7]).collect();
        let w = QWeights {
            shape: [1, all.len(), 1, 1],
            q: all.clone(),
            scale: vec![1.0],
            bits: 4,
        };
        let p = w.pack();
        assert_eq!(p.len(), all.len().div_ceil(2));
        assert_eq!(p[0] as u8, 0x98); // -8 low, -7 high
        assert_eq!(QWeights::unpack(&p, all.len()), all);
    }
}
