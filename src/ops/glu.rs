//! GLU over the channel/feature dim: `[N, 2C, ...] -> [N, C, ...]`, out = a * sigmoid(b) with
//! a = the first half of dim 1 and b = the second (`F.glu(x, dim=1)`).
//!
//! Pieces: shader `shaders/glu.wgsl`; backward `glu_backward` below (`shaders/grad.wgsl`); CPU
//! reference `cpu::glu`; tests below and in `tests/grad.rs` (backward).

use super::bytes_of;
use super::checks::ncs;
use super::grad::{Params as GradParams, SHADER as GRAD};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("glu");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    cs: u32,
    _pad: [u32; 2],
}

pub fn glu(s: &mut Stream, x: &Tensor) -> Result<Tensor> {
    let (n, c2, sp) = ncs("glu", x)?;
    if c2 % 2 != 0 {
        return shape_err(
            "glu",
            format!("dim 1 must be even, got shape {:?}", x.shape()),
        );
    }
    let mut shape = x.shape().to_vec();
    shape[1] = c2 / 2;
    let y = s.gpu().alloc("glu", &shape, DType::F32)?;
    let total = n * c2 / 2 * sp;
    let p = Params {
        total: total as u32,
        cs: (c2 / 2 * sp) as u32,
        _pad: [0; 2],
    };
    s.dispatch(
        SHADER,
        "glu",
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(total, 256),
    )?;
    Ok(y)
}

/// dx `[N, 2C, ...]` of GLU over dim 1 from its input x and dy `[N, C, ...]`.
pub fn glu_backward(s: &mut Stream, x: &Tensor, dy: &Tensor) -> Result<Tensor> {
    let (n, c2, sp) = ncs("glu_backward", x)?;
    let (dn, dc, dsp) = ncs("glu_backward", dy)?;
    if (dn, dc * 2, dsp) != (n, c2, sp) {
        return shape_err(
            "glu_backward",
            format!("dy {:?} does not match x {:?}", dy.shape(), x.shape()),
        );
    }
    let p = GradParams {
        n: dy.numel() as u32,
        s: (dc * sp) as u32,
        ..Default::default()
    };
    let dx = s.gpu().alloc("glu_backward", x.shape(), DType::F32)?;
    s.dispatch(
        GRAD,
        "glu_backward",
        &[],
        bytes_of(&p),
        &[x, dy, &dx],
        grid_1d(dy.numel(), 256),
    )?;
    Ok(dx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    fn check(shape: &[usize], seed: u64) {
        let g = gpu();
        let x = Array::random(shape, seed).map(|v| v * 20.0);
        let mut s = g.stream();
        let y = glu(&mut s, &g.upload_f32(shape, &x.data).unwrap()).unwrap();
        s.submit();
        let want = cpu::glu::glu(&x);
        assert_eq!(y.shape(), &want.shape[..]);
        assert!(
            Array::new(y.shape(), g.read_f32(&y).unwrap()).max_rel_err(&want.data) < 1e-4,
            "{shape:?}"
        );
    }

    #[test]
    fn matches_cpu() {
        crate::ops::skip_without_gpu!();
        check(&[2, 8, 4, 4], 1);
        check(&[3, 2, 5, 7], 2);
        check(&[5, 6], 3);
        check(&[1, 2], 4);
        check(&[4, 2048], 5);
    }

    #[test]
    fn rejects_odd_channels() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[2, 3, 2, 2], &[0.0; 24]).unwrap();
        let err = glu(&mut g.stream(), &x).unwrap_err().to_string();
        assert!(err.contains("glu") && err.contains("[2, 3, 2, 2]"), "{err}");
        let x = g.upload_f32(&[4], &[0.0; 4]).unwrap();
        assert!(glu(&mut g.stream(), &x).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn random_shapes(n in 1usize..5, c in 1usize..9, rest in proptest::collection::vec(1usize..9, 0..3), seed in 0u64..1000) {
            crate::ops::skip_without_gpu!(proptest);
            let mut shape = vec![n, 2 * c];
            shape.extend(rest);
            check(&shape, seed);
        }
    }
}
