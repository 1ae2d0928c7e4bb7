//! Winograd F(2x2, 3x3) and F(4x4, 3x3) for stride-1 3x3 convs with groups 1: per output tile
//! and input channel, 16 multiplies for 4 outputs (F2) or 36 for 16 (F4) instead of 9 per
//! output, at the price of transforms and scratch of 4x (F2) or 2.25x (F4) the input and output.
//!
//! Three dispatches: the input transform (`shaders/winograd_in.wgsl`) writes V `[E][Ci][T]` for
//! E = 16 or 36 elements and T output tiles, E batched GEMMs M[e] = U[e] V[e] reuse the
//! register-blocked `matmul`, and the output transform (`shaders/winograd_out.wgsl`) applies
//! bias, residual and activation. The weight transform U = G g G^T is made once at prepare time
//! ([`weight`]). Chosen per shape by `conv_select`; tested against the CPU reference in
//! `conv2d`'s tests.

use super::conv_select::ConvVariant;
use super::elementwise::{act_const, res_const};
use super::{bytes_of, matmul::matmul, Act};
use crate::error::Result;
use crate::gpu::{grid_1d, Bind, DType, Gpu, Shader, Stream, Tensor};

const INPUT: Shader = crate::shader!(
    "winograd_in",
    "winograd_params",
    "winograd_rows",
    "winograd_row6",
    "winograd_in"
);
const OUTPUT: Shader = crate::shader!("winograd_out", "winograd_params", "winograd_out");
/// The fused kernel's module with its row-load, weight-load and epilogue preludes.
macro_rules! fused {
    ($name:literal, $row6:literal, [$($loads:literal),+], $put:literal) => {
        crate::shader!(
            $name,
            "winograd_params",
            "winograd_rows",
            $row6,
            $($loads,)+
            $put,
            "winograd_tile",
            "winograd_fused"
        )
    };
}
// Indexed [weights: plain loads, subgroup loads, subgroup texture][rows and epilogue: any, vec4
// epilogue (output width 4k), and aligned rows (input width 4k, left padding 1) with the vec4
// epilogue]. naga takes the subgroup builtins without an `enable` directive when the device has
// them.
const FUSED: [[Shader; 3]; 3] = [
    [
        fused!(
            "winograd_fused",
            "winograd_row6",
            ["winograd_u_loads"],
            "winograd_put_f32"
        ),
        fused!(
            "winograd_fused_vec4",
            "winograd_row6",
            ["winograd_u_loads"],
            "winograd_put_vec4"
        ),
        fused!(
            "winograd_fused_aligned",
            "winograd_row6_aligned",
            ["winograd_u_loads"],
            "winograd_put_vec4"
        ),
    ],
    [
        fused!(
            "winograd_fused_subgroup",
            "winograd_row6",
            ["winograd_u_subgroup", "winograd_u_broadcast"],
            "winograd_put_f32"
        ),
        fused!(
            "winograd_fused_subgroup_vec4",
            "winograd_row6",
            ["winograd_u_subgroup", "winograd_u_broadcast"],
            "winograd_put_vec4"
        ),
        fused!(
            "winograd_fused_subgroup_aligned",
            "winograd_row6_aligned",
            ["winograd_u_subgroup", "winograd_u_broadcast"],
            "winograd_put_vec4"
        ),
    ],
    [
        fused!(
            "winograd_fused_texture",
            "winograd_row6",
            ["winograd_u_texture", "winograd_u_broadcast"],
            "winograd_put_f32"
        ),
        fused!(
            "winograd_fused_texture_vec4",
            "winograd_row6",
            ["winograd_u_texture", "winograd_u_broadcast"],
            "winograd_put_vec4"
        ),
        fused!(
            "winograd_fused_texture_aligned",
            "winograd_row6_aligned",
            ["winograd_u_texture", "winograd_u_broadcast"],
            "winograd_put_vec4"
        ),
    ],
];
/// The aligned form with row edges exchanged between lanes (`winograd_row6_lanes.wgsl`), for
/// the subgroup and texture weight forms.
const FUSED_LANES: [Shader; 2] = [
    fused!(
        "winograd_fused_subgroup_lanes",
        "winograd_row6_lanes",
        ["winograd_u_subgroup", "winograd_u_broadcast"],
        "winograd_put_vec4"
    ),
    fused!(
        "winograd_fused_texture_lanes",
        "winograd_row6_lanes",
        ["winograd_u_texture", "winograd_u_broadcast"],
        "winograd_put_vec4"
    ),
];
pub(crate) const WG: u32 = 64;

/// G of F(2x2, 3x3): U = G g G^T.
const G2: [[f64; 3]; 4] = [
    [1.0, 0.0, 0.0],
    [0.5, 0.5, 0.5],
    [0.5, -0.5, 0.5],
    [0.0, 0.0, 1.0],
];

/// G of F(4x4, 3x3) (interpolation points 0, 1, -1, 2, -2 and infinity).
pub(crate) const G4: [[f64; 3]; 6] = [
    [1.0 / 4.0, 0.0, 0.0],
    [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0],
    [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0],
    [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0],
    [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0],
    [0.0, 0.0, 1.0],
];

/// B^T and A^T of F(4x4, 3x3) (input and output transforms), for the tests' error scales.
#[cfg(test)]
pub(crate) const BT4: [[f64; 6]; 6] = [
    [4., 0., -5., 0., 1., 0.],
    [0., -4., -4., 1., 1., 0.],
    [0., 4., -4., -1., 1., 0.],
    [0., -2., -1., 2., 1., 0.],
    [0., 2., -1., -2., 1., 0.],
    [0., 4., 0., -5., 0., 1.],
];
#[cfg(test)]
pub(crate) const AT4: [[f64; 6]; 4] = [
    [1., 1., 1., 1., 1., 0.],
    [0., 1., -1., 2., -2., 0.],
    [0., 1., 1., 4., 4., 0.],
    [0., 1., -1., 8., -8., 1.],
];

/// G4 = D G4_INT with D = diag(1/4, -1/6, -1/6, 1/24, 1/24, 1): the integer rows that make the
/// INT8 kernel's weights exact (shaders/qwinograd.wgsl).
const G4_INT: [[f64; 3]; 6] = [
    [1.0, 0.0, 0.0],
    [1.0, 1.0, 1.0],
    [1.0, -1.0, 1.0],
    [1.0, 2.0, 4.0],
    [1.0, -2.0, 4.0],
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
    pub(crate) fn alpha(self) -> usize {
        self.m() + 2
    }
    fn g(self) -> &'static [[f64; 3]] {
        match self {
            Tile::F2 => &G2,
            Tile::F4 => &G4,
        }
    }
}

/// U = G g G^T of PyTorch-layout `[Co, Ci, 3, 3]` data, element (a, b) of (co, ci) passed to
/// `put` (f64 arithmetic, so the transform adds no rounding beyond one f32 cast, and integer
/// data and G give exact integers).
fn transform_weight(
    g: &[[f64; 3]],
    co: usize,
    ci: usize,
    data: &[f32],
    mut put: impl FnMut(usize, usize, usize, usize, f64),
) {
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
                    put(o, c, a, b, (0..3).map(|k| ta[k] * gb[k]).sum());
                }
            }
        }
    }
}

/// Transformed weights `[alpha^2][Co rounded up to 4][Ci]` for the 3-dispatch form. Rows over
/// Co make the GEMM's A untransposed, which ran faster than `[alpha^2][Ci][Co]`.
pub(crate) fn weight(gpu: &Gpu, tile: Tile, co: usize, ci: usize, data: &[f32]) -> Result<Tensor> {
    let (cop, al) = (co.next_multiple_of(4), tile.alpha());
    let mut u = vec![0.0f32; al * al * ci * cop];
    transform_weight(tile.g(), co, ci, data, |o, c, a, b, v| {
        u[((a * al + b) * cop + o) * ci + c] = v as f32;
    });
    gpu.upload_f32(&[al * al, cop, ci], &u)
}

/// F(4x4, 3x3) weights for the fused kernel: `[Ci][Co / 8][9][8][4]` (Co rounded up to 8):
/// vec4 q of the 36 elements of channel 8b + c at `[ci][b][q][c]`, so that eight lanes load the
/// weights of eight channels as one block. Where the adapter has subgroups the 3x3 kernels
/// themselves also go into a texture of 24 texels per row, one row per `[ci][b]`, which the
/// subgroup form reads instead and transforms in the kernel (see
/// shaders/winograd_u_texture.wgsl), unless it has more rows than the adapter's textures allow.
pub(crate) fn fused_weight(gpu: &Gpu, co: usize, ci: usize, data: &[f32]) -> Result<FusedWeight> {
    let u = fused_layout(&G4, co, ci, data, |v| (v as f32).to_bits());
    let texture = fused_rows(gpu, co, ci).map(|rows| {
        let cop = co.next_multiple_of(8);
        let mut raw = vec![0u32; ci * cop * 12];
        for (i, &w) in data.iter().enumerate() {
            let (o, c, k) = (i / (ci * 9), (i / 9) % ci, i % 9);
            let row = c * cop / 8 + o / 8;
            raw[(row * 24 + (k / 4) * 8 + o % 8) * 4 + k % 4] = w.to_bits();
        }
        fused_texture(gpu, rows, 24, &raw)
    });
    fused_upload(gpu, co, ci, &u, texture)
}

/// [`fused_weight`]'s layout of U' = G' g G'^T as i32, for the INT8 kernel
/// (shaders/qwinograd.wgsl): exact integers for integer weights `data`. Where they are int8,
/// the texture holds the kernels themselves, one texel per (input channel, output channel),
/// 8 texels per row (shaders/winograd_u_raw.wgsl transforms them).
pub(crate) fn fused_weight_int(
    gpu: &Gpu,
    co: usize,
    ci: usize,
    data: &[f32],
) -> Result<FusedWeight> {
    let u = fused_layout(&G4_INT, co, ci, data, |v| v as i32 as u32);
    let bytes = data.iter().all(|&w| i8::try_from(w as i32).is_ok());
    let texture = fused_rows(gpu, co, ci).filter(|_| bytes).map(|rows| {
        let cop = co.next_multiple_of(8);
        let mut raw = vec![0u32; ci * cop * 4];
        for (i, &w) in data.iter().enumerate() {
            let (o, c, k) = (i / (ci * 9), (i / 9) % ci, i % 9);
            raw[(c * cop + o) * 4 + k / 4] |= (w as i8 as u8 as u32) << (8 * (k % 4));
        }
        fused_texture(gpu, rows, 8, &raw)
    });
    fused_upload(gpu, co, ci, &u, texture)
}

/// U = G g G^T in the fused kernels' layout, each element stored as the bits `bits` gives.
fn fused_layout(
    g: &[[f64; 3]],
    co: usize,
    ci: usize,
    data: &[f32],
    bits: impl Fn(f64) -> u32,
) -> Vec<u32> {
    let cop = co.next_multiple_of(8);
    let mut u = vec![0u32; ci * cop * 36];
    transform_weight(g, co, ci, data, |o, c, a, b, v| {
        let (e, blk) = (a * 6 + b, c * cop / 8 + o / 8);
        u[((blk * 9 + e / 4) * 8 + o % 8) * 4 + e % 4] = bits(v);
    });
    u
}

/// The texture's rows where the adapter has subgroups and takes that many.
fn fused_rows(gpu: &Gpu, co: usize, ci: usize) -> Option<u32> {
    let rows = ci * co.div_ceil(8);
    (gpu.subgroups && rows <= gpu.limits.max_texture_dimension_2d as usize).then_some(rows as u32)
}

fn fused_upload(
    gpu: &Gpu,
    co: usize,
    ci: usize,
    u: &[u32],
    texture: Option<wgpu::TextureView>,
) -> Result<FusedWeight> {
    let shape = [ci, co.div_ceil(8), 9, 8, 4];
    let buffer = gpu.upload_i32(&shape, bytemuck::cast_slice(u))?;
    Ok(FusedWeight { buffer, texture })
}

/// The fused kernel's weights from [`fused_weight`]: the buffer, and the same data as a texture
/// where the adapter takes one.
#[derive(Clone, Debug)]
pub(crate) struct FusedWeight {
    pub(crate) buffer: Tensor,
    pub(crate) texture: Option<wgpu::TextureView>,
}

/// `u` as an Rgba32Uint texture of `rows` rows of `width` texels.
fn fused_texture(gpu: &Gpu, rows: u32, width: u32, u: &[u32]) -> wgpu::TextureView {
    let size = wgpu::Extent3d {
        width,
        height: rows,
        depth_or_array_layers: 1,
    };
    let texture = gpu.device.create_texture(&wgpu::TextureDescriptor {
        label: Some("winograd fused weights"),
        size,
        mip_level_count: 1,
        sample_count: 1,
        dimension: wgpu::TextureDimension::D2,
        format: wgpu::TextureFormat::Rgba32Uint,
        usage: wgpu::TextureUsages::TEXTURE_BINDING | wgpu::TextureUsages::COPY_DST,
        view_formats: &[],
    });
    gpu.queue.write_texture(
        texture.as_image_copy(),
        bytemuck::cast_slice(u),
        wgpu::TexelCopyBufferLayout {
            offset: 0,
            bytes_per_row: Some(width * 16),
            rows_per_image: Some(rows),
        },
        size,
    );
    texture.create_view(&wgpu::TextureViewDescriptor::default())
}

/// The uniforms of every Winograd kernel (`shaders/winograd_params.wgsl`).
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
pub(crate) struct Params {
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
    pub(crate) tiles_p: u32,
    _p2: u32,
    slope: f32,
    has_bias: u32,
    _p3: u32,
    _p0: u32,
    _p1: u32,
}

/// Whether the 3-dispatch form's scratch, V `[alpha^2][Ci][T]` and M `[alpha^2][Co][T]` for T
/// output tiles (rounded up to 4), fits a storage binding, for `n` images of `out_hw` outputs.
/// Where it does not, the fused form, which has none, runs instead (`usable`).
pub(crate) fn scratch_fits(
    gpu: &Gpu,
    tile: Tile,
    n: usize,
    [ci, co]: [usize; 2],
    out_hw: [usize; 2],
) -> bool {
    let tiles = n * out_hw[0].div_ceil(tile.m()) * out_hw[1].div_ceil(tile.m());
    let per_channel = tile.alpha().pow(2) * tiles.next_multiple_of(4) * 4;
    (per_channel * ci.max(co.next_multiple_of(4))) as u64 <= gpu.max_binding()
}

/// `v`, or `Fused4` where `v` is a 3-dispatch form whose scratch would not fit (a conv of `n`
/// images, `ci` -> `co` channels, `out_hw` outputs).
pub(crate) fn usable(
    gpu: &Gpu,
    v: ConvVariant,
    n: usize,
    channels: [usize; 2],
    out_hw: [usize; 2],
) -> ConvVariant {
    let tile = match v {
        ConvVariant::Winograd2 => Tile::F2,
        ConvVariant::Winograd4 => Tile::F4,
        ConvVariant::Direct | ConvVariant::Fused4 => return v,
    };
    if scratch_fits(gpu, tile, n, channels, out_hw) {
        v
    } else {
        ConvVariant::Fused4
    }
}

/// The kernels' parameters for a conv with `tile`.
pub(crate) fn params(
    x: &Tensor,
    tile: Tile,
    bias: Option<&Tensor>,
    pad: [usize; 2],
    act: Act,
    out_shape: [usize; 4],
) -> Result<Params> {
    const OP: &str = "conv2d (winograd)";
    let [n, ci, h, w] = x.dims(OP)?;
    let [_, co, oh, ow] = out_shape;
    let cop = co.next_multiple_of(4);
    let tm = tile.m();
    let (tiles_h, tiles_w) = (oh.div_ceil(tm), ow.div_ceil(tm));
    let tiles = n * tiles_h * tiles_w;
    let tiles_p = tiles.next_multiple_of(4);
    Ok(Params {
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
        _p2: 0,
        slope: act.code().1,
        has_bias: bias.is_some() as u32,
        _p3: 0,
        _p0: 0,
        _p1: 0,
    })
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
    let params = params(x, tile, bias, pad, act, out_shape)?;
    let v = input_transform(s, x, tile, &params)?;
    let m = matmul(s, u, &v, false, false)?; // [alpha^2, Cop, T]
    drop(v);
    let epilogue = (bias.unwrap_or(x), residual, act);
    output_transform(s, &m, tile, &params, epilogue, out_shape)
}

/// The fused F(4x4, 3x3) conv (`shaders/winograd_fused.wgsl`): one dispatch, no scratch, for
/// `u` from [`fused_weight`]. Same contract as [`conv2d`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn conv2d_fused(
    s: &mut Stream,
    x: &Tensor,
    u: &FusedWeight,
    bias: Option<&Tensor>,
    pad: [usize; 2],
    residual: Option<&Tensor>,
    act: Act,
    out_shape: [usize; 4],
) -> Result<Tensor> {
    let params = params(x, Tile::F4, bias, pad, act, out_shape)?;
    let co = out_shape[1];
    let sg = s.gpu().subgroups && !plain_loads_forced();
    let cpu = s.gpu().info.device_type == wgpu::DeviceType::Cpu;
    let cob = channels_per_invocation(co, sg, cpu);
    let texture = u
        .texture
        .as_ref()
        .filter(|_| sg && !buffer_weights_forced());
    let loads = if texture.is_some() { 2 } else { sg as usize };
    // Rows of four outputs are aligned vec4s when the output width is a multiple of 4, and the
    // middle four columns of each input patch row when the input's is and the left padding 1.
    let vec4_out = out_shape[3].is_multiple_of(4);
    let aligned = vec4_out && x.shape()[3].is_multiple_of(4) && pad[1] == 1;
    let lanes = aligned && loads > 0 && lane_rows(s.gpu(), out_shape[3]);
    let shader = if lanes {
        FUSED_LANES[loads - 1]
    } else {
        FUSED[loads][if aligned { 2 } else { vec4_out as usize }]
    };
    let ci = x.shape()[1];
    let cpi = if cpu && ci.is_multiple_of(4) && !simple_steps_forced() {
        4
    } else {
        1
    };
    let out = s
        .gpu()
        .alloc("conv2d (winograd fused)", &out_shape, DType::F32)?;
    let mut grid = grid_1d(params.tiles as usize, WG);
    grid[2] = co.div_ceil(cob) as u32;
    let weights = texture.map_or(Bind::Tensor(&u.buffer), Bind::Texture);
    let mut bound = vec![
        // The lane-exchange rows read only the vec4 view.
        if lanes { Bind::Unused } else { Bind::Tensor(x) },
        weights,
        Bind::Tensor(bias.unwrap_or(x)),
        Bind::Tensor(residual.unwrap_or(x)),
        Bind::Tensor(&out),
    ];
    if aligned {
        bound.push(Bind::Tensor(x)); // binding 6: the input's vec4 view
    }
    s.dispatch_bound(
        shader,
        "fused4",
        &[
            ("WG", WG as f64),
            ("COB", cob as f64),
            act_const(act),
            res_const(residual.is_some()),
            ("CPI", cpi as f64),
        ],
        bytes_of(&params),
        &bound,
        grid,
    )?;
    Ok(out)
}

/// The fused kernel's output channels per invocation (its `COB`). All of them share the
/// patch's loads and transform, which dominate on a CPU adapter (lavapipe pays per lane for
/// each storage load), so there 16 channels where Co (rounded up to 8) allows: at batch 64 on
/// ResNet-20's shapes they ran about 1.2x faster than 8, although their accumulators (36 floats
/// a channel) spill. 32 and 64 ran faster again but took 14 s and 51 s to compile on lavapipe,
/// against 2 s for 8 and 5 s for 16 (see README). Elsewhere 8, which stays in registers; the
/// subgroup form broadcasts a block's weights from 8 lanes, so it takes at least 8.
pub(crate) fn channels_per_invocation(co: usize, subgroups: bool, cpu: bool) -> usize {
    if cpu && co.next_multiple_of(8).is_multiple_of(16) {
        16
    } else if subgroups {
        8
    } else {
        co.min(8)
    }
}

/// Whether the fused kernel's aligned rows can take their edge columns from the neighbouring
/// lanes (`winograd_row6_lanes.wgsl`) at output width `ow`: on CPU adapters whose subgroups are
/// exactly 8 lanes of consecutive invocations (lavapipe), where the tiles of an output row
/// (`ow / 4` rounded up) divide 8, so that every subgroup holds whole rows of tiles.
pub(crate) fn lane_rows(gpu: &Gpu, ow: usize) -> bool {
    let i = &gpu.info;
    gpu.subgroups
        && i.device_type == wgpu::DeviceType::Cpu
        && (i.subgroup_min_size, i.subgroup_max_size) == (8, 8)
        && 8 % ow.div_ceil(4) == 0
        && !simple_steps_forced()
}

/// Tests set `tests::NO_SUBGROUPS` to run the conv kernels' plain-load forms.
#[cfg(test)]
pub(crate) fn plain_loads_forced() -> bool {
    tests::NO_SUBGROUPS.with(|f| f.get())
}

#[cfg(not(test))]
pub(crate) fn plain_loads_forced() -> bool {
    false
}

/// Tests set `tests::NO_TEXTURE` to run the fused kernel's subgroup form on buffer weights.
#[cfg(test)]
fn buffer_weights_forced() -> bool {
    tests::NO_TEXTURE.with(|f| f.get())
}

#[cfg(not(test))]
fn buffer_weights_forced() -> bool {
    false
}

/// Tests set `tests::SIMPLE_STEPS` to run the fused kernel's aligned rows where the lane
/// exchange applies, and one input channel per loop step where four would.
#[cfg(test)]
fn simple_steps_forced() -> bool {
    tests::SIMPLE_STEPS.with(|f| f.get())
}

#[cfg(not(test))]
fn simple_steps_forced() -> bool {
    false
}

/// The input transform's dispatch: V `[alpha^2][Ci][T rounded up to 4]`.
pub(crate) fn input_transform(
    s: &mut Stream,
    x: &Tensor,
    tile: Tile,
    p: &Params,
) -> Result<Tensor> {
    let al = tile.alpha();
    let (ci, tiles_p) = (p.ci as usize, p.tiles_p as usize);
    let v = s
        .gpu()
        .alloc("conv2d (winograd)", &[al * al, ci, tiles_p], DType::F32)?;
    s.dispatch(
        INPUT,
        if tile == Tile::F2 { "input2" } else { "input4" },
        &[("WG", WG as f64)],
        bytes_of(p),
        &[x, &v],
        grid_1d(ci * tiles_p, WG),
    )?;
    Ok(v)
}

/// The output transform's dispatch with the epilogue `(b, r, act)`: the bias (any tensor where
/// `p` says there is none), the residual and the activation.
fn output_transform(
    s: &mut Stream,
    m: &Tensor,
    tile: Tile,
    p: &Params,
    (b, r, act): (&Tensor, Option<&Tensor>, Act),
    out_shape: [usize; 4],
) -> Result<Tensor> {
    let out = s.gpu().alloc("conv2d (winograd)", &out_shape, DType::F32)?;
    s.dispatch(
        OUTPUT,
        if tile == Tile::F2 {
            "output2"
        } else {
            "output4"
        },
        &[("WG", WG as f64), act_const(act), res_const(r.is_some())],
        bytes_of(p),
        &[m, b, r.unwrap_or(b), &out],
        grid_1d(p.co as usize * p.tiles as usize, WG),
    )?;
    Ok(out)
}

/// The rounding scale of a Winograd conv, for tests: per output, the result of the whole
/// algorithm with every matrix, weight and input replaced by its absolute value,
/// |A^T| [(|G| |g| |G^T|) . (|B^T| |d| |B|)] |A|, summed over input channels, plus |bias| and
/// |residual|. Each FP32 rounding in the transforms errs in proportion to the magnitudes it
/// combines, which span the output's whole input patch (Barabasz et al. 2020, "Error analysis
/// and improving the accuracy of Winograd convolution"), not only the output's own taps.
#[cfg(test)]
pub(crate) fn error_scale(
    tile: Tile,
    x: &crate::array::Array,
    w: &crate::array::Array,
    pad: [usize; 2],
    bias: Option<&crate::array::Array>,
    res: Option<&crate::array::Array>,
    out_shape: [usize; 4],
) -> Vec<f32> {
    type Mat = Vec<Vec<f64>>;
    // |L| M |R|^T for row-major L (p x q), M (q x q), R (r x q).
    fn sandwich(l: &[&[f64]], m: &Mat, r: &[&[f64]]) -> Mat {
        let lm: Mat = l
            .iter()
            .map(|li| {
                (0..m.len())
                    .map(|j| li.iter().zip(m).map(|(a, mr)| a.abs() * mr[j]).sum())
                    .collect()
            })
            .collect();
        lm.iter()
            .map(|row| {
                r.iter()
                    .map(|rj| row.iter().zip(*rj).map(|(a, b)| a * b.abs()).sum())
                    .collect()
            })
            .collect()
    }
    let (bt4, at4) = (
        BT4.each_ref().map(|r| &r[..]),
        AT4.each_ref().map(|r| &r[..]),
    );
    let (bt, at): (&[&[f64]], &[&[f64]]) = match tile {
        Tile::F2 => (
            &[
                &[1., 0., -1., 0.],
                &[0., 1., 1., 0.],
                &[0., -1., 1., 0.],
                &[0., 1., 0., -1.],
            ],
            &[&[1., 1., 1., 0.], &[0., 1., -1., -1.]],
        ),
        Tile::F4 => (&bt4, &at4),
    };
    let g: Vec<&[f64]> = tile.g().iter().map(|r| &r[..]).collect();
    let [n, ci, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
    let [_, co, oh, ow] = out_shape;
    let (m, al) = (tile.m(), tile.alpha());
    // |G| |g| |G^T| as G (3x3 padded to alpha columns of the sandwich) needs a 3x3 middle.
    let gsand = |k: &[f32]| -> Mat {
        let k: Mat = (0..3)
            .map(|i| (0..3).map(|j| k[i * 3 + j].abs() as f64).collect())
            .collect();
        let gk: Mat = g
            .iter()
            .map(|gi| {
                (0..3)
                    .map(|j| (0..3).map(|t| gi[t].abs() * k[t][j]).sum())
                    .collect()
            })
            .collect();
        gk.iter()
            .map(|row| {
                g.iter()
                    .map(|gj| (0..3).map(|t| row[t] * gj[t].abs()).sum())
                    .collect()
            })
            .collect()
    };
    let u: Vec<Mat> = (0..co * ci)
        .map(|oc| gsand(&w.data[oc * 9..][..9]))
        .collect();
    let mut out = vec![0.0f32; n * co * oh * ow];
    for b in 0..n {
        for ty in (0..oh).step_by(m) {
            for tx in (0..ow).step_by(m) {
                let v: Vec<Mat> = (0..ci)
                    .map(|c| {
                        let d: Mat = (0..al)
                            .map(|i| {
                                (0..al)
                                    .map(|j| {
                                        let (y, xx) = (
                                            (ty + i) as isize - pad[0] as isize,
                                            (tx + j) as isize - pad[1] as isize,
                                        );
                                        if y < 0 || xx < 0 || y >= h as isize || xx >= wd as isize {
                                            0.0
                                        } else {
                                            x.data
                                                [((b * ci + c) * h + y as usize) * wd + xx as usize]
                                                .abs()
                                                as f64
                                        }
                                    })
                                    .collect()
                            })
                            .collect();
                        sandwich(bt, &d, bt)
                    })
                    .collect();
                for o in 0..co {
                    let mut e = vec![vec![0.0f64; al]; al];
                    for (c, vc) in v.iter().enumerate() {
                        for (i, row) in e.iter_mut().enumerate() {
                            for (j, s) in row.iter_mut().enumerate() {
                                *s += u[o * ci + c][i][j] * vc[i][j];
                            }
                        }
                    }
                    let y = sandwich(at, &e, at);
                    for (i, yr) in y.iter().enumerate() {
                        for (j, &yv) in yr.iter().enumerate() {
                            let (oy, ox) = (ty + i, tx + j);
                            if oy >= oh || ox >= ow {
                                continue;
                            }
                            let k = ((b * co + o) * oh + oy) * ow + ox;
                            let extra = bias.map_or(0.0, |a| a.data[o].abs())
                                + res.map_or(0.0, |a| a.data[k].abs());
                            out[k] = (yv + extra as f64) as f32;
                        }
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    thread_local! {
        /// Set by tests to run the fused kernel's plain-load form on an adapter with subgroups.
        pub(crate) static NO_SUBGROUPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        /// Set by tests to run the fused kernel's subgroup form on buffer weights.
        pub(crate) static NO_TEXTURE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        pub(crate) static SIMPLE_STEPS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    use crate::array::Array;
    use std::time::{Duration, Instant};

    #[test]
    fn fused_channel_blocks() {
        // CPU adapters: 16 where Co rounded up to 8 is a multiple of 16, else 8.
        for (co, want) in [
            (16, 16),
            (12, 16),
            (32, 16),
            (48, 16),
            (20, 8),
            (8, 8),
            (3, 8),
        ] {
            assert_eq!(channels_per_invocation(co, true, true), want, "co {co}");
        }
        // Other adapters: 8, or Co below 8 without subgroups.
        assert_eq!(channels_per_invocation(64, true, false), 8);
        assert_eq!(channels_per_invocation(64, false, false), 8);
        assert_eq!(channels_per_invocation(5, false, false), 5);
        assert_eq!(channels_per_invocation(5, true, false), 8);
    }

    /// Per-stage time of one call (input transform, GEMM, output transform), best of `rounds`
    /// runs of `reps` calls of each stage alone, stages alternated.
    fn stage_times(g: &Gpu, n: usize, c: usize, hw: usize, tile: Tile) -> [Duration; 3] {
        let x = g
            .upload_f32(&[n, c, hw, hw], &Array::random(&[n, c, hw, hw], 1).data)
            .unwrap();
        let wd = Array::random(&[c, c, 3, 3], 2).data;
        let u = weight(g, tile, c, c, &wd).unwrap();
        let b = g.upload_f32(&[c], &Array::random(&[c], 3).data).unwrap();
        let tiles_h = hw.div_ceil(tile.m());
        let tiles = n * tiles_h * tiles_h;
        let p = Params {
            n: n as u32,
            ci: c as u32,
            h: hw as u32,
            w: hw as u32,
            co: c as u32,
            oh: hw as u32,
            ow: hw as u32,
            cop: c.next_multiple_of(4) as u32,
            pad_h: 1,
            pad_w: 1,
            tiles_h: tiles_h as u32,
            tiles_w: tiles_h as u32,
            tiles: tiles as u32,
            tiles_p: tiles.next_multiple_of(4) as u32,
            _p2: 0,
            slope: 0.0,
            has_bias: 1,
            _p3: 0,
            _p0: 0,
            _p1: 0,
        };
        let mut s = g.stream();
        let v = input_transform(&mut s, &x, tile, &p).unwrap();
        let m = matmul(&mut s, &u, &v, false, false).unwrap();
        s.submit();
        g.wait().unwrap();
        let reps = 3;
        let mut best = [Duration::MAX; 3];
        for _ in 0..4 {
            for (i, b_i) in best.iter_mut().enumerate() {
                let t = Instant::now();
                let mut s = g.stream();
                for _ in 0..reps {
                    match i {
                        0 => drop(input_transform(&mut s, &x, tile, &p).unwrap()),
                        1 => drop(matmul(&mut s, &u, &v, false, false).unwrap()),
                        _ => drop(
                            output_transform(
                                &mut s,
                                &m,
                                tile,
                                &p,
                                (&b, None, Act::Relu),
                                [n, c, hw, hw],
                            )
                            .unwrap(),
                        ),
                    }
                }
                s.submit();
                g.wait().unwrap();
                *b_i = (*b_i).min(t.elapsed() / reps);
            }
        }
        best
    }

    /// `cargo test --release --lib print_winograd_stages -- --ignored --nocapture`
    #[test]
    #[ignore = "timing, run by hand"]
    fn print_winograd_stages() {
        crate::ops::skip_without_gpu!();
        let g = crate::testing::gpu();
        for (c, hw) in [(64, 32), (16, 32), (32, 16), (64, 8)] {
            for tile in [Tile::F2, Tile::F4] {
                let [a, b, o] = stage_times(&g, 64, c, hw, tile).map(|d| d.as_secs_f64() * 1e3);
                println!(
                    "b64 {c}->{c} {hw}x{hw} {tile:?}: input {a:.2} ms, gemm {b:.2} ms, output {o:.2} ms"
                );
            }
        }
    }
}
