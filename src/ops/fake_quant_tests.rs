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
    let g = gpu();
    for (k, shape) in [vec![7], vec![2, 3, 5, 5], vec![4, 16, 8, 8], vec![3, 10]]
        .into_iter()
        .enumerate()
    {
        for (j, fmt) in formats().into_iter().enumerate() {
            let x = inputs(&shape, fmt, (10 * k + j) as u64);
            let dy = Array::random(&shape, 99 + k as u64).data;
            let fq = FakeQuant::new(fmt, false);
            let xt = g.upload_f32(&shape, &x).unwrap();
            let dyt = g.upload_f32(&shape, &dy).unwrap();
            let st = FakeQuant::step(&g, fmt).unwrap();
            let mut s = g.stream();
            let y = fq.forward(&mut s, &xt, &st).unwrap();
            let dx = fq.backward(&mut s, &xt, &st, &dyt).unwrap();
            let ds = fq.step_grad(&mut s, &xt, &st, &dyt).unwrap();
            s.submit();
            let y = g.read_f32(&y).unwrap();
            let want = forward_cpu(&x, fmt);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{shape:?} {fmt:?} element {i}: x {}",
                    x[i]
                );
            }
            assert_eq!(g.read_f32(&dx).unwrap(), backward_cpu(&x, &dy, fmt));
            let ds = g.read_f32(&ds).unwrap();
            let want = step_grad_cpu(&x, &dy, fmt);
            let mag: f64 = dy.iter().map(|d| d.abs() as f64).sum::<f64>() * (fmt.range().1 as f64);
            assert!(
                (ds[0] as f64 - want).abs() <= 1e-5 * mag.max(1.0),
                "{shape:?} {fmt:?}: step gradient {} vs {want}",
                ds[0]
            );
            assert_eq!(ds[1], 0.0);
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
