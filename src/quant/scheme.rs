//! Quantizer parameters as OpenVINO POT's "performance" preset (CPU/ANY target) computes them.
//!
//! - Weights: 8-bit symmetric per output channel, narrow range [-127, 127], scale = max|w| / 127
//!   (`int8::QWeights::quantize`).
//! - Activations: 8-bit symmetric per tensor; unsigned [0, 255] with scale = max / 255 when the
//!   range's minimum is >= 0 (after ReLU), else signed [-128, 127] with scale = max|v| / 127.
//! - Rounding: half to even of `v * (1 / scale)` (`QFormat::quantize`), identical in the WGSL
//!   kernels and the CPU reference.
//! - Scales are never below `MIN_SCALE`, so an all-zero range quantizes to zero instead of
//!   dividing by zero.

use super::int8::QFormat;

/// The smallest scale a range can get (a constant input still gets a valid format).
pub const MIN_SCALE: f32 = 1e-8;

/// The activation format for an observed range.
pub fn activation_format(min: f32, max: f32) -> QFormat {
    activation_format_bits(min, max, 8)
}

/// The `bits`-bit activation format for an observed range: unsigned `[0, 2^bits - 1]` with
/// scale `max / (2^bits - 1)` when `min >= 0`, else signed with scale
/// `max|v| / (2^(bits-1) - 1)`.
pub fn activation_format_bits(min: f32, max: f32, bits: u32) -> QFormat {
    let b = bits.clamp(2, 8);
    let (u, s) = (((1u32 << b) - 1) as f32, ((1u32 << (b - 1)) - 1) as f32);
    if min >= 0.0 {
        QFormat::unsigned((max / u).max(MIN_SCALE)).with_bits(b)
    } else {
        QFormat::signed((min.abs().max(max.abs()) / s).max(MIN_SCALE)).with_bits(b)
    }
}

/// Per-channel formats sharing one signedness (unsigned when no channel goes below zero):
/// the representative format (the largest scale) and each channel's scale. No channel scale
/// is below 1/256 of the largest, so a dead channel (range 0) keeps a scale at which its bias,
/// folded into the accumulator at `scale * w_scale`, stays representable.
pub fn channel_formats(ranges: &[(f32, f32)]) -> (QFormat, Vec<f32>) {
    channel_formats_bits(ranges, 8)
}

/// [`channel_formats`] at `bits` bits.
pub fn channel_formats_bits(ranges: &[(f32, f32)], bits: u32) -> (QFormat, Vec<f32>) {
    let unsigned = ranges.iter().all(|&(lo, _)| lo >= 0.0);
    let scales: Vec<f32> = ranges
        .iter()
        .map(|&(lo, hi)| {
            if unsigned {
                activation_format_bits(0.0, hi, bits).scale
            } else {
                activation_format_bits(-(lo.abs().max(hi.abs())), hi, bits).scale
            }
        })
        .collect();
    let top = scales.iter().cloned().fold(MIN_SCALE, f32::max);
    let scales: Vec<f32> = scales.iter().map(|&v| v.max(top / 256.0)).collect();
    let fmt = if unsigned {
        QFormat::unsigned(top)
    } else {
        QFormat::signed(top)
    };
    (fmt.with_bits(bits.clamp(2, 8)), scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsigned_after_relu_signed_otherwise() {
        let a = activation_format(0.0, 2.55);
        assert!(a.unsigned && (a.scale - 0.01).abs() < 1e-7);
        assert_eq!(a.quantize(1.0), 100);
        assert_eq!(a.quantize(-1.0), 0);
        assert_eq!(a.quantize(9.0), 255);
        let s = activation_format(-1.27, 0.5);
        assert!(!s.unsigned && (s.scale - 0.01).abs() < 1e-7);
        assert_eq!(s.quantize(-5.0), -128);
        assert_eq!(activation_format(0.0, 0.0).scale, MIN_SCALE);
        let a4 = activation_format_bits(0.0, 1.5, 4);
        assert_eq!((a4.bits, a4.scale, a4.quantize(9.0)), (4, 0.1, 15));
        let s4 = activation_format_bits(-0.7, 0.1, 4);
        assert_eq!((s4.unsigned, s4.scale, s4.quantize(-9.0)), (false, 0.1, -8));
    }

    #[test]
    fn channel_formats_share_signedness() {
        let (f, s) = channel_formats(&[(0.0, 2.55), (0.0, 5.1)]);
        assert!(f.unsigned && (f.scale - 0.02).abs() < 1e-7);
        assert!((s[0] - 0.01).abs() < 1e-7 && (s[1] - 0.02).abs() < 1e-7);
        let (f, s) = channel_formats(&[(0.0, 2.54), (-1.27, 0.5)]);
        assert!(!f.unsigned && (s[0] - 0.02).abs() < 1e-7 && (s[1] - 0.01).abs() < 1e-7);
        // A dead channel gets 1/256 of the largest scale, not MIN_SCALE.
        let (_, s) = channel_formats(&[(0.0, 0.0), (0.0, 2.55)]);
        assert!((s[0] - s[1] / 256.0).abs() < 1e-12);
    }
}
