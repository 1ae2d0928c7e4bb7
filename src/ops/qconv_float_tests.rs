//! The exact float-accumulation path: bit-exact against `cpu::qconv` up to its bound (extreme
//! values included), and the integer kernel above it.

use super::*;
use crate::cpu::qconv::{qconv2d, QResult};
use crate::quant::int8::QWeights;
use crate::testing::gpu;
use rand::{Rng, SeedableRng};

/// A dense layer: `cig` input channels, `k` x `k` taps, `bits`-bit weights drawn from
/// `w(rng)`, signed inputs from `x(rng)`, f32 output (every bit of the sum shows).
fn layer(
    cig: usize,
    k: usize,
    bits: u32,
    mut w: impl FnMut(&mut rand::rngs::StdRng) -> i8,
    mut x: impl FnMut(&mut rand::rngs::StdRng) -> i32,
) -> (QConv, QArray) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cig as u64 * 31 + k as u64);
    let co = 11;
    let shape = [co, cig, k, k];
    let input = QFormat {
        scale: 0.03,
        unsigned: false,
        bits: 8,
        zero_point: 0,
    };
    let xs = [2, cig, k + 1, k + 2];
    let conv = QConv {
        weights: QWeights {
            shape,
            bits,
            q: (0..shape.iter().product()).map(|_| w(&mut rng)).collect(),
            scale: (0..co).map(|_| rng.random_range(0.001..0.02)).collect(),
        },
        bias: Some((0..co).map(|_| rng.random_range(-2.0..2.0)).collect()),
        stride: 1,
        pad: 1.into(),
        dilation: [1, 1],
        groups: 1,
        input,
        input_channel_scales: None,
        act: Act::Identity,
        output: None,
    };
    let q = (0..xs.iter().product()).map(|_| x(&mut rng)).collect();
    (
        conv,
        QArray {
            shape: xs,
            q,
            fmt: input,
        },
    )
}

/// Runs `conv` on the Float path with both load forms; asserts it equals the CPU reference
/// bit for bit and that the Float path was (or was not) taken.
fn check(conv: &QConv, x: &QArray, float: bool) {
    let g = gpu();
    let QResult::F32(want) = qconv2d(conv, x).unwrap() else {
        panic!("f32 output expected")
    };
    let mut layer = QConv2d::new(&g, conv).unwrap();
    layer.path = DotPath::Float;
    let want_path = if float {
        DotPath::Float
    } else {
        DotPath::integer(&g)
    };
    assert_eq!(
        layer.effective_path(),
        want_path,
        "{:?}",
        conv.weights.shape
    );
    let xt = QTensor::upload(&g, x).unwrap();
    for sg in [true, false] {
        layer.subgroups = sg;
        let mut s = g.stream();
        let y = layer.forward(&mut s, &xt).unwrap().into_f32().unwrap();
        s.submit();
        let got = g.read_f32(&y).unwrap();
        let bad = got
            .iter()
            .zip(&want.data)
            .position(|(a, b)| a.to_bits() != b.to_bits());
        assert!(
            bad.is_none(),
            "sg={sg} {:?}: differs at {bad:?}",
            conv.weights.shape
        );
    }
}

/// -128 mostly, -127 at times: odd products, so a sum past 2^24 loses its low bits.
fn near_min(r: &mut rand::rngs::StdRng) -> i32 {
    if r.random_range(0..4) == 0 {
        -127
    } else {
        -128
    }
}

#[test]
fn float_bound_is_k_times_128_times_max_weight() {
    let shape = |cig, k, bits| layer(cig, k, bits, |_| 1, |_| 0).0;
    // 8-bit weights: K <= 1024.
    assert!(float_exact(&shape(64, 4, 8)));
    assert!(!float_exact(&shape(65, 4, 8)));
    assert!(float_exact(&shape(1024, 1, 8)));
    assert!(!float_exact(&shape(1025, 1, 8)));
    // 4-bit weights: K <= 16384.
    assert!(float_exact(&shape(1024, 4, 4)));
    assert!(!float_exact(&shape(1025, 4, 4)));
    // A weight outside its format's range falls back too.
    let mut c = shape(4, 3, 4);
    c.weights.q[5] = 9;
    assert!(!float_exact(&c));
}

#[test]
fn float_path_is_bit_exact_up_to_the_bound() {
    crate::ops::skip_without_gpu!();
    // Random values at K = 1024 (64 channels x 4 x 4) and smaller shapes.
    for (cig, k) in [(64, 4), (7, 3), (36, 1), (13, 2)] {
        let (conv, x) = layer(
            cig,
            k,
            8,
            |r| r.random_range(-127..=127),
            |r| r.random_range(-128..=127),
        );
        check(&conv, &x, true);
    }
    // Extremes at the bound: |sum| reaches 1024 x 128 x 127 away from the padding.
    let (conv, x) = layer(64, 4, 8, |_| -127, near_min);
    check(&conv, &x, true);
    let (conv, x) = layer(64, 4, 8, |r| if r.random() { 127 } else { -127 }, near_min);
    check(&conv, &x, true);
}

#[test]
fn above_the_bound_the_integer_kernel_runs() {
    crate::ops::skip_without_gpu!();
    // K = 1040 with extreme values: past 2^24 a float sum would round.
    let (conv, x) = layer(65, 4, 8, |_| -127, near_min);
    check(&conv, &x, false);
    // Depthwise layers have no float form.
    let (mut conv, mut x) = layer(1, 3, 8, |r| r.random_range(-127..=127), |_| 5);
    conv.weights.shape = [11, 1, 3, 3];
    conv.weights.q.resize(99, 3);
    conv.groups = 11;
    x.shape = [2, 11, 4, 5];
    x.q = vec![-7; 2 * 11 * 20];
    check(&conv, &x, false);
}
