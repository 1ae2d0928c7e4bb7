//! Local response normalization across channels (ONNX LRN: AlexNet, GoogLeNet).
//!
//! Pieces: shader `shaders/lrn.wgsl`; no backward; CPU reference `cpu::lrn`; tests below.

use super::bytes_of;
use super::checks::nchw;
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("lrn");

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    c: u32,
    hw: u32,
    size: u32,
    alpha: f32,
    beta: f32,
    bias: f32,
    _pad: u32,
}

/// LRN of x `[N, C, H, W]` over windows of `size` channels.
pub fn lrn(
    s: &mut Stream,
    x: &Tensor,
    size: usize,
    alpha: f32,
    beta: f32,
    bias: f32,
) -> Result<Tensor> {
    let [_, c, h, w] = nchw("lrn", x)?;
    if size == 0 {
        return shape_err("lrn", "a window of 0 channels");
    }
    let y = s.gpu().alloc("lrn", x.shape(), DType::F32)?;
    let p = Params {
        total: x.numel() as u32,
        c: c as u32,
        hw: (h * w) as u32,
        size: size as u32,
        alpha,
        beta,
        bias,
        _pad: 0,
    };
    s.dispatch(
        SHADER,
        "lrn",
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(x.numel(), 256),
    )?;
    Ok(y)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;

    #[test]
    fn lrn_matches_cpu() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        for (i, (shape, size)) in [
            ([2, 5, 4, 3], 3),
            ([1, 8, 5, 5], 5),
            ([2, 3, 2, 2], 4),
            ([1, 2, 3, 3], 1),
        ]
        .into_iter()
        .enumerate()
        {
            let x = Array::random(&shape, i as u64).map(|v| v * 6.0 - 3.0);
            let mut s = g.stream();
            let y = lrn(
                &mut s,
                &g.upload_f32(&shape, &x.data).unwrap(),
                size,
                0.5,
                0.75,
                2.0,
            )
            .unwrap();
            s.submit();
            let want = cpu::lrn::lrn(&x, size, 0.5, 0.75, 2.0);
            let got = Array::new(&shape, g.read_f32(&y).unwrap());
            assert!(got.max_rel_err(&want.data) < 1e-4, "{shape:?} size {size}");
        }
    }

    #[test]
    fn lrn_cpu_reference_follows_the_onnx_formula() {
        // One pixel, channels [1, 2, 3], size 2: channel c sums c-0 .. c+1.
        let x = Array::new(&[1, 3, 1, 1], vec![1.0, 2.0, 3.0]);
        let y = cpu::lrn::lrn(&x, 2, 2.0, 1.0, 1.0);
        // c0: 1 / (1 + 1 * (1 + 4)); c1: 2 / (1 + (4 + 9)); c2: 3 / (1 + 9).
        let want = [1.0 / 6.0, 2.0 / 14.0, 3.0 / 10.0];
        assert!(
            y.data.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-7),
            "{:?}",
            y.data
        );
    }
}
