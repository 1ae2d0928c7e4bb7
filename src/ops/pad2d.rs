//! Spatial padding of `[N, C, H, W]` (ONNX Pad on H and W) for what cannot fold into the
//! window op after it: any constant fill, reflect and edge modes.
//!
//! Pieces: shader `shaders/pad2d.wgsl`; CPU reference `cpu::pad2d`; tests below.

use super::checks::nchw;
use super::{bytes_of, Pads};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("pad2d", "pad_source", "pad2d");

/// What fills the padding (ONNX Pad's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum PadMode {
    /// A constant value.
    Constant(f32),
    /// The mirror image at each border, the edge itself not repeated (each pad < the size).
    Reflect,
    /// The edge row / column repeated.
    Edge,
}

impl PadMode {
    fn code(self) -> (u32, f32) {
        match self {
            PadMode::Constant(v) => (0, v),
            PadMode::Reflect => (1, 0.0),
            PadMode::Edge => (2, 0.0),
        }
    }
}

/// The padded shape of `[N, C, H, W]` `shape`, or why it cannot be padded so (reflect needs
/// each pad below its axis's size; edge and reflect need a nonempty input).
pub fn padded_shape(
    shape: [usize; 4],
    pads: Pads,
    mode: PadMode,
) -> std::result::Result<[usize; 4], String> {
    let [n, c, h, w] = shape;
    let [t, l, b, r] = pads.onnx();
    if !matches!(mode, PadMode::Constant(_)) && (h == 0 || w == 0) {
        return Err(format!("{mode:?} padding of an empty {h}x{w} map"));
    }
    if mode == PadMode::Reflect && (t.max(b) >= h || l.max(r) >= w) {
        return Err(format!(
            "reflect padding {pads} of a {h}x{w} map: each pad must be smaller than its axis"
        ));
    }
    match (
        pads.total(0).and_then(|p| p.checked_add(h)),
        pads.total(1).and_then(|p| p.checked_add(w)),
    ) {
        (Some(oh), Some(ow)) => Ok([n, c, oh, ow]),
        _ => Err(format!("padding {pads} overflows")),
    }
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    top: u32,
    left: u32,
    mode: u32,
    value: f32,
    _p: [u32; 3],
}

/// `x` `[N, C, H, W]` padded by `pads` on H and W, filled as `mode` says.
pub fn pad2d(s: &mut Stream, x: &Tensor, pads: Pads, mode: PadMode) -> Result<Tensor> {
    const OP: &str = "pad2d";
    let shape = nchw(OP, x)?;
    if x.dtype() != DType::F32 {
        return shape_err(OP, format!("x must be f32, got {:?}", x.dtype()));
    }
    let out = match padded_shape(shape, pads, mode) {
        Ok(o) => o,
        Err(e) => return shape_err(OP, format!("x {:?}: {e}", x.shape())),
    };
    let y = s.gpu().alloc(OP, &out, DType::F32)?;
    let (code, value) = mode.code();
    let p = Params {
        total: y.numel() as u32,
        h: shape[2] as u32,
        w: shape[3] as u32,
        oh: out[2] as u32,
        ow: out[3] as u32,
        top: pads.begin[0] as u32,
        left: pads.begin[1] as u32,
        mode: code,
        value,
        _p: [0; 3],
    };
    s.dispatch(
        SHADER,
        "pad2d",
        &[],
        bytes_of(&p),
        &[x, &y],
        grid_1d(y.numel(), 256),
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

    /// numpy.pad's modes on one 2x3 plane, written out by hand.
    #[test]
    fn modes_match_hand_written_planes() {
        let x = Array::new(&[1, 1, 2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let pads = Pads::from_onnx([1, 2, 0, 1]);
        let y = |m| cpu::pad2d::pad2d(&x, pads, m).data;
        #[rustfmt::skip]
        let reflect = [
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
            3.0, 2.0, 1.0, 2.0, 3.0, 2.0,
            6.0, 5.0, 4.0, 5.0, 6.0, 5.0,
        ];
        #[rustfmt::skip]
        let edge = [
            1.0, 1.0, 1.0, 2.0, 3.0, 3.0,
            1.0, 1.0, 1.0, 2.0, 3.0, 3.0,
            4.0, 4.0, 4.0, 5.0, 6.0, 6.0,
        ];
        #[rustfmt::skip]
        let constant = [
            9.0, 9.0, 9.0, 9.0, 9.0, 9.0,
            9.0, 9.0, 1.0, 2.0, 3.0, 9.0,
            9.0, 9.0, 4.0, 5.0, 6.0, 9.0,
        ];
        assert_eq!(y(PadMode::Reflect), reflect);
        assert_eq!(y(PadMode::Edge), edge);
        assert_eq!(y(PadMode::Constant(9.0)), constant);
        let e = padded_shape(
            [1, 1, 2, 3],
            Pads::from_onnx([2, 0, 0, 0]),
            PadMode::Reflect,
        );
        assert!(e.unwrap_err().contains("smaller than its axis"));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Every mode with any pads per side, on the GPU, equals the CPU reference exactly.
        #[test]
        fn gpu_matches_cpu(
            n in 1usize..3, c in 1usize..4, h in 1usize..7, w in 1usize..7,
            pads in [0usize..4, 0..4, 0..4, 0..4], mode in 0usize..3, value in -3.0f32..3.0,
            seed in 0u64..1000,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            let mode = [PadMode::Constant(value), PadMode::Reflect, PadMode::Edge][mode];
            let pads = Pads::from_onnx(pads);
            prop_assume!(padded_shape([n, c, h, w], pads, mode).is_ok());
            let g = gpu();
            let x = Array::random(&[n, c, h, w], seed);
            let xt = g.upload_f32(&x.shape, &x.data).unwrap();
            let mut s = g.stream();
            let y = pad2d(&mut s, &xt, pads, mode).unwrap();
            s.submit();
            let want = cpu::pad2d::pad2d(&x, pads, mode);
            prop_assert_eq!(y.shape(), &want.shape[..]);
            prop_assert_eq!(g.read_f32(&y).unwrap(), want.data);
        }
    }

    #[test]
    fn bad_pads_are_errors_naming_the_op() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1, 1, 2, 2], &[0.0; 4]).unwrap();
        let e = pad2d(&mut g.stream(), &x, Pads::same(2), PadMode::Reflect)
            .unwrap_err()
            .to_string();
        assert!(e.contains("pad2d") && e.contains("reflect"), "{e}");
    }
}
