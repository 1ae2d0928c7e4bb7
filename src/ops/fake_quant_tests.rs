use super::*;
use crate::array::Array;
use crate::ops::skip_without_gpu;
use crate::quant::scheme::activation_format_bits;
use crate::testing::gpu;

/// Formats of every kind the INT8 model uses: unsigned and signed, 4 and 8 bits, a zero point.
fn formats() -> Vec<QFormat> {
    vec![
        activation_format_bits(0.0, 1.5, 4),
        activation_format_bits(-0.7, 0.3, 4),
        activation_format_bits(0.0, 2.55, 8),
        activation_format_bits(-1.0, 1.27, 8),
        QFormat::unsigned(0.05).with_bits(4).with_zero_point(3),
    ]
}

/// Random values over twice the format's range, with exact ties (k + 0.5 steps) mixed in.
fn inputs(shape: &[usize], fmt: QFormat, seed: u64) -> Vec<f32> {
    let (lo, hi) = fmt.range();
    let span = (hi - lo) as f32 * fmt.scale;
    Array::random(shape, seed)
        .data
        .iter()
        .enumerate()
        .map(|(i, &r)| match i % 5 {
            0 => ((i as i32 % (hi - lo + 4)) + lo - 2) as f32 * fmt.scale + 0.5 * fmt.scale,
            _ => r * span,
        })
        .collect()
}

#[test]
fn forward_is_bit_identical_and_backward_is_the_formula() {
    skip_without_gpu!();
    for (k, shape) in [vec![7], vec![2, 3, 5, 5], vec![4, 16, 8, 8], vec![3, 10]]
        .into_iter()
        .enumerate()
    {
        for (j, fmt) in formats().into_iter().enumerate() {
            let x = inputs(&shape, fmt, (10 * k + j) as u64);
            let dy = Array::random(&shape, 99 + k as u64).data;
            let (y, dx, ds) = run_gpu(FakeQuant::new(fmt, false), fmt, &shape, &x, &dy);
            let want = forward_cpu(&x, fmt);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{shape:?} {fmt:?} element {i}: x {}",
                    x[i]
                );
            }
            assert_eq!(dx, backward_cpu(&x, &dy, fmt));
            let want = step_grad_cpu(&x, &dy, fmt);
            let mag: f64 = dy.iter().map(|d| d.abs() as f64).sum::<f64>() * (fmt.range().1 as f64);
            assert!(
                (ds as f64 - want).abs() <= 1e-5 * mag.max(1.0),
                "{shape:?} {fmt:?}: step gradient {ds} vs {want}"
            );
        }
    }
}

/// The LSQ gradient as Esser et al. write it, element by element, on hand-picked points.
#[test]
fn step_gradient_is_lsq() {
    let fmt = activation_format_bits(0.0, 1.5, 4); // scale 0.1, [0, 15]
                                                   // x / s = 2.3 (inside: round 2 - 2.3), 2.5 (a tie rounds to 2), -1 (below: lo = 0),
                                                   // 20 (above: hi = 15).
    let x = [0.23f32, 0.25, -0.1, 2.0];
    let dy = [1.0f32, 2.0, 3.0, 0.5];
    let want = 1.0 * (2.0 - 2.3) + 2.0 * (2.0 - 2.5) + 3.0 * 0.0 + 0.5 * 15.0;
    assert!((step_grad_cpu(&x, &dy, fmt) - want).abs() < 1e-6);
    assert_eq!(backward_cpu(&x, &dy, fmt), [1.0, 2.0, 0.0, 0.0]);
    assert_eq!(forward_cpu(&x, fmt)[2..], [0.0, 1.5]);
}

/// A learned step divides on the GPU: the forward then matches the CPU within an f32 step.
#[test]
fn learned_step_matches_within_rounding() {
    skip_without_gpu!();
    let g = gpu();
    let fmt = activation_format_bits(-0.7, 0.3, 4);
    let shape = [2, 4, 6, 6];
    let x = Array::random(&shape, 5).data;
    let fq = FakeQuant::new(fmt, true);
    let st = g.upload_f32(&[2], &[fmt.scale, -1.0]).unwrap(); // [1] is ignored
    let xt = g.upload_f32(&shape, &x).unwrap();
    let mut s = g.stream();
    let y = fq.forward(&mut s, &xt, &st).unwrap();
    s.submit();
    let y = g.read_f32(&y).unwrap();
    let want = forward_cpu(&x, fmt);
    let off = y
        .iter()
        .zip(&want)
        .filter(|(a, b)| (*a - *b).abs() > 1e-6)
        .count();
    // Only values within an f32 rounding of a tie may land on the other side.
    assert!(off <= 1, "{off} of {} differ", y.len());
}

/// Runs forward, backward and the step gradient of `fq` on the GPU: (y, dx, dstep[0]).
fn run_gpu(fq: FakeQuant, fmt: QFormat, shape: &[usize], x: &[f32], dy: &[f32]) -> RunOut {
    let g = gpu();
    let xt = g.upload_f32(shape, x).unwrap();
    let dyt = g.upload_f32(shape, dy).unwrap();
    let st = FakeQuant::step(&g, fmt).unwrap();
    let mut s = g.stream();
    let y = fq.forward(&mut s, &xt, &st).unwrap();
    let dx = fq.backward(&mut s, &xt, &st, &dyt).unwrap();
    let ds = fq.step_grad(&mut s, &xt, &st, &dyt).unwrap();
    s.submit();
    let ds = g.read_f32(&ds).unwrap();
    assert_eq!(ds[1], 0.0, "the step gradient's second word stays zero");
    (g.read_f32(&y).unwrap(), g.read_f32(&dx).unwrap(), ds[0])
}

type RunOut = (Vec<f32>, Vec<f32>, f32);

#[test]
fn qdrop_matches_the_cpu_mask_bit_for_bit() {
    skip_without_gpu!();
    for (k, shape) in [vec![7], vec![2, 3, 5, 5], vec![4, 16, 8, 8], vec![3, 1000]]
        .into_iter()
        .enumerate()
    {
        for (j, fmt) in formats().into_iter().enumerate() {
            for (p, seed) in [(0.5f32, 17u32), (0.3, 0xdead_beef), (0.9, 3)] {
                let x = inputs(&shape, fmt, (10 * k + j) as u64);
                let dy = Array::random(&shape, 99 + k as u64).data;
                let thr = drop_threshold(p).unwrap();
                let fq = FakeQuant::new(fmt, false).with_drop(thr, seed);
                let mask = drop_mask(x.len(), thr, seed);
                let (y, dx, ds) = run_gpu(fq, fmt, &shape, &x, &dy);
                let want = forward_dropped_cpu(&x, fmt, &mask);
                for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                    assert_eq!(a.to_bits(), b.to_bits(), "{shape:?} p {p} element {i}");
                }
                assert_eq!(dx, backward_dropped_cpu(&x, &dy, fmt, &mask));
                let want = step_grad_dropped_cpu(&x, &dy, fmt, &mask);
                let mag: f64 =
                    dy.iter().map(|d| d.abs() as f64).sum::<f64>() * (fmt.range().1 as f64);
                assert!(
                    (ds as f64 - want).abs() <= 1e-5 * mag.max(1.0),
                    "{shape:?} p {p}: step gradient {ds} vs {want}"
                );
            }
        }
    }
}

#[test]
fn qdrop_at_zero_is_the_plain_op_and_at_one_the_identity() {
    skip_without_gpu!();
    let shape = [2, 8, 6, 6];
    for (j, fmt) in formats().into_iter().enumerate() {
        let x = inputs(&shape, fmt, 40 + j as u64);
        let dy = Array::random(&shape, 41 + j as u64).data;
        let plain = run_gpu(FakeQuant::new(fmt, false), fmt, &shape, &x, &dy);
        let zero = FakeQuant::new(fmt, false).with_drop(drop_threshold(0.0).unwrap(), 1234);
        let zero = run_gpu(zero, fmt, &shape, &x, &dy);
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&zero.0), bits(&plain.0));
        assert_eq!(bits(&zero.0), bits(&forward_cpu(&x, fmt)));
        assert_eq!(zero.1, plain.1);
        assert_eq!(zero.2.to_bits(), plain.2.to_bits());
        let one = FakeQuant::new(fmt, false).with_drop(drop_threshold(1.0).unwrap(), 99);
        let (y, dx, ds) = run_gpu(one, fmt, &shape, &x, &dy);
        assert_eq!(bits(&y), bits(&x));
        assert_eq!(dx, dy);
        assert_eq!(ds, 0.0);
    }
}

#[test]
fn qdrop_mask_drops_about_p_independently_per_seed() {
    let n = 100_000;
    for p in [0.1f32, 0.5, 0.9] {
        let thr = drop_threshold(p).unwrap();
        let a = drop_mask(n, thr, 7);
        let b = drop_mask(n, thr, 8);
        let frac = |m: &[bool]| m.iter().filter(|&&d| d).count() as f64 / n as f64;
        assert!((frac(&a) - p as f64).abs() < 0.01, "p {p}: {}", frac(&a));
        assert!((frac(&b) - p as f64).abs() < 0.01, "p {p}: {}", frac(&b));
        // Independent masks agree on p^2 + (1-p)^2 of the elements.
        let agree = a.iter().zip(&b).filter(|(x, y)| x == y).count() as f64 / n as f64;
        let want = (p * p + (1.0 - p) * (1.0 - p)) as f64;
        assert!(
            (agree - want).abs() < 0.01,
            "p {p}: agreement {agree} vs {want}"
        );
    }
    assert!(drop_threshold(1.5).is_err() && drop_threshold(f32::NAN).is_err());
}

#[test]
fn drop_mix_takes_fp_where_dropped() {
    skip_without_gpu!();
    let g = gpu();
    for shape in [vec![5], vec![3, 4, 7, 7]] {
        let q = Array::random(&shape, 1).data;
        let f = Array::random(&shape, 2).data;
        let thr = drop_threshold(0.5).unwrap();
        let qt = g.upload_f32(&shape, &q).unwrap();
        let ft = g.upload_f32(&shape, &f).unwrap();
        let mut s = g.stream();
        let y = drop_mix(&mut s, &qt, &ft, thr, 5).unwrap();
        s.submit();
        let want = drop_mix_cpu(&q, &f, &drop_mask(q.len(), thr, 5));
        assert_eq!(g.read_f32(&y).unwrap(), want);
    }
}
