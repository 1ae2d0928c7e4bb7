//! Bit-exact checks of the INT8 kernels against `cpu::qconv`, on every dot-product path with
//! plain and subgroup-broadcast weight loads.

use super::*;
use crate::array::Array;
use crate::cpu;
use crate::cpu::qconv::{qadd as cpu_qadd, qconv2d, QResult};
use crate::ops::Pads;
use crate::quant::int8::{QAdd, QWeights};
use crate::testing::gpu;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};

#[derive(Debug)]
pub(super) struct Case {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) co: usize,
    pub(super) groups: usize,
    pub(super) k: usize,
    pub(super) stride: usize,
    pub(super) pad: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) unsigned_in: bool,
    pub(super) output: Option<bool>,
    pub(super) act: Act,
}

pub(super) fn random_layer(case: &Case, seed: u64) -> (QConv, QArray) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let input = QFormat {
        scale: rng.random_range(0.02..0.1),
        unsigned: case.unsigned_in,
        bits: 8,
        zero_point: 0,
    };
    let (lo, hi) = input.range();
    let x = QArray {
        shape: [case.n, case.c, case.h, case.w],
        q: (0..case.n * case.c * case.h * case.w)
            .map(|_| rng.random_range(lo..=hi))
            .collect(),
        fmt: input,
    };
    let shape = [case.co, case.c / case.groups, case.k, case.k];
    let numel = shape.iter().product();
    let weights = QWeights {
        shape,
        bits: 8,
        q: (0..numel).map(|_| rng.random_range(-127..=127)).collect(),
        scale: (0..case.co)
            .map(|_| rng.random_range(0.001..0.02))
            .collect(),
    };
    let conv = QConv {
        weights,
        bias: Some((0..case.co).map(|_| rng.random_range(-2.0..2.0)).collect()),
        stride: case.stride,
        pad: case.pad.into(),
        dilation: [1, 1],
        groups: case.groups,
        input,
        input_channel_scales: None,
        act: case.act,
        output: case.output.map(|u| QFormat {
            scale: rng.random_range(0.05..0.2),
            unsigned: u,
            bits: 8,
            zero_point: 0,
        }),
    };
    (conv, x)
}

/// Runs the layer on every path and load form (and the Winograd form's, where the layer has it)
/// and asserts bit-equality with the CPU reference.
pub(super) fn check(conv: &QConv, x: &QArray) {
    let g = gpu();
    crate::ops::note_untested_subgroups(&g, "qconv");
    let want = qconv2d(conv, x).unwrap();
    let mut layer = QConv2d::new(&g, conv).unwrap();
    let xt = QTensor::upload(&g, x).unwrap();
    let direct = VARIANTS.map(|(path, sg)| (path, sg, false, false, false));
    // Weight loads (subgroups, texture) x rows (aligned where the shape allows, or any).
    let wino = [(true, true), (true, false), (false, false), (true, true)]
        .iter()
        .enumerate()
        .map(|(i, &(sg, tex))| (DotPath::integer(&g), sg, true, tex, i < 3))
        .collect::<Vec<_>>();
    let wino = if winograd_exact(conv) { &wino[..] } else { &[] };
    for &(path, sg, use_winograd, tex, aligned) in direct.iter().chain(wino) {
        layer.path = path;
        layer.subgroups = sg;
        let winograd = if use_winograd {
            WinogradUse::Always
        } else {
            WinogradUse::Never
        };
        layer.set_winograd(&g, winograd).unwrap();
        // The Winograd forms really run (their weights are made on any adapter).
        assert!(!use_winograd || layer.has_winograd());
        layer.texture_weights = tex;
        layer.aligned_rows = aligned;
        let form =
            format!("{path:?} sg={sg} winograd={use_winograd} texture={tex} aligned={aligned}");
        let mut s = g.stream();
        let y = layer.forward(&mut s, &xt).unwrap();
        s.submit();
        match (y, &want) {
            (QOut::F32(t), QResult::F32(w)) => {
                let got = g.read_f32(&t).unwrap();
                assert_eq!(t.shape(), &w.shape[..]);
                let bad = got
                    .iter()
                    .zip(&w.data)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert!(bad.is_none(), "{form} {conv:?}: f32 differs at {bad:?}");
            }
            (QOut::Q(t), QResult::Q(w)) => {
                let got = t.read(&g).unwrap();
                assert_eq!(got.shape, w.shape);
                let bad = got.q.iter().zip(&w.q).position(|(a, b)| a != b);
                assert!(bad.is_none(), "{form} {conv:?}: int8 differs at {bad:?}");
            }
            _ => panic!("output kind differs from the reference"),
        }
    }
}

fn case_strategy() -> impl Strategy<Value = (Case, u64)> {
    let geometry = (
        1usize..=2,
        1usize..=6,
        1usize..=6,
        0usize..3,
        prop::sample::select(vec![1usize, 3, 4]),
    );
    let conv = (1usize..=2, 0usize..=1, 0usize..8, 0usize..8, any::<bool>());
    let epilogue = (prop::option::of(any::<bool>()), 0usize..4, any::<u64>());
    (geometry, conv, epilogue).prop_map(
        |((n, cig, cog, kind, k), (stride, pad, dh, dw, unsigned_in), (output, a, seed))| {
            // kind 0: dense, 1: two groups, 2: depthwise (cig = cog = 1, many groups).
            let (groups, c, co) = match kind {
                0 => (1, cig, cog + 2),
                1 => (2, 2 * cig, 2 * cog),
                _ => (cig + cog, cig + cog, cig + cog),
            };
            let mut act = [Act::Identity, Act::Relu, Act::Relu6, Act::LeakyRelu(0.125)][a];
            if output.is_some() && matches!(act, Act::LeakyRelu(_)) {
                act = Act::Relu;
            }
            let min = k.saturating_sub(2 * pad).max(1);
            let case = Case {
                n,
                c,
                co,
                groups,
                k,
                stride,
                pad,
                h: min + dh,
                w: min + dw,
                unsigned_in,
                output,
                act,
            };
            (case, seed)
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conv_is_bit_exact((case, seed) in case_strategy()) {
        crate::ops::skip_without_gpu!(proptest);
        let (conv, x) = random_layer(&case, seed);
        check(&conv, &x);
    }

    /// Padding that differs per side (ONNX asymmetric / SAME pads): the GPU equals the CPU
    /// reference bit for bit, and both stay within the rounding bound of the real-valued
    /// oracle, which pads explicitly.
    #[test]
    fn asymmetric_pads_are_bit_exact(
        (case, seed) in case_strategy(), pads in [0usize..3, 0..3, 0..3, 0..3],
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let (mut conv, x) = random_layer(&case, seed);
        conv.pad = Pads::from_onnx(pads);
        prop_assume!(conv.out_shape("test", x.shape).is_ok());
        check(&conv, &x);
        check_oracle(&conv, &x, false, &format!("pads {pads:?}"));
    }

    /// Dilated layers (per axis, with strides, pads, groups and depthwise): the CPU reference
    /// equals the same layer with the kernel spread out by zero taps, and the GPU equals it.
    #[test]
    fn dilated_conv_is_bit_exact((case, seed) in case_strategy(), dh in 1usize..4, dw in 1usize..4) {
        crate::ops::skip_without_gpu!(proptest);
        let grow = |d: usize| (case.k - 1) * (d - 1);
        let case = Case { h: case.h + grow(dh), w: case.w + grow(dw), ..case };
        let (mut conv, x) = random_layer(&case, seed);
        conv.dilation = [dh, dw];
        let spread = spread_kernel(&conv);
        prop_assert_eq!(qconv2d(&conv, &x).unwrap(), qconv2d(&spread, &x).unwrap());
        check(&conv, &x);
    }
}

/// The undilated layer with the same output: kernel taps moved d apart, zeros between.
fn spread_kernel(conv: &QConv) -> QConv {
    let [co, cig, kh, kw] = conv.weights.shape;
    let [dh, dw] = conv.dilation;
    let (eh, ew) = ((kh - 1) * dh + 1, (kw - 1) * dw + 1);
    let mut q = vec![0i8; co * cig * eh * ew];
    for (i, &v) in conv.weights.q.iter().enumerate() {
        let (oc, y, x) = (i / (kh * kw), i / kw % kh, i % kw);
        q[(oc * eh + y * dh) * ew + x * dw] = v;
    }
    let weights = QWeights {
        shape: [co, cig, eh, ew],
        q,
        ..conv.weights.clone()
    };
    QConv {
        weights,
        dilation: [1, 1],
        ..conv.clone()
    }
}

fn base_case() -> Case {
    Case {
        n: 2,
        c: 13,
        co: 19,
        groups: 1,
        k: 3,
        stride: 1,
        pad: 1,
        h: 17,
        w: 19,
        unsigned_in: true,
        output: Some(true),
        act: Act::Relu,
    }
}

#[test]
fn large_conv_spans_workgroups_and_tiles() {
    crate::ops::skip_without_gpu!();
    // 646 pixels (3 pixel blocks), 19 channels (3 tiles, last partial), 13 inputs (ragged word).
    for (output, act) in [
        (Some(true), Act::Relu),
        (Some(false), Act::Relu6),
        (None, Act::Identity),
    ] {
        let (conv, x) = random_layer(
            &Case {
                output,
                act,
                ..base_case()
            },
            7,
        );
        check(&conv, &x);
    }
}

/// Every pixels-per-thread variant (1, 2, 4, 8: small calls such as batch 1 on 8x8 maps take
/// the smaller ones), dense and depthwise, including ragged last blocks.
#[test]
fn every_pixel_block_size_is_bit_exact() {
    crate::ops::skip_without_gpu!();
    for (n, h, w, px) in [
        (1, 8, 8, 1),
        (1, 9, 13, 1),
        (1, 8, 16, 2),
        (1, 16, 16, 4),
        (1, 15, 29, 4),
        (2, 16, 17, 8),
    ] {
        assert_eq!(pixels_per_thread(n * h * w), px, "{n}x{h}x{w}");
        for (c, co, groups) in [(13, 19, 1), (12, 12, 12)] {
            let case = Case {
                n,
                c,
                co,
                groups,
                h,
                w,
                ..base_case()
            };
            let (conv, x) = random_layer(&case, (n * h * w + c) as u64);
            check(&conv, &x);
        }
    }
}

/// ONNX-style zero points (as QDQ files carry them) on the input and the int8 output, uint8
/// and int8: GPU and CPU reference stay bit-exact, and the int8 outputs stay in the shifted range.
#[test]
fn nonzero_zero_points_are_bit_exact() {
    crate::ops::skip_without_gpu!();
    for (unsigned_in, zin, out_unsigned, zout) in [
        (true, 37, true, 200),
        (false, -90, false, 60),
        (true, 255, false, -128),
        (false, 127, true, 3),
    ] {
        for act in [Act::Identity, Act::Relu] {
            let case = Case {
                unsigned_in,
                output: Some(out_unsigned),
                act,
                ..base_case()
            };
            let (mut conv, mut x) = random_layer(&case, zin as u64 + 11);
            conv.input = conv.input.with_zero_point(zin);
            let out = conv.output.map(|o| o.with_zero_point(zout));
            conv.output = out;
            let (lo, hi) = conv.input.range();
            let mut rng = rand::rngs::StdRng::seed_from_u64(5);
            x.fmt = conv.input;
            x.q = x.q.iter().map(|_| rng.random_range(lo..=hi)).collect();
            check(&conv, &x);
            if act == Act::Identity {
                let QResult::Q(y) = qconv2d(&conv, &x).unwrap() else {
                    panic!("int8 output expected")
                };
                let (olo, ohi) = out.unwrap().range();
                assert!(y.q.iter().all(|&v| (olo..=ohi).contains(&v)));
            }
        }
    }
}

#[test]
fn grouped_conv_with_groups_straddling_words() {
    crate::ops::skip_without_gpu!();
    // cig = 3: groups share packed words; cog = 5: tiles span two groups.
    let case = Case {
        c: 12,
        co: 20,
        groups: 4,
        stride: 2,
        ..base_case()
    };
    let (conv, x) = random_layer(&case, 3);
    check(&conv, &x);
    let dw = Case {
        c: 11,
        co: 11,
        groups: 11,
        unsigned_in: false,
        output: None,
        ..base_case()
    };
    let (conv, x) = random_layer(&dw, 4);
    check(&conv, &x);
}

#[test]
fn linear_is_bit_exact() {
    crate::ops::skip_without_gpu!();
    for output in [None, Some(false)] {
        let case = Case {
            n: 9,
            c: 37,
            co: 11,
            k: 1,
            pad: 0,
            h: 1,
            w: 1,
            output,
            ..base_case()
        };
        let (conv, x) = random_layer(&case, 5);
        check(&conv, &x);
    }
}

pub(super) fn random_q(shape: [usize; 4], fmt: QFormat, rng: &mut impl Rng) -> QArray {
    let (lo, hi) = fmt.range();
    let q = (0..shape.iter().product())
        .map(|_| rng.random_range(lo..=hi))
        .collect();
    QArray { shape, q, fmt }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn add_is_bit_exact(
        c in 1usize..10, hw in 1usize..6, signs in 0usize..4, out in prop::option::of(any::<bool>()),
        a in 0usize..4, seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let g = gpu();
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut fmt = |u: bool| QFormat { scale: rng.random_range(0.01..0.2), unsigned: u , bits: 8, zero_point: 0};
        let (fa, fb) = (fmt(signs & 1 == 1), fmt(signs & 2 == 2));
        let output = out.map(&mut fmt);
        let mut act = [Act::Identity, Act::Relu, Act::Relu6, Act::LeakyRelu(0.5)][a];
        if output.is_some() && a == 3 {
            act = Act::Identity;
        }
        let add = QAdd { a: fa, b: fb, act, output };
        let (xa, xb) = (random_q([2, c, hw, hw + 1], fa, &mut rng), random_q([2, c, hw, hw + 1], fb, &mut rng));
        let want = cpu_qadd(&add, &xa, &xb).unwrap();
        let mut s = g.stream();
        let (ta, tb) = (QTensor::upload(&g, &xa).unwrap(), QTensor::upload(&g, &xb).unwrap());
        let y = qadd(&mut s, &ta, &tb, &add).unwrap();
        s.submit();
        match (y, want) {
            (QOut::F32(t), QResult::F32(w)) => {
                let got = g.read_f32(&t).unwrap();
                prop_assert!(got.iter().zip(&w.data).all(|(a, b)| a.to_bits() == b.to_bits()));
                // Within the integer multipliers' rounding (half a step of the accumulator's
                // unit per input quantum) plus float rounding of the real sum; the bound is
                // absolute because a + b may cancel.
                let real = cpu::elementwise::add(&xa.dequantize(), &xb.dequantize());
                let real = cpu::elementwise::act(&real, act);
                let unit = add.params().unwrap().scale;
                for (i, (g, r)) in got.iter().zip(&real.data).enumerate() {
                    let steps = (xa.q[i].abs() + xb.q[i].abs()) as f32;
                    let tol = 0.5 * steps * unit * 1.001 + 1e-6 * r.abs().max(1.0);
                    prop_assert!((g - r).abs() <= tol, "{} vs {} (tolerance {})", g, r, tol);
                }
            }
            (QOut::Q(t), QResult::Q(w)) => {
                let got = t.read(&g).unwrap();
                prop_assert_eq!(&got, &w);
                // The lanes past C of the last channel word hold the stored zero point (real 0),
                // which the next layers read as padding.
                let raw = g.read_i8(&t.data).unwrap();
                let (c4, pixels) = (c.div_ceil(4), hw * (hw + 1));
                for (i, &b) in raw.iter().enumerate() {
                    if (i / 4 / pixels) % c4 * 4 + i % 4 >= c {
                        prop_assert_eq!(b as i32, -w.fmt.offset(), "byte {}", i);
                    }
                }
                // Within half an output step of the real sum, plus the multipliers' rounding
                // (half an accumulator unit per input quantum, as above) and the f32 rounding of
                // the real sum, whose terms may cancel. A near-tie case failed a bare half step.
                let real = cpu::elementwise::add(&xa.dequantize(), &xb.dequantize());
                let s = w.fmt.scale;
                let unit = add.params().unwrap().scale;
                for (i, (q, r)) in w.q.iter().zip(&real.data).enumerate() {
                    let r = act.apply(*r).clamp(w.fmt.range().0 as f32 * s, w.fmt.range().1 as f32 * s);
                    let steps = (xa.q[i].abs() + xb.q[i].abs()) as f32;
                    let terms = xa.q[i].abs() as f32 * fa.scale + xb.q[i].abs() as f32 * fb.scale;
                    let tol = 0.5 * s + 0.5 * steps * unit * 1.001 + 1e-6 * terms.max(1.0);
                    prop_assert!((*q as f32 * s - r).abs() <= tol, "{q} vs {r} (tolerance {tol})");
                }
            }
            _ => prop_assert!(false, "output kind differs"),
        }
    }
}

#[test]
fn add_rejects_mismatches() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let f = QFormat::signed(0.1);
    let a = QTensor::upload(
        &g,
        &QArray {
            shape: [1, 2, 2, 2],
            q: vec![0; 8],
            fmt: f,
        },
    )
    .unwrap();
    let b = QTensor::upload(
        &g,
        &QArray {
            shape: [1, 2, 2, 1],
            q: vec![0; 4],
            fmt: f,
        },
    )
    .unwrap();
    let add = QAdd {
        a: f,
        b: f,
        act: Act::Identity,
        output: None,
    };
    assert!(qadd(&mut g.stream(), &a, &b, &add).is_err());
    let other = QAdd {
        b: QFormat::unsigned(0.1),
        ..add
    };
    assert!(qadd(&mut g.stream(), &a, &a, &other).is_err());
    let tanh = QAdd {
        act: Act::Tanh,
        ..add
    };
    assert!(qadd(&mut g.stream(), &a, &a, &tanh).is_err());
    assert!(qadd(&mut g.stream(), &a, &a, &add).is_ok());
}

#[test]
fn quantize_roundtrip_matches_cpu() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    // Scale 0.5: v * 2 hits exact halves (ties to even), and values beyond the range clamp.
    let x = Array::random(&[2, 6, 3, 5], 1).map(|v| (v * 300.0).round() / 4.0);
    let x2 = Array::random(&[1, 9, 4, 7], 2).map(|v| (v * 40.0).round() / 4.0);
    let cases = [
        (&x, QFormat::unsigned(0.5)),
        (&x, QFormat::signed(0.5)),
        (&x, QFormat::signed(0.037)),
        // ONNX zero points, and a 4-bit format with one.
        (&x, QFormat::unsigned(0.5).with_zero_point(7)),
        (&x, QFormat::signed(0.037).with_zero_point(-5)),
        (&x2, QFormat::unsigned(0.5).with_zero_point(3).with_bits(4)),
        (&x2, QFormat::signed(0.25).with_bits(4)),
    ];
    for (x, fmt) in cases {
        let xt = g.upload_f32(&x.shape, &x.data).unwrap();
        let want = QArray::quantize(x, fmt).unwrap();
        let mut s = g.stream();
        let q = quantize(&mut s, &xt, fmt).unwrap();
        let back = dequantize(&mut s, &q).unwrap();
        s.submit();
        assert_eq!(q.read(&g).unwrap(), want);
        let got = g.read_f32(&back).unwrap();
        let deq = want.dequantize();
        assert!(got
            .iter()
            .zip(&deq.data)
            .all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

#[test]
fn quantized_layers_chain() {
    crate::ops::skip_without_gpu!();
    // quantize -> conv (int8 out) -> conv (f32 out) on the GPU equals the same on the CPU.
    let g = gpu();
    let x = Array::random(&[2, 5, 6, 6], 9);
    let (mut c1, _) = random_layer(
        &Case {
            c: 5,
            co: 6,
            h: 6,
            w: 6,
            ..base_case()
        },
        1,
    );
    c1.input = QFormat::signed(0.01);
    let (mut c2, _) = random_layer(
        &Case {
            c: 6,
            co: 3,
            output: None,
            ..base_case()
        },
        2,
    );
    c2.input = c1.output.unwrap();
    let (l1, l2) = (
        QConv2d::new(&g, &c1).unwrap(),
        QConv2d::new(&g, &c2).unwrap(),
    );
    let mut s = g.stream();
    let q = quantize(&mut s, &g.upload_f32(&x.shape, &x.data).unwrap(), c1.input).unwrap();
    let y = l1.forward(&mut s, &q).unwrap().into_q().unwrap();
    let z = l2.forward(&mut s, &y).unwrap().into_f32().unwrap();
    s.submit();
    let QResult::Q(y_cpu) = qconv2d(&c1, &QArray::quantize(&x, c1.input).unwrap()).unwrap() else {
        panic!()
    };
    let QResult::F32(z_cpu) = qconv2d(&c2, &y_cpu).unwrap() else {
        panic!()
    };
    assert_eq!(g.read_f32(&z).unwrap(), z_cpu.data);
}

#[test]
fn bad_shapes_are_errors() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let (conv, x) = random_layer(&base_case(), 1);
    let layer = QConv2d::new(&g, &conv).unwrap();
    let wrong_c = QArray {
        shape: [2, 12, 17, 19],
        q: vec![0; 2 * 12 * 17 * 19],
        ..x.clone()
    };
    let err = layer
        .forward(&mut g.stream(), &QTensor::upload(&g, &wrong_c).unwrap())
        .unwrap_err()
        .to_string();
    assert!(err.contains("qconv") && err.contains("do not fit"), "{err}");
    let signed = QArray {
        fmt: QFormat::signed(x.fmt.scale),
        ..x.clone()
    };
    let xt = QTensor::upload(&g, &signed).unwrap();
    assert!(layer
        .forward(&mut g.stream(), &xt)
        .unwrap_err()
        .to_string()
        .contains("format"));

    let mut bad = conv.clone();
    bad.bias = Some(vec![0.0; 3]);
    assert!(QConv2d::new(&g, &bad).is_err());
    bad = conv.clone();
    bad.act = Act::Tanh;
    assert!(QConv2d::new(&g, &bad).is_err());
    bad.output = None;
    assert!(QConv2d::new(&g, &bad).is_err());
    bad = conv.clone();
    bad.groups = 2; // 19 output channels do not split into 2 groups
    assert!(QConv2d::new(&g, &bad).is_err());
    bad = conv.clone();
    bad.weights.scale[3] = 0.0;
    assert!(QConv2d::new(&g, &bad).is_err());
    bad = conv.clone();
    bad.stride = 0;
    assert!(QConv2d::new(&g, &bad).is_err());
    bad = conv.clone();
    bad.pad = 0.into(); // a 3x3 kernel does not fit a 2x2 input without padding
    let tiny = QArray {
        shape: [1, 13, 2, 2],
        q: vec![0; 52],
        ..x
    };
    let err = QConv2d::new(&g, &bad)
        .unwrap()
        .forward(&mut g.stream(), &QTensor::upload(&g, &tiny).unwrap())
        .unwrap_err();
    assert!(err.to_string().contains("kernel 3x3"), "{err}");

    let mut s = g.stream();
    let f = g.upload_f32(&[2, 3, 4], &[0.0; 24]).unwrap();
    assert!(quantize(&mut s, &f, QFormat::signed(1.0)).is_err());
    let f = g.upload_f32(&[2, 12], &[0.0; 24]).unwrap();
    assert!(quantize(&mut s, &f, QFormat::signed(0.0)).is_err());
    assert_eq!(
        quantize(&mut s, &f, QFormat::signed(1.0)).unwrap().shape,
        [2, 12, 1, 1]
    );
}

#[test]
fn requantization_rounds_half_to_even() {
    crate::ops::skip_without_gpu!();
    // m = 1 * 0.5 / 1 = 0.5 exactly, so odd inputs land on ties: 1 -> 0, 3 -> 2, 5 -> 2.
    let x = QArray {
        shape: [1, 1, 1, 256],
        q: (0..256).collect(),
        fmt: QFormat::unsigned(1.0),
    };
    let conv = QConv {
        weights: QWeights {
            shape: [1, 1, 1, 1],
            bits: 8,
            q: vec![1],
            scale: vec![0.5],
        },
        bias: None,
        stride: 1,
        pad: 0.into(),
        dilation: [1, 1],
        groups: 1,
        input: x.fmt,
        input_channel_scales: None,
        act: Act::Identity,
        output: Some(QFormat::signed(1.0)),
    };
    let QResult::Q(want) = qconv2d(&conv, &x).unwrap() else {
        panic!()
    };
    assert_eq!(&want.q[..6], &[0, 0, 1, 2, 2, 2]);
    check(&conv, &x);
}

#[test]
#[ignore = "benchmark: cargo test --lib print_int8_bench -- --ignored --nocapture"]
fn print_int8_bench() {
    crate::ops::skip_without_gpu!();
    let quick = std::env::var_os("SYNTHCAL_BENCH_QUICK").is_some();
    for (name, gops, ms) in int8_bench(&gpu(), quick).unwrap() {
        println!("{name:50} {gops:8.2} GOP/s {ms:9.2} ms");
    }
}

#[test]
fn depthwise_per_channel_input_scales_are_bit_exact() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    for (unsigned_in, output) in [(true, None), (false, Some(true)), (true, Some(false))] {
        let case = Case {
            n: 2,
            c: 10,
            co: 10,
            groups: 10,
            k: 3,
            stride: 1,
            pad: 1,
            h: 5,
            w: 6,
            unsigned_in,
            output,
            act: Act::Relu,
        };
        let (mut conv, _) = random_layer(&case, 21);
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let scales: Vec<f32> = (0..10).map(|_| rng.random_range(0.005..0.2)).collect();
        conv.input.scale = scales.iter().cloned().fold(0.0, f32::max);
        conv.input_channel_scales = Some(scales);
        let x = Array::random(&[2, 10, 5, 6], 9).map(|v| 3.0 * v);
        let want_q = conv.quantize_input(&x).unwrap();
        let layer = QConv2d::new(&g, &conv).unwrap();
        let mut s = g.stream();
        let qx = layer
            .quantize_input(&mut s, &g.upload_f32(&x.shape, &x.data).unwrap())
            .unwrap();
        s.submit();
        assert_eq!(qx.read(&g).unwrap().q, want_q.q, "per-channel quantize");
        // Channels really use their own scales: channel 0 differs from per-tensor quantization.
        assert_ne!(want_q.q, QArray::quantize(&x, conv.input).unwrap().q);
        check(&conv, &want_q);
    }
    // A per-channel description on a non-depthwise layer is refused.
    let (mut dense, _) = random_layer(&base_case(), 3);
    dense.input_channel_scales = Some(vec![0.1; dense.weights.shape[1]]);
    assert!(QConv2d::new(&g, &dense).is_err());
}

// Independent oracle. Everything below computes the *ideal* layer from the scheme's definition
// (real input q * s_in[channel], real weight q * s_w[out channel], f64 sums, the float bias,
// the activation, then for int8 output v / s_out rounded half to even and clamped), sharing no
// code with `cpu::qconv` (no `requant`, no `accumulate`). Where every scale is a power of two
// and each bias a multiple of its accumulator step, the scheme is exact and CPU and GPU must
// equal the oracle bit for bit; with arbitrary scales the bias rounding (half an accumulator
// step) and f32 rounding of the product bound the difference (`allowed`).

/// The ideal pre-rounding outputs: real values (f32 output) or value / out_scale (int8).
fn oracle(conv: &QConv, x: &QArray) -> Vec<f64> {
    let [n, c, h, w] = x.shape;
    let [co, cig, kh, kw] = conv.weights.shape;
    let (s, g) = (conv.stride, conv.groups);
    let [t, l, b, r] = conv.pad.onnx();
    let (oh, ow) = ((h + t + b - kh) / s + 1, (w + l + r - kw) / s + 1);
    let s_in = |ch: usize| match &conv.input_channel_scales {
        Some(cs) => cs[ch] as f64,
        None => conv.input.scale as f64,
    };
    let mut out = Vec::new();
    for b in 0..n {
        for o in 0..co {
            let ws = conv.weights.scale[o] as f64;
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut y = conv.bias.as_ref().map_or(0.0, |bs| bs[o] as f64);
                    for i in 0..cig {
                        let ci = o / (co / g) * cig + i;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * s + ky).wrapping_sub(t);
                                let ix = (ox * s + kx).wrapping_sub(l);
                                if iy >= h || ix >= w {
                                    continue;
                                }
                                let xv = x.q[((b * c + ci) * h + iy) * w + ix] as f64 * s_in(ci);
                                let wi = ((o * cig + i) * kh + ky) * kw + kx;
                                y += xv * conv.weights.q[wi] as f64 * ws;
                            }
                        }
                    }
                    let y = match conv.act {
                        Act::Identity => y,
                        Act::Relu => y.max(0.0),
                        Act::Relu6 => y.clamp(0.0, 6.0),
                        Act::LeakyRelu(a) if y < 0.0 => y * a as f64,
                        Act::LeakyRelu(_) => y,
                        a => panic!("oracle: {a:?} is not fused"),
                    };
                    out.push(conv.output.map_or(y, |f| y / f.scale as f64));
                }
            }
        }
    }
    out
}

/// The accepted outputs `[lo, hi]` for ideal value `v` of output channel `o`: exactly
/// `clamp(rne(v))` when `exact`, else every value within `tol` of `v` (so a near-tie may
/// round either way).
fn allowed(conv: &QConv, o: usize, v: f64, exact: bool) -> (f64, f64) {
    let s_in = conv
        .input_channel_scales
        .as_ref()
        .map_or(conv.input.scale, |cs| cs[o]) as f64;
    let out = conv.output.map_or(1.0, |f| f.scale as f64);
    let step = s_in * conv.weights.scale[o] as f64 / out;
    // The bias rounded to the accumulator step (half a step), and three f32 roundings.
    let tol = if exact {
        0.0
    } else {
        0.5 * step + 4.0 * f32::EPSILON as f64 * v.abs()
    };
    match conv.output {
        None => (v - tol, v + tol),
        Some(f) => {
            let (lo, hi) = f.range();
            let q = |u: f64| u.round_ties_even().clamp(lo as f64, hi as f64);
            (q(v - tol), q(v + tol))
        }
    }
}

fn run_gpu(conv: &QConv, x: &QArray, path: DotPath) -> Vec<f64> {
    let g = gpu();
    let mut layer = QConv2d::new(&g, conv).unwrap();
    layer.path = path;
    let xt = QTensor::upload(&g, x).unwrap();
    let mut s = g.stream();
    let y = layer.forward(&mut s, &xt).unwrap();
    s.submit();
    match y {
        QOut::F32(t) => g.read_f32(&t).unwrap().iter().map(|&v| v as f64).collect(),
        QOut::Q(t) => t.read(&g).unwrap().q.iter().map(|&v| v as f64).collect(),
    }
}

fn values(r: QResult) -> Vec<f64> {
    match r {
        QResult::F32(a) => a.data.iter().map(|&v| v as f64).collect(),
        QResult::Q(q) => q.q.iter().map(|&v| v as f64).collect(),
    }
}

/// CPU reference and the GPU paths against the oracle; returns how many outputs were exact
/// ties (ideal value k + 0.5 inside the output range).
fn check_oracle(conv: &QConv, x: &QArray, exact: bool, what: &str) -> usize {
    let want = oracle(conv, x);
    let co = conv.weights.shape[0];
    let per = want.len() / (x.shape[0] * co);
    let got = [
        ("cpu", values(qconv2d(conv, x).unwrap())),
        ("gpu packed", run_gpu(conv, x, DotPath::Packed)),
        ("gpu unpacked", run_gpu(conv, x, DotPath::Unpacked)),
        ("gpu float", run_gpu(conv, x, DotPath::Float)),
    ];
    for (name, got) in &got {
        assert_eq!(got.len(), want.len(), "{what} {name}");
        for (i, (&g, &v)) in got.iter().zip(&want).enumerate() {
            let o = i / per % co;
            let (lo, hi) = allowed(conv, o, v, exact);
            assert!(
                lo <= g && g <= hi,
                "{what} {name}: output {i} (channel {o}) = {g}, ideal {v} accepts [{lo}, {hi}]\n{conv:?}"
            );
        }
    }
    let Some(out) = conv.output else { return 0 };
    let (lo, hi) = out.range();
    let tie = |v: f64| v - v.floor() == 0.5 && v > lo as f64 && v < hi as f64;
    want.iter().filter(|&&v| tie(v)).count()
}

/// A random layer whose scales are all powers of two and whose biases are whole accumulator
/// steps: the scheme is exact, and the output scale is picked so that many outputs are ties.
fn dyadic_layer(rng: &mut impl Rng, case: &Case, per_channel: bool) -> (QConv, QArray) {
    let pow2 = |e: i32| 2f32.powi(e);
    let channel_scales: Option<Vec<f32>> =
        per_channel.then(|| (0..case.c).map(|_| pow2(-rng.random_range(3..9))).collect());
    let input = QFormat {
        scale: match &channel_scales {
            Some(cs) => cs.iter().cloned().fold(0.0, f32::max),
            None => pow2(-rng.random_range(3..7)),
        },
        unsigned: case.unsigned_in,
        bits: 8,
        zero_point: 0,
    };
    // Half of the layers have small integers: small accumulators, output steps near 1/2 and so
    // many ties; the others use the full ranges.
    let small = rng.random_bool(0.5);
    let (lo, hi) = input.range();
    let (lo, hi) = if small {
        (lo.max(-3), hi.min(3))
    } else {
        (lo, hi)
    };
    let x = QArray {
        shape: [case.n, case.c, case.h, case.w],
        q: (0..case.n * case.c * case.h * case.w)
            .map(|_| rng.random_range(lo..=hi))
            .collect(),
        fmt: input,
    };
    let shape = [case.co, case.c / case.groups, case.k, case.k];
    let (wmax, bmax) = if small { (2, 20) } else { (127, 3000) };
    let w_scale: Vec<f32> = (0..case.co)
        .map(|_| pow2(-rng.random_range(4..9)))
        .collect();
    let s_in = |o: usize| channel_scales.as_ref().map_or(input.scale, |cs| cs[o]);
    let bias = (0..case.co)
        .map(|o| rng.random_range(-bmax..bmax) as f32 * s_in(o) * w_scale[o])
        .collect();
    let mut conv = QConv {
        weights: QWeights {
            shape,
            bits: 8,
            q: (0..shape.iter().product())
                .map(|_| rng.random_range(-wmax..=wmax))
                .collect(),
            scale: w_scale,
        },
        bias: Some(bias),
        stride: case.stride,
        pad: case.pad.into(),
        dilation: [1, 1],
        groups: case.groups,
        input,
        input_channel_scales: channel_scales,
        act: case.act,
        output: None,
    };
    if let Some(u) = case.output {
        // An output step near a hundredth of the largest ideal value (a tenth for small
        // layers), as a power of two.
        let top = oracle(&conv, &x)
            .iter()
            .fold(1e-9f64, |m, v| m.max(v.abs()));
        let levels = if small { 10.0 } else { 100.0 };
        conv.output = Some(QFormat {
            scale: pow2((top / levels).log2().round() as i32),
            unsigned: u,
            bits: 8,
            zero_point: 0,
        });
    }
    (conv, x)
}

/// Random dense, grouped and depthwise layers (depthwise with per-channel input scales half of
/// the time), all output kinds and fused activations, exact scales: CPU and GPU equal the
/// oracle bit for bit, and the cases hold hundreds of exact ties.
#[test]
fn int8_matches_an_independent_oracle_exactly_on_dyadic_scales() {
    crate::ops::skip_without_gpu!();
    let mut rng = rand::rngs::StdRng::seed_from_u64(19);
    let (mut ties, mut per_channel_cases) = (0, 0);
    for i in 0..36 {
        let kind = i % 3;
        let (c, co, groups) = match kind {
            0 => (rng.random_range(1..6), rng.random_range(1..7), 1),
            1 => (4, 6, 2),
            _ => (7, 7, 7),
        };
        let output = [None, Some(true), Some(false)][i / 3 % 3];
        let mut act = [Act::Identity, Act::Relu, Act::Relu6, Act::LeakyRelu(0.125)][i / 9 % 4];
        if output.is_some() && matches!(act, Act::LeakyRelu(_)) {
            act = Act::Identity;
        }
        let k = [1, 3][i % 2];
        let case = Case {
            n: 2,
            c,
            co,
            groups,
            k,
            stride: 1 + (i / 2) % 2,
            pad: k / 2,
            h: 5,
            w: 6,
            unsigned_in: rng.random_bool(0.5),
            output,
            act,
        };
        let per_channel = kind == 2 && rng.random_bool(0.5);
        per_channel_cases += per_channel as usize;
        let (conv, x) = dyadic_layer(&mut rng, &case, per_channel);
        ties += check_oracle(&conv, &x, true, &format!("case {i}"));
    }
    assert!(
        per_channel_cases >= 3,
        "{per_channel_cases} per-channel cases"
    );
    assert!(ties >= 100, "only {ties} exact ties were generated");
}

/// Arbitrary scales (as calibration gives them), depthwise with per-channel input scales
/// included: every output within the documented bound of the ideal one.
#[test]
fn int8_is_within_the_rounding_bound_of_the_oracle() {
    crate::ops::skip_without_gpu!();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for i in 0..18 {
        let mut case = base_case();
        (case.h, case.w) = (7, 9);
        case.output = [None, Some(true), Some(false)][i % 3];
        case.unsigned_in = i % 2 == 0;
        if i % 3 != 0 {
            (case.c, case.co, case.groups) = (9, 9, 9);
        }
        let (mut conv, x) = random_layer(&case, 100 + i as u64);
        if case.groups == 9 {
            let cs: Vec<f32> = (0..9).map(|_| rng.random_range(0.005..0.2)).collect();
            conv.input.scale = cs.iter().cloned().fold(0.0, f32::max);
            conv.input_channel_scales = Some(cs);
        }
        let x = QArray {
            fmt: conv.input,
            ..x
        };
        check_oracle(&conv, &x, false, &format!("case {i}"));
    }
}
