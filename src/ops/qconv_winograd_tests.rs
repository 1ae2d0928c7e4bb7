//! The INT8 Winograd form against the CPU integer reference, bit for bit (through
//! `tests::check`, which runs every direct and Winograd form), and the bound that keeps it
//! exact.

use super::tests::{check, random_layer, Case};
use super::*;
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

    /// Random sizes, channel counts, padding, signedness and epilogues.
    #[test]
    fn winograd_random_layers_match_cpu(
        n in 1usize..=2, c in 1usize..=40, co in 1usize..=24, h in 1usize..=11,
        w in 1usize..=11, pad in 0usize..=2, unsigned_in in any::<bool>(),
        output in prop::option::of(any::<bool>()), seed in any::<u64>(),
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let case = Case { pad, unsigned_in, ..layer(n, c, co, h + 2, w + 2, output) };
        let (conv, x) = random_layer(&case, seed);
        prop_assert!(winograd_exact(&conv));
        check(&conv, &x);
    }
}
