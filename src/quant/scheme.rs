//! Quantizer parameters as OpenVINO POT's "performance" preset (CPU/ANY target) computes them.
//!
//! - Weights: 8-bit symmetric per output channel, narrow range [-127, 127], scale = max|w| / 127.
//! - Activations: 8-bit symmetric per tensor; unsigned [0, 255] with scale = max / 255 when the
//!   range's minimum is >= 0 (after ReLU), else signed [-128, 127] with scale = max|v| / 127.
//! - Rounding: half to even (`f32::round_ties_even`, WGSL `round`), identical in the GPU kernels
//!   and the CPU reference.
//! - Scales are never below `MIN_SCALE`, so all-zero channels or ranges quantize to zero
//!   instead of dividing by zero.

pub const MIN_SCALE: f32 = 1e-8;

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ActQuant {
    pub scale: f32,
    pub unsigned: bool,
}

impl ActQuant {
    pub fn from_range(min: f32, max: f32) -> ActQuant {
        if min >= 0.0 {
            ActQuant {
                scale: (max / 255.0).max(MIN_SCALE),
                unsigned: true,
            }
        } else {
            ActQuant {
                scale: (min.abs().max(max.abs()) / 127.0).max(MIN_SCALE),
                unsigned: false,
            }
        }
    }

    pub fn levels(&self) -> (i32, i32) {
        if self.unsigned {
            (0, 255)
        } else {
            (-128, 127)
        }
    }

    pub fn quantize(&self, v: f32) -> i32 {
        let (lo, hi) = self.levels();
        ((v / self.scale).round_ties_even() as i32).clamp(lo, hi)
    }

    /// quantize then dequantize: what the integer kernels see of `v`.
    pub fn fake(&self, v: f32) -> f32 {
        self.quantize(v) as f32 * self.scale
    }
}

/// Per-output-channel symmetric int8 weights.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightQuant {
    pub q: Vec<i8>,
    pub scales: Vec<f32>,
}

impl WeightQuant {
    /// `w` in PyTorch layout with `channels` output channels first.
    pub fn new(w: &[f32], channels: usize) -> WeightQuant {
        let per = w.len() / channels;
        let mut q = Vec::with_capacity(w.len());
        let mut scales = Vec::with_capacity(channels);
        for c in w.chunks(per) {
            let s = (c.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0).max(MIN_SCALE);
            q.extend(c.iter().map(|v| ((v / s).round_ties_even() as i32).clamp(-127, 127) as i8));
            scales.push(s);
        }
        WeightQuant { q, scales }
    }

    pub fn dequantized(&self) -> Vec<f32> {
        let per = self.q.len() / self.scales.len();
        self.q
            .iter()
            .enumerate()
            .map(|(i, &q)| q as f32 * self.scales[i / per])
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_after_relu_signed_otherwise() {
        let a = ActQuant::from_range(0.0, 2.55);
        assert!(a.unsigned && (a.scale - 0.01).abs() < 1e-7);
        assert_eq!(a.quantize(1.0), 100);
        assert_eq!(a.quantize(-1.0), 0);
        assert_eq!(a.quantize(9.0), 255);
        let s = ActQuant::from_range(-1.27, 0.5);
        assert!(!s.unsigned && (s.scale - 0.01).abs() < 1e-7);
        assert_eq!(s.quantize(-5.0), -128);
        assert_eq!(s.quantize(0.005), 0); // ties to even
        assert_eq!(s.quantize(0.015), 2);
    }

    #[test]
    fn weights_narrow_range_per_channel() {
        let w = [1.0, -0.5, 0.25, 0.0, 0.0, 0.0, -3.0, 3.0];
        let q = WeightQuant::new(&w, 4);
        assert_eq!(q.q, vec![127, -64, 127, 0, 0, 0, -127, 127]);
        assert_eq!(q.scales[1], MIN_SCALE);
        assert!((q.scales[0] - 1.0 / 127.0).abs() < 1e-9);
    }
}
