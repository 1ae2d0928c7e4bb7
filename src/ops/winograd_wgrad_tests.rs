//! The Winograd weight gradient against the CPU reference, with its error scaled as the forward
//! forms' (`winograd::error_scale`): every rounding errs in proportion to the magnitudes its
//! transform combines.

use super::*;
use crate::array::Array;
use crate::cpu;
use crate::ops::skip_without_gpu;
use crate::testing::gpu;
use winograd::{AT4, BT4, G4};

/// |L| |M| |L|^T for a 6 x K matrix L and a K x K patch M.
fn abs_sandwich<const K: usize>(l: &[[f64; K]; 6], m: &[[f64; K]; K]) -> [[f64; 6]; 6] {
    let mut lm = [[0.0; K]; 6];
    for (i, row) in lm.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..K).map(|t| l[i][t].abs() * m[t][j].abs()).sum();
        }
    }
    let mut out = [[0.0; 6]; 6];
    for (i, row) in out.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..K).map(|t| lm[i][t] * l[j][t].abs()).sum();
        }
    }
    out
}

/// `K` x `K` values of plane `plane` (row length `w`, `h` rows) from (y, x), zero outside.
fn patch<const K: usize>(
    a: &Array,
    plane: usize,
    [h, w]: [usize; 2],
    y: isize,
    x: isize,
) -> [[f64; K]; K] {
    let mut m = [[0.0; K]; K];
    for (i, row) in m.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            let (yy, xx) = (y + i as isize, x + j as isize);
            if yy >= 0 && xx >= 0 && (yy as usize) < h && (xx as usize) < w {
                *v = a.data[(plane * h + yy as usize) * w + xx as usize] as f64;
            }
        }
    }
    m
}

/// Per weight, |G^T| [sum over tiles of (|A| |dy| |A^T|) . (|B^T| |d| |B|)] |G|.
fn error_scale(x: &Array, dy: &Array, pad: usize) -> Vec<f64> {
    let [n, ci, h, w] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [_, co, oh, ow] = [dy.shape[0], dy.shape[1], dy.shape[2], dy.shape[3]];
    // A, the 6x4 transpose of the forward output transform A^T.
    let a: [[f64; 4]; 6] = std::array::from_fn(|i| std::array::from_fn(|t| AT4[t][i]));
    let mut scale = vec![0.0; co * ci * 9];
    for b in 0..n {
        for ty in (0..oh).step_by(4) {
            for tx in (0..ow).step_by(4) {
                let (y, xx) = (ty as isize - pad as isize, tx as isize - pad as isize);
                let v: Vec<_> = (0..ci)
                    .map(|c| abs_sandwich(&BT4, &patch::<6>(x, b * ci + c, [h, w], y, xx)))
                    .collect();
                for o in 0..co {
                    let q = abs_sandwich(
                        &a,
                        &patch::<4>(dy, b * co + o, [oh, ow], ty as isize, tx as isize),
                    );
                    for (c, vc) in v.iter().enumerate() {
                        for k in 0..9 {
                            let (ky, kx) = (k / 3, k % 3);
                            let mut s = 0.0;
                            for e in 0..36 {
                                let (r, t) = (e / 6, e % 6);
                                s += (G4[r][ky] * G4[t][kx]).abs() * q[r][t] * vc[r][t];
                            }
                            scale[(o * ci + c) * 9 + k] += s;
                        }
                    }
                }
            }
        }
    }
    scale
}

/// The worst error over the weights, in units of the error scale.
fn worst_error(n: usize, ci: usize, co: usize, [h, w]: [usize; 2], pad: usize, seed: u64) -> f64 {
    let g = gpu();
    let p = Conv2dParams::new(1, pad, 1);
    let [oh, ow] = [p.out_size(0, h, 3).unwrap(), p.out_size(1, w, 3).unwrap()];
    let x = Array::random(&[n, ci, h, w], seed);
    let dy = Array::random(&[n, co, oh, ow], seed + 1);
    let want = cpu::conv::weight_grad(&x, &dy, [co, ci, 3, 3], (1, pad, 1));
    let scale = error_scale(&x, &dy, pad);
    let (xt, dyt) = (
        g.upload_f32(&x.shape, &x.data).unwrap(),
        g.upload_f32(&dy.shape, &dy.data).unwrap(),
    );
    let mut s = g.stream();
    let dw = weight_grad(&mut s, &xt, &dyt, &p)
        .unwrap()
        .expect("scratch fits");
    s.submit();
    assert_eq!(dw.shape(), &[co, ci, 3, 3]);
    let got = g.read_f32(&dw).unwrap();
    got.iter()
        .zip(&want)
        .zip(&scale)
        .map(|((a, b), sc)| (*a as f64 - b).abs() / sc.max(1e-12))
        .fold(0.0, f64::max)
}

/// Measured at most 5e-9 of the scale on these cases, an 8x margin; one output coefficient of
/// A changed from 8 to 8.0001 errs by up to 1.7e-7 and fails it.
const TOL: f64 = 4e-8;

#[test]
fn weight_gradient_matches_the_cpu_over_shapes() {
    skip_without_gpu!();
    // (n, ci, co, [h, w], pad): partial tiles on both axes, tile counts off the multiple of 4
    // (padding tiles), no padding, padding 2, one channel, channel counts off the 4-blocks.
    let cases = [
        (2, 5, 11, [7, 7], 1),
        (3, 4, 6, [16, 16], 1),
        (1, 3, 5, [9, 9], 1),
        (1, 3, 4, [9, 13], 0),
        (2, 2, 3, [5, 6], 2),
        (1, 1, 1, [4, 4], 1),
        (2, 16, 8, [8, 8], 1),
    ];
    for (i, &(n, ci, co, hw, pad)) in cases.iter().enumerate() {
        let worst = worst_error(n, ci, co, hw, pad, 70 + 3 * i as u64);
        assert!(
            worst < TOL,
            "case {i} {:?}: worst error {worst:e} of the scale",
            cases[i]
        );
    }
}

/// Where V or DY would pass the binding limit, the caller's direct path takes over (None).
#[test]
fn scratch_past_the_binding_limit_declines() {
    skip_without_gpu!();
    let g = gpu();
    // One image of 32x32 (64 tiles of 36 elements, 64 channels) more than the limit holds.
    let n = (g.max_binding() as usize / (36 * 64 * 4 * 64)).max(1) + 1;
    let x = g.alloc("test", &[n, 64, 32, 32], DType::F32).unwrap();
    let dy = g.alloc("test", &[n, 64, 32, 32], DType::F32).unwrap();
    let mut s = g.stream();
    let dw = weight_grad(&mut s, &x, &dy, &Conv2dParams::new(1, 1, 1)).unwrap();
    assert!(dw.is_none());
    assert_eq!(s.dispatches(), 0);
}
