//! conv2d (NCHW) with fused bias, residual add and activation: one dispatch per ResNet block tail.
//!
//! Pieces: shader `shaders/conv2d.wgsl` with the `conv2d_f32` / `conv2d_vec4` load preludes;
//! backward `conv2d_grad`; CPU reference `cpu::conv`; tests in `conv2d_tests.rs` and `tests/grad.rs`.

use super::conv_select::{self, ConvVariant};
use super::winograd::{self, Tile};
use super::{bytes_of, Act, Pads};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};

/// Stride, padding and dilation per axis ([h, w]) and channel groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: [usize; 2],
    /// Zero padding before the first row / column: the kernels index from it.
    pub pad: [usize; 2],
    /// Zero padding after the last row / column (equal to `pad` unless asymmetric): it only
    /// sets the output size, since taps past the input read zeros anyway.
    pub pad_end: [usize; 2],
    /// Spacing of the kernel taps (1: dense).
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: [1, 1],
            pad: [0, 0],
            pad_end: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }
}

impl Conv2dParams {
    pub fn new(stride: usize, pad: usize, groups: usize) -> Self {
        Conv2dParams {
            stride: [stride; 2],
            pad: [pad; 2],
            pad_end: [pad; 2],
            dilation: [1, 1],
            groups,
        }
    }

    /// The same conv with padding `pads` per side.
    pub fn padded(self, pads: Pads) -> Self {
        Conv2dParams {
            pad: pads.begin,
            pad_end: pads.end,
            ..self
        }
    }

    /// The padding per side.
    pub fn pads(&self) -> Pads {
        Pads {
            begin: self.pad,
            end: self.pad_end,
        }
    }

    /// The same conv with dilation `d` on both axes.
    pub fn dilated(self, d: [usize; 2]) -> Self {
        Conv2dParams {
            dilation: d,
            ..self
        }
    }

    /// The input extent of a `kernel`-tap window along one axis: (kernel - 1) * dilation + 1.
    pub fn span(&self, axis: usize, kernel: usize) -> usize {
        kernel.saturating_sub(1) * self.dilation[axis] + 1
    }

    /// Output size along one axis, or None when the kernel does not fit.
    pub fn out_size(&self, axis: usize, input: usize, kernel: usize) -> Option<usize> {
        let padded = input + self.pad[axis] + self.pad_end[axis];
        let span = self.span(axis, kernel);
        if self.stride[axis] == 0 || self.dilation[axis] == 0 || kernel == 0 || padded < span {
            return None;
        }
        Some((padded - span) / self.stride[axis] + 1)
    }

    /// Dense taps on both axes (what Winograd and the fast 1x1 paths need).
    pub fn undilated(&self) -> bool {
        self.dilation == [1, 1]
    }

    /// Whether a conv with these params and a `kernel` (`[KH, KW]`) has the Winograd forms:
    /// 3x3, stride 1, undilated, groups 1.
    pub fn takes_winograd(&self, kernel: [usize; 2]) -> bool {
        kernel == [3, 3] && self.groups == 1 && self.stride == [1, 1] && self.undilated()
    }
}

/// The fixed rule's variant (`conv_select::default_variant`) for a conv of `x_shape` `[N, Ci,
/// H, W]` to `co` channels with a `kernel` (`[KH, KW]`).
pub(crate) fn rule_variant(
    gpu: &Gpu,
    [n, ci, h, w]: [usize; 4],
    co: usize,
    [kh, kw]: [usize; 2],
    p: &Conv2dParams,
) -> ConvVariant {
    let hw = p.out_size(0, h, kh).unwrap_or(0) * p.out_size(1, w, kw).unwrap_or(0);
    conv_select::default_variant(gpu, ci, co, n, hw)
}

/// Workgroup size of the `depthwise` entry, which has no register block to size it by.
const DEPTHWISE_WG: u32 = 64;
/// Scalar input loads (any width) and aligned vec4 row loads (width a multiple of 4).
const F32: Shader = crate::shader!("conv2d_f32", "conv2d_f32", "conv2d_w_plain", "conv2d");
const VEC4: Shader = crate::shader!("conv2d_vec4", "conv2d_vec4", "conv2d_w_plain", "conv2d");
/// The same with weight tiles broadcast across subgroups (`shaders/conv2d_w_subgroup.wgsl`).
const F32_SUBGROUP: Shader = crate::shader!(
    "conv2d_f32_subgroup",
    "conv2d_f32",
    "conv2d_w_subgroup",
    "conv2d"
);
const VEC4_SUBGROUP: Shader = crate::shader!(
    "conv2d_vec4_subgroup",
    "conv2d_vec4",
    "conv2d_w_subgroup",
    "conv2d"
);

/// Conv weights in the kernels' layout, made once at model load by [`prepare_conv_weight`]:
/// `[groups][K][Co/groups rounded up to 4]` with row k = (ci * KH + kh) * KWP + kw, so that four
/// consecutive output channels of one tap are a single vec4 load. KWP pads 2- and 3-wide kernels
/// to 4 taps and K is rounded up to 4, with zero weights. 3x3 weights with groups 1 also keep
/// their Winograd transforms, F(2x2, 3x3) and F(4x4, 3x3) (see `winograd`), used where
/// `conv_select` picks them.
#[derive(Clone, Debug)]
pub struct ConvWeight {
    tensor: Tensor,
    shape: [usize; 4],
    groups: usize,
    winograd: Option<WinogradWeights>,
}

/// A 3x3 conv's Winograd weights: F(2x2, 3x3) and F(4x4, 3x3) for the 3-dispatch forms, and the
/// fused F(4x4, 3x3) kernel's.
#[derive(Clone, Debug)]
struct WinogradWeights {
    split: [Tensor; 2],
    fused: winograd::FusedWeight,
}

impl ConvWeight {
    /// The PyTorch shape `[Co, Ci/groups, KH, KW]` it was made from.
    pub fn shape(&self) -> [usize; 4] {
        self.shape
    }
    pub fn groups(&self) -> usize {
        self.groups
    }
    pub fn tensor(&self) -> &Tensor {
        &self.tensor
    }
    /// Wraps a tensor already in the kernel layout (made on the GPU by `conv2d_grad`).
    pub(crate) fn from_layout(tensor: Tensor, shape: [usize; 4], groups: usize) -> Self {
        ConvWeight {
            tensor,
            shape,
            groups,
            winograd: None,
        }
    }
}

/// Uploads PyTorch-layout weights `[Co, Ci/groups, KH, KW]` (host data) for `groups` groups.
pub fn prepare_conv_weight(
    gpu: &Gpu,
    shape: &[usize],
    data: &[f32],
    groups: usize,
) -> Result<ConvWeight> {
    const OP: &str = "prepare_conv_weight";
    let &[co, cig, kh, kw] = shape else {
        return shape_err(
            OP,
            format!("weight must be [Co, Ci/groups, KH, KW], got {shape:?}"),
        );
    };
    if data.len() != shape.iter().product::<usize>() {
        return shape_err(OP, format!("{} values for shape {shape:?}", data.len()));
    }
    if groups == 0 || co % groups != 0 {
        return shape_err(
            OP,
            format!("groups {groups} must divide Co of weight {shape:?}"),
        );
    }
    let (cog, kwp) = (co / groups, taps_per_row(kw));
    let (cogp, kp) = (cog.next_multiple_of(4), padded_k(cig, kh, kw));
    let mut t = vec![0.0f32; groups * kp * cogp];
    for (i, &v) in data.iter().enumerate() {
        let (o, c, y, x) = (
            i / (cig * kh * kw),
            i / (kh * kw) % cig,
            i / kw % kh,
            i % kw,
        );
        t[((o / cog) * kp + (c * kh + y) * kwp + x) * cogp + o % cog] = v;
    }
    let winograd = if [kh, kw] == [3, 3] && groups == 1 {
        Some(WinogradWeights {
            split: [
                winograd::weight(gpu, Tile::F2, co, cig, data)?,
                winograd::weight(gpu, Tile::F4, co, cig, data)?,
            ],
            fused: winograd::fused_weight(gpu, co, cig, data)?,
        })
    } else {
        None
    };
    Ok(ConvWeight {
        tensor: gpu.upload_f32(&[groups, kp, cogp], &t)?,
        shape: [co, cig, kh, kw],
        groups,
        winograd,
    })
}

/// Weight taps per kernel row: 2- and 3-wide rows are padded to 4 for the `rows` kernel.
pub(crate) fn taps_per_row(kw: usize) -> usize {
    if kw == 2 || kw == 3 {
        4
    } else {
        kw
    }
}

/// Weight rows per group, a multiple of 4 (the kernels step four k at a time).
pub(crate) fn padded_k(cig: usize, kh: usize, kw: usize) -> usize {
    (cig * kh * taps_per_row(kw)).next_multiple_of(4)
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
    groups: u32,
    cig: u32,
    cog: u32,
    cogp: u32,
    pixels: u32,
    pad_h: i32,
    pad_w: i32,
    tiles_co: u32,
    tiles_px: u32,
    _p3: u32,
    slope: f32,
    has_bias: u32,
    _p4: u32,
    k: u32,
    kp: u32,
    tiles_row: u32,
    kh: u32,
    kw: u32,
    sh: u32,
    sw: u32,
    dh: u32,
    dw: u32,
    _pad: [u32; 3],
}

/// out = act(conv2d(x, w) + bias + residual) for x `[N, Ci, H, W]`; bias is `[Co]` and the
/// residual has the output's shape `[N, Co, OH, OW]`. `p.groups` must match the prepared weight.
/// Where several kernel variants apply, `conv_select` picks one: a fixed rule per kind of
/// adapter, or measured at first use with `SYNTHCAL_CONV=auto`.
pub fn conv2d(
    s: &mut Stream,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    residual: Option<&Tensor>,
    act: Act,
) -> Result<Tensor> {
    conv2d_variant(s, x, w, bias, p, residual, act, None)
}

/// [`conv2d`] with the kernel variant forced (`None`: chosen per shape). A variant that does not
/// apply to this conv (Winograd on a strided, dilated, grouped or non-3x3 conv) falls back to
/// direct, and a 3-dispatch Winograd form whose scratch would not fit to `fused4`
/// (`winograd::usable`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_variant(
    s: &mut Stream,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    residual: Option<&Tensor>,
    act: Act,
    variant: Option<ConvVariant>,
) -> Result<Tensor> {
    let blk = super::matmul::block(s.gpu());
    conv2d_blocked(s, x, w, bias, p, residual, act, blk, variant)
}

/// The variant `conv_select::mode()` asks for: a forced one, the fixed rule per kind of
/// adapter, or with `SYNTHCAL_CONV=auto` the faster on scratch inputs of this shape (zeros: the
/// values do not change the work), measured in a stream of its own and cached per adapter.
#[allow(clippy::too_many_arguments)]
fn pick_variant(
    gpu: &Gpu,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    residual: Option<&Tensor>,
    act: Act,
    blk: (u32, u32, u32),
) -> Result<ConvVariant> {
    match conv_select::mode() {
        conv_select::Mode::Forced(v) => return Ok(v),
        conv_select::Mode::Rule => {
            let &[n, ci, h, wd] = x.shape() else {
                return Ok(ConvVariant::Direct);
            };
            let [co, _, kh, kw] = w.shape;
            return Ok(rule_variant(gpu, [n, ci, h, wd], co, [kh, kw], p));
        }
        conv_select::Mode::Auto => {}
    }
    let key = format!(
        "conv {:?} x {:?} {p:?} bias {} res {}",
        x.shape(),
        w.shape,
        bias.is_some(),
        residual.is_some()
    );
    let candidates = [
        ConvVariant::Direct,
        ConvVariant::Winograd2,
        ConvVariant::Winograd4,
        ConvVariant::Fused4,
    ];
    // Uploaded only when a measurement runs: a cached choice must cost no scratch.
    let mut scratch: Option<(Tensor, Option<Tensor>)> = None;
    conv_select::choose(gpu, &key, &candidates, |v, calls| {
        if scratch.is_none() {
            let rs = match residual {
                Some(r) => Some(gpu.upload_f32(r.shape(), &vec![0.0; r.numel()])?),
                None => None,
            };
            scratch = Some((gpu.upload_f32(x.shape(), &vec![0.0; x.numel()])?, rs));
        }
        let (xs, rs) = scratch.as_ref().expect("scratch was just made");
        crate::gpu::gpu_time_each(gpu, calls, |s| {
            conv2d_blocked(s, xs, w, bias, p, rs.as_ref(), act, blk, Some(v)).map(drop)
        })
    })
}

#[allow(clippy::too_many_arguments)]
fn conv2d_blocked(
    s: &mut Stream,
    x: &Tensor,
    w: &ConvWeight,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
    residual: Option<&Tensor>,
    act: Act,
    (tm4, tn4, wg): (u32, u32, u32),
    variant: Option<ConvVariant>,
) -> Result<Tensor> {
    const OP: &str = "conv2d";
    let [n, ci, h, wd] = x.dims(OP)?;
    let [co, cig, kh, kw] = w.shape;
    if x.dtype() != DType::F32 {
        return shape_err(OP, format!("x must be f32, got {:?}", x.dtype()));
    }
    if p.groups != w.groups {
        return shape_err(
            OP,
            format!(
                "params have groups {} but the weight {:?} was prepared for {}",
                p.groups, w.shape, w.groups
            ),
        );
    }
    if ci != cig * p.groups {
        return shape_err(
            OP,
            format!(
                "x {:?} has {ci} channels but weight {:?} with groups {} expects {}",
                x.shape(),
                w.shape,
                p.groups,
                cig * p.groups
            ),
        );
    }
    let (Some(oh), Some(ow)) = (p.out_size(0, h, kh), p.out_size(1, wd, kw)) else {
        return shape_err(
            OP,
            format!(
                "zero-size output: x {:?}, kernel {kh}x{kw}, {p:?}",
                x.shape()
            ),
        );
    };
    let out_shape = [n, co, oh, ow];
    if let Some(b) = bias {
        if b.shape() != [co] || b.dtype() != DType::F32 {
            return shape_err(OP, format!("bias {:?} must be f32 [{co}]", b.shape()));
        }
    }
    if let Some(r) = residual {
        if r.shape() != out_shape || r.dtype() != DType::F32 {
            return shape_err(
                OP,
                format!("residual {:?} must be f32 {out_shape:?}", r.shape()),
            );
        }
    }
    // Winograd's transforms assume dense taps: dilated convs always take the direct kernels.
    if let Some(u) = w.winograd.as_ref().filter(|_| p.takes_winograd([kh, kw])) {
        let v = match variant {
            Some(v) => v,
            None => pick_variant(s.gpu(), x, w, bias, p, residual, act, (tm4, tn4, wg))?,
        };
        let v = winograd::usable(s.gpu(), v, n, [ci, co], [oh, ow]);
        let (tile, u) = match v {
            ConvVariant::Direct => (None, &u.split[0]),
            ConvVariant::Winograd2 => (Some(Tile::F2), &u.split[0]),
            ConvVariant::Winograd4 => (Some(Tile::F4), &u.split[1]),
            ConvVariant::Fused4 => {
                let (b, r) = (bias, residual);
                return winograd::conv2d_fused(s, x, &u.fused, b, p.pad, r, act, out_shape);
            }
        };
        if let Some(tile) = tile {
            return winograd::conv2d(s, x, tile, u, bias, p.pad, residual, act, out_shape);
        }
    }
    let out = s.gpu().alloc(OP, &out_shape, DType::F32)?;
    let cog = co / p.groups;
    let pixels = n * oh * ow;
    let kwp = taps_per_row(kw);
    // Channel blocking needs channels per group; depthwise-like convs take the direct kernel.
    let blocked = p.groups == 1 || cog >= 8;
    // `rows` slides one contiguous row window, so its taps must be adjacent (width dilation 1);
    // it takes width strides 1 and 2.
    // Output rows narrower than a tile's four outputs (a discriminator's 2x2 maps) would leave
    // lanes idle in every row; `gemm` tiles across rows and images instead (see README).
    let rows = blocked && p.stride[1] <= 2 && p.dilation[1] == 1 && kwp == 4 && ow >= 4;
    // A 1x1 conv's output is its input's size only without padding at either end.
    let pointwise = blocked
        && [kh, kw] == [1, 1]
        && p.stride == [1, 1]
        && p.pad == [0, 0]
        && p.pad_end == [0, 0]
        && (h * wd) % 4 == 0;
    let tm4 = tm4.min(cog.div_ceil(4) as u32);
    // Row tiles never straddle output rows, so narrow outputs get narrower tiles.
    let tn4 = if rows {
        tn4.min(ow.div_ceil(4) as u32)
    } else {
        tn4
    };
    let tile = 4 * tn4 as usize;
    let tiles_co = cog.div_ceil(4 * tm4 as usize);
    // Blocked kernels take their channel block from the workgroup's z index: uniform across
    // the workgroup, so lavapipe loads the weights once per workgroup instead of per lane.
    let (entry, tiles_px, tiles_row, grid) = if rows {
        let tp = n * oh * ow.div_ceil(tile);
        let mut grid = grid_1d(tp, wg);
        grid[2] = (tiles_co * p.groups) as u32;
        ("rows", tp, ow.div_ceil(tile), grid)
    } else if blocked {
        let tp = pixels.div_ceil(tile);
        let entry = if pointwise { "pointwise" } else { "gemm" };
        let mut grid = grid_1d(tp, wg);
        grid[2] = (tiles_co * p.groups) as u32;
        (entry, tp, 0, grid)
    } else if cig == 1 {
        let row = ow.div_ceil(4);
        (
            "depthwise",
            0,
            row,
            grid_1d(n * co * oh * row, DEPTHWISE_WG),
        )
    } else {
        let tp = pixels.div_ceil(4);
        ("direct", tp, 0, grid_1d(tp * co, wg))
    };
    let params = Params {
        n: n as u32,
        ci: ci as u32,
        h: h as u32,
        w: wd as u32,
        co: co as u32,
        oh: oh as u32,
        ow: ow as u32,
        groups: p.groups as u32,
        cig: cig as u32,
        cog: cog as u32,
        cogp: cog.next_multiple_of(4) as u32,
        pixels: pixels as u32,
        pad_h: p.pad[0] as i32,
        pad_w: p.pad[1] as i32,
        tiles_co: tiles_co as u32,
        tiles_px: tiles_px as u32,
        _p3: 0,
        slope: act.code().1,
        has_bias: bias.is_some() as u32,
        _p4: 0,
        k: (cig * kh * kwp) as u32,
        kp: padded_k(cig, kh, kw) as u32,
        tiles_row: tiles_row as u32,
        kh: kh as u32,
        kw: kw as u32,
        sh: p.stride[0] as u32,
        sw: p.stride[1] as u32,
        dh: p.dilation[0] as u32,
        dw: p.dilation[1] as u32,
        _pad: [0; 3],
    };
    // Aligned vec4 input loads serve `rows` and `pointwise`; the gathers stay on scalar loads.
    let (vec4, off) = if (rows && wd % 4 == 0) || pointwise {
        (true, (4 - p.pad[1] % 4) % 4)
    } else {
        (false, 0)
    };
    // Weight broadcasts need 16-channel blocks and whole subgroups in a workgroup.
    let sg = s.gpu().subgroups && blocked && tm4 == 4 && wg % 8 == 0;
    let sg = sg && !super::winograd::plain_loads_forced();
    let shader = match (vec4, sg) {
        (true, false) => VEC4,
        (false, false) => F32,
        (true, true) => VEC4_SUBGROUP,
        (false, true) => F32_SUBGROUP,
    };
    let consts = [
        ("OFF", off as f64),
        ("KWP", kwp as f64),
        ("THREE_TAPS", (kw == 3) as u32 as f64),
        ("TM4", tm4 as f64),
        ("TN4", tn4 as f64),
        (
            "WG",
            if entry == "depthwise" {
                DEPTHWISE_WG
            } else {
                wg
            } as f64,
        ),
        ("SW", p.stride[1] as f64),
        super::elementwise::act_const(act),
        super::elementwise::res_const(residual.is_some()),
    ];
    let (b, r) = (bias.unwrap_or(x), residual.unwrap_or(x));
    s.dispatch(
        shader,
        entry,
        &consts,
        bytes_of(&params),
        &[x, &w.tensor, b, r, &out],
        grid,
    )?;
    Ok(out)
}

#[cfg(test)]
#[path = "conv2d_tests.rs"]
mod tests;
