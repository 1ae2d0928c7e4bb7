//! Winograd F(2x2, 3x3) and F(4x4, 3x3) for stride-1 3x3 convs with groups 1: per output tile
//! and input channel, 16 multiplies for 4 outputs (F2) or 36 for 16 (F4) instead of 9 per
//! output, at the price of transforms and scratch of 4x (F2) or 2.25x (F4) the input and output.
//!
//! Three dispatches: the input transform (`shaders/winograd_in.wgsl`) writes V `[E][Ci][T]` for
//! E = 16 or 36 elements and T output tiles, E batched GEMMs M[e] = U[e]^T V[e] reuse the
//! register-blocked `matmul`, and the output transform (`shaders/winograd_out.wgsl`) applies
//! bias, residual and activation. The weight transform U = G g G^T is made once at prepare time
//! ([`weight`]). Chosen per shape by `conv_select`; tested against the CPU reference in
//! `conv2d`'s tests.

use super::{bytes_of, matmul::matmul, Act};
use crate::error::Result;
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

const INPUT: Shader = crate::shader!("winograd_in");
const OUTPUT: Shader = crate::shader!("winograd_out");
const WG: u32 = 64;

/// G of F(2x2, 3x3): U = G g G^T.
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// G of F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2 and infinity).
const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// Output tile sizes: F(2x2, 3x3) and F(4x4, 3x3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tile {
    F2,
    F4,
}

impl Tile {
    /// Outputs per tile side.
    fn m(self) -> usize {
        match self {
            Tile::F2 => 2,
            Tile::F4 => 4,
        }
    }
    /// Input patch side, m + 2.
    fn alpha(self) -> usize {
        self.m() + 2
    }
    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &G2,
            Tile::F4 => &G4,
        }
    }
}

/// Transformed weights `[alpha^2][Ci][Co rounded up to 4]` of PyTorch-layout `[Co, Ci, 3, 3]`
/// data (f64 arithmetic, so the transform adds no rounding beyond one f32 cast).
pub(crate) fn weight(gpu: &Gpu, tile: Tile, co: usize, ci: usize, data: &[f32]) -> Result<Tensor> {
    let (cop, al, g) = (co.next_multiple_of(4), tile.alpha(), tile.g());
    let mut u = vec![0.0f32; al * al * ci * cop];
    for o in 0..co {
        for c in 0..ci {
            let w = &data[(o * ci + c) * 9..][..9];
            // t = G w (alpha x 3), then U = t G^T (alpha x alpha)
            let t: Vec<[f64; 3]> = g
                .iter()
                .map(|ga| {
                    std::array::from_fn(|j| (0..3).map(|k| ga[k] * w[k * 3 + j] as f64).sum())
                })
                .collect();
            for (a, ta) in t.iter().enumerate() {
                for (b, gb) in g.iter().enumerate() {
                    let v: f64 = (0..3).map(|k| ta[k] * gb[k]).sum();
                    u[((a * al + b) * ci + c) * cop + o] = v as f32;
                }
            }
        }
    }
    gpu.upload_f32(&[al * al, ci, cop], &u)
}

#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    n: u32,
    ci: u32,
    h: u32,
    w: u32,
    co: u32,
    oh: u32,
    ow: u32,
    cop: u32,
    pad_h: i32,
    pad_w: i32,
    tiles_h: u32,
    tiles_w: u32,
    tiles: u32,
    tiles_p: u32,
    act: u32,
    slope: f32,
    has_bias: u32,
    has_res: u32,
    _p0: u32,
    _p1: u32,
}

/// out = act(conv3x3(x, g) + bias + residual), stride 1, groups 1, for `u` from [`weight`]
/// with the same `tile`.
/// The caller (`conv2d`) has checked every shape; `out_shape` is `[N, Co, OH, OW]`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d(
    s: &mut Stream,
    x: &Tensor,
    tile: Tile,
    u: &Tensor,
    bias: Option<&Tensor>,
    pad: [usize; 2],
    residual: Option<&Tensor>,
    act: Act,
    out_shape: [usize; 4],
) -> Result<Tensor> {
    const OP: &str = "conv2d (winograd)";
    let [n, ci, h, w] = x.dims(OP)?;
    let [_, co, oh, ow] = out_shape;
    let cop = co.next_multiple_of(4);
    let (tm, al) = (tile.m(), tile.alpha());
    let (tiles_h, tiles_w) = (oh.div_ceil(tm), ow.div_ceil(tm));
    let tiles = n * tiles_h * tiles_w;
    let tiles_p = tiles.next_multiple_of(4);
    let (kind, slope) = act.code();
    let params = Params {
        n: n as u32,
        ci: ci as u32,
        h: h as u32,
        w: w as u32,
        co: co as u32,
        oh: oh as u32,
        ow: ow as u32,
        cop: cop as u32,
        pad_h: pad[0] as i32,
        pad_w: pad[1] as i32,
        tiles_h: tiles_h as u32,
        tiles_w: tiles_w as u32,
        tiles: tiles as u32,
        tiles_p: tiles_p as u32,
        act: kind,
        slope,
        has_bias: bias.is_some() as u32,
        has_res: residual.is_some() as u32,
        _p0: 0,
        _p1: 0,
    };
    let gpu = s.gpu();
    let v = gpu.alloc(OP, &[al * al, ci, tiles_p], DType::F32)?;
    let consts = [("WG", WG as f64)];
    s.dispatch(
        INPUT,
        if tile == Tile::F2 { "input2" } else { "input4" },
        &consts,
        bytes_of(&params),
        &[x, &v],
        grid_1d(ci * tiles_p, WG),
    )?;
    let m = matmul(s, u, &v, true, false)?; // [alpha^2, Cop, T]
    drop(v);
    let out = gpu.alloc(OP, &out_shape, DType::F32)?;
    let (b, r) = (bias.unwrap_or(x), residual.unwrap_or(x));
    s.dispatch(
        OUTPUT,
        if tile == Tile::F2 {
            "output2"
        } else {
            "output4"
        },
        &consts,
        bytes_of(&params),
        &[&m, b, r, &out],
        grid_1d(co * tiles, WG),
    )?;
    Ok(out)
}
