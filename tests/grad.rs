//! Every backward kernel against central finite differences of the GPU forward, and conv2d's
//! and linear's against exact f64 gradients on every coordinate (at the end of the file).
//!
//! Finite-difference tolerance: the forward runs in f32, so a loss of magnitude |L| carries
//! rounding noise of about 1e-7 |L|; a central difference with step h = 1e-2 divides that by
//! 2h (~1e-5 |L|) and adds a truncation error of O(h^2 f''') ~ 1e-4 for these smooth ops. We
//! accept |numeric - analytic| <= 5e-4 * max(1, |L|^(1/2)) + 1e-3 |analytic|: 0.1% of the
//! gradient, several times above what lavapipe shows (1e-4 and 2e-4 still pass), so that a
//! wrong sign, a missing term, a transposed index or a gradient scaled by 1.005 fails. Inputs
//! of kinked ops (ReLU, LeakyReLU, hinge) are kept at least 0.05 from the kink, so that a
//! step of h never crosses it.

mod common;

use common::gpu;
use synthcal::array::Array;
use synthcal::gpu::{Gpu, Stream, Tensor};
use synthcal::graph::tape::{Tape, Var};
use synthcal::ops::conv2d::Conv2dParams;
use synthcal::ops::loss::Loss;
use synthcal::ops::pool::{Pool, Window};
use synthcal::ops::{Act, Pads};

const H: f32 = 1e-2;

/// An input of the op under test: its values and whether to check its gradient.
struct In {
    a: Array,
    check: bool,
}

fn input(shape: &[usize], seed: u64, check: bool) -> In {
    In {
        a: Array::random(shape, seed),
        check,
    }
}

/// Keeps values at least 0.05 away from 0 (for kinked ops).
fn off_kink(mut i: In) -> In {
    i.a = i.a.map(|v| {
        if v.abs() < 0.05 {
            v.signum() * 0.05 + v
        } else {
            v
        }
    });
    i
}

type Op<'a> = &'a dyn Fn(&mut Tape, &mut Stream, &[Var]) -> synthcal::Result<Var>;

/// Runs `f` forward; returns the scalar objective: the loss itself when `f` returns a loss,
/// else <r, y> with a fixed random r.
fn objective(g: &Gpu, inputs: &[In], f: Op, is_loss: bool) -> f64 {
    let mut tape = Tape::new();
    let mut s = g.stream();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|i| tape.leaf(g.upload_f32(&i.a.shape, &i.a.data).unwrap(), i.check))
        .collect();
    let y = f(&mut tape, &mut s, &vars).unwrap();
    let out = tape.value(y).clone();
    s.submit();
    let y = g.read_f32(&out).unwrap();
    if is_loss {
        return y[0] as f64;
    }
    let r = Array::random(&[y.len()], 999);
    y.iter()
        .zip(&r.data)
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn analytic(g: &Gpu, inputs: &[In], f: Op, is_loss: bool) -> Vec<Option<Vec<f32>>> {
    let mut tape = Tape::new();
    let mut s = g.stream();
    let vars: Vec<Var> = inputs
        .iter()
        .map(|i| tape.leaf(g.upload_f32(&i.a.shape, &i.a.data).unwrap(), i.check))
        .collect();
    let y = f(&mut tape, &mut s, &vars).unwrap();
    let grads = if is_loss {
        tape.backward(&mut s, &[(y, 1.0)]).unwrap()
    } else {
        let n = tape.value(y).numel();
        let r = Array::random(&[n], 999);
        let shape = tape.value(y).shape().to_vec();
        let seed: Tensor = g.upload_f32(&shape, &r.data).unwrap();
        tape.backward_seeded(&mut s, &[(y, seed)], &[]).unwrap()
    };
    let ts: Vec<Option<Tensor>> = vars.iter().map(|v| grads.get(*v).cloned()).collect();
    s.submit();
    ts.iter()
        .map(|t| t.as_ref().map(|t| g.read_f32(t).unwrap()))
        .collect()
}

/// Checks the gradient of every `check` input at up to 16 coordinates.
fn check_grad(name: &str, mut inputs: Vec<In>, f: Op, is_loss: bool) {
    let g = gpu();
    let base = objective(&g, &inputs, f, is_loss);
    let ana = analytic(&g, &inputs, f, is_loss);
    let scale = 1f64.max(base.abs().sqrt());
    for k in 0..inputs.len() {
        if !inputs[k].check {
            assert!(
                ana[k].is_none(),
                "{name}: constant input {k} got a gradient"
            );
            continue;
        }
        let grad = ana[k]
            .clone()
            .unwrap_or_else(|| panic!("{name}: no gradient for input {k}"));
        let n = inputs[k].a.numel();
        let step = (n / 16).max(1);
        for j in (0..n).step_by(step).take(16) {
            let orig = inputs[k].a.data[j];
            inputs[k].a.data[j] = orig + H;
            let plus = objective(&g, &inputs, f, is_loss);
            inputs[k].a.data[j] = orig - H;
            let minus = objective(&g, &inputs, f, is_loss);
            inputs[k].a.data[j] = orig;
            let num = (plus - minus) / (2.0 * H as f64);
            let a = grad[j] as f64;
            let tol = 5e-4 * scale + 1e-3 * a.abs();
            assert!(
                (num - a).abs() <= tol,
                "{name}: input {k}[{j}]: numeric {num} vs analytic {a} (tol {tol})"
            );
        }
    }
}

#[test]
fn linear_grad() {
    common::skip_without_gpu!();
    let f: Op = &|t, s, v| t.linear(s, v[0], v[1]);
    check_grad(
        "linear",
        vec![input(&[5, 7], 1, true), input(&[3, 7], 2, true)],
        f,
        false,
    );
    check_grad(
        "linear const x",
        vec![input(&[4, 9], 3, false), input(&[6, 9], 4, true)],
        f,
        false,
    );
}

/// (x shape, w shape, stride, pad, groups, bias)
type ConvCase = ([usize; 4], [usize; 4], usize, usize, usize, bool);

#[test]
fn conv2d_grads() {
    common::skip_without_gpu!();
    let cases: &[ConvCase] = &[
        ([2, 3, 6, 6], [4, 3, 3, 3], 1, 1, 1, false),
        ([2, 4, 8, 8], [6, 4, 4, 4], 2, 1, 1, true),
        ([1, 4, 5, 7], [4, 2, 3, 3], 2, 1, 2, true),
        ([2, 3, 5, 5], [3, 1, 3, 3], 1, 0, 3, false),
        ([1, 5, 4, 4], [3, 5, 1, 1], 1, 0, 1, true),
        ([2, 2, 7, 7], [5, 2, 3, 3], 2, 0, 1, false),
    ];
    for (i, &(xs, ws, stride, pad, groups, bias)) in cases.iter().enumerate() {
        let p = Conv2dParams::new(stride, pad, groups);
        let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| {
            t.conv2d(s, v[0], v[1], if bias { Some(v[2]) } else { None }, p)
        };
        let mut ins = vec![
            input(&xs, 10 + i as u64, true),
            input(&ws, 20 + i as u64, true),
        ];
        if bias {
            ins.push(input(&[ws[0]], 30 + i as u64, true));
        }
        check_grad(&format!("conv2d case {i}"), ins, &f, false);
    }
}

/// (x shape, w shape, stride, pad, groups, dilation)
type DilatedCase = ([usize; 4], [usize; 4], usize, usize, usize, usize);

/// Dilated convs (as imported ONNX models have them) through the tape's backward, against
/// finite differences: strided, padded, grouped and depthwise, with bias.
#[test]
fn dilated_conv2d_grads() {
    common::skip_without_gpu!();
    let cases: &[DilatedCase] = &[
        ([2, 3, 7, 7], [4, 3, 3, 3], 1, 2, 1, 2),
        ([1, 4, 9, 8], [6, 4, 3, 3], 2, 1, 1, 2),
        ([1, 4, 9, 9], [4, 2, 2, 2], 2, 3, 2, 3),
        ([2, 3, 8, 8], [3, 1, 3, 3], 1, 3, 3, 3),
    ];
    for (i, &(xs, ws, stride, pad, groups, d)) in cases.iter().enumerate() {
        let p = Conv2dParams::new(stride, pad, groups).dilated([d, d]);
        let f =
            move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.conv2d(s, v[0], v[1], Some(v[2]), p);
        let ins = vec![
            input(&xs, 40 + i as u64, true),
            input(&ws, 50 + i as u64, true),
            input(&[ws[0]], 60 + i as u64, true),
        ];
        check_grad(&format!("dilated conv2d case {i}"), ins, &f, false);
    }
}

#[test]
fn batch_norm_grads() {
    common::skip_without_gpu!();
    // Maps of 1, 9 and 16 pixels: the reduction's scalar and four-a-load (S % 4 == 0) forms.
    let shapes = [vec![6, 4], vec![3, 5, 3, 3], vec![2, 3, 4, 4]];
    for (i, shape) in shapes.into_iter().enumerate() {
        let g = gpu();
        let c = shape[1];
        let (rm, rv) = (
            g.upload_f32(&[c], &vec![0.0; c]).unwrap(),
            g.upload_f32(&[c], &vec![1.0; c]).unwrap(),
        );
        let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| {
            t.batch_norm(s, v[0], v[1], v[2], (&rm, &rv))
        };
        let ins = vec![
            input(&shape, 40 + i as u64, true),
            input(&[c], 41, true),
            input(&[c], 42, true),
        ];
        check_grad(&format!("batch_norm {shape:?}"), ins, &f, false);
    }
}

#[test]
fn pointwise_and_layout_grads() {
    common::skip_without_gpu!();
    let glu: Op = &|t, s, v| t.glu(s, v[0]);
    check_grad("glu 2d", vec![input(&[3, 8], 50, true)], glu, false);
    check_grad("glu 4d", vec![input(&[2, 6, 3, 3], 51, true)], glu, false);
    for act in [
        Act::Relu,
        Act::LeakyRelu(0.2),
        Act::Tanh,
        Act::Sigmoid,
        Act::Relu6,
        Act::Identity,
    ] {
        let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.act(s, v[0], act);
        let mut x = off_kink(input(&[2, 3, 4, 4], 52, true));
        if matches!(act, Act::Relu6) {
            // Over [-8, 8), so that the clip at 6 is crossed too, and off its kink.
            x.a = x.a.map(|v| {
                let v = 8.0 * v;
                if (v - 6.0).abs() < 0.1 {
                    v + 0.2
                } else {
                    v
                }
            });
            assert!(x.a.data.iter().any(|&v| v > 6.0));
        }
        check_grad(&format!("{act:?}"), vec![x], &f, false);
    }
    for (f, shape) in [(2, [2, 3, 3, 4]), (3, [1, 2, 2, 5]), (1, [1, 2, 3, 3])] {
        let up = move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.upsample(s, v[0], f);
        check_grad(
            &format!("upsample x{f}"),
            vec![input(&shape, 53, true)],
            &up,
            false,
        );
    }
    // Distinct values 0.05 apart, so that a step of H never changes a window's maximum.
    let spaced = |shape: &[usize], seed: u64| {
        let r = Array::random(shape, seed);
        let mut order: Vec<usize> = (0..r.numel()).collect();
        order.sort_by(|&a, &b| r.data[a].total_cmp(&r.data[b]));
        let mut a = r.clone();
        for (rank, &i) in order.iter().enumerate() {
            a.data[i] = rank as f32 * 0.05 - 2.0;
        }
        In { a, check: true }
    };
    // Symmetric padding, then padding per side ([top, left, bottom, right]) with ceil-mode
    // partial windows, for max and both averages.
    let windows = [
        (3, 2, [1; 4], false),
        (2, 2, [0; 4], false),
        (3, 1, [1; 4], false),
        (3, 2, [1, 0, 0, 1], true),
        (2, 2, [0, 1, 1, 0], true),
    ];
    for (k, stride, pads, ceil) in windows {
        let win = Window {
            kernel: k,
            stride,
            pads: Pads::from_onnx(pads),
            ceil,
            dilation: [1, 1],
        };
        for how in [Pool::Max, Pool::Avg, Pool::AvgOfReal] {
            let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.pool(s, v[0], how, &win);
            let name = format!("{how:?} pool k{k} s{stride} pads {pads:?} ceil {ceil}");
            check_grad(&name, vec![spaced(&[2, 2, 5, 5], 58)], &f, false);
        }
    }
    let cat: Op = &|t, s, v| t.concat(s, &[v[0], v[1]]);
    check_grad(
        "concat",
        vec![
            input(&[2, 3, 2, 2], 54, true),
            input(&[2, 2, 2, 2], 55, true),
        ],
        cat,
        false,
    );
    check_grad(
        "concat const",
        vec![input(&[3, 5], 56, false), input(&[3, 4], 57, true)],
        cat,
        false,
    );
    let add: Op = &|t, s, v| t.add(s, v[0], v[1]);
    check_grad(
        "add",
        vec![input(&[4, 6], 58, true), input(&[4, 6], 59, true)],
        add,
        false,
    );
    let mul: Op = &|t, s, v| t.mul(s, v[0], v[1]);
    check_grad(
        "mul",
        vec![input(&[4, 6], 62, true), input(&[4, 6], 63, true)],
        mul,
        false,
    );
    let flat: Op = &|t, s, v| {
        let f = t.reshape(v[0], &[2, 12])?;
        t.linear(s, f, v[1])
    };
    check_grad(
        "flatten",
        vec![input(&[2, 3, 2, 2], 60, true), input(&[5, 12], 61, true)],
        flat,
        false,
    );
}

#[test]
fn loss_grads() {
    common::skip_without_gpu!();
    for (i, loss) in [
        Loss::Hinge { sign: 1.0 },
        Loss::Hinge { sign: -1.0 },
        Loss::Linear { sign: -1.0 },
    ]
    .into_iter()
    .enumerate()
    {
        // Hinge kinks at x = sign: move values off +-1.
        let mut x = input(&[16, 1], 70 + i as u64, true);
        x.a = x.a.map(|v| 2.5 * v).map(|v| {
            if (v.abs() - 1.0).abs() < 0.05 {
                v * 1.1
            } else {
                v
            }
        });
        let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.loss(s, v[0], None, loss);
        let want = match loss {
            Loss::Hinge { sign } => cpu_mean(&x.a.data, |v| (1.0 - sign as f64 * v).max(0.0)),
            Loss::Linear { sign } => cpu_mean(&x.a.data, |v| sign as f64 * v),
            _ => unreachable!(),
        };
        let x = vec![x];
        check_loss_value(&format!("{loss:?}"), &x, &f, want);
        check_grad(&format!("{loss:?}"), x, &f, true);
    }
    let wh: Op = &|t, s, v| t.loss(s, v[0], Some(v[1]), Loss::WeightedHinge);
    let mut x = input(&[12, 1], 77, true);
    x.a = x.a.map(|v| 2.5 * v).map(|v| {
        if (v.abs() - 1.0).abs() < 0.05 {
            v * 1.1
        } else {
            v
        }
    });
    let mut w = input(&[12, 1], 78, false);
    w.a = w.a.map(|v| if v.abs() < 0.1 { 0.5 } else { v });
    let terms: Vec<f64> = (x.a.data.iter().zip(&w.a.data))
        .map(|(&v, &t)| t.abs() as f64 * (1.0 - t.signum() as f64 * v as f64).max(0.0))
        .collect();
    let want = terms.iter().sum::<f64>() / terms.len() as f64;
    let xw = vec![x, w];
    check_loss_value("weighted hinge", &xw, wh, want);
    check_grad("weighted hinge", xw, wh, true);
    let l1: Op = &|t, s, v| t.loss(s, v[0], Some(v[1]), Loss::L1);
    let xt = vec![
        input(&[3, 4, 2, 2], 75, true),
        input(&[3, 4, 2, 2], 76, false),
    ];
    let want = (xt[0].a.data.iter().zip(&xt[1].a.data))
        .map(|(&a, &b)| (a as f64 - b as f64).abs())
        .sum::<f64>()
        / 48.0;
    check_loss_value("l1", &xt, l1, want);
    check_grad("l1", xt, l1, true);
}

/// The mean of `f` over `x`, in f64.
fn cpu_mean(x: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    x.iter().map(|&v| f(v as f64)).sum::<f64>() / x.len() as f64
}

/// The loss's value on the GPU against a CPU computation (finite differences alone would pass
/// a value and gradient that are wrong together, as one shader function computes both).
fn check_loss_value(name: &str, inputs: &[In], f: Op, want: f64) {
    let got = objective(&gpu(), inputs, f, true);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
        "{name}: GPU {got} vs CPU {want}"
    );
}

/// Rows of one-hot targets, the last row all zero (left out of the loss).
fn class_targets(rows: usize, classes: usize) -> Array {
    let mut t = Array::zeros(&[rows, classes]);
    for r in 0..rows - 1 {
        t.data[r * classes + (r * 7 + 3) % classes] = 1.0;
    }
    t
}

#[test]
fn cross_entropy_value_and_grad() {
    common::skip_without_gpu!();
    let (rows, classes) = (6, 10);
    let mut x = input(&[rows, classes], 85, true);
    x.a = x.a.map(|v| 3.0 * v);
    let t = class_targets(rows, classes);
    // CPU reference of the value.
    let mut want = 0.0f64;
    for r in 0..rows {
        let row = &x.a.data[r * classes..(r + 1) * classes];
        let mx = row.iter().cloned().fold(f32::MIN, f32::max) as f64;
        let lse = mx + row.iter().map(|&v| (v as f64 - mx).exp()).sum::<f64>().ln();
        for (j, &v) in row.iter().enumerate() {
            want += t.data[r * classes + j] as f64 * (lse - v as f64);
        }
    }
    want /= rows as f64;
    let ce: Op = &|t, s, v| t.loss(s, v[0], Some(v[1]), Loss::CrossEntropy);
    let ins = || {
        vec![
            In {
                a: x.a.clone(),
                check: true,
            },
            In {
                a: t.clone(),
                check: false,
            },
        ]
    };
    let got = objective(&gpu(), &ins(), ce, true);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "cross-entropy {got} vs CPU {want}"
    );
    check_grad("cross-entropy", ins(), ce, true);
}

#[test]
fn bn_stat_loss_value_and_grad() {
    common::skip_without_gpu!();
    let (n, c, sp) = (3, 4, 5);
    let mut x = input(&[n, c, sp], 90, true);
    x.a = x.a.map(|v| 2.0 * v + 0.3);
    let r = Array::random(&[2 * c], 91);
    // Reference: running means, then positive stds.
    let refs: Vec<f32> = (0..2 * c)
        .map(|i| {
            if i < c {
                r.data[i]
            } else {
                0.5 + r.data[i].abs()
            }
        })
        .collect();
    let eps = 1e-5f32;
    let mut want = 0.0f64;
    for ch in 0..c {
        let v: Vec<f64> = (0..n)
            .flat_map(|b| (0..sp).map(move |k| (b * c + ch) * sp + k))
            .map(|i| x.a.data[i] as f64)
            .collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|a| (a - m).powi(2)).sum::<f64>() / v.len() as f64;
        let sd = (var + eps as f64).sqrt();
        want += (m - refs[ch] as f64).powi(2) + (sd - refs[c + ch] as f64).powi(2);
    }
    let reference = gpu().upload_f32(&[2 * c], &refs).unwrap();
    let mut scratch = synthcal::ops::batchnorm::BatchNorm::init(&gpu(), c).unwrap();
    scratch.eps = eps;
    let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| {
        t.bn_stat_loss(s, v[0], &reference, &scratch)
    };
    let ins = || {
        vec![In {
            a: x.a.clone(),
            check: true,
        }]
    };
    let got = objective(&gpu(), &ins(), &f, true);
    assert!(
        (got - want).abs() <= 1e-4 * want.abs(),
        "stat loss {got} vs CPU {want}"
    );
    check_grad("bn stat loss", ins(), &f, true);
}

/// The persistent u after 100 power iterations, and its values. At the singular vectors,
/// sigma's derivative is u v^T exactly: the gradient PyTorch (and synthcal) use with u and v
/// held constant, so finite differences of the one-iteration forward agree with it.
fn converged_u(w: &Array) -> (Tensor, Vec<f32>) {
    let g = gpu();
    let rows = w.shape[0];
    let u = g
        .upload_f32(&[rows], &Array::random(&[rows], 81).data)
        .unwrap();
    let wt = g.upload_f32(&w.shape, &w.data).unwrap();
    let mut s = g.stream();
    for _ in 0..100 {
        synthcal::ops::spectral_norm::spectral_norm(&mut s, &wt, &u, 1e-12).unwrap();
    }
    s.submit();
    let u0 = g.read_f32(&u).unwrap();
    (u, u0)
}

#[test]
fn spectral_norm_grad() {
    common::skip_without_gpu!();
    let w = input(&[6, 2, 2, 2], 80, true);
    let (u, u0) = converged_u(&w.a);
    let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| {
        gpu().write_f32(&u, &u0).unwrap();
        t.spectral_norm(s, v[0], &u)
    };
    check_grad("spectral_norm", vec![w], &f, false);
}

#[test]
fn small_net_whole_graph_grad() {
    common::skip_without_gpu!();
    // conv -> BN -> GLU -> upsample -> conv(s2) -> leaky -> flatten -> concat(label) ->
    // linear -> hinge: every op the GAN uses, chained.
    let g = gpu();
    let (rm, rv) = (
        g.upload_f32(&[4], &[0.0; 4]).unwrap(),
        g.upload_f32(&[4], &[1.0; 4]).unwrap(),
    );
    let w2 = input(&[3, 2, 4, 4], 94, true);
    let (u, u0) = converged_u(&w2.a);
    let f = move |t: &mut Tape, s: &mut Stream, v: &[Var]| {
        gpu().write_f32(&u, &u0).unwrap();
        let h = t.conv2d(s, v[0], v[1], None, Conv2dParams::new(1, 1, 1))?;
        let h = t.batch_norm(s, h, v[2], v[3], (&rm, &rv))?;
        let h = t.glu(s, h)?;
        let h = t.upsample(s, h, 2)?;
        let w2 = t.spectral_norm(s, v[4], &u)?;
        let h = t.conv2d(s, h, w2, Some(v[5]), Conv2dParams::new(2, 1, 1))?;
        let h = t.act(s, h, Act::Tanh)?;
        let h = t.reshape(h, &[2, 3 * 4 * 4])?;
        let h = t.concat(s, &[h, v[6]])?;
        let y = t.linear(s, h, v[7])?;
        t.loss(s, y, None, Loss::Linear { sign: -1.0 })
    };
    let ins = vec![
        input(&[2, 3, 4, 4], 90, true),
        input(&[4, 3, 3, 3], 91, true),
        input(&[4], 92, true),
        input(&[4], 93, true),
        w2,
        input(&[3], 95, true),
        input(&[2, 10], 96, false),
        input(&[1, 58], 97, true),
    ];
    check_grad("small net", ins, &f, true);
}

// Exact references. The objective <r, y> is linear in each of conv2d's and linear's inputs, so
// its gradients are plain sums; computed here in f64 they are exact to ~1e-15, and the GPU's
// f32 kernels are held to 0.1% of each coordinate plus 1e-5 of the coordinate's sum of
// |terms| (f32 summation of up to a few hundred terms errs by a few 1e-6 of that sum).
// Every coordinate of every input is checked, and each check first proves it would catch a
// gradient scaled by 1.005.

/// The f64 gradient of every coordinate and its sum of |terms|.
struct Exact {
    g: Vec<f64>,
    abs: Vec<f64>,
}

impl Exact {
    fn zeros(n: usize) -> Exact {
        Exact {
            g: vec![0.0; n],
            abs: vec![0.0; n],
        }
    }
    fn add(&mut self, i: usize, v: f64) {
        self.g[i] += v;
        self.abs[i] += v.abs();
    }
}

fn within(got: f32, e: &Exact, i: usize) -> bool {
    (got as f64 - e.g[i]).abs() <= 1e-3 * e.g[i].abs() + 1e-5 * e.abs[i]
}

/// Every coordinate of `got` matches `want`, and the same gradient scaled by 1.005 would not.
fn check_exact(name: &str, got: &[f32], want: &Exact) {
    assert_eq!(got.len(), want.g.len(), "{name}");
    for (i, &v) in got.iter().enumerate() {
        assert!(
            within(v, want, i),
            "{name}[{i}]: GPU {v} vs exact {} (sum |terms| {})",
            want.g[i],
            want.abs[i]
        );
    }
    let scaled = (0..got.len()).filter(|&i| !within(got[i] * 1.005, want, i));
    assert!(
        scaled.count() > 0,
        "{name}: a 0.5% scaling error would pass"
    );
}

/// Gradients of <r, conv2d(x, w) + b> (r = the `analytic` seed) in f64.
fn conv_exact(x: &Array, w: &Array, stride: usize, pad: usize, groups: usize) -> [Exact; 3] {
    let ([n, c, h, wd], [co, cig, kh, kw]) = (dims4(x), dims4(w));
    let (oh, ow) = (
        (h + 2 * pad - kh) / stride + 1,
        (wd + 2 * pad - kw) / stride + 1,
    );
    let r = Array::random(&[n * co * oh * ow], 999);
    let (mut dx, mut dw, mut db) = (
        Exact::zeros(x.numel()),
        Exact::zeros(w.numel()),
        Exact::zeros(co),
    );
    for b in 0..n {
        for o in 0..co {
            for oy in 0..oh {
                for ox in 0..ow {
                    let ry = r.data[((b * co + o) * oh + oy) * ow + ox] as f64;
                    db.add(o, ry);
                    for i in 0..cig {
                        let ci = o / (co / groups) * cig + i;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let (iy, ix) = (
                                    (oy * stride + ky).wrapping_sub(pad),
                                    (ox * stride + kx).wrapping_sub(pad),
                                );
                                if iy >= h || ix >= wd {
                                    continue;
                                }
                                let xi = ((b * c + ci) * h + iy) * wd + ix;
                                let wi = ((o * cig + i) * kh + ky) * kw + kx;
                                dw.add(wi, ry * x.data[xi] as f64);
                                dx.add(xi, ry * w.data[wi] as f64);
                            }
                        }
                    }
                }
            }
        }
    }
    [dx, dw, db]
}

fn dims4(a: &Array) -> [usize; 4] {
    a.shape[..].try_into().unwrap()
}

#[test]
fn conv2d_grads_match_exact_f64_on_every_coordinate() {
    common::skip_without_gpu!();
    let cases: &[ConvCase] = &[
        ([2, 3, 6, 6], [4, 3, 3, 3], 1, 1, 1, true),
        ([2, 4, 8, 7], [6, 4, 4, 4], 2, 1, 1, true),
        ([1, 4, 5, 7], [4, 2, 3, 3], 2, 1, 2, true),
        ([2, 3, 5, 5], [3, 1, 3, 3], 1, 0, 3, true),
        ([3, 5, 4, 4], [3, 5, 1, 1], 1, 0, 1, true),
        ([2, 2, 7, 7], [5, 2, 3, 3], 2, 0, 1, true),
        // Stride 3: input-gradient phases with one and two taps, uneven pads.
        ([1, 3, 10, 9], [4, 3, 5, 5], 3, 2, 1, true),
        // 4,096 output pixels: the forward conv, the input gradient (ops::winograd_train) and
        // the weight gradient (ops::winograd_wgrad) take a Winograd form on CPU adapters.
        ([1, 4, 64, 64], [4, 4, 3, 3], 1, 1, 1, true),
    ];
    for (i, &(xs, ws, stride, pad, groups, _)) in cases.iter().enumerate() {
        let p = Conv2dParams::new(stride, pad, groups);
        let f =
            move |t: &mut Tape, s: &mut Stream, v: &[Var]| t.conv2d(s, v[0], v[1], Some(v[2]), p);
        let ins = vec![
            input(&xs, 110 + i as u64, true),
            input(&ws, 120 + i as u64, true),
            input(&[ws[0]], 130 + i as u64, true),
        ];
        let want = conv_exact(&ins[0].a, &ins[1].a, stride, pad, groups);
        let got = analytic(&gpu(), &ins, &f, false);
        for (k, (g, e)) in got.iter().zip(&want).enumerate() {
            check_exact(
                &format!("conv2d case {i} input {k}"),
                g.as_ref().unwrap(),
                e,
            );
        }
    }
}

#[test]
fn linear_grads_match_exact_f64_on_every_coordinate() {
    common::skip_without_gpu!();
    for (i, (rows, inp, out)) in [(5, 7, 3), (9, 33, 17), (1, 64, 10)]
        .into_iter()
        .enumerate()
    {
        let ins = vec![
            input(&[rows, inp], 140 + i as u64, true),
            input(&[out, inp], 150 + i as u64, true),
        ];
        // y = x w^T: dy/dx = r w, dy/dw = r^T x.
        let r = Array::random(&[rows * out], 999);
        let (x, w) = (&ins[0].a.data, &ins[1].a.data);
        let (mut dx, mut dw) = (Exact::zeros(rows * inp), Exact::zeros(out * inp));
        for b in 0..rows {
            for o in 0..out {
                let ry = r.data[b * out + o] as f64;
                for j in 0..inp {
                    dx.add(b * inp + j, ry * w[o * inp + j] as f64);
                    dw.add(o * inp + j, ry * x[b * inp + j] as f64);
                }
            }
        }
        let f: Op = &|t, s, v| t.linear(s, v[0], v[1]);
        let got = analytic(&gpu(), &ins, f, false);
        check_exact(&format!("linear {i} x"), got[0].as_ref().unwrap(), &dx);
        check_exact(&format!("linear {i} w"), got[1].as_ref().unwrap(), &dw);
    }
}

/// One power iteration of PyTorch's spectral norm in f64: v = W^T u / |W^T u|, u' = W v / |W v|,
/// sigma = |W v|; returns (W / sigma, u', v, sigma).
fn spectral_norm_cpu(w: &Array, u: &[f32]) -> (Vec<f64>, Vec<f64>, Vec<f64>, f64) {
    let rows = w.shape[0];
    let cols = w.numel() / rows;
    let at = |r: usize, c: usize| w.data[r * cols + c] as f64;
    let unit = |x: Vec<f64>| {
        let n = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-12);
        (x.iter().map(|v| v / n).collect::<Vec<f64>>(), n)
    };
    let wt_u = (0..cols)
        .map(|c| (0..rows).map(|r| at(r, c) * u[r] as f64).sum())
        .collect();
    let (v, _) = unit(wt_u);
    let wv = (0..rows)
        .map(|r| (0..cols).map(|c| at(r, c) * v[c]).sum())
        .collect();
    let (u_new, sigma) = unit(wv);
    let w_sn = w.data.iter().map(|&x| x as f64 / sigma).collect();
    (w_sn, u_new, v, sigma)
}

/// The spectral norm's forward (both of its kernels and the in-place `u`) against the CPU
/// power iteration, over several shapes (more rows than a workgroup too); after 100
/// iterations sigma is W's largest singular value.
#[test]
fn spectral_norm_matches_the_cpu_power_iteration() {
    common::skip_without_gpu!();
    let g = gpu();
    let near = |got: &[f32], want: &[f64], what: &str| {
        let top = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
        for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a as f64 - b).abs() <= 1e-4 * top,
                "{what}[{i}]: {a} vs {b}"
            );
        }
        assert_eq!(got.len(), want.len(), "{what}");
    };
    for (k, shape) in [&[6, 2, 2, 2][..], &[3, 2, 4, 4], &[1, 5], &[300, 3]]
        .into_iter()
        .enumerate()
    {
        let w = Array::random(shape, 90 + k as u64);
        let u0 = Array::random(&[shape[0]], 95 + k as u64).data;
        let (wt, u) = (
            g.upload_f32(&w.shape, &w.data).unwrap(),
            g.upload_f32(&[shape[0]], &u0).unwrap(),
        );
        let mut s = g.stream();
        let st = synthcal::ops::spectral_norm::spectral_norm(&mut s, &wt, &u, 1e-12).unwrap();
        s.submit();
        let (w_sn, u_new, v, sigma) = spectral_norm_cpu(&w, &u0);
        let what = format!("{shape:?}");
        near(
            &g.read_f32(&st.w_sn).unwrap(),
            &w_sn,
            &format!("{what} W/sigma"),
        );
        near(
            &g.read_f32(&u).unwrap(),
            &u_new,
            &format!("{what} u in place"),
        );
        near(&g.read_f32(&st.v).unwrap(), &v, &format!("{what} v"));
        near(
            &g.read_f32(&st.sigma).unwrap(),
            &[sigma],
            &format!("{what} sigma"),
        );
    }
    // Converged: sigma is the top singular value (CPU power iteration to convergence).
    let w = Array::random(&[6, 2, 2, 2], 90);
    let (u, _) = converged_u(&w);
    let mut s = g.stream();
    let wt = g.upload_f32(&w.shape, &w.data).unwrap();
    let st = synthcal::ops::spectral_norm::spectral_norm(&mut s, &wt, &u, 1e-12).unwrap();
    s.submit();
    let mut uc = Array::random(&[6], 81).data;
    let mut top = 0.0;
    for _ in 0..2000 {
        let (_, un, _, sg) = spectral_norm_cpu(&w, &uc);
        uc = un.iter().map(|&x| x as f32).collect();
        top = sg;
    }
    near(&g.read_f32(&st.sigma).unwrap(), &[top], "converged sigma");
}
