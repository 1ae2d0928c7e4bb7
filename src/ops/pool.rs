//! Pooling over `[N, C, H, W]` with PyTorch semantics (floor mode): average pooling counts the
//! zero padding (`count_include_pad=True`), max pooling pads with -inf; global average pooling.
//!
//! Pieces: shader `shaders/pool.wgsl`; backward `max_pool2d_backward` below; CPU reference
//! `cpu::pool`; tests below and in `tests/grad.rs` (backward).

use super::bytes_of;
use super::checks::nchw;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("pool");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
}

/// Output size of a pooling window along one axis (None when it does not fit). With `ceil`
/// (ONNX and PyTorch `ceil_mode`) a last partial window hanging over the end counts, unless it
/// would start in the end padding.
pub fn pooled_size(size: usize, k: usize, stride: usize, pad: usize, ceil: bool) -> Option<usize> {
    let span = pad.checked_mul(2)?.checked_add(size)?.checked_sub(k)?;
    if stride == 0 {
        return None;
    }
    if !ceil {
        return Some(span / stride + 1);
    }
    let out = span.div_ceil(stride) + 1;
    Some(if (out - 1) * stride >= size + pad {
        out - 1
    } else {
        out
    })
}

/// The window geometry of a pooling op on `x`, checked against PyTorch's own limits (a window
/// may not exceed the padded input or be mostly padding).
fn geometry(
    op: &'static str,
    x: &Tensor,
    k: usize,
    stride: usize,
    pad: usize,
    ceil: bool,
) -> Result<([usize; 4], Params)> {
    let [n, c, h, w] = nchw(op, x)?;
    let size = |s| pooled_size(s, k, stride, pad, ceil);
    let (Some(oh), Some(ow)) = (size(h), size(w)) else {
        return shape_err(
            op,
            format!(
                "kernel {k}, stride {stride}, padding {pad} on input {:?}",
                x.shape()
            ),
        );
    };
    if k == 0 || pad > k / 2 {
        return shape_err(
            op,
            format!(
                "kernel {k}, stride {stride}, padding {pad} on input {:?}",
                x.shape()
            ),
        );
    }
    let p = Params {
        total: (n * c * oh * ow) as u32,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        k: k as u32,
        stride: stride as u32,
        pad: pad as u32,
    };
    Ok(([n, c, oh, ow], p))
}

/// Which reduction a pooling window computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pool {
    Max,
    /// Divided by the window clipped to the padded input (k * k except for ceil-mode windows
    /// hanging over the end): ONNX `count_include_pad = 1`.
    Avg,
    /// Divided by the window's real elements: ONNX `count_include_pad = 0`.
    AvgOfReal,
}

impl Pool {
    /// The average that counts the padding or not.
    pub fn average(count_pad: bool) -> Pool {
        if count_pad {
            Pool::Avg
        } else {
            Pool::AvgOfReal
        }
    }
}

/// 2-d pooling with a square window; `ceil`: ONNX / PyTorch `ceil_mode` (see [`pooled_size`]).
pub fn pool2d(
    s: &mut Stream,
    x: &Tensor,
    how: Pool,
    k: usize,
    stride: usize,
    pad: usize,
    ceil: bool,
) -> Result<Tensor> {
    let (op, entry) = match how {
        Pool::Max => ("max_pool2d", "max_pool"),
        Pool::Avg => ("avg_pool2d", "avg_pool"),
        Pool::AvgOfReal => ("avg_pool2d", "avg_pool_real"),
    };
    let (out, p) = geometry(op, x, k, stride, pad, ceil)?;
    let y = s.gpu().alloc(op, &out, DType::F32)?;
    s.dispatch(
        SHADER,
        entry,
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(y.numel(), 256),
    )?;
    Ok(y)
}

/// nn.AvgPool2d(kernel, stride, padding) with a square window.
pub fn avg_pool2d(
    s: &mut Stream,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    pool2d(s, x, Pool::Avg, kernel, stride, padding, false)
}

/// Average pooling whose divisor is each window's count of real (unpadded) elements.
pub fn avg_pool2d_exclude_pad(
    s: &mut Stream,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    pool2d(s, x, Pool::AvgOfReal, kernel, stride, padding, false)
}

/// nn.MaxPool2d(kernel, stride, padding) with a square window.
pub fn max_pool2d(
    s: &mut Stream,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    pool2d(s, x, Pool::Max, kernel, stride, padding, false)
}

/// The gradient of `max_pool2d(x, ...)` with respect to `x`, given `dy`: each window's
/// gradient goes to its first maximum in scan order, as PyTorch routes it.
pub fn max_pool2d_backward(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let op = "max_pool2d backward";
    let (out, mut p) = geometry(op, x, kernel, stride, padding, false)?;
    if dy.shape() != out {
        return shape_err(op, format!("dy {:?} for pooled shape {out:?}", dy.shape()));
    }
    let dx = s.gpu().alloc(op, x.shape(), DType::F32)?;
    p.total = x.numel() as u32;
    s.dispatch(
        SHADER,
        "max_pool_backward",
        &[],
        bytes_of(&p),
        &[x, dy, &dx],
        grid_1d(x.numel(), 256),
    )?;
    Ok(dx)
}

/// `[N, C, H, W] -> [N, C]`: the mean over each plane.
pub fn global_avg_pool(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    let [n, c, h, w] = nchw("global_avg_pool", x)?;
    let y = s.gpu().alloc("global_avg_pool", &[n, c], DType::F32)?;
    let p = Params {
        total: (n * c) as u32,
        h: (h * w) as u32,
        w: 0,
        oh: 0,
        ow: 0,
        k: 0,
        stride: 0,
        pad: 0,
    };
    s.dispatch(
        SHADER,
        "global_avg",
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(n * c, 256),
    )?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn check(shape: [usize; 4], k: usize, stride: usize, pad: usize, seed: u64) {
        let g = gpu();
        let x = Array::random(&shape, seed).map(|v| v * 4.0 - 2.0); // all-negative windows too
        let xt = g.upload_f32(&shape, &x.data).unwrap();
        let mut s = g.stream();
        let avg = avg_pool2d(&mut s, &xt, k, stride, pad).unwrap();
        let real = avg_pool2d_exclude_pad(&mut s, &xt, k, stride, pad).unwrap();
        let max = max_pool2d(&mut s, &xt, k, stride, pad).unwrap();
        s.submit();
        let want = cpu::pool::avg_pool2d_exclude_pad(&x, k, stride, pad);
        let got = Array::new(real.shape(), g.read_f32(&real).unwrap());
        assert!(
            got.max_rel_err(&want.data) < 1e-4,
            "avg (padding not counted) {shape:?} k{k} s{stride} p{pad}"
        );
        let want = cpu::pool::avg_pool2d(&x, k, stride, pad);
        assert_eq!(avg.shape(), &want.shape[..]);
        let got = Array::new(avg.shape(), g.read_f32(&avg).unwrap());
        assert!(
            got.max_rel_err(&want.data) < 1e-4,
            "avg {shape:?} k{k} s{stride} p{pad}"
        );
        let want = cpu::pool::max_pool2d(&x, k, stride, pad);
        assert_eq!(
            g.read_f32(&max).unwrap(),
            want.data,
            "max {shape:?} k{k} s{stride} p{pad}"
        );
        let dy = Array::random(&want.shape, seed + 1);
        let dyt = g.upload_f32(&dy.shape, &dy.data).unwrap();
        let mut s = g.stream();
        let dx = max_pool2d_backward(&mut s, &xt, &dyt, k, stride, pad).unwrap();
        s.submit();
        let want = cpu::pool::max_pool2d_backward(&x, &dy, k, stride, pad);
        let got = Array::new(dx.shape(), g.read_f32(&dx).unwrap());
        assert!(
            got.max_rel_err(&want.data) < 1e-6,
            "max backward {shape:?} k{k} s{stride} p{pad}"
        );
    }

    #[test]
    fn max_pool_backward_routes_ties_to_the_first_maximum() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1, 1, 2, 2], &[1.0; 4]).unwrap();
        let dy = g.upload_f32(&[1, 1, 1, 1], &[3.0]).unwrap();
        let mut s = g.stream();
        let dx = max_pool2d_backward(&mut s, &x, &dy, 2, 2, 0).unwrap();
        let bad = g.upload_f32(&[1, 1, 2, 2], &[0.0; 4]).unwrap();
        assert!(max_pool2d_backward(&mut s, &x, &bad, 2, 2, 0).is_err());
        s.submit();
        assert_eq!(g.read_f32(&dx).unwrap(), vec![3.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn pools_match_cpu() {
        crate::ops::skip_without_gpu!();
        check([2, 3, 8, 8], 2, 2, 0, 1);
        check([1, 4, 7, 9], 3, 2, 1, 2);
        check([2, 2, 5, 5], 3, 1, 1, 3);
        check([3, 1, 4, 4], 4, 4, 0, 4); // avg_pool2d(4) at the end of CIFAR ResNets
        check([1, 2, 6, 5], 5, 3, 2, 5);
    }

    /// ceil_mode sizes follow PyTorch / ONNX: a partial last window counts unless it would
    /// start in the end padding.
    #[test]
    fn ceil_mode_sizes() {
        assert_eq!(pooled_size(8, 3, 2, 0, false), Some(3));
        assert_eq!(pooled_size(8, 3, 2, 0, true), Some(4));
        assert_eq!(pooled_size(4, 3, 2, 1, true), Some(3)); // window 3 starts at 4 - 1 + 1
        assert_eq!(pooled_size(5, 2, 2, 1, true), Some(3)); // a 4th would start in the padding
        assert_eq!(pooled_size(2, 3, 1, 0, true), None);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Every pooling kind in ceil mode (partial windows hanging over the end), on the GPU,
        /// equals the CPU reference; the counted-padding average divides by the window
        /// clipped to the padded input.
        #[test]
        fn ceil_mode_pools_match_cpu(
            n in 1usize..3, c in 1usize..4, h in 1usize..10, w in 1usize..10,
            k in 1usize..5, stride in 1usize..4, pad in 0usize..3, seed in 0u64..1000,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            prop_assume!(pad <= k / 2 && k <= h + 2 * pad && k <= w + 2 * pad);
            let g = gpu();
            let shape = [n, c, h, w];
            let x = Array::random(&shape, seed).map(|v| v * 4.0 - 2.0);
            let xt = g.upload_f32(&shape, &x.data).unwrap();
            for how in [Pool::Max, Pool::Avg, Pool::AvgOfReal] {
                let mut s = g.stream();
                let y = pool2d(&mut s, &xt, how, k, stride, pad, true).unwrap();
                s.submit();
                let want = cpu::pool::pool2d(&x, how, k, stride, pad, true);
                prop_assert_eq!(y.shape(), &want.shape[..]);
                let got = Array::new(y.shape(), g.read_f32(&y).unwrap());
                prop_assert!(got.max_rel_err(&want.data) < 1e-5, "{:?}", how);
            }
        }
    }

    /// A ceil-mode window hanging over the end of a 2x3 map (kernel 2, stride 2): the last
    /// window holds one column of two elements, and the counted-padding mean divides by those
    /// 2 (the part inside the padded input), not by 4, as ONNX Runtime does.
    #[test]
    fn partial_ceil_window_divides_by_its_part_inside() {
        let x = Array::new(&[1, 1, 2, 3], vec![1.0, 2.0, 4.0, 1.0, 2.0, 4.0]);
        let y = |how| cpu::pool::pool2d(&x, how, 2, 2, 0, true).data;
        assert_eq!(y(Pool::Avg), [1.5, 4.0]);
        assert_eq!(y(Pool::AvgOfReal), [1.5, 4.0]);
        assert_eq!(y(Pool::Max), [2.0, 4.0]);
    }

    #[test]
    fn avg_pool_counts_padding() {
        crate::ops::skip_without_gpu!();
        // 2x2 ones, kernel 3, padding 1: every window holds 4 ones out of 9 slots.
        let g = gpu();
        let x = g.upload_f32(&[1, 1, 2, 2], &[1.0; 4]).unwrap();
        let mut s = g.stream();
        let y = avg_pool2d(&mut s, &x, 3, 1, 1).unwrap();
        s.submit();
        assert!(g
            .read_f32(&y)
            .unwrap()
            .iter()
            .all(|v| (v - 4.0 / 9.0).abs() < 1e-6));
    }

    #[test]
    fn avg_pool_can_leave_padding_out() {
        crate::ops::skip_without_gpu!();
        // 2x2 ones, kernel 3, padding 1: every window's 4 real elements are ones.
        let g = gpu();
        let x = g.upload_f32(&[1, 1, 2, 2], &[1.0; 4]).unwrap();
        let mut s = g.stream();
        let y = avg_pool2d_exclude_pad(&mut s, &x, 3, 1, 1).unwrap();
        s.submit();
        assert_eq!(g.read_f32(&y).unwrap(), vec![1.0; 4]);
    }

    #[test]
    fn global_avg_matches_cpu() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (i, shape) in [[2, 3, 8, 8], [3, 5, 1, 1], [1, 7, 5, 3]]
            .iter()
            .enumerate()
        {
            let x = Array::random(shape, i as u64);
            let mut s = g.stream();
            let y = global_avg_pool(&mut s, &g.upload_f32(shape, &x.data).unwrap()).unwrap();
            s.submit();
            let want = cpu::pool::global_avg_pool(&x);
            assert_eq!(y.shape(), &want.shape[..]);
            assert!(Array::new(y.shape(), g.read_f32(&y).unwrap()).max_rel_err(&want.data) < 1e-4);
        }
    }

    #[test]
    fn rejects_bad_configs() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1, 2, 4, 4], &[0.0; 32]).unwrap();
        let mut s = g.stream();
        let err = max_pool2d(&mut s, &x, 2, 2, 2).unwrap_err().to_string();
        assert!(
            err.contains("max_pool2d") && err.contains("[1, 2, 4, 4]"),
            "{err}"
        );
        assert!(avg_pool2d(&mut s, &x, 5, 1, 0).is_err());
        assert!(avg_pool2d(&mut s, &x, 2, 0, 0).is_err());
        assert!(avg_pool2d(&mut s, &x, 0, 1, 0).is_err());
        let flat = g.upload_f32(&[2, 16], &[0.0; 32]).unwrap();
        assert!(global_avg_pool(&mut s, &flat).is_err());
        assert!(max_pool2d(&mut s, &flat, 2, 2, 0).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn random_configs(n in 1usize..3, c in 1usize..4, h in 1usize..12, w in 1usize..12,
                          k in 1usize..5, stride in 1usize..4, pad in 0usize..3, seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            prop_assume!(pad <= k / 2 && k <= h + 2 * pad && k <= w + 2 * pad);
            check([n, c, h, w], k, stride, pad, seed);
        }
    }
}
