//! The INT8 Winograd form against the CPU integer reference, bit for bit (through
//! `tests::check`, which runs every direct and Winograd form), and the bound that keeps it
//! exact.

use super::tests::{check, random_layer, Case};
use super::*;
use crate::quant::int8::{QAdd, QArray};
use proptest::prelude::*;

fn layer(n: usize, c: usize, co: usize, h: usize, w: usize, output: Option<bool>) -> Case {
    Case {
        n,
        c,
        co,
        groups: 1,
        k: 3,
        stride: 1,
        pad: 1,
        h,
        w,
        unsigned_in: true,
        output,
        act: Act::Relu,
    }
}

/// ResNet-20's shapes, with maps that end in partial tiles and channel counts that are not
/// multiples of 4, 8 or 16.
#[test]
fn winograd_matches_cpu_on_resnet_shapes() {
    crate::ops::skip_without_gpu!();
    for (i, &(c, co, h, w, output)) in [
        (16, 16, 32, 32, Some(true)),
        (32, 32, 16, 16, Some(true)),
        (64, 64, 8, 8, None),
        (13, 19, 9, 7, Some(false)),
        (5, 3, 6, 5, None),
    ]
    .iter()
    .enumerate()
    {
        let (conv, x) = random_layer(&layer(2, c, co, h, w, output), i as u64);
        assert!(winograd_exact(&conv));
        check(&conv, &x);
    }
}

/// Aligned rows where the right padding spans more than a tile (width 8, 20 outputs): the
/// last tile's left column (15) is padding too.
#[test]
fn winograd_aligned_rows_with_wide_right_padding() {
    crate::ops::skip_without_gpu!();
    let (mut conv, x) = random_layer(&layer(2, 8, 8, 6, 8, Some(true)), 11);
    conv.pad.end = [1, 13];
    assert!(winograd_exact(&conv));
    check(&conv, &x);
}

/// The sums stay exact up to |sum| < 2^25: 229 input channels of weight 127 against inputs of
/// -128 give -33,503,616 and run on the Winograd form; 230 channels (-33,649,920) would wrap
/// and are left to the direct kernel.
#[test]
fn winograd_sum_bound_is_tight() {
    crate::ops::skip_without_gpu!();
    for (c, exact) in [(229, true), (230, false)] {
        let mut case = layer(1, c, 8, 5, 6, None);
        case.unsigned_in = false;
        let (mut conv, mut x) = random_layer(&case, 7);
        conv.weights.q.fill(127);
        conv.act = Act::Identity;
        x.q.fill(-128);
        assert_eq!(winograd_exact(&conv), exact, "{c} channels");
        check(&conv, &x);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Random sizes, channel counts, padding, signedness, output forms and activations.
    #[test]
    fn winograd_random_layers_match_cpu(
        n in 1usize..=2, c in 1usize..=40, co in 1usize..=24, h in 1usize..=11,
        w in 1usize..=11, pad in 0usize..=2, unsigned_in in any::<bool>(),
        output in prop::option::of(any::<bool>()), a in 0usize..4, seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        // Each epilogue is its own pipeline (MODE, ACT, HAS_RES overrides); leaky ReLU has
        // no int8 output form.
        let mut act = [Act::Identity, Act::Relu, Act::Relu6, Act::LeakyRelu(0.125)][a];
        if output.is_some() && matches!(act, Act::LeakyRelu(_)) {
            act = Act::Relu;
        }
        let case = Case { pad, unsigned_in, act, ..layer(n, c, co, h + 2, w + 2, output) };
        let (conv, x) = random_layer(&case, seed);
        prop_assert!(winograd_exact(&conv));
        check(&conv, &x);
    }
}

/// A residual add fused into the Winograd epilogue equals the conv then the add on the CPU, bit
/// for bit, with the conv's output as either input of the add, on every load and row form.
#[test]
fn fused_residual_add_matches_conv_then_add() {
    use crate::cpu::qconv::{qadd, qconv2d, QResult};
    use rand::{Rng, SeedableRng};
    crate::ops::skip_without_gpu!();
    let g = crate::testing::gpu();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    for (i, &(c, co, h, w, conv_first, act)) in [
        (16, 16, 8, 8, true, Act::Relu),
        (13, 19, 9, 7, false, Act::Identity),
        (8, 8, 4, 12, false, Act::Relu6),
    ]
    .iter()
    .enumerate()
    {
        let (conv, x) = random_layer(&layer(2, c, co, h, w, Some(true)), 40 + i as u64);
        let QResult::Q(y) = qconv2d(&conv, &x).unwrap() else {
            panic!("int8 output expected")
        };
        let res_fmt = QFormat {
            scale: rng.random_range(0.05..0.2),
            unsigned: i % 2 == 0,
            bits: 8,
            zero_point: 0,
        };
        let res = super::tests::random_q(y.shape, res_fmt, &mut rng);
        let out = QFormat::unsigned(rng.random_range(0.05..0.2));
        let (a, b) = if conv_first { (&y, &res) } else { (&res, &y) };
        let add = QAdd {
            a: a.fmt,
            b: b.fmt,
            act,
            output: Some(out),
        };
        let QResult::Q(want) = qadd(&add, a, b).unwrap() else {
            panic!("int8 output expected")
        };
        let mut l = QConv2d::new(&g, &conv).unwrap();
        let (xt, rt) = (
            QTensor::upload(&g, &x).unwrap(),
            QTensor::upload(&g, &res).unwrap(),
        );
        // The fused sum as `l` computes it now.
        let fused = |l: &QConv2d| {
            let mut s = g.stream();
            let y = l.forward_add(&mut s, &xt, &rt, &add, conv_first).unwrap();
            s.submit();
            y.expect("every form fuses the add").read(&g).unwrap()
        };
        for (tex, aligned) in [(true, true), (false, true), (true, false)] {
            l.set_winograd(&g, WinogradUse::Always).unwrap();
            l.texture_weights = tex;
            l.aligned_rows = aligned;
            assert_eq!(fused(&l), want, "case {i} texture={tex} aligned={aligned}");
        }
        // The direct kernels fuse it as well (the default form on calls this small), on
        // every dot path.
        for (path, sg) in crate::ops::qconv::VARIANTS {
            l.set_winograd(&g, WinogradUse::LargeCalls).unwrap();
            (l.path, l.subgroups) = (path, sg);
            assert_eq!(fused(&l), want, "case {i} direct {path:?} subgroups={sg}");
        }
        let mut s = g.stream();
        // A residual in another format than the add's is an error, not a wrong sum.
        l.set_winograd(&g, WinogradUse::Always).unwrap();
        let other = QTensor::upload(
            &g,
            &QArray {
                fmt: out,
                ..res.clone()
            },
        )
        .unwrap();
        assert!(l
            .forward_add(&mut s, &xt, &other, &add, conv_first)
            .is_err());
    }
}
