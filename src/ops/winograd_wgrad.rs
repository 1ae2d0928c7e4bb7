//! The weight gradient of training's stride-1 3x3 convs by F(4x4, 3x3): four times fewer
//! multiplies than the direct correlation of x with dy, on the convs whose forward pass the rule
//! runs on Winograd (the adapters where it pays). Algorithm: `shaders/winograd_wgrad.wgsl`.
//!
//! Tests: `winograd_wgrad_tests.rs` (against the CPU reference, with Winograd's error scale)
//! and `tests/grad.rs` (finite differences through the tape).

use super::conv2d::Conv2dParams;
use super::matmul::matmul;
use super::winograd::{self, Tile, WG};
use super::{bytes_of, Act};
use crate::error::Result;
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("winograd_wgrad", "winograd_params", "winograd_wgrad");

/// dw `[Co, Ci, 3, 3]` of y = conv2d(x, w) for a stride-1, undilated, ungrouped 3x3 conv with
/// padding `p.pad` (x `[N, Ci, H, W]`, dy `[N, Co, OH, OW]`, both f32 and checked by the
/// caller), or None where the transforms' scratch would pass the adapter's binding limit.
pub(crate) fn weight_grad(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    p: &Conv2dParams,
) -> Result<Option<Tensor>> {
    let [n, ci, _, _] = x.dims("conv2d weight gradient (winograd)")?;
    let [_, co, oh, ow] = dy.dims("conv2d weight gradient (winograd)")?;
    if !winograd::scratch_fits(s.gpu(), Tile::F4, n, [ci, co], [oh, ow]) {
        return Ok(None);
    }
    let wp = winograd::params(x, Tile::F4, None, p.pad, Act::Identity, [n, co, oh, ow])?;
    let tiles_p = wp.tiles_p as usize;
    let v = winograd::input_transform(s, x, Tile::F4, &wp)?;
    let gpu = s.gpu();
    let dyt = gpu.alloc("winograd dy transform", &[36, co, tiles_p], DType::F32)?;
    let dispatch = |s: &mut Stream, entry, t: &[&Tensor], threads| {
        let wg = [("WG", WG as f64)];
        s.dispatch(SHADER, entry, &wg, bytes_of(&wp), t, grid_1d(threads, WG))
    };
    dispatch(s, "dy4", &[dy, &dyt], co * tiles_p)?;
    // M[e] = DY[e] V[e]^T: the sum over tiles of each element's products.
    let m = matmul(s, &dyt, &v, false, true)?;
    let dw = gpu.alloc("winograd weight gradient", &[co, ci, 3, 3], DType::F32)?;
    dispatch(s, "back4", &[&m, &dw], co * ci)?;
    Ok(Some(dw))
}

#[cfg(test)]
#[path = "winograd_wgrad_tests.rs"]
mod tests;
