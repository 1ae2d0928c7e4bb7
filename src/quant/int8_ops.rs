//! The int8 forms of the ops between quantized layers, so that an INT8 network stays in
//! integers from its input quantization to its logits (the residual add is `int8::QAdd`):
//! - channel gathers (ResNet's option-A shortcut, channel slice, channel shuffle, concat of
//!   two tensors): each output channel copies one input channel or is real zero, with an exact
//!   requantization per source (`QAdd`'s multiplier and shift; the identity when formats agree);
//! - max pooling of any undilated window: exact in one format (max commutes with a monotonic
//!   quantizer);
//! - global average pooling: an exact i32 sum, then `clamp(rne(f32(sum) * m))` with
//!   `m = in_scale / (hw * out_scale)` rounded once to f32 on the host (the conv epilogue's
//!   one-multiply rule, so GPU and CPU agree bit for bit);
//! - average pooling (`QAvgPool`): the same rule per window, with `m` for the window's divisor
//!   (its size, or its real pixels when padding does not count) from a table built on the host;
//! - flatten: data movement in one format (features `c * H * W + pixel`, four per word).

use super::int8::{AddParams, QAdd, QFormat};
use crate::error::{shape_err, Result};
use crate::ops::pool::Window;
use crate::ops::Act;

/// An int8 channel gather from one or two sources (see the module docs).
#[derive(Clone, Debug, PartialEq)]
pub struct QGather {
    /// The first source's format and channel count.
    pub a: (QFormat, usize),
    /// The second source (concat only).
    pub b: Option<(QFormat, usize)>,
    /// Per output channel: a channel of `a` (`0..a.1`), of `b` (`a.1..`, less `a.1`), or -1
    /// for real zero.
    pub map: Vec<i32>,
    /// Spatial step: output pixel (y, x) reads input pixel (y * stride, x * stride).
    pub stride: usize,
    /// The output format.
    pub output: QFormat,
}

impl QGather {
    /// CIFAR-ResNet option A: `x[:, :, ::2, ::2]` with `pad` zero channels each side.
    pub fn shortcut_a(fmt: QFormat, c: usize, pad: usize) -> QGather {
        let map = (0..c + 2 * pad)
            .map(|o| {
                if (pad..pad + c).contains(&o) {
                    (o - pad) as i32
                } else {
                    -1
                }
            })
            .collect();
        QGather::one(fmt, c, map, 2)
    }

    /// Channels `start..start + len`.
    pub fn slice(fmt: QFormat, c: usize, start: usize, len: usize) -> QGather {
        QGather::one(fmt, c, (start..start + len).map(|v| v as i32).collect(), 1)
    }

    /// `[N, g*c]` viewed as `[N, g, c]` and transposed: output `k*g + j` is input `j*c + k`.
    pub fn shuffle(fmt: QFormat, c: usize, groups: usize) -> Result<QGather> {
        if groups == 0 || !c.is_multiple_of(groups) {
            return shape_err(
                "int8 channel shuffle",
                format!("{c} channels in {groups} groups"),
            );
        }
        let per = c / groups;
        let map = (0..c)
            .map(|o| ((o % groups) * per + o / groups) as i32)
            .collect();
        Ok(QGather::one(fmt, c, map, 1))
    }

    /// `a` then `b` along the channels, requantized to `output`.
    pub fn concat(a: (QFormat, usize), b: (QFormat, usize), output: QFormat) -> QGather {
        QGather {
            a,
            b: Some(b),
            map: (0..a.1 + b.1).map(|v| v as i32).collect(),
            stride: 1,
            output,
        }
    }

    fn one(fmt: QFormat, c: usize, map: Vec<i32>, stride: usize) -> QGather {
        QGather {
            a: (fmt, c),
            b: None,
            map,
            stride,
            output: fmt,
        }
    }

    /// Per output word (four channels), the input word it copies or -1 for real zero, where
    /// the gather is only that: one source, its format kept, whole words moved (option-A
    /// shortcuts of channel counts and padding in multiples of 4). The GPU then moves words.
    pub fn word_map(&self) -> Option<Vec<i32>> {
        let (fmt, c) = self.a;
        let whole = c.is_multiple_of(4) && self.map.len().is_multiple_of(4);
        if self.b.is_some() || fmt != self.output || !whole {
            return None;
        }
        self.map
            .chunks(4)
            .map(|w| match w[0] {
                -1 if w.iter().all(|&m| m == -1) => Some(-1),
                m if m >= 0 && m % 4 == 0 && (0..4).all(|j| w[j as usize] == m + j) => Some(m / 4),
                _ => None,
            })
            .collect()
    }

    /// The requantization constants of both sources (the identity for a source already in the
    /// output format), or an error for a map entry out of range.
    pub fn params(&self) -> Result<AddParams> {
        let total = self.a.1 + self.b.map_or(0, |b| b.1);
        if let Some(m) = self.map.iter().find(|&&m| m < -1 || m >= total as i32) {
            return shape_err(
                "int8 gather",
                format!("channel {m} of {total} input channels"),
            );
        }
        if self.stride == 0 {
            return shape_err("int8 gather", "stride 0");
        }
        QAdd {
            a: self.a.0,
            b: self.b.map_or(self.a.0, |b| b.0),
            act: Act::Identity,
            output: Some(self.output),
        }
        .params()
    }

    /// Checks that the sources, `(format, shape)` each, are what this gather reads (one map
    /// shape for both, each with its own channel count); returns the output shape.
    pub fn check_inputs(
        &self,
        a: (QFormat, [usize; 4]),
        b: Option<(QFormat, [usize; 4])>,
    ) -> Result<[usize; 4]> {
        let [n, _, h, w] = a.1;
        let fits = |(f, shape): (QFormat, [usize; 4]), (want, c): (QFormat, usize)| {
            f == want && shape == [n, c, h, w]
        };
        let b_ok = match (b, self.b) {
            (None, None) => true,
            (Some(x), Some(d)) => fits(x, d),
            _ => false,
        };
        if !fits(a, self.a) || !b_ok {
            return shape_err("int8 gather", format!("inputs do not fit {self:?}"));
        }
        Ok(self.out_shape(a.1))
    }

    /// Output `[n, channels, ceil(h / stride), ceil(w / stride)]` for an `[n, c, h, w]` first
    /// source.
    pub fn out_shape(&self, [n, _, h, w]: [usize; 4]) -> [usize; 4] {
        let s = self.stride.max(1);
        [n, self.map.len(), h.div_ceil(s), w.div_ceil(s)]
    }
}

/// Global average pooling from `input` to `output`: the f32 multiplier of the i32 sum over
/// `hw` pixels, or an error where the sum could leave f32's exact integers.
pub fn gap_multiplier(input: QFormat, hw: usize, output: QFormat) -> Result<f32> {
    if hw == 0 || hw > (1 << 24) / 256 {
        return shape_err(
            "int8 global average pool",
            format!("{hw} pixels (1 to 65536 supported)"),
        );
    }
    if !(input.scale > 0.0 && output.scale > 0.0) {
        return shape_err("int8 global average pool", "scales must be positive");
    }
    Ok((input.scale as f64 / (hw as f64 * output.scale as f64)) as f32)
}

/// Int8 average pooling of any window (see `ops::pool::Window`; undilated) from format `input`
/// to format `output` (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QAvgPool {
    /// Kernel, stride, padding per side, ceil mode.
    pub window: Window,
    /// Whether the zero padding counts in a window's divisor (which is then the window clipped
    /// to the padded input).
    pub count_pad: bool,
    /// The input's format.
    pub input: QFormat,
    /// The output's format.
    pub output: QFormat,
}

/// The largest int8 pooling kernel: an average window's sum of at most 255 per element stays an
/// exact f32 (below 2^24).
pub const MAX_POOL_KERNEL: usize = 256;

impl QAvgPool {
    /// The output shape for input shape `x` (see [`pool_shape`]).
    pub fn out_shape(&self, x: [usize; 4]) -> Result<[usize; 4]> {
        pool_shape("int8 average pool", x, &self.window)
    }

    /// The multiplier of a window with divisor `d`, for every `d` in `0..=kernel^2` (0 unused).
    pub fn multipliers(&self) -> Result<Vec<f32>> {
        let k = self.window.kernel;
        let mut m = vec![0.0];
        for d in 1..=k * k {
            m.push(gap_multiplier(self.input, d, self.output)?);
        }
        Ok(m)
    }

    /// The divisor of output pixel (oy, ox) on an `h` x `w` input ([`Window::divisor`]).
    pub fn divisor(&self, hw: [usize; 2], oy: usize, ox: usize) -> usize {
        self.window.divisor(self.count_pad, hw, oy, ox)
    }
}

/// The output shape of int8 pooling window `win` on input shape `[n, c, h, w]`, or an error
/// for a window that does not fit, a dilated one or a kernel over [`MAX_POOL_KERNEL`].
/// An undilated window that [`Window::check`] accepts always holds a real pixel (its padding
/// on each side is under the kernel, and ceil mode drops windows that start in the end
/// padding), so a max never comes from padding.
pub fn pool_shape(op: &'static str, [n, c, h, w]: [usize; 4], win: &Window) -> Result<[usize; 4]> {
    let fits = win.check().and_then(|()| {
        if win.dilation != [1, 1] || win.kernel > MAX_POOL_KERNEL {
            return Err(format!(
                "dilation {:?} (1 only), kernel at most {MAX_POOL_KERNEL}",
                win.dilation
            ));
        }
        match (win.out_size(0, h), win.out_size(1, w)) {
            (Some(oh), Some(ow)) => Ok([n, c, oh, ow]),
            _ => Err(format!("input {h}x{w} is smaller than the window")),
        }
    });
    fits.or_else(|e| {
        shape_err(
            op,
            format!(
                "kernel {} stride {} padding {}: {e}",
                win.kernel, win.stride, win.pads
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gathers_map_channels_as_the_f32_ops_do() {
        let f = QFormat::signed(0.1);
        assert_eq!(QGather::shortcut_a(f, 2, 1).map, [-1, 0, 1, -1]);
        assert_eq!(QGather::shortcut_a(f, 2, 1).word_map(), None);
        assert_eq!(
            QGather::shortcut_a(f, 8, 4).word_map(),
            Some(vec![-1, 0, 1, -1])
        );
        assert_eq!(QGather::slice(f, 8, 4, 4).word_map(), Some(vec![1]));
        assert_eq!(QGather::slice(f, 8, 2, 4).word_map(), None);
        assert_eq!(QGather::shuffle(f, 8, 2).unwrap().word_map(), None);
        assert_eq!(QGather::slice(f, 6, 2, 3).map, [2, 3, 4]);
        // 2 groups of 3: [0 1 2 | 3 4 5] -> [0 3 1 4 2 5].
        assert_eq!(QGather::shuffle(f, 6, 2).unwrap().map, [0, 3, 1, 4, 2, 5]);
        let c = QGather::concat((f, 2), (QFormat::unsigned(0.05), 1), f);
        assert_eq!(c.map, [0, 1, 2]);
        // Same formats copy exactly: the multiplier is 2^shift.
        let p = QGather::slice(f, 6, 0, 1).params().unwrap();
        assert_eq!(p.ma, 1 << p.shift);
        assert!(QGather::shuffle(f, 5, 2).is_err());
        let mut bad = QGather::slice(f, 6, 0, 1);
        bad.map[0] = 6;
        assert!(bad.params().is_err());
    }

    #[test]
    fn gap_multiplier_is_one_rounding_of_the_exact_ratio() {
        let m = gap_multiplier(QFormat::unsigned(0.1), 64, QFormat::unsigned(0.05)).unwrap();
        assert_eq!(m, (0.1f32 as f64 / (64.0 * 0.05f32 as f64)) as f32);
        assert!(gap_multiplier(QFormat::unsigned(0.1), 1 << 20, QFormat::unsigned(0.1)).is_err());
    }
}
