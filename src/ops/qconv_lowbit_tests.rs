//! 4-bit (and other low-bit) layers on the INT8 kernels: the input quantizer and the conv
//! keep to the narrow ranges and equal the CPU integer reference bit for bit.

use super::*;
use crate::array::Array;
use crate::cpu::qconv::{qconv2d, QResult};
use crate::quant::int8::{QArray, QWeights};
use crate::testing::gpu;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

/// `bits`-bit per-channel weights of `shape`, uniform over the narrow range, random scales.
fn random_weights(rng: &mut rand::rngs::StdRng, shape: [usize; 4], bits: u32) -> QWeights {
    let qmax = QWeights::qmax(bits) as i8;
    QWeights {
        shape,
        q: (0..shape.iter().product())
            .map(|_| rng.random_range(-qmax..=qmax))
            .collect(),
        scale: (0..shape[0]).map(|_| rng.random_range(0.01..0.1)).collect(),
        bits,
    }
}

/// A random layer of `bits`-bit weights reading `bits`-bit activations, with an f32 input
/// (quantized on the device) and an f32 or `bits`-bit output.
#[allow(clippy::type_complexity)]
fn low_bit_layer(
    (n, c, co, k, stride, pad, extra): (usize, usize, usize, usize, usize, usize, usize),
    (bits, unsigned, output, seed): (u32, bool, Option<bool>, u64),
) -> (QConv, Array) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let side = k.saturating_sub(2 * pad).max(1) + extra;
    let fmt = |u: bool, scale: f32| {
        if u {
            QFormat::unsigned(scale)
        } else {
            QFormat::signed(scale)
        }
        .with_bits(bits)
    };
    let input = fmt(unsigned, rng.random_range(0.05..0.3));
    // Values beyond the low-bit range, so that clamping is exercised.
    let x = Array::random(&[n, c, side, side], seed).map(|v| v * 4.0);
    let shape = [co, c, k, k];
    let conv = QConv {
        weights: random_weights(&mut rng, shape, bits),
        bias: Some((0..co).map(|_| rng.random_range(-0.5..0.5)).collect()),
        stride,
        pad: pad.into(),
        dilation: [1, 1],
        groups: 1,
        input,
        input_channel_scales: None,
        act: if output.is_some() {
            Act::Relu
        } else {
            Act::Identity
        },
        output: output.map(|u| fmt(u, rng.random_range(0.02..0.2))),
    };
    (conv, x)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Quantize (GPU) -> conv (GPU, both dot-product paths) equals the CPU reference, and
    /// every integer stays in its low-bit range.
    #[test]
    fn low_bit_conv_is_bit_exact(
        geometry in (1usize..=2, 1usize..=9, 1usize..=8, prop::sample::select(vec![1usize, 3]),
            1usize..=2, 0usize..=1, 0usize..6),
        bits in prop::sample::select(vec![4u32, 4, 3, 2, 6]),
        unsigned in any::<bool>(),
        output in prop::option::of(any::<bool>()),
        seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let (conv, x) = low_bit_layer(geometry, (bits, unsigned, output, seed));
        let g = gpu();
        let want_q = QArray::quantize(&x, conv.input).unwrap();
        let (lo, hi) = conv.input.range();
        prop_assert!(want_q.q.iter().all(|&v| (lo..=hi).contains(&v)));
        let want = qconv2d(&conv, &want_q).unwrap();
        let mut layer = QConv2d::new(&g, &conv).unwrap();
        for (path, sg) in VARIANTS {
            layer.path = path;
            layer.subgroups = sg;
            let mut s = g.stream();
            let xq = quantize(&mut s, &g.upload_f32(&x.shape, &x.data).unwrap(), conv.input)
                .unwrap();
            let y = layer.forward(&mut s, &xq).unwrap();
            s.submit();
            prop_assert_eq!(&xq.read(&g).unwrap(), &want_q);
            match (y, &want) {
                (QOut::F32(t), QResult::F32(w)) => {
                    let got: Vec<u32> = g.read_f32(&t).unwrap().iter().map(|v| v.to_bits()).collect();
                    let w: Vec<u32> = w.data.iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(got, w, "{:?} sg={}", path, sg);
                }
                (QOut::Q(t), QResult::Q(w)) => {
                    let got = t.read(&g).unwrap();
                    let (lo, hi) = conv.output.unwrap().range();
                    prop_assert!(got.q.iter().all(|&v| (lo..=hi).contains(&v)));
                    prop_assert_eq!(&got, w, "{:?} sg={}", path, sg);
                }
                _ => prop_assert!(false, "output kind differs from the reference"),
            }
        }
    }
}

/// A random conv of `bits`-bit weights and activations with groups (or depthwise), strides,
/// padding and dilation, and its quantized input.
#[allow(clippy::type_complexity)]
fn grouped_layer(
    (n, cig, cog, groups, depthwise): (usize, usize, usize, usize, bool),
    (k, stride, pad, dil, extra): (usize, usize, usize, usize, usize),
    (bits, unsigned, output, seed): (u32, bool, Option<bool>, u64),
) -> (QConv, QArray) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (cig, co) = if depthwise {
        (1, groups)
    } else {
        (cig, cog * groups)
    };
    let c = cig * groups;
    let side = ((k - 1) * dil + 1).saturating_sub(2 * pad).max(1) + extra;
    let fmt = |u: bool| {
        let f = if u {
            QFormat::unsigned(0.1)
        } else {
            QFormat::signed(0.1)
        };
        f.with_bits(bits)
    };
    let input = fmt(unsigned);
    let (lo, hi) = input.range();
    let shape = [co, cig, k, k];
    let conv = QConv {
        weights: random_weights(&mut rng, shape, bits),
        bias: Some((0..co).map(|_| rng.random_range(-0.5..0.5)).collect()),
        stride,
        pad: pad.into(),
        dilation: [dil, dil],
        groups,
        input,
        input_channel_scales: None,
        act: Act::Relu,
        output: output.map(fmt),
    };
    let xs = [n, c, side, side];
    let x = QArray {
        shape: xs,
        q: (0..xs.iter().product())
            .map(|_| rng.random_range(lo..=hi))
            .collect(),
        fmt: input,
    };
    (conv, x)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Nibble-packed weights (chosen automatically at <= 4 bits) give the CPU reference's
    /// results bit for bit on both dot paths, dense, grouped and depthwise, in half the bytes.
    #[test]
    fn nibble_weights_are_bit_exact(
        channels in (1usize..=2, 1usize..=6, 1usize..=6, 1usize..=3, any::<bool>()),
        window in (prop::sample::select(vec![1usize, 2, 3]), 1usize..=2, 0usize..=1,
            1usize..=2, 0usize..4),
        bits in prop::sample::select(vec![4u32, 4, 3, 2]),
        unsigned in any::<bool>(),
        output in prop::option::of(any::<bool>()),
        seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let (mut ch, depthwise) = (channels, channels.4);
        if depthwise {
            // Depthwise layers of up to 12 channels: several packed words, odd counts too.
            ch.3 = ch.1 * ch.3 + ch.2 % 2;
        }
        let (conv, x) = grouped_layer(ch, window, (bits, unsigned, output, seed));
        let g = gpu();
        let want = qconv2d(&conv, &x).unwrap();
        let mut layer = QConv2d::new(&g, &conv).unwrap();
        prop_assert_eq!(layer.weight_layout(), WeightLayout::Nibbles);
        let bytes = QConv2d::with_layout(&g, &conv, WeightLayout::Bytes).unwrap();
        // One-channel groups run on the depthwise kernel whatever the generator meant.
        if conv.weights.shape[1] == 1 && conv.weights.shape[0] == conv.groups {
            let c4 = conv.weights.shape[0].div_ceil(4) as u64;
            prop_assert_eq!(layer.weight_bytes() * c4, bytes.weight_bytes() * c4.div_ceil(2));
        } else {
            prop_assert_eq!(layer.weight_bytes() * 2, bytes.weight_bytes());
        }
        let xq = QTensor::upload(&g, &x).unwrap();
        for (path, sg) in VARIANTS {
            layer.path = path;
            layer.subgroups = sg;
            let mut s = g.stream();
            let y = layer.forward(&mut s, &xq).unwrap();
            s.submit();
            match (y, &want) {
                (QOut::F32(t), QResult::F32(w)) => {
                    let got: Vec<u32> = g.read_f32(&t).unwrap().iter().map(|v| v.to_bits()).collect();
                    let w: Vec<u32> = w.data.iter().map(|v| v.to_bits()).collect();
                    prop_assert_eq!(got, w, "{:?} sg={}", path, sg);
                }
                (QOut::Q(t), QResult::Q(w)) => prop_assert_eq!(&t.read(&g).unwrap(), w, "{:?} sg={}", path, sg),
                _ => prop_assert!(false, "output kind differs from the reference"),
            }
        }
    }
}

/// A 4-bit 64->64 3x3 conv: nibbles at load, exactly half the bytes of the byte layout (one
/// per weight here, the channels being multiples of the tile); 8-bit weights stay bytes and
/// cannot be forced into nibbles.
#[test]
fn nibble_weights_take_half_the_bytes() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let (conv, _) = grouped_layer((1, 64, 64, 1, false), (3, 1, 1, 1, 0), (4, true, None, 7));
    let nib = QConv2d::new(&g, &conv).unwrap();
    let bytes = QConv2d::with_layout(&g, &conv, WeightLayout::Bytes).unwrap();
    assert_eq!(nib.weight_layout(), WeightLayout::Nibbles);
    assert_eq!(
        (nib.weight_bytes(), bytes.weight_bytes()),
        (64 * 64 * 9 / 2, 64 * 64 * 9)
    );
    let mut w8 = conv.clone();
    w8.weights.bits = 8;
    w8.weights.q[0] = 100;
    assert_eq!(
        QConv2d::new(&g, &w8).unwrap().weight_layout(),
        WeightLayout::Bytes
    );
    let e = QConv2d::with_layout(&g, &w8, WeightLayout::Nibbles)
        .err()
        .expect("8-bit");
    assert!(e.to_string().contains("nibble"), "{e}");
}

/// Nibbles only where the weights fit and the 16x-scaled sums cannot overflow i32.
#[test]
fn nibble_layout_is_chosen_only_where_exact() {
    let linear = |k: usize, v: i8, bits: u32| QConv {
        weights: QWeights {
            shape: [1, k, 1, 1],
            q: vec![v; k],
            scale: vec![0.1],
            bits,
        },
        bias: None,
        stride: 1,
        pad: 0.into(),
        dilation: [1, 1],
        groups: 1,
        input: QFormat::signed(0.1).with_bits(4),
        input_channel_scales: None,
        act: Act::Identity,
        output: None,
    };
    assert_eq!(
        WeightLayout::auto(&linear(100, -7, 4)),
        WeightLayout::Nibbles
    );
    assert_eq!(
        WeightLayout::auto(&linear(100, -8, 4)),
        WeightLayout::Nibbles
    );
    assert_eq!(WeightLayout::auto(&linear(100, 7, 8)), WeightLayout::Bytes);
    assert_eq!(WeightLayout::auto(&linear(100, 9, 4)), WeightLayout::Bytes);
    // 7 * 128 * 16 per input: 149,796 inputs still fit below 2^31, 149,797 do not.
    assert_eq!(
        WeightLayout::auto(&linear(149_796, 7, 4)),
        WeightLayout::Nibbles
    );
    assert_eq!(
        WeightLayout::auto(&linear(149_797, 7, 4)),
        WeightLayout::Bytes
    );
}
