//! Softmax, log-softmax and argmax over the last dim (`[N, K]`, or any `[..., K]`).
//!
//! Pieces: shader `shaders/softmax.wgsl`; no backward (cross-entropy in `loss` differentiates
//! its own softmax); CPU reference `cpu::softmax`; tests below.

use super::bytes_of;
use super::checks::dtype;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("softmax");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    rows: u32,
    k: u32,
    _pad: [u32; 2],
}

/// Records `entry` over the rows of `x`; an I32 output drops the last dim (argmax).
fn rowwise(
    s: &mut Stream,
    op: &'static str,
    entry: &'static str,
    x: &Tensor,
    out: DType,
) -> Result<Tensor> {
    dtype(op, x, DType::F32)?;
    let Some((&k, lead)) = x.shape().split_last() else {
        return shape_err(op, "expected at least 1 dim, got a scalar");
    };
    let shape = if out == DType::I32 { lead } else { x.shape() };
    // A 1-d input gives a 0-d (one element) argmax.
    let y = s.gpu().alloc(op, shape, out)?;
    let rows = x.numel() / k;
    let p = Params {
        rows: rows as u32,
        k: k as u32,
        _pad: [0; 2],
    };
    s.dispatch(
        SHADER,
        entry,
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(rows, 256),
    )?;
    Ok(y)
}

/// exp(x - max) / sum(exp(x - max)) per row.
pub fn softmax(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    rowwise(s, "softmax", "softmax", x, DType::F32)
}

/// x - max - log(sum(exp(x - max))) per row.
pub fn log_softmax(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    rowwise(s, "log_softmax", "log_softmax", x, DType::F32)
}

/// `[..., K] -> [...]` I32: the first index of each row's maximum.
pub fn argmax(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    rowwise(s, "argmax", "argmax", x, DType::I32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn check(shape: &[usize], scale: f32, seed: u64) {
        let g = gpu();
        let x = Array::random(shape, seed).map(|v| v * scale);
        let xt = g.upload_f32(shape, &x.data).unwrap();
        let mut s = g.stream();
        let (sm, lsm, am) = (
            softmax(&mut s, &xt).unwrap(),
            log_softmax(&mut s, &xt).unwrap(),
            argmax(&mut s, &xt).unwrap(),
        );
        s.submit();
        let read = |t: &Tensor| Array::new(t.shape(), g.read_f32(t).unwrap());
        assert!(
            read(&sm).max_rel_err(&cpu::softmax::softmax(&x).data) < 1e-4,
            "softmax {shape:?}"
        );
        assert!(
            read(&lsm).max_rel_err(&cpu::softmax::log_softmax(&x).data) < 1e-4,
            "log_softmax {shape:?}"
        );
        assert_eq!(am.shape(), &shape[..shape.len() - 1]);
        assert_eq!(
            g.read_i32(&am).unwrap(),
            cpu::softmax::argmax(&x),
            "argmax {shape:?}"
        );
    }

    #[test]
    fn matches_cpu() {
        crate::ops::skip_without_gpu!();
        check(&[4, 10], 5.0, 1);
        check(&[3, 100], 5.0, 2);
        check(&[1, 1], 1.0, 3);
        check(&[257, 7], 3.0, 4); // more rows than one workgroup
        check(&[2, 3, 5], 1.0, 5);
    }

    #[test]
    fn is_stable_for_large_logits() {
        crate::ops::skip_without_gpu!();
        // exp(1000) overflows f32: only the max-subtracted form gets these right.
        check(&[3, 10], 1000.0, 6);
        let g = gpu();
        let x = g.upload_f32(&[1, 3], &[1000.0, 1000.0, -1000.0]).unwrap();
        let mut s = g.stream();
        let y = softmax(&mut s, &x).unwrap();
        s.submit();
        let got = Array::new(&[3], g.read_f32(&y).unwrap());
        assert!(got.max_rel_err(&[0.5, 0.5, 0.0]) < 1e-6);
    }

    #[test]
    fn argmax_takes_the_first_tie() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g
            .upload_f32(
                &[3, 4],
                &[1., 3., 3., 2., 5., 5., 5., 5., -2., -1., -1., -3.],
            )
            .unwrap();
        let mut s = g.stream();
        let y = argmax(&mut s, &x).unwrap();
        s.submit();
        assert_eq!(y.dtype(), DType::I32);
        assert_eq!(g.read_i32(&y).unwrap(), [1, 0, 1]);
    }

    #[test]
    fn rejects_non_f32() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_i32(&[2, 3], &[0; 6]).unwrap();
        let err = softmax(&mut g.stream(), &x).unwrap_err().to_string();
        assert!(err.contains("softmax") && err.contains("I32"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn random_shapes(n in 1usize..40, k in 1usize..130, scale in 0.1f32..50.0, seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            check(&[n, k], scale, seed);
        }
    }
}
