//! 4-bit (and other low-bit) layers on the INT8 kernels: the input quantizer and the conv
//! keep to the narrow ranges and equal the CPU integer reference bit for bit.

use super::*;
use crate::array::Array;
use crate::cpu::qconv::{qconv2d, QResult};
use crate::quant::int8::{QArray, QWeights};
use crate::testing::gpu;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

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
    let qmax = QWeights::qmax(bits) as i8;
    let shape = [co, c, k, k];
    let conv = QConv {
        weights: QWeights {
            shape,
            q: (0..shape.iter().product())
                .map(|_| rng.random_range(-qmax..=qmax))
                .collect(),
            scale: (0..co).map(|_| rng.random_range(0.01..0.1)).collect(),
            bits,
        },
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
        for path in [DotPath::Packed, DotPath::Unpacked] {
            layer.path = path;
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
                    prop_assert_eq!(got, w, "{:?}", path);
                }
                (QOut::Q(t), QResult::Q(w)) => {
                    let got = t.read(&g).unwrap();
                    let (lo, hi) = conv.output.unwrap().range();
                    prop_assert!(got.q.iter().all(|&v| (lo..=hi).contains(&v)));
                    prop_assert_eq!(&got, w, "{:?}", path);
                }
                _ => prop_assert!(false, "output kind differs from the reference"),
            }
        }
    }
}
