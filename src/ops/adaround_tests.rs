use super::*;
use crate::array::Array;
use crate::ops::conv2d_grad::{pad_input, weight_grad_gemm, weight_grad_padded};
use crate::ops::skip_without_gpu;
use crate::testing::gpu;

/// A small 4-bit layer `[co, 3, 3, 3]`: weights, min-max scales, floors, V moved off its
/// initial value by `spread`, and the integer range.
struct Case {
    shape: Vec<usize>,
    scale: Vec<f32>,
    floor: Vec<f32>,
    v: Vec<f32>,
    range: (i32, i32),
}

fn case(seed: u64, spread: f32) -> Case {
    let shape = vec![5, 3, 3, 3];
    let w = Array::random(&shape, seed).data;
    let per = 27;
    let qmax = 7;
    let scale: Vec<f32> = w
        .chunks(per)
        .map(|r| r.iter().fold(0f32, |m, x| m.max(x.abs())) / qmax as f32)
        .collect();
    let (floor, v0) = init(&w, &scale, per);
    let noise = Array::random(&shape, seed + 100).data;
    let v = v0.iter().zip(&noise).map(|(a, b)| a + spread * b).collect();
    Case {
        shape,
        scale,
        floor,
        v,
        range: (-qmax, qmax),
    }
}

fn close(got: &[f32], want: &[f64], rel: f64, what: &str) {
    let top = want.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-12);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g as f64 - w).abs() <= rel * top,
            "{what} element {i}: {g} vs {w} (max {top})"
        );
    }
}

/// Central differences of a scalar function of V, in f64.
fn finite_diff(v: &[f32], f: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let base: Vec<f64> = v.iter().map(|&x| x as f64).collect();
    let eps = 1e-6;
    (0..v.len())
        .map(|i| {
            let (mut a, mut b) = (base.clone(), base.clone());
            a[i] += eps;
            b[i] -= eps;
            (f(&a) - f(&b)) / (2.0 * eps)
        })
        .collect()
}

/// Elements where h(V) has a kink (its clamp to [0, 1]) within the step are left out.
fn smooth(v: f32) -> bool {
    (v.abs() - 10f32.ln()).abs() > 1e-3
}

#[test]
fn initial_v_reproduces_the_weights_and_rounds_to_nearest() {
    let w = Array::random(&[4, 8], 3).data;
    let scale = vec![0.1f32, 0.2, 0.05, 0.3];
    let (floor, v) = init(&w, &scale, 8);
    let soft = soft_weight_cpu(
        &floor,
        &v.iter().map(|&x| x as f64).collect::<Vec<_>>(),
        &scale,
        8,
        (-127, 127),
    );
    for (i, (&a, &b)) in w.iter().zip(&soft).enumerate() {
        assert!((a as f64 - b).abs() < 1e-5, "element {i}: {a} vs {b}");
    }
    let q = hard_round(&floor, &v, -127, 127);
    for (i, (&a, &qi)) in w.iter().zip(&q).enumerate() {
        let nearest = (a / scale[i / 8]).round() as i8;
        assert_eq!(qi, nearest, "element {i}");
    }
}

#[test]
fn soft_weight_matches_the_cpu_reference() {
    skip_without_gpu!();
    let g = gpu();
    let c = case(1, 2.0);
    let sq = SoftQuant::new(&g, &c.floor, &c.scale, &c.shape, c.range).unwrap();
    let v = g.upload_f32(&c.shape, &c.v).unwrap();
    let mut s = g.stream();
    let w = sq.weight(&mut s, &v).unwrap();
    s.submit();
    let vd: Vec<f64> = c.v.iter().map(|&x| x as f64).collect();
    let want = soft_weight_cpu(&c.floor, &vd, &c.scale, 27, c.range);
    close(&g.read_f32(&w).unwrap(), &want, 1e-4, "W~");
}

#[test]
fn soft_weight_backward_matches_finite_differences() {
    skip_without_gpu!();
    let g = gpu();
    let c = case(2, 3.0);
    let n = c.v.len();
    let dw = Array::random(&c.shape, 9).data;
    let sq = SoftQuant::new(&g, &c.floor, &c.scale, &c.shape, c.range).unwrap();
    let v = g.upload_f32(&c.shape, &c.v).unwrap();
    let dwt = g.upload_f32(&c.shape, &dw).unwrap();
    let mut s = g.stream();
    let dv = sq.backward(&mut s, &v, &dwt).unwrap();
    s.submit();
    let got = g.read_f32(&dv).unwrap();
    // L(V) = <dw, W~(V)>.
    let want = finite_diff(&c.v, |v| {
        let w = soft_weight_cpu(&c.floor, v, &c.scale, 27, c.range);
        w.iter().zip(&dw).map(|(a, &b)| a * b as f64).sum()
    });
    let (mut zero, mut live) = (0, 0);
    for i in (0..n).filter(|&i| smooth(c.v[i])) {
        assert!(
            (got[i] as f64 - want[i]).abs() < 1e-4,
            "element {i}: {} vs {}",
            got[i],
            want[i]
        );
        if want[i] == 0.0 {
            zero += 1
        } else {
            live += 1
        }
    }
    // Both the clamped (zero-gradient) and the live parts were exercised.
    assert!(zero > 5 && live > 5, "{zero} clamped, {live} live");
}

#[test]
fn regularizer_and_its_gradient_match_the_cpu_reference() {
    skip_without_gpu!();
    let g = gpu();
    let c = case(3, 1.5);
    for beta in [2.0f32, 7.5, 20.0] {
        let v = g.upload_f32(&c.shape, &c.v).unwrap();
        let grad = g.upload_f32(&c.shape, &vec![0.5; c.v.len()]).unwrap();
        let mut s = g.stream();
        let part = reg_partials(&mut s, &v, beta).unwrap();
        reg_grad_add(&mut s, &v, &grad, 0.01, beta).unwrap();
        let back = s.submit_and_read(&[&part]).unwrap();
        let vd: Vec<f64> = c.v.iter().map(|&x| x as f64).collect();
        let want = reg_cpu(&vd, beta as f64);
        assert!(
            (sum(&back[0]) - want).abs() < 1e-4 * want.max(1.0),
            "beta {beta}: {} vs {want}",
            sum(&back[0])
        );
        let fd = finite_diff(&c.v, |v| reg_cpu(v, beta as f64));
        let got = g.read_f32(&grad).unwrap();
        for i in (0..c.v.len()).filter(|&i| smooth(c.v[i])) {
            let w = 0.5 + 0.01 * fd[i];
            assert!(
                (got[i] as f64 - w).abs() < 1e-5 + 1e-4 * w.abs(),
                "beta {beta} element {i}: {} vs {w}",
                got[i]
            );
        }
    }
}

#[test]
fn reconstruction_pieces_match_the_cpu() {
    skip_without_gpu!();
    let g = gpu();
    let y = Array::random(&[3, 4, 5, 5], 4);
    let t = Array::random(&[3, 4, 5, 5], 5);
    let (yt, tt) = (
        g.upload_f32(&y.shape, &y.data).unwrap(),
        g.upload_f32(&t.shape, &t.data).unwrap(),
    );
    let mut s = g.stream();
    let part = sq_err_partials(&mut s, &yt, &tt).unwrap();
    let dy = recon_grad(&mut s, &yt, &tt, 0.3).unwrap();
    let back = s.submit_and_read(&[&part, &dy]).unwrap();
    let want: f64 = y
        .data
        .iter()
        .zip(&t.data)
        .map(|(a, b)| ((a - b) as f64).powi(2))
        .sum();
    assert!((sum(&back[0]) - want).abs() < 1e-4 * want);
    let dy: Vec<f32> = bytemuck::pod_collect_to_vec(&back[1]);
    let wd: Vec<f64> = y
        .data
        .iter()
        .zip(&t.data)
        .map(|(a, b)| 0.3 * (a - b) as f64)
        .collect();
    close(&dy, &wd, 1e-5, "dy");
}

#[test]
fn mismatched_shapes_are_errors() {
    skip_without_gpu!();
    let g = gpu();
    assert!(SoftQuant::new(&g, &[0.0; 6], &[1.0; 2], &[3, 2], (-7, 7)).is_err());
    let sq = SoftQuant::new(&g, &[0.0; 6], &[1.0; 2], &[2, 3], (-7, 7)).unwrap();
    let v = g.upload_f32(&[5], &[0.0; 5]).unwrap();
    let mut s = g.stream();
    assert!(sq.weight(&mut s, &v).is_err());
}

/// The tape's weight gradient on a pre-padded input, as AdaRound calls it every step.
#[test]
fn the_weight_gradient_matches_the_cpu_over_shapes() {
    skip_without_gpu!();
    let g = gpu();
    // (n, ci, co, hw, k, stride, pad, groups): channel and tap counts off the 8-blocks,
    // stride-2 layers, grouped and depthwise convs, a 1x1 (linear) layer, many images (chunks).
    let cases = [
        (3, 5, 11, 7, 3, 1, 1, 1),
        (2, 6, 10, 9, 3, 2, 1, 1),
        (2, 4, 6, 6, 3, 1, 1, 2),
        (2, 8, 8, 5, 3, 1, 1, 8),
        (5, 20, 10, 1, 1, 1, 0, 1),
        (40, 3, 4, 4, 3, 1, 1, 1),
        // Wider images at both strides, 2- to 5-wide kernels.
        (2, 5, 9, 16, 4, 2, 1, 1),
        (2, 3, 10, 21, 4, 2, 1, 1),
        (3, 4, 12, 19, 3, 1, 1, 1),
        (2, 6, 5, 12, 2, 1, 0, 1),
        (2, 3, 7, 18, 4, 1, 2, 1),
        (2, 4, 6, 13, 3, 2, 1, 2),
        (2, 4, 8, 11, 5, 1, 2, 1),
        // Output widths of 4k: four columns per invocation of the matrix product's im2col.
        (2, 3, 6, 12, 3, 1, 1, 1),
        (3, 2, 5, 16, 3, 2, 1, 1),
    ];
    for (i, &(n, ci, co, hw, k, stride, pd, groups)) in cases.iter().enumerate() {
        let oh = (hw + 2 * pd - k) / stride + 1;
        let x = Array::random(&[n, ci, hw, hw], 30 + i as u64);
        let dy = Array::random(&[n, co, oh, oh], 40 + i as u64);
        let (xt, dyt) = (
            g.upload_f32(&x.shape, &x.data).unwrap(),
            g.upload_f32(&dy.shape, &dy.data).unwrap(),
        );
        let shape = [co, ci / groups, k, k];
        let mut s = g.stream();
        let xp = pad_input(&mut s, &xt, pd.into()).unwrap();
        let dw = weight_grad_padded(&mut s, &xp, &dyt, shape, stride, 1, groups).unwrap();
        s.submit();
        assert_eq!(dw.shape(), &shape);
        let want = crate::cpu::conv::weight_grad(&x, &dy, shape, (stride, pd, groups));
        close(&g.read_f32(&dw).unwrap(), &want, 1e-5, &format!("case {i}"));
        // The matrix-product form, forced on every ungrouped case, in chunks of one and of
        // three images (the production rule takes it only for large layers).
        for images in [1, 3] {
            let chunk = images * (shape[1] * k * k) * oh * oh;
            let forced = (0, chunk);
            let mut s = g.stream();
            let dw = weight_grad_gemm(&mut s, &xp, &dyt, shape, (stride, 1, groups), forced);
            let dw = dw.unwrap();
            assert_eq!(dw.is_some(), groups == 1, "case {i}");
            if let Some(dw) = dw {
                s.submit();
                let tag = format!("case {i} as a matrix product, {images} image(s) a chunk");
                close(&g.read_f32(&dw).unwrap(), &want, 1e-5, &tag);
            }
        }
        // The padded input itself: zeros around, the input inside.
        let xp = g.read_f32(&xp).unwrap();
        let hp = hw + 2 * pd;
        for (e, &v) in xp.iter().enumerate() {
            let (r, c, plane) = ((e / hp) % hp, e % hp, e / (hp * hp));
            let inside = r >= pd && c >= pd && r - pd < hw && c - pd < hw;
            let want = if inside {
                x.data[(plane * hw + r - pd) * hw + c - pd]
            } else {
                0.0
            };
            assert_eq!(v, want, "case {i} padded element {e}");
        }
    }
    let x = g.upload_f32(&[2, 4, 5, 5], &[0.0; 200]).unwrap();
    let dy = g.upload_f32(&[2, 6, 3, 3], &[0.0; 108]).unwrap();
    let mut s = g.stream();
    assert!(weight_grad_padded(&mut s, &x, &dy, [6, 4, 3, 3], 2, 1, 1).is_err());
    assert!(weight_grad_padded(&mut s, &x, &dy, [6, 3, 3, 3], 1, 1, 1).is_err());
    assert!(weight_grad_padded(&mut s, &x, &dy, [6, 4, 3, 3], 1, 1, 1).is_ok());
}

#[test]
fn the_masked_reconstruction_gradient_stops_at_the_relu() {
    skip_without_gpu!();
    let g = gpu();
    let y = Array::random(&[2, 3, 4, 4], 50).map(|v| v.max(0.0));
    let t = Array::random(&[2, 3, 4, 4], 51);
    let (yt, tt) = (
        g.upload_f32(&y.shape, &y.data).unwrap(),
        g.upload_f32(&t.shape, &t.data).unwrap(),
    );
    let mut s = g.stream();
    let dy = recon_grad_masked(&mut s, &yt, &tt, 0.5, true).unwrap();
    let got = s.submit_and_read(&[&dy]).unwrap();
    let got: Vec<f32> = bytemuck::pod_collect_to_vec(&got[0]);
    let want: Vec<f64> = y
        .data
        .iter()
        .zip(&t.data)
        .map(|(&a, &b)| if a > 0.0 { 0.5 * (a - b) as f64 } else { 0.0 })
        .collect();
    assert!(want.contains(&0.0) && want.iter().any(|&v| v != 0.0));
    close(&got, &want, 1e-6, "masked dy");
}

/// Padding that differs per side (ONNX asymmetric pads): the input sits at (top, left) and the
/// rest is zeros, so the unpadded conv on it is the asymmetric conv.
#[test]
fn pad_differs_per_side() {
    skip_without_gpu!();
    let g = gpu();
    let x = Array::random(&[2, 3, 4, 5], 9);
    let xt = g.upload_f32(&x.shape, &x.data).unwrap();
    let [t, l, b, r] = [1, 0, 2, 3];
    let mut s = g.stream();
    let xp = pad_input(&mut s, &xt, crate::ops::Pads::from_onnx([t, l, b, r])).unwrap();
    s.submit();
    let (hp, wp) = (4 + t + b, 5 + l + r);
    assert_eq!(xp.shape(), &[2, 3, hp, wp]);
    for (e, &v) in g.read_f32(&xp).unwrap().iter().enumerate() {
        let (y, c, plane) = ((e / wp) % hp, e % wp, e / (hp * wp));
        let inside = y >= t && c >= l && y - t < 4 && c - l < 5;
        let want = if inside {
            x.data[(plane * 4 + y - t) * 5 + c - l]
        } else {
            0.0
        };
        assert_eq!(v, want, "padded element {e}");
    }
}
