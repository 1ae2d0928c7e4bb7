//! Checks of the FP32 conv kernels against `cpu::conv2d` over shapes, activations and
//! every variant.

use super::*;
use crate::array::Array;
use crate::cpu;
use crate::testing::gpu;
use proptest::prelude::*;

const ACTS: [Act; 6] = [
    Act::Identity,
    Act::Relu,
    Act::Relu6,
    Act::LeakyRelu(0.1),
    Act::Tanh,
    Act::Sigmoid,
];

/// Runs one conv on the GPU with register block `blk` (direct kernels) and compares it to
/// the CPU reference: the max relative error (see `Array::max_rel_err`).
#[allow(clippy::too_many_arguments)]
fn check(
    xs: [usize; 4],
    ws: [usize; 4],
    p: Conv2dParams,
    bias: bool,
    res: bool,
    act: Act,
    blk: (u32, u32, u32),
    seed: u64,
) -> f32 {
    let case = (xs, ws, p, bias, res, act);
    run(case, blk, ConvVariant::Direct, seed).0
}

/// (x shape, weight shape, params, bias, residual, activation)
type Conv = ([usize; 4], [usize; 4], Conv2dParams, bool, bool, Act);

/// Runs `variant` and returns (max relative error, max error scaled by the sum of |terms|).
/// The scaled error is |gpu - cpu| / (sum |x w| + |bias| + |residual|) per output: FP32
/// rounding grows with that sum, not with the result, which can cancel to near zero. The
/// activations are 1-Lipschitz, so the bound carries through them.
fn run(
    (xs, ws, p, bias, res, act): Conv,
    blk: (u32, u32, u32),
    variant: ConvVariant,
    seed: u64,
) -> (f32, f32) {
    let g = gpu();
    let x = Array::random(&xs, seed);
    let w = Array::random(&ws, seed + 1);
    let b = Array::random(&[ws[0]], seed + 2);
    let (oh, ow) = (
        p.out_size(0, xs[2], ws[2]).unwrap(),
        p.out_size(1, xs[3], ws[3]).unwrap(),
    );
    let r = Array::random(&[xs[0], ws[0], oh, ow], seed + 3);
    let want = cpu::conv::conv2d(&x, &w, bias.then_some(&b), &p, res.then_some(&r), act);
    let abs = |a: &Array| Array::new(&a.shape, a.data.iter().map(|v| v.abs()).collect());
    let (ab, ar) = (abs(&b), abs(&r));
    let scale = cpu::conv::conv2d(
        &abs(&x),
        &abs(&w),
        bias.then_some(&ab),
        &p,
        res.then_some(&ar),
        Act::Identity,
    );
    // Winograd's rounding follows the magnitudes of each output's whole input patch.
    let tile = match variant {
        ConvVariant::Winograd2 => Some(Tile::F2),
        ConvVariant::Winograd4 | ConvVariant::Fused4 => Some(Tile::F4),
        ConvVariant::Direct => None,
    }
    .filter(|_| p.takes_winograd([ws[2], ws[3]]));
    let scale = match tile {
        Some(t) => {
            let out = [xs[0], ws[0], oh, ow];
            let (bb, rr) = (bias.then_some(&b), res.then_some(&r));
            Array::new(
                &scale.shape,
                winograd::error_scale(t, &x, &w, p.pad, bb, rr, out),
            )
        }
        None => scale,
    };
    let xt = g.upload_f32(&xs, &x.data).unwrap();
    let wt = prepare_conv_weight(&g, &ws, &w.data, p.groups).unwrap();
    let bt = g.upload_f32(&b.shape, &b.data).unwrap();
    let rt = g.upload_f32(&r.shape, &r.data).unwrap();
    let mut s = g.stream();
    let y = conv2d_blocked(
        &mut s,
        &xt,
        &wt,
        bias.then_some(&bt),
        &p,
        res.then_some(&rt),
        act,
        blk,
        Some(variant),
    )
    .unwrap();
    // Winograd is three dispatches (transform, GEMM, transform), fused one: it really ran.
    let fused = variant == ConvVariant::Fused4;
    assert_eq!(s.dispatches(), if tile.is_some() && !fused { 3 } else { 1 });
    s.submit();
    assert_eq!(y.shape(), &want.shape[..]);
    let got = Array::new(&want.shape, g.read_f32(&y).unwrap());
    // Tanh and sigmoid add their own rounding, relative to the output, not the patch: a few
    // ulp of lavapipe's exp (measured 1.2e-7), which a small patch's scale would magnify.
    let act_rel = match act {
        Act::Tanh | Act::Sigmoid => 1e-6,
        _ => 0.0,
    };
    let scaled = crate::array::worst(
        (got.data.iter().zip(&want.data).zip(&scale.data))
            .map(|((a, b), s)| ((a - b).abs() - act_rel * b.abs()).max(0.0) / s.max(1e-6)),
    );
    (got.max_rel_err(&want.data), scaled)
}

/// Tolerance on the scaled error: ~67 FP32 roundings (2^-24 each). The direct kernels
/// measured at most 2.7e-7 on `winograd_matches_cpu`'s cases (sums of up to 9 * 64 terms):
/// a 15x margin. A wrong tap, sign or tile offset errs by about one term, at least 1/576 of
/// the scale.
const WINOGRAD_TOL: f32 = 4e-6;

/// Winograd's error is scaled by `winograd::error_scale` (the whole patch through the
/// absolute transforms), which is larger than the direct scale, so its bound is tighter:
/// F(2x2, 3x3) measured at most 7e-8 and F(4x4, 3x3) 2e-8 on the same cases and the
/// proptest's, a 14x margin; changing one output coefficient from 8 to 8.0001 fails it.
fn tolerance(v: ConvVariant) -> f32 {
    match v {
        ConvVariant::Direct => WINOGRAD_TOL,
        _ => 1e-6,
    }
}
const WINOGRAD: [ConvVariant; 3] = [
    ConvVariant::Winograd2,
    ConvVariant::Winograd4,
    ConvVariant::Fused4,
];

const CPU_BLOCK: (u32, u32, u32) = (4, 4, 16);
const GPU_BLOCK: (u32, u32, u32) = (2, 2, 64);

/// (x shape, weight shape, stride, pad, groups, bias, residual)
type Case = ([usize; 4], [usize; 4], usize, usize, usize, bool, bool);

#[test]
fn fixed_shapes_match_cpu() {
    crate::ops::skip_without_gpu!();
    crate::ops::note_untested_subgroups(&gpu(), "conv2d");
    let cases: &[Case] = &[
        ([2, 3, 8, 8], [16, 3, 3, 3], 1, 1, 1, true, false), // stem
        ([2, 16, 9, 7], [20, 16, 3, 3], 2, 1, 1, true, true), // odd Co, strided
        ([1, 8, 6, 6], [8, 8, 1, 1], 1, 0, 1, false, true),  // pointwise + residual
        ([2, 4, 5, 5], [6, 4, 4, 4], 2, 1, 1, true, false),  // GAN-style 4x4 kernel
        ([1, 16, 6, 5], [32, 8, 3, 3], 1, 2, 2, true, true), // grouped GEMM
        ([2, 8, 7, 7], [8, 1, 3, 3], 1, 1, 8, true, true),   // depthwise
        ([1, 6, 5, 6], [12, 1, 3, 3], 2, 0, 6, false, false), // depthwise x2 multiplier
        ([1, 4, 5, 5], [4, 2, 3, 3], 1, 1, 2, true, false),  // few channels per group
        ([1, 3, 7, 9], [5, 3, 5, 5], 1, 2, 1, true, true),   // 5x5: gather path
        ([2, 5, 6, 11], [9, 5, 2, 2], 1, 0, 1, false, true), // 2x2 padded to 4 taps
        ([1, 8, 4, 21], [12, 8, 4, 4], 1, 2, 1, true, false), // wide rows, pad 2
        ([1, 4, 6, 12], [8, 4, 3, 3], 1, 0, 1, true, true),  // aligned rows, pad 0
        ([2, 6, 5, 8], [8, 6, 4, 4], 1, 2, 1, false, false), // aligned rows, pad 2
        ([3, 6, 2, 6], [12, 6, 1, 1], 1, 0, 1, true, true),  // pointwise, tiles span images
        ([1, 16, 4, 4], [16, 8, 1, 1], 1, 0, 2, false, true), // grouped pointwise
        ([2, 16, 4, 6], [20, 16, 1, 1], 1, 0, 1, true, true), // pointwise, 16-channel blocks
        ([2, 8, 7, 8], [32, 8, 3, 3], 1, 1, 1, true, true),  // rows, two channel blocks
        ([2, 16, 32, 32], [32, 16, 3, 3], 2, 1, 1, true, true), // stride-2 rows (ResNet)
        ([1, 8, 9, 30], [12, 8, 3, 3], 2, 1, 1, true, false), // stride-2 rows, any width
        ([1, 5, 6, 36], [8, 5, 4, 4], 2, 2, 1, false, true), // stride-2 rows, 4 taps, pad 2
        ([1, 4, 5, 20], [8, 4, 3, 3], 2, 0, 1, true, true),  // stride-2 rows, pad 0
        ([1, 4, 7, 28], [8, 4, 3, 3], 2, 3, 1, true, false), // stride-2 rows, pad 3
        ([3, 8, 4, 4], [16, 8, 4, 4], 2, 1, 1, true, true),  // 2x2 output: gemm, not rows
        ([2, 16, 3, 3], [8, 16, 3, 3], 1, 1, 1, false, true), // 3-wide rows: gemm
    ];
    // CPU_BLOCK takes the weight-broadcast form on adapters with subgroups (16-channel
    // blocks); `NO_SUBGROUPS` runs it with per-lane loads as well.
    for (i, &(xs, ws, st, pad, groups, b, r)) in cases.iter().enumerate() {
        for (blk, plain) in [
            (CPU_BLOCK, false),
            (CPU_BLOCK, true),
            (GPU_BLOCK, false),
            ((1, 1, 8), false),
        ] {
            winograd::tests::NO_SUBGROUPS.with(|f| f.set(plain));
            let act = ACTS[i % ACTS.len()];
            let e = check(
                xs,
                ws,
                Conv2dParams::new(st, pad, groups),
                b,
                r,
                act,
                blk,
                i as u64,
            );
            winograd::tests::NO_SUBGROUPS.with(|f| f.set(false));
            assert!(
                e < 1e-4,
                "case {i} {xs:?} {ws:?} block {blk:?} plain {plain}: err {e}"
            );
        }
    }
}

#[test]
fn non_square_kernel_stride_and_padding() {
    crate::ops::skip_without_gpu!();
    let p = Conv2dParams {
        stride: [2, 1],
        pad: [0, 2],
        pad_end: [0, 2],
        dilation: [1, 1],
        groups: 1,
    };
    let e = check(
        [2, 5, 9, 6],
        [7, 5, 1, 4],
        p,
        true,
        true,
        Act::Relu,
        CPU_BLOCK,
        9,
    );
    assert!(e < 1e-4, "err {e}");
    let p = Conv2dParams {
        stride: [2, 1],
        pad: [1, 3],
        pad_end: [1, 3],
        dilation: [1, 1],
        groups: 1,
    };
    let e = check(
        [1, 5, 7, 8],
        [16, 5, 2, 3],
        p,
        true,
        false,
        Act::Sigmoid,
        CPU_BLOCK,
        10,
    );
    assert!(e < 1e-4, "err {e}");
}

/// A 1x1 conv with end padding has a larger output than its input, so it takes the general
/// kernel, not the pointwise one (which once wrote a 2x2 output for a 3x2 conv; found by
/// `random_shapes_match_cpu`).
#[test]
fn pointwise_convs_with_end_padding_match_cpu() {
    crate::ops::skip_without_gpu!();
    for (xs, pad_end) in [
        ([1, 1, 2, 2], [1, 0]),
        ([2, 4, 4, 4], [0, 2]),
        ([1, 8, 2, 6], [1, 1]),
    ] {
        let p = Conv2dParams {
            pad_end,
            ..Conv2dParams::new(1, 0, 1)
        };
        let ws = [8, xs[1], 1, 1];
        for blk in [CPU_BLOCK, GPU_BLOCK] {
            let e = check(xs, ws, p, true, false, Act::Relu, blk, 3);
            assert!(e < 1e-4, "{xs:?} end pads {pad_end:?}: err {e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn random_shapes_match_cpu(
        n in 1usize..3, cig in 1usize..5, cog in 1usize..10, gsel in 0usize..3,
        h in 1usize..9, w in 1usize..9, kh in prop::sample::select(vec![1usize, 3, 4]),
        kw in prop::sample::select(vec![1usize, 3, 4]), sh in 1usize..3, sw in 1usize..3,
        ph in 0usize..3, pw in 0usize..3, eh in 0usize..3, ew in 0usize..3, bias: bool,
        res: bool, ai in 0usize..6, seed in 0u64..1000,
    ) {
        crate::ops::skip_without_gpu!(proptest);
        // groups 1, 2, or depthwise (one input channel per group)
        let (groups, cig) = match gsel { 0 => (1, cig), 1 => (2, cig), _ => (cig * 2, 1) };
        // End pads differ from begin pads (ONNX asymmetric / SAME padding).
        let p = Conv2dParams { stride: [sh, sw], pad: [ph, pw], pad_end: [eh, ew], dilation: [1, 1], groups };
        prop_assume!(p.out_size(0, h, kh).is_some() && p.out_size(1, w, kw).is_some());
        let (ci, co) = (cig * groups, cog * groups);
        let e = check([n, ci, h, w], [co, cig, kh, kw], p, bias, res, ACTS[ai], CPU_BLOCK, seed);
        prop_assert!(e < 1e-4, "err {}", e);
    }

    /// Dilation per axis with groups, strides and pads, on every kernel path (`rows` takes
    /// height dilation, `gemm` and `direct` any) and both register blocks.
    #[test]
    fn dilated_shapes_match_cpu(
        n in 1usize..3, cig in 1usize..5, cog in 1usize..10, gsel in 0usize..3,
        h in 1usize..12, w in 1usize..12, kh in prop::sample::select(vec![1usize, 2, 3]),
        kw in prop::sample::select(vec![1usize, 3, 4]), sh in 1usize..3, sw in 1usize..3,
        dh in 1usize..4, dw in 1usize..4, ph in 0usize..4, pw in 0usize..4,
        eh in 0usize..4, ew in 0usize..4, bias: bool, res: bool, ai in 0usize..6,
        gpu_block: bool, seed in 0u64..1000,
    ) {
        crate::ops::skip_without_gpu!(proptest);
        let (groups, cig) = match gsel { 0 => (1, cig), 1 => (2, cig), _ => (cig * 2, 1) };
        let p = Conv2dParams { stride: [sh, sw], pad: [ph, pw], pad_end: [eh, ew], dilation: [dh, dw], groups };
        prop_assume!(p.out_size(0, h, kh).is_some() && p.out_size(1, w, kw).is_some());
        let (ci, co) = (cig * groups, cog * groups);
        let blk = if gpu_block { GPU_BLOCK } else { CPU_BLOCK };
        let e = check([n, ci, h, w], [co, cig, kh, kw], p, bias, res, ACTS[ai], blk, seed);
        prop_assert!(e < 1e-4, "err {}", e);
    }
}

/// Asymmetric padding means the input zero-padded by [top, left, bottom, right] then an
/// unpadded conv: checked on the CPU reference and the GPU (all variants) against that.
#[test]
fn asymmetric_pads_are_explicit_zero_padding() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let pads = Pads::from_onnx([0, 2, 1, 0]);
    let x = Array::random(&[1, 3, 6, 5], 3);
    let w = Array::random(&[4, 3, 3, 3], 4);
    let [t, l, b, r] = pads.onnx();
    let (h, wd) = (6 + t + b, 5 + l + r);
    let mut xp = Array::zeros(&[1, 3, h, wd]);
    for c in 0..3 {
        for y in 0..6 {
            for i in 0..5 {
                xp.data[(c * h + y + t) * wd + i + l] = x.data[(c * 6 + y) * 5 + i];
            }
        }
    }
    let want = cpu::conv::conv2d(&xp, &w, None, &Conv2dParams::new(2, 0, 1), None, Act::Relu);
    let p = Conv2dParams::new(2, 0, 1).padded(pads);
    let got = cpu::conv::conv2d(&x, &w, None, &p, None, Act::Relu);
    assert_eq!(want.shape, [1, 4, 3, 3]);
    assert_eq!(got.shape, want.shape);
    assert!(got.max_rel_err(&want.data) < 1e-6);
    let xt = g.upload_f32(&x.shape, &x.data).unwrap();
    let wt = prepare_conv_weight(&g, &w.shape, &w.data, 1).unwrap();
    for v in [
        ConvVariant::Direct,
        ConvVariant::Winograd2,
        ConvVariant::Winograd4,
    ] {
        let p1 = p.padded(Pads {
            begin: [1, 1],
            end: [0, 2],
        }); // stride-1 for Winograd
        let p1 = Conv2dParams {
            stride: [1, 1],
            ..p1
        };
        let want1 = cpu::conv::conv2d(&x, &w, None, &p1, None, Act::Relu);
        assert_eq!(want1.shape, [1, 4, 5, 6]);
        for (pp, want) in [(p, &want), (p1, &want1)] {
            let mut s = g.stream();
            let y = conv2d_variant(&mut s, &xt, &wt, None, &pp, None, Act::Relu, Some(v));
            let y = y.unwrap();
            s.submit();
            assert_eq!(y.shape(), &want.shape[..]);
            let e = Array::new(&want.shape, g.read_f32(&y).unwrap()).max_rel_err(&want.data);
            assert!(e < 1e-4, "{v:?} {pp:?}: err {e}");
        }
    }
}

/// The window of a dilated kernel: (k - 1) * d + 1 input pixels.
#[test]
fn dilation_widens_the_window() {
    let p = Conv2dParams::new(1, 0, 1).dilated([2, 3]);
    assert_eq!(p.out_size(0, 7, 3), Some(3)); // span 5
    assert_eq!(p.out_size(1, 7, 3), Some(1)); // span 7
    assert_eq!(p.out_size(1, 6, 3), None);
    assert_eq!(
        Conv2dParams::new(2, 2, 1).dilated([2, 2]).out_size(0, 8, 3),
        Some(4)
    );
    assert_eq!(p.dilated([0, 1]).out_size(0, 7, 3), None);
}

#[test]
fn winograd_matches_cpu() {
    crate::ops::skip_without_gpu!();
    crate::ops::note_untested_subgroups(&gpu(), "winograd");
    // (x shape, Co, pad, bias, residual): odd sizes leave partial 2x2 tiles.
    let cases: &[([usize; 4], usize, usize, bool, bool)] = &[
        ([2, 3, 8, 8], 16, 1, true, false),   // stem
        ([2, 16, 9, 7], 20, 1, true, true),   // odd H, W and Co
        ([1, 5, 6, 5], 7, 0, false, true),    // no padding
        ([1, 4, 3, 4], 4, 2, true, false),    // padding 2: taps entirely outside
        ([3, 8, 1, 1], 8, 1, true, true),     // 1x1 input
        ([1, 1, 5, 5], 3, 1, false, false),   // one input channel
        ([4, 16, 32, 32], 16, 1, true, true), // ResNet-20 stage 1
        ([2, 32, 16, 16], 32, 1, true, true), // stage 2
        ([3, 64, 8, 8], 64, 1, true, false),  // stage 3
        ([1, 6, 6, 12], 8, 1, true, true),    // widths of 4k (vec4 epilogue), partial tile rows
        ([1, 5, 7, 10], 6, 0, true, false),   // the same, no padding, no residual
        ([1, 3, 4, 8], 4, 3, true, true),     // widths of 4k, padding 3
        ([1, 2, 3, 4], 5, 5, false, true),    // padding 5: rows mostly outside the image
        ([1, 5, 6, 8], 12, 1, true, true),    // Co 9..15: a partial second block of eight
        ([2, 4, 5, 8], 48, 1, true, false),   // three 16-channel blocks on CPU adapters
    ];
    for (i, &(xs, co, pad, b, r)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        let conv = (
            xs,
            [co, xs[1], 3, 3],
            Conv2dParams::new(1, pad, 1),
            b,
            r,
            act,
        );
        for v in WINOGRAD {
            let (rel, scaled) = run(conv, GPU_BLOCK, v, i as u64);
            assert!(
                scaled < tolerance(v),
                "{v:?} case {i} {xs:?} co {co} pad {pad} {act:?}: scaled err {scaled} (rel {rel})"
            );
        }
        // The direct kernels meet the same bound on the same inputs.
        let (_, direct) = run(conv, CPU_BLOCK, ConvVariant::Direct, i as u64);
        assert!(
            direct < WINOGRAD_TOL,
            "case {i}: direct scaled err {direct}"
        );
    }
}

/// The fused kernel's plain-load form (adapters without subgroups) on the same cases as
/// `winograd_matches_cpu` with few and many channels, odd Co and partial tiles.
#[test]
fn fused_without_subgroups_matches_cpu() {
    crate::ops::skip_without_gpu!();
    winograd::tests::NO_SUBGROUPS.with(|f| f.set(true));
    fused_forms_match_cpu("plain loads");
    winograd::tests::NO_SUBGROUPS.with(|f| f.set(false));
}

/// The fused kernel's subgroup form with its weights in a storage buffer (where the adapter's
/// textures are too small for them) on the same cases; `winograd_matches_cpu` runs the
/// texture form on adapters with subgroups.
#[test]
fn fused_buffer_weights_match_cpu() {
    crate::ops::skip_without_gpu!();
    crate::ops::note_untested_subgroups(&gpu(), "winograd (buffer weights)");
    winograd::tests::NO_TEXTURE.with(|f| f.set(true));
    fused_forms_match_cpu("buffer weights");
    winograd::tests::NO_TEXTURE.with(|f| f.set(false));
}

fn fused_forms_match_cpu(form: &str) {
    let cases: &[([usize; 4], usize, usize, bool, bool)] = &[
        ([2, 3, 8, 8], 16, 1, true, false),
        ([2, 16, 9, 7], 20, 1, true, true),
        ([1, 5, 6, 5], 7, 0, false, true),
        ([1, 4, 3, 4], 3, 2, true, false),
        ([2, 32, 16, 16], 32, 1, true, true),
        ([1, 6, 6, 12], 8, 1, true, true),
        ([1, 5, 7, 10], 6, 0, true, false),
        ([1, 3, 4, 8], 4, 3, true, true),
        ([1, 2, 3, 4], 5, 5, false, true),
        ([1, 5, 6, 8], 12, 1, true, true),
        ([2, 4, 5, 8], 48, 1, true, false),
    ];
    for (i, &(xs, co, pad, b, r)) in cases.iter().enumerate() {
        let act = ACTS[i % ACTS.len()];
        let conv = (
            xs,
            [co, xs[1], 3, 3],
            Conv2dParams::new(1, pad, 1),
            b,
            r,
            act,
        );
        let (rel, scaled) = run(conv, GPU_BLOCK, ConvVariant::Fused4, i as u64);
        let tol = tolerance(ConvVariant::Fused4);
        assert!(
            scaled < tol,
            "{form}: case {i} {xs:?} co {co}: scaled err {scaled} (rel {rel})"
        );
    }
}

/// Forcing Winograd on a conv it does not serve runs the direct kernel (one dispatch, checked
/// in `run`) and still matches the CPU.
#[test]
fn winograd_falls_back_where_it_does_not_apply() {
    crate::ops::skip_without_gpu!();
    let cases: [Conv; 4] = [
        (
            [1, 4, 9, 9],
            [8, 4, 3, 3],
            Conv2dParams::new(1, 2, 1).dilated([2, 2]),
            true,
            false,
            Act::Relu,
        ),
        (
            [1, 4, 7, 7],
            [8, 4, 3, 3],
            Conv2dParams::new(2, 1, 1),
            true,
            false,
            Act::Relu,
        ),
        (
            [1, 4, 7, 7],
            [8, 2, 3, 3],
            Conv2dParams::new(1, 1, 2),
            true,
            true,
            Act::Relu,
        ),
        (
            [1, 4, 7, 7],
            [8, 4, 1, 1],
            Conv2dParams::new(1, 0, 1),
            false,
            true,
            Act::Tanh,
        ),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        for v in WINOGRAD {
            let (rel, _) = run(c, CPU_BLOCK, v, i as u64);
            assert!(rel < 1e-4, "{v:?} case {i}: err {rel}");
        }
    }
}

/// The automatic choice runs one of the variants and gives the same result.
#[test]
fn auto_variant_matches_cpu() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let (xs, ws) = ([2, 8, 6, 6], [8, 8, 3, 3]);
    let x = Array::random(&xs, 5);
    let w = Array::random(&ws, 6);
    let p = Conv2dParams::new(1, 1, 1);
    let want = cpu::conv::conv2d(&x, &w, None, &p, None, Act::Relu);
    let xt = g.upload_f32(&xs, &x.data).unwrap();
    let wt = prepare_conv_weight(&g, &ws, &w.data, 1).unwrap();
    let mut s = g.stream();
    let y = conv2d(&mut s, &xt, &wt, None, &p, None, Act::Relu).unwrap();
    s.submit();
    let e = Array::new(&want.shape, g.read_f32(&y).unwrap()).max_rel_err(&want.data);
    assert!(e < 1e-4, "err {e}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn winograd_random_shapes_match_cpu(
        n in 1usize..3, ci in 1usize..12, co in 1usize..12, h in 1usize..12,
        w in 1usize..12, pad in 0usize..3, eh in 0usize..3, ew in 0usize..3, bias: bool,
        res: bool, ai in 0usize..6, seed in 0u64..1000, vi in 0usize..3,
    ) {
        crate::ops::skip_without_gpu!(proptest);
        // Asymmetric end pads only change the output size: the tiles still index from `pad`.
        let p = Conv2dParams::new(1, pad, 1).padded(Pads { begin: [pad; 2], end: [eh, ew] });
        prop_assume!(p.out_size(0, h, 3).is_some() && p.out_size(1, w, 3).is_some());
        let conv = ([n, ci, h, w], [co, ci, 3, 3], p, bias, res, ACTS[ai]);
        let (_, e) = run(conv, GPU_BLOCK, WINOGRAD[vi], seed);
        prop_assert!(e < tolerance(WINOGRAD[vi]), "{:?}: scaled err {}", WINOGRAD[vi], e);
    }
}

#[test]
fn shape_errors_name_the_op() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let x = g.upload_f32(&[1, 3, 4, 4], &[0.0; 48]).unwrap();
    let w = prepare_conv_weight(&g, &[8, 4, 3, 3], &[0.0; 288], 1).unwrap();
    let p = Conv2dParams::new(1, 1, 1);
    let err = conv2d(&mut g.stream(), &x, &w, None, &p, None, Act::Relu)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("conv2d") && err.contains("[1, 3, 4, 4]") && err.contains("[8, 4, 3, 3]"),
        "{err}"
    );

    let err = prepare_conv_weight(&g, &[6, 1, 3, 3], &[0.0; 54], 4)
        .unwrap_err()
        .to_string();
    assert!(err.contains("groups 4"), "{err}");
    let w2 = prepare_conv_weight(&g, &[8, 1, 3, 3], &[0.0; 72], 2).unwrap();
    let err = conv2d(
        &mut g.stream(),
        &x,
        &w2,
        None,
        &Conv2dParams::new(1, 1, 2),
        None,
        Act::Identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("channels"), "{err}");

    let w5 = prepare_conv_weight(&g, &[2, 3, 5, 5], &[0.0; 150], 1).unwrap();
    let err = conv2d(
        &mut g.stream(),
        &x,
        &w5,
        None,
        &Conv2dParams::new(1, 0, 1),
        None,
        Act::Identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("zero-size output"), "{err}");

    let w3 = prepare_conv_weight(&g, &[8, 3, 3, 3], &[0.0; 216], 1).unwrap();
    let r = g.upload_f32(&[1, 8, 3, 3], &[0.0; 72]).unwrap();
    let err = conv2d(&mut g.stream(), &x, &w3, None, &p, Some(&r), Act::Identity)
        .unwrap_err()
        .to_string();
    assert!(err.contains("residual"), "{err}");
    let err = conv2d(
        &mut g.stream(),
        &x,
        &w3,
        None,
        &Conv2dParams::new(1, 1, 3),
        None,
        Act::Identity,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("prepared for 1"), "{err}");
}

/// 3x3 weights carry the fused kernel's texture exactly where its subgroup form reads it.
#[test]
fn fused_weights_have_a_texture_with_subgroups() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let data = Array::random(&[16, 8, 3, 3], 1).data;
    let w = prepare_conv_weight(&g, &[16, 8, 3, 3], &data, 1).unwrap();
    let fused = &w
        .winograd
        .as_ref()
        .expect("3x3 groups 1 has Winograd forms")
        .fused;
    assert_eq!(fused.texture.is_some(), g.subgroups);
    let w = prepare_conv_weight(&g, &[16, 8, 3, 3], &data, 2).unwrap();
    assert!(w.winograd.is_none(), "grouped convs have no Winograd form");
}

/// The fused kernel's aligned row loads (input width 4k, left padding 1) where the right
/// padding leaves whole vec4s of columns outside the image, in every weight form.
#[test]
fn fused_aligned_rows_with_wide_right_padding() {
    crate::ops::skip_without_gpu!();
    let p = Conv2dParams {
        pad: [1, 1],
        pad_end: [2, 5],
        ..Conv2dParams::new(1, 1, 1)
    };
    // Width 8 -> 12 outputs: the last tile's middle columns 8..11 are all padding; -> 20
    // outputs: the last tile's left column (15) too.
    let wider = Conv2dParams {
        pad_end: [2, 13],
        ..p
    };
    for p in [p, wider] {
        let conv = ([2, 5, 7, 8], [12, 5, 3, 3], p, true, true, Act::Relu);
        for (plain, buffer) in [(false, false), (false, true), (true, false)] {
            winograd::tests::NO_SUBGROUPS.with(|f| f.set(plain));
            winograd::tests::NO_TEXTURE.with(|f| f.set(buffer));
            let (rel, scaled) = run(conv, GPU_BLOCK, ConvVariant::Fused4, 7);
            winograd::tests::NO_SUBGROUPS.with(|f| f.set(false));
            winograd::tests::NO_TEXTURE.with(|f| f.set(false));
            assert!(
                scaled < tolerance(ConvVariant::Fused4),
                "{p:?} plain {plain} buffer {buffer}: scaled err {scaled} (rel {rel})"
            );
        }
    }
}

/// The fused kernel's output for `conv` (seeded random operands), with the simple steps
/// (aligned rows, one input channel per loop step) forced or not.
fn fused_output((xs, ws, p, _, _, act): Conv, simple: bool, seed: u64) -> Vec<f32> {
    let g = gpu();
    let x = g.upload_f32(&xs, &Array::random(&xs, seed).data).unwrap();
    let w = Array::random(&ws, seed + 1).data;
    let w = prepare_conv_weight(&g, &ws, &w, 1).unwrap();
    let b = g
        .upload_f32(&[ws[0]], &Array::random(&[ws[0]], seed + 2).data)
        .unwrap();
    winograd::tests::SIMPLE_STEPS.with(|f| f.set(simple));
    let mut s = g.stream();
    let y = conv2d_variant(
        &mut s,
        &x,
        &w,
        Some(&b),
        &p,
        None,
        act,
        Some(ConvVariant::Fused4),
    );
    winograd::tests::SIMPLE_STEPS.with(|f| f.set(false));
    s.submit();
    g.read_f32(&y.unwrap()).unwrap()
}

/// The fused kernel's row edges exchanged between lanes (where every subgroup holds whole rows
/// of tiles: 1, 2, 4 and 8 tiles a row, partial last subgroups, wide right padding) and its
/// four input channels per loop step: the same sums in the same order as the aligned rows and
/// single-channel steps, so the same bits, and within the Winograd tolerance of the CPU conv.
#[test]
fn fused_lane_rows_and_channel_steps_match() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let wide = Conv2dParams {
        pad_end: [1, 9],
        ..Conv2dParams::new(1, 1, 1)
    };
    let p = Conv2dParams::new(1, 1, 1);
    let cases: [Conv; 6] = [
        ([3, 8, 8, 8], [16, 8, 3, 3], p, true, false, Act::Relu), // 2 a row, 12 tiles
        ([2, 4, 16, 16], [8, 4, 3, 3], p, true, false, Act::Identity), // 4 a row
        ([1, 12, 32, 32], [16, 12, 3, 3], p, false, false, Act::Relu), // 8 a row
        ([5, 4, 4, 4], [8, 4, 3, 3], p, true, false, Act::Relu),  // 1 a row, 5 tiles
        ([2, 5, 6, 8], [12, 5, 3, 3], wide, true, false, Act::Relu), // 16 outputs a row
        ([1, 8, 5, 64], [8, 8, 3, 3], p, true, false, Act::Relu), // 16 a row: aligned rows
    ];
    let cpu = g.info.device_type == wgpu::DeviceType::Cpu;
    if cpu && g.subgroups && (g.info.subgroup_min_size, g.info.subgroup_max_size) == (8, 8) {
        for (xs, ws, p, ..) in &cases[..5] {
            let ow = p.out_size(1, xs[3], ws[3]).unwrap();
            assert!(winograd::lane_rows(&g, ow), "{xs:?}: no lane exchange");
        }
    } else {
        crate::testing::skip("not a CPU adapter with subgroups of 8: lane rows untested");
    }
    for (i, &conv) in cases.iter().enumerate() {
        let seed = 40 + i as u64;
        let (fast, simple) = (
            fused_output(conv, false, seed),
            fused_output(conv, true, seed),
        );
        let same = fast
            .iter()
            .zip(&simple)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(
            same,
            "case {i}: lane rows / channel steps change the output"
        );
        let (rel, scaled) = run(conv, CPU_BLOCK, ConvVariant::Fused4, seed);
        assert!(
            scaled < tolerance(ConvVariant::Fused4),
            "case {i}: scaled err {scaled} (rel {rel})"
        );
    }
}

/// A 3-dispatch Winograd conv whose scratch would pass the storage binding limit runs the fused
/// form (which has none) instead of failing: 120 images of 32x32, 128 -> 128 channels, whose V
/// and M would be 36 x 128 x 7,680 f32 (141 MB; lavapipe binds 128 MiB).
#[test]
fn winograd_scratch_past_the_binding_limit_runs_fused() {
    crate::ops::skip_without_gpu!();
    let g = gpu();
    let (n, c, hw) = (120, 128, 32);
    let fits = (36 * c * 7680 * 4) as u64 <= g.max_binding();
    let w4 = ConvVariant::Winograd4;
    let want = if fits { w4 } else { ConvVariant::Fused4 };
    assert_eq!(winograd::usable(&g, w4, n, [c, c], [hw, hw]), want);
    assert_eq!(winograd::usable(&g, w4, 4, [c, c], [hw, hw]), w4);
    // Constant operands: each output is 0.5 x 0.01 x 128 x the taps inside the image.
    let x = g
        .upload_f32(&[n, c, hw, hw], &vec![0.5; n * c * hw * hw])
        .unwrap();
    let w = prepare_conv_weight(&g, &[c, c, 3, 3], &vec![0.01; c * c * 9], 1).unwrap();
    let p = Conv2dParams::new(1, 1, 1);
    let mut s = g.stream();
    let y = conv2d_variant(&mut s, &x, &w, None, &p, None, Act::Identity, Some(w4)).unwrap();
    s.submit();
    let y = g.read_f32(&y).unwrap();
    let taps = |i: usize| if i == 0 || i == hw - 1 { 2.0 } else { 3.0 };
    for (i, v) in y.iter().enumerate() {
        let (r, col) = (i / hw % hw, i % hw);
        let want = 0.5 * 0.01 * c as f32 * taps(r) * taps(col);
        assert!(
            (v - want).abs() <= 1e-4 * want,
            "output {i}: {v}, want {want}"
        );
    }
}
