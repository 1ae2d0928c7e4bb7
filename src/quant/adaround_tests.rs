use super::*;
use crate::array::Array;
use crate::ops::skip_without_gpu;
use crate::testing::gpu;

/// Naive conv (stride 1, padding `pad`) plus bias and ReLU, in f64.
fn conv_relu_cpu(x: &Array, w: &[f64], co: usize, k: usize, bias: &[f32], pad: usize) -> Vec<f64> {
    let [n, ci, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let mut y = vec![0f64; n * co * h * wd];
    for b in 0..n {
        for o in 0..co {
            for i in 0..h {
                for j in 0..wd {
                    let mut acc = bias[o] as f64;
                    for c in 0..ci {
                        for u in 0..k {
                            for v in 0..k {
                                let (ii, jj) = (i + u, j + v);
                                if ii < pad || jj < pad || ii - pad >= h || jj - pad >= wd {
                                    continue;
                                }
                                let xv = x.data[((b * ci + c) * h + ii - pad) * wd + jj - pad];
                                acc += xv as f64 * w[((o * ci + c) * k + u) * k + v];
                            }
                        }
                    }
                    y[((b * co + o) * h + i) * wd + j] = acc.max(0.0);
                }
            }
        }
    }
    y
}

/// A random `co x ci x 3 x 3` layer with `bits`-bit round-to-nearest weights, `n` random
/// inputs of `s x s`, and as targets the FP32 layer's outputs (on the GPU).
fn layer(
    co: usize,
    ci: usize,
    s: usize,
    n: usize,
    bits: u32,
) -> (QWeights, Array, Array, Array, Tensor, Tensor) {
    let g = gpu();
    let w = Array::random(&[co, ci, 3, 3], 11);
    let qw = QWeights::quantize_bits(&w, bits, crate::quant::WeightRange::MinMax).unwrap();
    let bias = Array::random(&[co], 12).map(|v| 0.1 * v);
    // Inputs nearly constant over space: the taps' rounding errors add up in every output,
    // so choosing them jointly beats rounding each to nearest (with independent inputs
    // round-to-nearest is close to optimal).
    let level = Array::random(&[n * ci], 13);
    let noise = Array::random(&[n * ci * s * s], 16);
    let data = (0..n * ci * s * s)
        .map(|i| level.data[i / (s * s)] + 0.1 * noise.data[i])
        .collect();
    let x = Array::new(&[n, ci, s, s], data);
    let xt = g.upload_f32(&x.shape, &x.data).unwrap();
    let (wt, bt) = (
        g.upload_f32(&w.shape, &w.data).unwrap(),
        g.upload_f32(&[co], &bias.data).unwrap(),
    );
    let mut st = g.stream();
    let p = Conv2dParams::new(1, 1, 1);
    let y = crate::ops::conv2d_grad::conv2d_train(&mut st, &xt, &wt, Some(&bt), &p).unwrap();
    let y = crate::ops::elementwise::act(&mut st, &y, Act::Relu).unwrap();
    st.submit();
    (qw, w, bias, x, xt, y)
}

#[test]
fn the_loss_matches_a_cpu_computation_on_a_small_layer() {
    skip_without_gpu!();
    let g = gpu();
    let (qw, w, bias, x, xt, _) = layer(4, 3, 5, 6, 4);
    let target = Array::random(&[6, 4, 5, 5], 14).map(|v| v.max(0.0));
    let tt = g.upload_f32(&target.shape, &target.data).unwrap();
    let prob = LayerProblem {
        weights: &qw,
        w: &w.data,
        bias: Some(g.upload_f32(&[4], &bias.data).unwrap()),
        p: Conv2dParams::new(1, 1, 1),
        act: Act::Relu,
        x: xt.clone(),
        target: tt.clone(),
    };
    let (floor, v0) = k::init(&w.data, &qw.scale, 27);
    // V away from its start, so that the rounding is partly decided.
    let noise = Array::random(&[v0.len()], 15).data;
    let v: Vec<f32> = v0.iter().zip(&noise).map(|(a, b)| a + 3.0 * b).collect();
    let sq = SoftQuant::new(&g, &floor, &qw.scale, &qw.shape, (-7, 7)).unwrap();
    let vt = g.upload_f32(&qw.shape, &v).unwrap();
    let (recon, reg) = loss(&g, &prob, &sq, &vt, (xt, &tt), 6.0).unwrap();
    let vd: Vec<f64> = v.iter().map(|&a| a as f64).collect();
    let wq = k::soft_weight_cpu(&floor, &vd, &qw.scale, 27, (-7, 7));
    let y = conv_relu_cpu(&x, &wq, 4, 3, &bias.data, 1);
    let want: f64 = y
        .iter()
        .zip(&target.data)
        .map(|(a, &b)| (a - b as f64).powi(2))
        .sum::<f64>()
        / (6.0 * 25.0);
    assert!(
        (recon - want).abs() < 1e-4 * want,
        "reconstruction {recon} vs {want}"
    );
    let want_reg = k::reg_cpu(&vd, 6.0);
    assert!(
        (reg - want_reg).abs() < 1e-4 * want_reg,
        "regularizer {reg} vs {want_reg}"
    );
}

#[test]
fn learned_rounding_beats_round_to_nearest_on_a_random_layer() {
    skip_without_gpu!();
    let g = gpu();
    let (qw, w, bias, _, xt, y) = layer(8, 8, 6, 128, 3);
    let prob = LayerProblem {
        weights: &qw,
        w: &w.data,
        bias: Some(g.upload_f32(&[8], &bias.data).unwrap()),
        p: Conv2dParams::new(1, 1, 1),
        act: Act::Relu,
        x: xt,
        target: y,
    };
    let opts = AdaRoundOptions {
        iters: 600,
        lr: 1e-2,
        ..Default::default()
    };
    let mut steps = 0;
    let r = learn_layer(&g, &prob, &opts, 1, &mut |k| {
        steps += k;
        Ok(())
    })
    .unwrap();
    assert_eq!(steps, 600);
    assert!(
        r.mse < 0.9 * r.rtn_mse,
        "learned {} vs nearest {}",
        r.mse,
        r.rtn_mse
    );
    assert!(r.q.iter().all(|&q| (-3..=3).contains(&q)));
    assert!(r.q.iter().zip(&qw.q).any(|(a, b)| a != b));
    // A step callback's error (a cancellation) stops the work.
    let e = learn_layer(&g, &prob, &opts, 1, &mut |_| Err(crate::Error::Cancelled));
    assert!(matches!(e, Err(crate::Error::Cancelled)));
}

#[test]
fn the_schedule_warms_up_then_anneals_beta() {
    let o = AdaRoundOptions {
        iters: 1000,
        ..Default::default()
    };
    assert_eq!(o.schedule(0), (0.0, 20.0));
    assert_eq!(o.schedule(199).0, 0.0);
    assert_eq!(o.schedule(200), (0.01, 20.0));
    assert!((o.schedule(600).1 - 11.0).abs() < 1e-5);
    assert!((o.schedule(1000).1 - 2.0).abs() < 1e-5);
    let bad = AdaRoundOptions {
        lr: -1.0,
        ..Default::default()
    };
    assert!(bad.check().is_err());
}
