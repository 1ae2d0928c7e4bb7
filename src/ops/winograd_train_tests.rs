//! Training's Winograd forms against the host transform and the CPU conv reference.

use super::*;
use crate::array::Array;
use crate::cpu;
use crate::testing::gpu;

/// `[Ci, Co, 3, 3]` forward weights as the input gradient's kernel `[Co, Ci, 3, 3]`: transposed
/// and flipped.
fn transposed_flipped(w: &Array) -> Array {
    let [a, b] = [w.shape[0], w.shape[1]];
    let mut t = vec![0.0; w.numel()];
    for i in 0..a {
        for o in 0..b {
            for k in 0..9 {
                t[(o * a + i) * 9 + 8 - k] = w.data[(i * b + o) * 9 + k];
            }
        }
    }
    Array::new(&[b, a, 3, 3], t)
}

#[test]
fn gpu_weights_match_the_host_transform() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    for (i, &(co, ci)) in [(5, 3), (16, 16), (9, 7), (1, 1)].iter().enumerate() {
        for transposed in [false, true] {
            let w = Array::random(&[co, ci, 3, 3], 40 + i as u64);
            // The forward weights whose input gradient has kernel `w`.
            let stored = if transposed {
                transposed_flipped(&w) // its own inverse
            } else {
                w.clone()
            };
            let wt = g.upload_f32(&stored.shape, &stored.data).unwrap();
            for (tile, fused) in [(Tile::F2, false), (Tile::F4, false), (Tile::F4, true)] {
                let mut s = g.stream();
                let u = weight_on_gpu(&mut s, &wt, tile, fused, transposed).unwrap();
                s.submit();
                let got = g.read_f32(&u).unwrap();
                let want: Vec<f32> = if fused {
                    let f = winograd::fused_weight(&g, co, ci, &w.data).unwrap();
                    let bits = g.read_i32(&f.buffer).unwrap();
                    bits.iter().map(|&b| f32::from_bits(b as u32)).collect()
                } else {
                    g.read_f32(&winograd::weight(&g, tile, co, ci, &w.data).unwrap())
                        .unwrap()
                };
                assert_eq!(got.len(), want.len());
                // The host rounds once from f64, the GPU a few times in f32: 1 ulp apart at
                // most on these cases (1.2e-7 at |U| near 1); 3e-7 relative (absolute below 1)
                // is a 2.5x margin, and 1/6.0001 for one 1/6 of G fails it.
                let bad = got
                    .iter()
                    .zip(&want)
                    .position(|(a, b)| (a - b).abs() > 3e-7 * b.abs().max(1.0));
                assert!(
                    bad.is_none(),
                    "{tile:?} fused {fused} transposed {transposed} co {co} ci {ci}: element \
                     {bad:?}: {:?} vs {:?}",
                    bad.map(|k| got[k]),
                    bad.map(|k| want[k])
                );
            }
        }
    }
}

/// (x shape, Co, pad, bias)
type Case = ([usize; 4], usize, usize, bool);

/// The forward conv and its input gradient on `v`, against the CPU reference; returns the
/// worst error scaled as `conv2d_tests` scales Winograd's (by the patch through the absolute
/// transforms).
fn worst_error(case: Case, v: ConvVariant, seed: u64) -> f32 {
    let g = gpu();
    let (xs, co, pad, has_bias) = case;
    let tile = if v == ConvVariant::Winograd2 {
        Tile::F2
    } else {
        Tile::F4
    };
    let x = Array::random(&xs, seed);
    let w = Array::random(&[co, xs[1], 3, 3], seed + 1);
    let b = Array::random(&[co], seed + 2);
    let p = Conv2dParams::new(1, pad, 1);
    let [oh, ow] = [0, 1].map(|a| p.out_size(a, xs[2 + a], 3).unwrap());
    let dy = Array::random(&[xs[0], co, oh, ow], seed + 3);
    // dx is the conv of dy, padded by 2 - pad, with the transposed, flipped kernel.
    let q = Conv2dParams::new(1, 2 - pad, 1);
    let wf = transposed_flipped(&w);
    let mut worst = 0.0f32;
    for (input, kernel, params, bias, transposed) in [
        (&x, &w, p, has_bias.then_some(&b), false),
        (&dy, &wf, q, None, true),
    ] {
        let want = cpu::conv::conv2d(input, kernel, bias, &params, None, Act::Identity);
        let out = [
            input.shape[0],
            kernel.shape[0],
            want.shape[2],
            want.shape[3],
        ];
        let scale = winograd::error_scale(tile, input, kernel, params.pad, bias, None, out);
        let it = g.upload_f32(&input.shape, &input.data).unwrap();
        let wt = g.upload_f32(&w.shape, &w.data).unwrap();
        let bt = g.upload_f32(&[co], &b.data).unwrap();
        let mut s = g.stream();
        let bias_t = bias.map(|_| &bt);
        let y = conv2d(&mut s, &it, &wt, transposed, bias_t, &params, v).unwrap();
        // The weight transform and one (fused) or three dispatches: Winograd really ran.
        let fused = v == ConvVariant::Fused4;
        assert_eq!(s.dispatches(), if fused { 2 } else { 4 }, "{v:?}");
        s.submit();
        assert_eq!(y.shape(), &want.shape[..]);
        let got = g.read_f32(&y).unwrap();
        for ((a, b), sc) in got.iter().zip(&want.data).zip(&scale) {
            worst = worst.max((a - b).abs() / sc.max(1e-6));
        }
    }
    worst
}

#[test]
fn training_convs_match_cpu_on_every_winograd_form() {
    crate::ops::skip_without_gpu!();
    let cases: &[Case] = &[
        ([2, 5, 9, 7], 6, 1, true),    // odd sizes: partial tiles
        ([1, 3, 8, 8], 16, 1, false),  // RGB in, two channel blocks of 8
        ([1, 16, 6, 12], 3, 0, true),  // RGB out, no padding (input gradient's pad 2)
        ([2, 24, 8, 8], 20, 2, false), // pad 2 (input gradient's pad 0)
        ([1, 8, 16, 16], 8, 1, true),  // aligned rows
    ];
    for (i, &case) in cases.iter().enumerate() {
        for v in [
            ConvVariant::Winograd2,
            ConvVariant::Winograd4,
            ConvVariant::Fused4,
        ] {
            let e = worst_error(case, v, 70 + 10 * i as u64);
            // conv2d_tests' bound for the inference forms: ~17 f32 roundings of the scale.
            assert!(e < 1e-6, "case {i} {case:?} {v:?}: scaled error {e}");
        }
    }
}

#[test]
fn the_rule_picks_winograd_only_where_it_applies() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let p = Conv2dParams::new(1, 1, 1);
    let big = [4, 16, 32, 32];
    let rule = conv_select::default_variant(&g, 16, 16, 4, 1024);
    if conv_select::mode() == conv_select::Mode::Rule {
        assert_eq!(variant(&g, big, 16, [3, 3], &p), rule);
    }
    let direct = ConvVariant::Direct;
    assert_eq!(variant(&g, big, 16, [5, 5], &p), direct);
    assert_eq!(
        variant(&g, big, 16, [3, 3], &Conv2dParams::new(2, 1, 1)),
        direct
    );
    assert_eq!(
        variant(&g, big, 16, [3, 3], &Conv2dParams::new(1, 1, 2)),
        direct
    );
    assert_eq!(variant(&g, big, 16, [3, 3], &p.dilated([2, 2])), direct);
}
