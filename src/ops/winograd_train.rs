//! Winograd forms for training's stride-1 3x3 convs (the forward conv and its input gradient):
//! the weights change every step, so their transforms are made on the GPU each call
//! (`shaders/winograd_weight.wgsl`) instead of once on the host as inference's are. The
//! variant is the inference rule's (`conv_select::default_variant`) or the one
//! `SYNTHCAL_CONV` forces; `auto` keeps the rule here, since it would time variants with
//! weights the next step replaces.
//!
//! Tests: `winograd_train_tests.rs` (against the CPU reference) and `tests/grad.rs` (exact
//! gradients at a shape the rule runs on Winograd).

use super::conv2d::{rule_variant, Conv2dParams};
use super::conv_select::{self, ConvVariant};
use super::winograd::{self, FusedWeight, Tile};
use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const WEIGHT: Shader = crate::shader!("winograd_weight");

/// The Winograd weights of PyTorch-layout 3x3 kernels: `winograd::weight`'s layout for `tile`,
/// or with `fused` (F(4x4, 3x3) only) `winograd::fused_weight`'s buffer. `w` is `[Co, Ci, 3,
/// 3]`; with `transposed`, the weights of the forward conv whose input gradient this is
/// (`[Ci, Co, 3, 3]`, transposed and flipped here). f32 arithmetic, so U may differ from the
/// host's f64 transform by an ulp or so.
pub(crate) fn weight_on_gpu(
    s: &mut Stream,
    w: &Tensor,
    tile: Tile,
    fused: bool,
    transposed: bool,
) -> Result<Tensor> {
    const OP: &str = "winograd weight";
    let [a, b, kh, kw] = w.dims(OP)?;
    if [kh, kw] != [3, 3] || w.dtype() != DType::F32 || (fused && tile != Tile::F4) {
        return shape_err(
            OP,
            format!(
                "{:?} {:?} weights for {tile:?} (fused {fused})",
                w.dtype(),
                w.shape()
            ),
        );
    }
    let (co, ci) = if transposed { (b, a) } else { (a, b) };
    let cop = co.next_multiple_of(if fused { 8 } else { 4 });
    let al = tile.alpha();
    let shape = if fused {
        vec![ci, cop / 8, 9, 8, 4]
    } else {
        vec![al * al, cop, ci]
    };
    let u = s.gpu().alloc(OP, &shape, DType::F32)?;
    let total = cop * ci;
    let p = [co, ci, cop, total, transposed as usize, 0, 0, 0].map(|v| v as u32);
    s.dispatch(
        WEIGHT,
        "transform",
        &[("ALPHA", al as f64), ("FUSED", f64::from(u8::from(fused)))],
        bytes_of(&p),
        &[w, &u],
        grid_1d(total, 64),
    )?;
    Ok(u)
}

/// The variant a training conv of `x_shape` to `co` channels with kernel `[kh, kw]` runs on:
/// Direct wherever no Winograd form applies.
pub(crate) fn variant(
    gpu: &crate::gpu::Gpu,
    x_shape: [usize; 4],
    co: usize,
    kernel: [usize; 2],
    p: &Conv2dParams,
) -> ConvVariant {
    if !p.takes_winograd(kernel) {
        return ConvVariant::Direct;
    }
    let v = match conv_select::mode() {
        conv_select::Mode::Forced(v) => v,
        _ => rule_variant(gpu, x_shape, co, kernel, p),
    };
    let [n, ci, h, w] = x_shape;
    let out_hw = [
        p.out_size(0, h, 3).unwrap_or(0),
        p.out_size(1, w, 3).unwrap_or(0),
    ];
    winograd::usable(gpu, v, n, [ci, co], out_hw)
}

/// y = conv2d(x, K) + bias on `variant` (not Direct), K from `w` as [`weight_on_gpu`] takes it.
/// The caller has checked the shapes: x `[N, Ci, H, W]` f32, K `[Co, Ci, 3, 3]`, bias `[Co]`,
/// `p` a stride-1, undilated conv with groups 1.
pub(crate) fn conv2d(
    s: &mut Stream,
    x: &Tensor,
    w: &Tensor,
    transposed: bool,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    variant: ConvVariant,
) -> Result<Tensor> {
    let [n, _, h, wd] = x.dims("conv2d (winograd, training)")?;
    let co = w.shape()[usize::from(transposed)];
    let (Some(oh), Some(ow)) = (p.out_size(0, h, 3), p.out_size(1, wd, 3)) else {
        return shape_err(
            "conv2d (winograd, training)",
            format!("x {:?}, {p:?}", x.shape()),
        );
    };
    let out = [n, co, oh, ow];
    let (tile, fused) = match variant {
        ConvVariant::Winograd2 => (Tile::F2, false),
        ConvVariant::Winograd4 => (Tile::F4, false),
        ConvVariant::Fused4 => (Tile::F4, true),
        ConvVariant::Direct => {
            return shape_err("conv2d (winograd, training)", "the direct variant")
        }
    };
    let u = weight_on_gpu(s, w, tile, fused, transposed)?;
    let id = Act::Identity;
    if fused {
        let u = FusedWeight {
            buffer: u,
            texture: None,
        };
        return winograd::conv2d_fused(s, x, &u, bias, p.pad, None, id, out);
    }
    winograd::conv2d(s, x, tile, &u, bias, p.pad, None, id, out)
}

#[cfg(test)]
#[path = "winograd_train_tests.rs"]
mod tests;
