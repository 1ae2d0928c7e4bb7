//! Pooling over `[N, C, H, W]` with PyTorch semantics (floor or ceil mode): average pooling
//! counts the zero padding or not (`Pool`), max pooling pads with -inf; global average pooling.
//!
//! Pieces: shader `shaders/pool.wgsl`; backward `pool2d_backward` below; CPU reference
//! `cpu::pool`; tests below and in `tests/grad.rs` (backward).

use super::checks::nchw;
use super::{bytes_of, Pads};
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
    pad_h: u32,
    pad_w: u32,
    /// The padded input's end: H + bottom padding, W + right padding.
    end_h: u32,
    end_w: u32,
    dh: u32,
    dw: u32,
    _p0: u32,
    _p: u32,
}

/// A square pooling window: kernel, stride, padding per side and ONNX / PyTorch `ceil_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kernel: usize,
    pub stride: usize,
    pub pads: Pads,
    pub ceil: bool,
    /// Tap spacing [h, w] (1: dense); max pooling only.
    pub dilation: [usize; 2],
}

impl Window {
    /// Floor mode with `pad` on every side (PyTorch's nn.MaxPool2d / nn.AvgPool2d).
    pub fn new(kernel: usize, stride: usize, pad: usize) -> Window {
        Window {
            kernel,
            stride,
            pads: Pads::same(pad),
            ceil: false,
            dilation: [1, 1],
        }
    }

    /// The input extent of the window along `axis`: (kernel - 1) * dilation + 1, or None on
    /// overflow.
    pub fn span(&self, axis: usize) -> Option<usize> {
        let k1 = self.kernel.checked_sub(1)?;
        k1.checked_mul(self.dilation[axis])?.checked_add(1)
    }

    /// The output size along `axis` (0: H, 1: W) for an input of `size` (see [`pooled_size`]).
    pub fn out_size(&self, axis: usize, size: usize) -> Option<usize> {
        let pad = (self.pads.begin[axis], self.pads.end[axis]);
        pooled_size(size, self.span(axis)?, self.stride, pad, self.ceil)
    }

    /// The divisor of an average over output pixel (oy, ox) on an `h` x `w` input: with
    /// `count_pad` the window clipped to the padded input (k * k except for ceil-mode windows
    /// hanging over the end; ONNX `count_include_pad = 1`), else its real pixels. Undilated.
    pub fn divisor(&self, count_pad: bool, [h, w]: [usize; 2], oy: usize, ox: usize) -> usize {
        let (k, s) = (self.kernel, self.stride);
        let extent = |o: usize, axis: usize, size: usize| {
            let begin = self.pads.begin[axis];
            let start = o * s;
            if count_pad {
                k.min((size + begin + self.pads.end[axis]).saturating_sub(start))
            } else {
                (start + k)
                    .min(begin + size)
                    .saturating_sub(start.max(begin))
            }
        };
        extent(oy, 0, h) * extent(ox, 1, w)
    }

    /// Why this window cannot pool: a zero kernel or stride, or a side's padding of a whole
    /// kernel or more (a window could hold no input; ONNX Runtime's limit too).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.kernel == 0 || self.stride == 0 || self.dilation.contains(&0) {
            return Err(format!(
                "kernel {} stride {} dilation {:?}",
                self.kernel, self.stride, self.dilation
            ));
        }
        if self.pads.onnx().iter().any(|&p| p >= self.kernel) {
            return Err(format!(
                "padding {} is not smaller than the kernel {}",
                self.pads, self.kernel
            ));
        }
        Ok(())
    }
}

/// Output size of a pooling window along one axis with padding (begin, end), None when it does
/// not fit. With `ceil` (ONNX and PyTorch `ceil_mode`) a last partial window hanging over the
/// end counts, unless it would start in the end padding.
pub fn pooled_size(
    size: usize,
    k: usize,
    stride: usize,
    (begin, end): (usize, usize),
    ceil: bool,
) -> Option<usize> {
    let span = begin.checked_add(end)?.checked_add(size)?.checked_sub(k)?;
    if stride == 0 {
        return None;
    }
    if !ceil {
        return Some(span / stride + 1);
    }
    let out = span.div_ceil(stride) + 1;
    Some(if (out - 1) * stride >= size + begin {
        out - 1
    } else {
        out
    })
}

/// The window geometry of a pooling op on `x`, checked (see [`Window::check`]).
fn geometry(op: &'static str, x: &Tensor, win: &Window) -> Result<([usize; 4], Params)> {
    let [n, c, h, w] = nchw(op, x)?;
    let (oh, ow) = match (win.check(), win.out_size(0, h), win.out_size(1, w)) {
        (Ok(()), Some(oh), Some(ow)) => (oh, ow),
        (e, ..) => {
            return shape_err(
                op,
                format!(
                    "kernel {}, stride {}, padding {} on input {:?}{}",
                    win.kernel,
                    win.stride,
                    win.pads,
                    x.shape(),
                    e.err().map(|e| format!(": {e}")).unwrap_or_default()
                ),
            )
        }
    };
    let p = Params {
        total: (n * c * oh * ow) as u32,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        k: win.kernel as u32,
        stride: win.stride as u32,
        pad_h: win.pads.begin[0] as u32,
        pad_w: win.pads.begin[1] as u32,
        end_h: (h + win.pads.end[0]) as u32,
        end_w: (w + win.pads.end[1]) as u32,
        dh: win.dilation[0] as u32,
        dw: win.dilation[1] as u32,
        _p0: 0,
        _p: 0,
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

/// 2-d pooling with a square window.
pub fn pool2d(s: &mut Stream, x: &Tensor, how: Pool, win: &Window) -> Result<Tensor> {
    let (op, entry) = match how {
        Pool::Max => ("max_pool2d", "max_pool"),
        Pool::Avg => ("avg_pool2d", "avg_pool"),
        Pool::AvgOfReal => ("avg_pool2d", "avg_pool_real"),
    };
    if how != Pool::Max && win.dilation != [1, 1] {
        return shape_err(
            op,
            format!("dilation {:?}: average pools are dense", win.dilation),
        );
    }
    let (out, p) = geometry(op, x, win)?;
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
    pool2d(s, x, Pool::Avg, &Window::new(kernel, stride, padding))
}

/// Average pooling whose divisor is each window's count of real (unpadded) elements.
pub fn avg_pool2d_exclude_pad(
    s: &mut Stream,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    pool2d(s, x, Pool::AvgOfReal, &Window::new(kernel, stride, padding))
}

/// nn.MaxPool2d(kernel, stride, padding) with a square window.
pub fn max_pool2d(
    s: &mut Stream,
    x: &Tensor,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    pool2d(s, x, Pool::Max, &Window::new(kernel, stride, padding))
}

/// The gradient of `pool2d(x, how, win)` with respect to `x`, given `dy`, in gather form (no
/// atomics, so it does not depend on thread order): a max window's gradient goes to its first
/// maximum in scan order, as PyTorch routes it; an average window's spreads over its real
/// elements, divided by its divisor. Undilated windows only.
pub fn pool2d_backward(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    how: Pool,
    win: &Window,
) -> Result<Tensor> {
    let op = "pool2d backward";
    if win.dilation != [1, 1] {
        return shape_err(op, format!("dilation {:?} has no backward", win.dilation));
    }
    let (out, mut p) = geometry(op, x, win)?;
    if dy.shape() != out {
        return shape_err(op, format!("dy {:?} for pooled shape {out:?}", dy.shape()));
    }
    let dx = s.gpu().alloc(op, x.shape(), DType::F32)?;
    p.total = x.numel() as u32;
    // The pooling kind as the MODE override (a pipeline each; see the shader).
    let mode = match how {
        Pool::Max => 0,
        Pool::Avg => 1,
        Pool::AvgOfReal => 2,
    };
    let tensors = [x, dy, &dx];
    let grid = grid_1d(x.numel(), 256);
    let consts = [("MODE", mode as f64)];
    s.dispatch(
        SHADER,
        "pool_backward",
        &consts,
        bytes_of(&p),
        &tensors,
        grid,
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
        pad_h: 0,
        pad_w: 0,
        end_h: 0,
        end_w: 0,
        dh: 0,
        dw: 0,
        _p0: 0,
        _p: 0,
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
        let win = Window::new(k, stride, pad);
        for how in [Pool::Max, Pool::Avg, Pool::AvgOfReal] {
            let mut s = g.stream();
            let dx = pool2d_backward(&mut s, &xt, &dyt, how, &win).unwrap();
            s.submit();
            let want = cpu::pool::pool2d_backward(&x, &dy, how, &win);
            let got = Array::new(dx.shape(), g.read_f32(&dx).unwrap());
            assert!(
                got.max_rel_err(&want.data) < 1e-5,
                "{how:?} backward {shape:?} k{k} s{stride} p{pad}"
            );
        }
    }

    /// Backward passes of windows with padding per side and ceil-mode partial windows match
    /// the CPU reference.
    #[test]
    fn pool_backward_takes_any_undilated_window() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = Array::random(&[2, 3, 7, 6], 9);
        let xt = g.upload_f32(&x.shape, &x.data).unwrap();
        for (k, stride, pads, ceil) in [
            (3, 2, [1, 0, 0, 1], true),
            (2, 2, [0, 1, 1, 0], true),
            (3, 1, [2, 1, 0, 2], false),
        ] {
            let win = Window {
                kernel: k,
                stride,
                pads: crate::ops::Pads::from_onnx(pads),
                ceil,
                dilation: [1, 1],
            };
            for how in [Pool::Max, Pool::Avg, Pool::AvgOfReal] {
                let y = cpu::pool::pool2d(&x, how, &win);
                let dy = Array::random(&y.shape, 10);
                let dyt = g.upload_f32(&dy.shape, &dy.data).unwrap();
                let mut s = g.stream();
                let dx = pool2d_backward(&mut s, &xt, &dyt, how, &win).unwrap();
                s.submit();
                let want = cpu::pool::pool2d_backward(&x, &dy, how, &win);
                let got = Array::new(dx.shape(), g.read_f32(&dx).unwrap());
                assert!(got.max_rel_err(&want.data) < 1e-5, "{how:?} {win:?}");
            }
        }
    }

    #[test]
    fn max_pool_backward_routes_ties_to_the_first_maximum() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1, 1, 2, 2], &[1.0; 4]).unwrap();
        let dy = g.upload_f32(&[1, 1, 1, 1], &[3.0]).unwrap();
        let mut s = g.stream();
        let win = Window::new(2, 2, 0);
        let dx = pool2d_backward(&mut s, &x, &dy, Pool::Max, &win).unwrap();
        let bad = g.upload_f32(&[1, 1, 2, 2], &[0.0; 4]).unwrap();
        assert!(pool2d_backward(&mut s, &x, &bad, Pool::Max, &win).is_err());
        let dilated = Window {
            dilation: [2, 2],
            ..Window::new(1, 1, 0)
        };
        assert!(pool2d_backward(&mut s, &x, &dy, Pool::Max, &dilated).is_err());
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
        assert_eq!(pooled_size(8, 3, 2, (0, 0), false), Some(3));
        assert_eq!(pooled_size(8, 3, 2, (0, 0), true), Some(4));
        assert_eq!(pooled_size(4, 3, 2, (1, 1), true), Some(3)); // window 3 starts at 4 - 1 + 1
        assert_eq!(pooled_size(5, 2, 2, (1, 1), true), Some(3)); // a 4th would start in the padding
        assert_eq!(pooled_size(2, 3, 1, (0, 0), true), None);
        // SAME_UPPER for a stride-2 window on an even size: one extra row at the end only.
        assert_eq!(pooled_size(8, 3, 2, (0, 1), false), Some(4));
        assert_eq!(pooled_size(8, 3, 2, (1, 0), true), Some(4));
    }

    /// A dilated max window takes every d-th element: on a 1x7 row with kernel 3, dilation 2
    /// and stride 1, output j is the max of elements j, j + 2 and j + 4.
    #[test]
    fn dilated_max_pool_skips_taps() {
        let x = Array::new(&[1, 1, 1, 7], vec![5.0, 9.0, 1.0, 0.0, 2.0, 8.0, 3.0]);
        // The kernel is square, so a 1-high map is padded to fit its 3 rows.
        let win = Window {
            kernel: 3,
            stride: 1,
            pads: Pads::from_onnx([1, 0, 1, 0]),
            ceil: false,
            dilation: [1, 2],
        };
        let y = cpu::pool::pool2d(&x, Pool::Max, &win);
        assert_eq!(y.shape, [1, 1, 1, 3]);
        assert_eq!(y.data, [5.0, 9.0, 3.0]);
    }

    /// Asymmetric padding is the input padded explicitly (with -inf for max, zeros for the
    /// counted average) and pooled without padding: checked on the CPU reference and the GPU.
    #[test]
    fn asymmetric_pads_are_explicit_padding() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let (h, w) = (5, 6);
        let x = Array::random(&[1, 2, h, w], 7).map(|v| v * 4.0 - 2.0);
        let xt = g.upload_f32(&x.shape, &x.data).unwrap();
        for ([t, l, b, r], k, stride) in [
            ([0, 0, 1, 1], 3, 2),
            ([2, 1, 0, 2], 3, 1),
            ([1, 0, 0, 1], 2, 2),
        ] {
            let win = Window {
                kernel: k,
                stride,
                pads: Pads::from_onnx([t, l, b, r]),
                ceil: false,
                dilation: [1, 1],
            };
            let (ph, pw) = (h + t + b, w + l + r);
            for (how, fill) in [(Pool::Max, f32::NEG_INFINITY), (Pool::Avg, 0.0)] {
                let mut xp = Array::new(&[1, 2, ph, pw], vec![fill; 2 * ph * pw]);
                for c in 0..2 {
                    for y in 0..h {
                        for i in 0..w {
                            xp.data[(c * ph + y + t) * pw + i + l] = x.data[(c * h + y) * w + i];
                        }
                    }
                }
                let want = cpu::pool::pool2d(&xp, how, &Window::new(k, stride, 0));
                let got = cpu::pool::pool2d(&x, how, &win);
                assert_eq!(got.shape, want.shape, "{how:?} {win:?}");
                assert!(got.max_rel_err(&want.data) < 1e-6, "{how:?} {win:?}");
                let mut s = g.stream();
                let y = pool2d(&mut s, &xt, how, &win).unwrap();
                s.submit();
                let e = Array::new(y.shape(), g.read_f32(&y).unwrap()).max_rel_err(&want.data);
                assert!(e < 1e-5, "GPU {how:?} {win:?}: err {e}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Every pooling kind in either mode (ceil: partial windows hanging over the end) with
        /// padding that differs per side, on the GPU, equals the CPU reference; the
        /// counted-padding average divides by the window clipped to the padded input. Max
        /// pooling also with dilation (the averages refuse it).
        #[test]
        fn ceil_mode_pools_match_cpu(
            n in 1usize..3, c in 1usize..4, h in 1usize..10, w in 1usize..10,
            k in 1usize..5, stride in 1usize..4, pads in [0usize..3, 0..3, 0..3, 0..3],
            ceil: bool, dilation in [1usize..4, 1..4], seed in 0u64..1000,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            let pads = Pads::from_onnx(pads);
            let win = Window { kernel: k, stride, pads, ceil, dilation };
            prop_assume!(win.check().is_ok() && win.out_size(0, h).is_some() && win.out_size(1, w).is_some());
            let g = gpu();
            let shape = [n, c, h, w];
            let x = Array::random(&shape, seed).map(|v| v * 4.0 - 2.0);
            let xt = g.upload_f32(&shape, &x.data).unwrap();
            for how in [Pool::Max, Pool::Avg, Pool::AvgOfReal] {
                let mut s = g.stream();
                if how != Pool::Max && dilation != [1, 1] {
                    prop_assert!(pool2d(&mut s, &xt, how, &win).is_err());
                    continue;
                }
                let y = pool2d(&mut s, &xt, how, &win).unwrap();
                s.submit();
                let want = cpu::pool::pool2d(&x, how, &win);
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
        let win = Window {
            ceil: true,
            ..Window::new(2, 2, 0)
        };
        let y = |how| cpu::pool::pool2d(&x, how, &win).data;
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
