//! Bit-exact checks of the int8 gathers and pools against `cpu::qlayout`, and of the
//! reference against the f32 ops on dequantized values.

use super::*;
use crate::cpu;
use crate::quant::int8::QArray;
use crate::testing::gpu;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

fn fmt(rng: &mut impl Rng, unsigned: bool, zp: bool) -> QFormat {
    let f = if unsigned {
        QFormat::unsigned(rng.random_range(0.01..0.2))
    } else {
        QFormat::signed(rng.random_range(0.01..0.2))
    };
    f.with_zero_point(if zp {
        rng.random_range(-3..4) + if unsigned { 3 } else { 0 }
    } else {
        0
    })
}

fn random_q(shape: [usize; 4], fmt: QFormat, rng: &mut impl Rng) -> QArray {
    let (lo, hi) = fmt.range();
    let q = (0..shape.iter().product())
        .map(|_| rng.random_range(lo..=hi))
        .collect();
    QArray { shape, q, fmt }
}

fn run(x: &QArray, f: impl FnOnce(&mut Stream, &QTensor) -> Result<QTensor>) -> QArray {
    let g = gpu();
    let t = QTensor::upload(&g, x).unwrap();
    let mut s = g.stream();
    let y = f(&mut s, &t).unwrap();
    s.submit();
    y.read(&g).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn gathers_are_bit_exact_and_move_values_exactly(
        c in 1usize..11, h in 1usize..6, kind in 0usize..4, u in any::<bool>(), zp in any::<bool>(),
        seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f = fmt(&mut rng, u, zp);
        let x = random_q([2, c, h, h + 1], f, &mut rng);
        let (g, want_f32) = match kind {
            0 => { let pad = c % 3 + 1; (QGather::shortcut_a(f, c, pad), cpu::layout::shortcut_a(&x.dequantize(), pad)) }
            1 => { let start = c / 3; let len = c - start; (QGather::slice(f, c, start, len), cpu::layout::slice_channels(&x.dequantize(), start..c)) }
            // Whole words: the GPU's word-moving form.
            2 => {
                let (c, pad) = (4 * (c % 3 + 1), 4 * (h % 2 + 1));
                let x = random_q([2, c, h, h + 1], f, &mut rng);
                let g = QGather::shortcut_a(f, c, pad);
                prop_assert!(g.word_map().is_some());
                let want = cpu::qlayout::gather(&g, &x, None).unwrap();
                prop_assert_eq!(&want.dequantize(), &cpu::layout::shortcut_a(&x.dequantize(), pad));
                prop_assert_eq!(run(&x, |s, t| gather(s, &g, t, None)), want);
                return Ok(());
            }
            _ => { let gr = if c % 2 == 0 { 2 } else { 1 }; (QGather::shuffle(f, c, gr).unwrap(), cpu::layout::channel_shuffle(&x.dequantize(), gr)) }
        };
        let want = cpu::qlayout::gather(&g, &x, None).unwrap();
        // Format-preserving gathers are exact data movement.
        prop_assert_eq!(&want.dequantize(), &want_f32);
        let got = run(&x, |s, t| gather(s, &g, t, None));
        prop_assert_eq!(got, want);
    }

    #[test]
    fn concat_requantizes_each_source_bit_exactly(
        ca in 1usize..9, cb in 1usize..9, hw in 1usize..5, signs in 0usize..8, seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (fa, fb, fo) = (fmt(&mut rng, signs & 1 == 1, true), fmt(&mut rng, signs & 2 == 2, false), fmt(&mut rng, signs & 4 == 4, true));
        let (xa, xb) = (random_q([2, ca, hw, hw], fa, &mut rng), random_q([2, cb, hw, hw], fb, &mut rng));
        let g = QGather::concat((fa, ca), (fb, cb), fo);
        let want = cpu::qlayout::gather(&g, &xa, Some(&xb)).unwrap();
        // Within half an output step (plus multiplier rounding) of the real values, clamped.
        let real = cpu::layout::concat(&[&xa.dequantize(), &xb.dequantize()]);
        let (lo, hi) = fo.range();
        for (q, r) in want.q.iter().zip(&real.data) {
            let r = r.clamp(lo as f32 * fo.scale, hi as f32 * fo.scale);
            prop_assert!((*q as f32 * fo.scale - r).abs() <= 0.5001 * fo.scale, "{} vs {}", q, r);
        }
        let g2 = gpu();
        let tb = QTensor::upload(&g2, &xb).unwrap();
        let got = run(&xa, |s, t| gather(s, &g, t, Some(&tb)));
        prop_assert_eq!(got, want);
    }

    /// Int8 spatial padding (every mode, any pads per side, zero points and channel counts off
    /// the 4-word): the GPU equals the reference bit for bit, and the reference is the f32 pad
    /// of the dequantized values with the fill quantized.
    #[test]
    fn pads_are_bit_exact(
        c in 1usize..7, h in 1usize..6, w in 1usize..6, pads in [0usize..3, 0..3, 0..3, 0..3],
        mode in 0usize..3, value in -2.0f32..2.0, u in any::<bool>(), zp in any::<bool>(),
        seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        use crate::ops::pad2d::{padded_shape, PadMode};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f = fmt(&mut rng, u, zp);
        let x = random_q([2, c, h, w], f, &mut rng);
        let pads = crate::ops::Pads::from_onnx(pads);
        let mode = [PadMode::Constant(value), PadMode::Reflect, PadMode::Edge][mode];
        prop_assume!(padded_shape(x.shape, pads, mode).is_ok());
        let want = cpu::qlayout::pad2d(&x, pads, mode).unwrap();
        let fill = match mode {
            PadMode::Constant(v) => PadMode::Constant(f.dequantize(f.quantize(v))),
            m => m,
        };
        prop_assert_eq!(&want.dequantize(), &cpu::pad2d::pad2d(&x.dequantize(), pads, fill));
        prop_assert_eq!(run(&x, |s, t| pad2d(s, t, pads, mode)), want);
    }

    /// Max pools of any undilated window (padding per side, ceil mode) and global average
    /// pools.
    #[test]
    fn pools_are_bit_exact(
        c in 1usize..11, h in 1usize..9, k in 1usize..4, stride in 1usize..3,
        pads in [0usize..3, 0..3, 0..3, 0..3], ceil in any::<bool>(), u in any::<bool>(),
        zp in any::<bool>(), seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let f = fmt(&mut rng, u, zp);
        let x = random_q([2, c, h, h + 2], f, &mut rng);
        let win = Window { kernel: k, stride, pads: crate::ops::Pads::from_onnx(pads), ceil, dilation: [1, 1] };
        if let Ok(want) = cpu::qlayout::max_pool(&x, &win) {
            let real = cpu::pool::pool2d(&x.dequantize(), crate::ops::pool::Pool::Max, &win);
            prop_assert_eq!(&want.dequantize(), &real);
            prop_assert_eq!(run(&x, |s, t| max_pool(s, t, &win)), want);
        }
        let out = fmt(&mut rng, u, zp);
        let want = cpu::qlayout::global_avg_pool(&x, out).unwrap();
        let real = cpu::pool::global_avg_pool(&x.dequantize());
        let (lo, hi) = out.range();
        for (q, r) in want.q.iter().zip(&real.data) {
            let r = r.clamp(lo as f32 * out.scale, hi as f32 * out.scale);
            prop_assert!((*q as f32 * out.scale - r).abs() <= 0.5001 * out.scale, "{} vs {}", q, r);
        }
        prop_assert_eq!(run(&x, |s, t| global_avg_pool(s, t, out)), want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Int8 average pooling over any window (padding per side, counted or not, ceil mode),
    /// zero points and channel counts off the word: the GPU equals the reference bit for bit,
    /// and the reference is within half an output step of the f32 pool of the dequantized
    /// input (clamped to the output's range).
    #[test]
    fn average_pools_are_bit_exact(
        c in 1usize..7, h in 1usize..8, w in 1usize..8, k in 1usize..5, stride in 1usize..4,
        pads in [0usize..3, 0..3, 0..3, 0..3], count_pad in any::<bool>(), ceil in any::<bool>(),
        signs in 0usize..4, zp in any::<bool>(), seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        use crate::ops::pool::Pool;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let (fi, fo) = (fmt(&mut rng, signs & 1 == 1, zp), fmt(&mut rng, signs & 2 == 2, zp));
        let x = random_q([2, c, h, w], fi, &mut rng);
        let window = Window { kernel: k, stride, pads: crate::ops::Pads::from_onnx(pads), ceil, dilation: [1, 1] };
        let pool = QAvgPool { window, count_pad, input: fi, output: fo };
        prop_assume!(pool.out_shape(x.shape).is_ok());
        let want = cpu::qlayout::avg_pool(&x, &pool).unwrap();
        let how = if count_pad { Pool::Avg } else { Pool::AvgOfReal };
        let real = cpu::pool::pool2d(&x.dequantize(), how, &window);
        prop_assert_eq!(&real.shape[..], &want.shape[..]);
        let (lo, hi) = fo.range();
        for (q, r) in want.q.iter().zip(&real.data) {
            let r = r.clamp(lo as f32 * fo.scale, hi as f32 * fo.scale);
            prop_assert!((*q as f32 * fo.scale - r).abs() <= 0.5001 * fo.scale, "{} vs {}", q, r);
        }
        prop_assert_eq!(run(&x, |s, t| avg_pool(s, t, &pool)), want);
    }

    /// Int8 flatten moves stored bytes into feature order (channel * H * W + pixel), four
    /// features per word, for channel and feature counts off the word.
    #[test]
    fn flatten_is_exact_data_movement(
        c in 1usize..10, h in 1usize..5, w in 1usize..5, u in any::<bool>(), zp in any::<bool>(),
        seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let x = random_q([3, c, h, w], fmt(&mut rng, u, zp), &mut rng);
        let want = cpu::qlayout::flatten(&x);
        prop_assert_eq!(&want.shape, &[3, c * h * w, 1, 1]);
        prop_assert_eq!(&want.dequantize().data, &x.dequantize().data);
        prop_assert_eq!(run(&x, flatten), want);
    }
}

/// Word gathers on rows of whole vec4s run four words per invocation (qgather4.wgsl): ResNet's
/// option-A shortcuts (stride 2) and word-aligned channel slices (stride 1), bit for bit.
#[test]
fn word_gathers_on_wide_rows_match_cpu() {
    crate::ops::skip_without_gpu!();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    for &(c, h, w, unsigned) in &[
        (16, 32, 32, true),
        (8, 9, 16, false),
        (4, 4, 8, true),
        (12, 8, 24, true),
    ] {
        let f = fmt(&mut rng, unsigned, false);
        let x = random_q([3, c, h, w], f, &mut rng);
        let shortcut = QGather::shortcut_a(f, c, if c == 16 { 8 } else { 4 });
        let slice = QGather::slice(f, c, 4, c - 4);
        for g in [shortcut, slice].into_iter().filter(|g| !g.map.is_empty()) {
            assert!(g.word_map().is_some());
            let want = cpu::qlayout::gather(&g, &x, None).unwrap();
            assert_eq!(want.shape[3] % 4, 0, "{:?}", want.shape);
            assert_eq!(run(&x, |s, t| gather(s, &g, t, None)), want, "{c} {h}x{w}");
        }
    }
}

/// More than 65,535 images and more than 65,535 x 256 output words (the grid folds into y),
/// bit-exact against the reference.
#[test]
fn large_batches_and_planes_take_several_passes() {
    crate::ops::skip_without_gpu!();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let f = fmt(&mut rng, true, true);
    for shape in [[65_537, 6, 1, 1], [1, 4, 4_100, 4_100]] {
        let x = random_q(shape, f, &mut rng);
        let g = QGather::shuffle(f, shape[1], 2).unwrap();
        let want = cpu::qlayout::gather(&g, &x, None).unwrap();
        assert_eq!(run(&x, |s, t| gather(s, &g, t, None)), want, "{shape:?}");
    }
}

#[test]
fn mismatched_inputs_are_errors() {
    let f = QFormat::signed(0.1);
    let x = QArray {
        shape: [1, 3, 2, 2],
        q: vec![0; 12],
        fmt: f,
    };
    let g = QGather::slice(QFormat::signed(0.2), 3, 0, 2);
    assert!(cpu::qlayout::gather(&g, &x, None).is_err());
    let c = QGather::concat((f, 3), (f, 1), f);
    assert!(cpu::qlayout::gather(&c, &x, None).is_err());
    assert!(cpu::qlayout::max_pool(&x, &Window::new(3, 1, 3)).is_err());
    let dilated = Window {
        dilation: [2, 2],
        ..Window::new(2, 1, 0)
    };
    assert!(cpu::qlayout::max_pool(&x, &dilated).is_err());
    let pool = |kernel, pad: usize| QAvgPool {
        window: Window::new(kernel, 1, pad),
        count_pad: true,
        input: f,
        output: f,
    };
    for (k, pad) in [(3, 3), (3, 0), (0, 0), (257, 200)] {
        assert!(
            cpu::qlayout::avg_pool(&x, &pool(k, pad)).is_err(),
            "{k} {pad}"
        );
    }
}
