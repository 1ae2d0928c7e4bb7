//! Pointwise ops: activations, the residual add (with a fused activation), the activation
//! backward and zero fill.
//!
//! Pieces: shader `shaders/elementwise.wgsl` (activations: `shaders/activation.wgsl`); backward
//! `act_backward` below (`shaders/grad.wgsl`); CPU reference `cpu::elementwise`; tests below.

use super::bytes_of;
use super::checks::same_shape;
use super::grad::{Params as GradParams, SHADER as GRAD};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

/// The activations that kernels can apply (also fused into conv/linear epilogues later).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Act {
    Identity,
    Relu,
    Relu6,
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
    /// x * clamp(x / 6 + 1/2, 0, 1) (ONNX HardSwish, MobileNetV3). Not monotone, so it has
    /// no backward from its output (`act_backward` refuses it).
    HardSwish,
}

impl Act {
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
            Act::LeakyRelu(s) => {
                if v >= 0.0 {
                    v
                } else {
                    v * s
                }
            }
            Act::Tanh => v.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
            Act::HardSwish => v * (v / 6.0 + 0.5).clamp(0.0, 1.0),
        }
    }

    /// (kind code used by the WGSL kernels, slope parameter).
    pub fn code(self) -> (u32, f32) {
        match self {
            Act::Identity => (0, 0.0),
            Act::Relu => (1, 0.0),
            Act::Relu6 => (2, 0.0),
            Act::LeakyRelu(s) => (3, s),
            Act::Tanh => (4, 0.0),
            Act::Sigmoid => (5, 0.0),
            Act::HardSwish => (6, 0.0),
        }
    }
}

const SHADER: Shader = crate::shader!("elementwise");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    _p0: u32,
    slope: f32,
    _pad: u32,
}

fn params(n: usize, a: Act) -> Params {
    Params {
        n: n as u32,
        _p0: 0,
        slope: a.code().1,
        _pad: 0,
    }
}

fn check_f32(op: &'static str, t: &Tensor) -> Result<()> {
    if t.dtype() != DType::F32 {
        return shape_err(op, format!("expected f32, got {:?}", t.dtype()));
    }
    Ok(())
}

/// The entry and its invocation count: the vec4 form where `n` is a multiple of 4.
fn by_fours(entry: &'static str, n: usize) -> (&'static str, usize) {
    if !n.is_multiple_of(4) {
        return (entry, n);
    }
    let four = match entry {
        "unary" => "unary4",
        "add" => "add4",
        "mul" => "mul4",
        _ => return (entry, n),
    };
    (four, n / 4)
}

/// A fused epilogue's activation as the shaders' `ACT` override, shared by every kernel with
/// one: a pipeline each, not a uniform, since lavapipe runs every case of a switch on a uniform
/// value under a mask, so a uniform code would cost every activation at every element.
pub(crate) fn act_const(a: Act) -> (&'static str, f64) {
    ("ACT", a.code().0 as f64)
}

/// Whether a fused epilogue adds a residual, as the shaders' `HAS_RES` override (as `act_const`).
pub(crate) fn res_const(has: bool) -> (&'static str, f64) {
    ("HAS_RES", has as u8 as f64)
}

/// y = act(x), any shape.
pub fn act(s: &mut Stream, x: &Tensor, a: Act) -> Result<Tensor> {
    check_f32("activation", x)?;
    let y = s.gpu().alloc("activation", x.shape(), DType::F32)?;
    let (entry, n) = by_fours("unary", x.numel());
    s.dispatch(
        SHADER,
        entry,
        &[act_const(a)],
        bytes_of(&params(n, a)),
        &[x, &y],
        grid_1d(n, 256),
    )?;
    Ok(y)
}

/// out = act(a + b) for tensors of one shape.
pub fn add(s: &mut Stream, a: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
    binary(s, "add", a, b, act)
}

/// out = a * b for tensors of one shape.
pub fn mul(s: &mut Stream, a: &Tensor, b: &Tensor) -> Result<Tensor> {
    binary(s, "mul", a, b, Act::Identity)
}

fn binary(s: &mut Stream, op: &'static str, a: &Tensor, b: &Tensor, act: Act) -> Result<Tensor> {
    check_f32(op, a)?;
    check_f32(op, b)?;
    if a.shape() != b.shape() {
        return shape_err(op, format!("{:?} and {:?}", a.shape(), b.shape()));
    }
    let out = s.gpu().alloc(op, a.shape(), DType::F32)?;
    let (entry, n) = by_fours(op, a.numel());
    s.dispatch(
        SHADER,
        entry,
        &[act_const(act)],
        bytes_of(&params(n, act)),
        &[a, b, &out],
        grid_1d(n, 256),
    )?;
    Ok(out)
}

/// dx for y = act(x), from the output y (every activation but HardSwish is monotone).
pub fn act_backward(s: &mut Stream, y: &Tensor, dy: &Tensor, a: Act) -> Result<Tensor> {
    same_shape("act_backward", y, dy)?;
    if a == Act::HardSwish {
        // Two inputs give one output on [-3, 0]: the slope is not a function of y.
        return shape_err(
            "act_backward",
            "HardSwish has no backward from its output (cannot train or distill through it)",
        );
    }
    let (kind, slope) = a.code();
    let n = y.numel();
    let p = GradParams {
        n: n as u32,
        kind,
        slope,
        ..Default::default()
    };
    let dx = s.gpu().alloc("act_backward", y.shape(), DType::F32)?;
    s.dispatch(
        GRAD,
        "act_backward",
        &[],
        bytes_of(&p),
        &[y, dy, &dx],
        grid_1d(n, 256),
    )?;
    Ok(dx)
}

/// Sets every element of `t` to zero.
pub fn zero(s: &mut Stream, t: &Tensor) -> Result<()> {
    let p = GradParams {
        n: t.numel() as u32,
        ..Default::default()
    };
    s.dispatch(
        GRAD,
        "zero",
        &[],
        bytes_of(&p),
        &[t],
        grid_1d(t.numel(), 256),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;

    /// `zero` clears every element, past one workgroup row of the grid too.
    #[test]
    fn zero_clears_every_element() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for n in [7, 1000, 65535 * 256 + 1] {
            let t = g.upload_f32(&[n], &vec![1.5; n]).unwrap();
            let mut s = g.stream();
            zero(&mut s, &t).unwrap();
            s.submit();
            assert!(g.read_f32(&t).unwrap().iter().all(|&v| v == 0.0), "{n}");
        }
    }

    const ACTS: [Act; 7] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::LeakyRelu(0.2),
        Act::Tanh,
        Act::Sigmoid,
        Act::HardSwish,
    ];

    #[test]
    fn activations_match_cpu() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (i, shape) in [vec![7], vec![3, 5, 11], vec![2, 3, 64, 65]]
            .iter()
            .enumerate()
        {
            let x = Array::random(shape, i as u64).map(|v| v * 10.0);
            let xt = g.upload_f32(shape, &x.data).unwrap();
            for a in ACTS {
                let mut s = g.stream();
                let y = act(&mut s, &xt, a).unwrap();
                s.submit();
                let got = Array::new(shape, g.read_f32(&y).unwrap());
                let want = cpu::elementwise::act(&x, a);
                assert!(got.max_rel_err(&want.data) < 1e-4, "{a:?} {shape:?}");
            }
        }
    }

    /// tanh and sigmoid to within 1e-6 of each element's own size, small arguments included
    /// (`activations_match_cpu` measures errors against the largest output): tanh computed as
    /// (1 - e^-2|v|) / (1 + e^-2|v|) alone was up to 40% off near 0.
    #[test]
    fn tanh_and_sigmoid_are_accurate_per_element() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x: Vec<f32> = (0..400)
            .map(|i| {
                let v = 10f32.powf(-7.0 + 8.0 * (i / 2) as f32 / 200.0); // 1e-7 .. 10
                if i % 2 == 0 {
                    v
                } else {
                    -v
                }
            })
            .collect();
        let xt = g.upload_f32(&[x.len()], &x).unwrap();
        for a in [Act::Tanh, Act::Sigmoid] {
            let mut s = g.stream();
            let y = act(&mut s, &xt, a).unwrap();
            s.submit();
            for (v, got) in x.iter().zip(g.read_f32(&y).unwrap()) {
                let want = a.apply(*v);
                assert!(
                    (got - want).abs() <= 1e-6 * want.abs(),
                    "{a:?}({v}): {got} against {want}"
                );
            }
        }
    }

    #[test]
    fn hard_swish_matches_its_definition() {
        // The CPU reference the GPU test compares against, at the kinks and in between.
        let f = |v: f32| Act::HardSwish.apply(v);
        assert_eq!(
            [f(-4.0), f(-3.0), f(0.0), f(3.0), f(5.0)],
            [0.0, 0.0, 0.0, 3.0, 5.0]
        );
        assert!((f(-1.5) + 0.375).abs() < 1e-7 && (f(1.0) - 2.0 / 3.0).abs() < 1e-7);
    }

    #[test]
    fn hard_swish_has_no_backward() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let y = g.upload_f32(&[4], &[0.0; 4]).unwrap();
        let err = act_backward(&mut g.stream(), &y, &y, Act::HardSwish)
            .unwrap_err()
            .to_string();
        assert!(err.contains("HardSwish"), "{err}");
    }

    #[test]
    fn add_fuses_activation() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        // 288 elements run the vec4 form, 105 the scalar one.
        for shape in [[4, 8, 9], [3, 7, 5]] {
            let (a, b) = (Array::random(&shape, 1), Array::random(&shape, 2));
            let (at, bt) = (
                g.upload_f32(&shape, &a.data).unwrap(),
                g.upload_f32(&shape, &b.data).unwrap(),
            );
            let mut s = g.stream();
            let y = add(&mut s, &at, &bt, Act::Relu).unwrap();
            s.submit();
            let want = cpu::elementwise::act(&cpu::elementwise::add(&a, &b), Act::Relu);
            let got = Array::new(&shape, g.read_f32(&y).unwrap());
            assert!(got.max_rel_err(&want.data) < 1e-4, "{shape:?}");
        }
    }

    #[test]
    fn mul_matches_cpu() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for shape in [[3, 7, 5], [4, 8, 9]] {
            let (a, b) = (Array::random(&shape, 3), Array::random(&shape, 4));
            let mut s = g.stream();
            let (at, bt) = (
                g.upload_f32(&shape, &a.data).unwrap(),
                g.upload_f32(&shape, &b.data).unwrap(),
            );
            let y = mul(&mut s, &at, &bt).unwrap();
            s.submit();
            let want: Vec<f32> = a.data.iter().zip(&b.data).map(|(x, y)| x * y).collect();
            assert_eq!(g.read_f32(&y).unwrap(), want, "{shape:?}");
        }
    }

    /// x + x and x * x: one tensor bound as both inputs is valid (it used to be a wgpu
    /// validation panic), in both the scalar and the vec4 form.
    #[test]
    fn one_tensor_may_be_both_inputs() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for n in [6, 8] {
            let x: Vec<f32> = (0..n).map(|i| i as f32 - 3.0).collect();
            let xt = g.upload_f32(&[n], &x).unwrap();
            let mut s = g.stream();
            let sum = add(&mut s, &xt, &xt, Act::Identity).unwrap();
            let sq = mul(&mut s, &xt, &xt).unwrap();
            s.submit();
            let want: Vec<f32> = x.iter().map(|v| v + v).collect();
            assert_eq!(g.read_f32(&sum).unwrap(), want);
            let want: Vec<f32> = x.iter().map(|v| v * v).collect();
            assert_eq!(g.read_f32(&sq).unwrap(), want);
        }
    }

    #[test]
    fn add_rejects_mismatched_shapes() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let a = g.upload_f32(&[2, 3], &[0.0; 6]).unwrap();
        let b = g.upload_f32(&[3, 2], &[0.0; 6]).unwrap();
        let err = add(&mut g.stream(), &a, &b, Act::Identity)
            .unwrap_err()
            .to_string();
        assert!(err.contains("add") && err.contains("[2, 3]"), "{err}");
    }

    #[test]
    fn large_1d_grids_fold_into_y() {
        crate::ops::skip_without_gpu!();
        // 65535 * 256 < n: exercises the 2-D grid fold (the scalar form; the vec4 form folds
        // past 4x that, more than a 128 MiB binding holds) and the vec4 form at that size.
        let g = gpu();
        for n in [65535 * 256 + 1001, 65535 * 256 + 1000] {
            let x: Vec<f32> = (0..n).map(|i| (i % 7) as f32 - 3.0).collect();
            let xt = g.upload_f32(&[n], &x).unwrap();
            let mut s = g.stream();
            let y = act(&mut s, &xt, Act::Relu).unwrap();
            s.submit();
            let got = g.read_f32(&y).unwrap();
            assert!(got.iter().zip(&x).all(|(g, x)| *g == x.max(0.0)), "{n}");
        }
    }

    #[test]
    fn oversized_tensors_are_refused_not_truncated() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let n = (g.max_binding() / 4 + 1) as usize;
        let err = g.alloc("test", &[n], DType::F32).unwrap_err().to_string();
        assert!(err.contains("max_storage_buffer_binding_size"), "{err}");
        assert!(
            g.alloc("test", &[0, 3], DType::F32).is_err(),
            "empty tensors are refused"
        );
    }

    #[test]
    fn buffers_are_reused_and_pipelines_cached() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1000], &vec![1.0; 1000]).unwrap();
        for _ in 0..3 {
            let mut s = g.stream();
            let y = act(&mut s, &x, Act::Relu6).unwrap();
            s.submit();
            drop(y);
        }
        assert!(g.pool_idle_bytes() >= 4000);
        assert!(g.pipeline_count() >= 1);
    }

    /// An upload's buffer, once dropped, serves a later allocation of its size class: uploads
    /// of sizes off the classes used to sit in the pool unreachable, so memory grew with every
    /// model or batch uploaded.
    #[test]
    fn dropped_uploads_are_reused() {
        crate::ops::skip_without_gpu!();
        // A device of its own: other tests' buffers would move the shared pool's counts.
        let g = crate::gpu::Gpu::default_adapter().unwrap();
        // 4000 bytes: off the classes (4096 is the class).
        drop(g.upload_f32(&[1000], &vec![1.0; 1000]).unwrap());
        let idle = g.pool_idle_bytes();
        assert!(
            idle >= 4000,
            "the upload joined the pool ({idle} idle bytes)"
        );
        let reused = g.alloc("test", &[1000], DType::F32).unwrap();
        assert_eq!(
            g.pool_idle_bytes(),
            0,
            "the allocation took the upload's buffer"
        );
        drop(reused);
        // The zero padding past an upload's data is not read back as data.
        let x = g.upload_f32(&[3], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(g.read_f32(&x).unwrap(), [1.0, 2.0, 3.0]);
    }
}
