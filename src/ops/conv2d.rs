//! conv2d (NCHW) with fused bias, residual add and activation: one dispatch per ResNet block tail.
//!
//! Pieces: shader `shaders/conv2d.wgsl` with the `conv2d_f32` / `conv2d_vec4` load preludes;
//! backward `conv2d_grad`; CPU reference `cpu::conv`; tests below and in `tests/grad.rs`.

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
}

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
/// their Winograd transforms, F(2x2, 3x3) and F(4x4, 3x3) (see `winograd`), used where they
/// measure faster.
#[derive(Clone, Debug)]
pub struct ConvWeight {
    tensor: Tensor,
    shape: [usize; 4],
    groups: usize,
    winograd: Option<[Tensor; 3]>,
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
        Some([
            winograd::weight(gpu, Tile::F2, co, cig, data)?,
            winograd::weight(gpu, Tile::F4, co, cig, data)?,
            winograd::fused_weight(gpu, co, cig, data)?,
        ])
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
    act: u32,
    slope: f32,
    has_bias: u32,
    has_res: u32,
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
/// Where several kernel variants apply, the fastest for this shape and adapter runs (measured
/// at first use, see `conv_select`).
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
/// direct.
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

/// Measures the applicable variants on scratch inputs of this shape (zeros: the values do not
/// change the work) in a stream of their own, and returns the faster (cached per adapter).
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
            let hw = p.out_size(0, h, kh).unwrap_or(0) * p.out_size(1, wd, kw).unwrap_or(0);
            return Ok(conv_select::default_variant(gpu, ci, co, n, hw));
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
    conv_select::choose(gpu, &key, &candidates, |v| {
        if scratch.is_none() {
            let rs = match residual {
                Some(r) => Some(gpu.upload_f32(r.shape(), &vec![0.0; r.numel()])?),
                None => None,
            };
            scratch = Some((gpu.upload_f32(x.shape(), &vec![0.0; x.numel()])?, rs));
        }
        let (xs, rs) = scratch.as_ref().expect("scratch was just made");
        conv_select::wall(gpu, || {
            let mut s = gpu.stream();
            conv2d_blocked(&mut s, xs, w, bias, p, rs.as_ref(), act, blk, Some(v))?;
            s.submit();
            Ok(())
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
    if let Some(u) = w
        .winograd
        .as_ref()
        .filter(|_| p.stride == [1, 1] && p.undilated())
    {
        let v = match variant {
            Some(v) => v,
            None => pick_variant(s.gpu(), x, w, bias, p, residual, act, (tm4, tn4, wg))?,
        };
        let (tile, u) = match v {
            ConvVariant::Direct => (None, &u[0]),
            ConvVariant::Winograd2 => (Some(Tile::F2), &u[0]),
            ConvVariant::Winograd4 => (Some(Tile::F4), &u[1]),
            ConvVariant::Fused4 => {
                let (b, r) = (bias, residual);
                return winograd::conv2d_fused(s, x, &u[2], b, p.pad, r, act, out_shape);
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
    let rows = blocked && p.stride[1] <= 2 && p.dilation[1] == 1 && kwp == 4;
    let pointwise =
        blocked && [kh, kw] == [1, 1] && p.stride == [1, 1] && p.pad == [0, 0] && (h * wd) % 4 == 0;
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
    } else {
        let tp = pixels.div_ceil(4);
        ("direct", tp, 0, grid_1d(tp * co, wg))
    };
    let (kind, slope) = act.code();
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
        act: kind,
        slope,
        has_bias: bias.is_some() as u32,
        has_res: residual.is_some() as u32,
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
    let sg = s.gpu().subgroups && entry != "direct" && tm4 == 4 && wg % 8 == 0;
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
        ("WG", wg as f64),
        ("SW", p.stride[1] as f64),
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
mod tests {
    use super::*;
    use crate::array::Array;
    use crate::cpu;
    use crate::testing::gpu;
    use proptest::prelude::*;

    const ACTS: [Act; 6] = [
        Act::Identity,
        Act::Relu,
        Act::Relu6,
        Act::LeakyRelu(0.1),
        Act::Tanh,
        Act::Sigmoid,
    ];

    /// Runs one conv on the GPU with register block `blk` (direct kernels) and compares it to
    /// the CPU reference: the max relative error (see `Array::max_rel_err`).
    #[allow(clippy::too_many_arguments)]
    fn check(
        xs: [usize; 4],
        ws: [usize; 4],
        p: Conv2dParams,
        bias: bool,
        res: bool,
        act: Act,
        blk: (u32, u32, u32),
        seed: u64,
    ) -> f32 {
        let case = (xs, ws, p, bias, res, act);
        run(case, blk, ConvVariant::Direct, seed).0
    }

    /// (x shape, weight shape, params, bias, residual, activation)
    type Conv = ([usize; 4], [usize; 4], Conv2dParams, bool, bool, Act);

    /// Runs `variant` and returns (max relative error, max error scaled by the sum of |terms|).
    /// The scaled error is |gpu - cpu| / (sum |x w| + |bias| + |residual|) per output: FP32
    /// rounding grows with that sum, not with the result, which can cancel to near zero. The
    /// activations are 1-Lipschitz, so the bound carries through them.
    fn run(
        (xs, ws, p, bias, res, act): Conv,
        blk: (u32, u32, u32),
        variant: ConvVariant,
        seed: u64,
    ) -> (f32, f32) {
        let g = gpu();
        let x = Array::random(&xs, seed);
        let w = Array::random(&ws, seed + 1);
        let b = Array::random(&[ws[0]], seed + 2);
        let (oh, ow) = (
            p.out_size(0, xs[2], ws[2]).unwrap(),
            p.out_size(1, xs[3], ws[3]).unwrap(),
        );
        let r = Array::random(&[xs[0], ws[0], oh, ow], seed + 3);
        let want = cpu::conv::conv2d(&x, &w, bias.then_some(&b), &p, res.then_some(&r), act);
        let abs = |a: &Array| Array::new(&a.shape, a.data.iter().map(|v| v.abs()).collect());
        let (ab, ar) = (abs(&b), abs(&r));
        let scale = cpu::conv::conv2d(
            &abs(&x),
            &abs(&w),
            bias.then_some(&ab),
            &p,
            res.then_some(&ar),
            Act::Identity,
        );
        // Winograd's rounding follows the magnitudes of each output's whole input patch.
        let tile = match variant {
            ConvVariant::Winograd2 => Some(Tile::F2),
            ConvVariant::Winograd4 | ConvVariant::Fused4 => Some(Tile::F4),
            ConvVariant::Direct => None,
        }
        .filter(|_| winograd_applies(&ws, &p));
        let scale = match tile {
            Some(t) => {
                let out = [xs[0], ws[0], oh, ow];
                let (bb, rr) = (bias.then_some(&b), res.then_some(&r));
                Array::new(
                    &scale.shape,
                    winograd::error_scale(t, &x, &w, p.pad, bb, rr, out),
                )
            }
            None => scale,
        };
        let xt = g.upload_f32(&xs, &x.data).unwrap();
        let wt = prepare_conv_weight(&g, &ws, &w.data, p.groups).unwrap();
        let bt = g.upload_f32(&b.shape, &b.data).unwrap();
        let rt = g.upload_f32(&r.shape, &r.data).unwrap();
        let mut s = g.stream();
        let y = conv2d_blocked(
            &mut s,
            &xt,
            &wt,
            bias.then_some(&bt),
            &p,
            res.then_some(&rt),
            act,
            blk,
            Some(variant),
        )
        .unwrap();
        // Winograd is three dispatches (transform, GEMM, transform), fused one: it really ran.
        let fused = variant == ConvVariant::Fused4;
        assert_eq!(s.dispatches(), if tile.is_some() && !fused { 3 } else { 1 });
        s.submit();
        assert_eq!(y.shape(), &want.shape[..]);
        let got = Array::new(&want.shape, g.read_f32(&y).unwrap());
        let scaled = got
            .data
            .iter()
            .zip(&want.data)
            .zip(&scale.data)
            .map(|((a, b), s)| (a - b).abs() / s.max(1e-6))
            .fold(0.0, f32::max);
        eprintln!("SCALED {variant:?} {xs:?} {ws:?} {scaled:e}");
        (got.max_rel_err(&want.data), scaled)
    }

    fn winograd_applies(ws: &[usize; 4], p: &Conv2dParams) -> bool {
        ws[2..] == [3, 3] && p.groups == 1 && p.stride == [1, 1] && p.undilated()
    }

    /// Tolerance on the scaled error: ~67 FP32 roundings (2^-24 each). The direct kernels
    /// measured at most 2.7e-7 on `winograd_matches_cpu`'s cases (sums of up to 9 * 64 terms):
    /// a 15x margin. A wrong tap, sign or tile offset errs by about one term, at least 1/576 of
    /// the scale.
    const WINOGRAD_TOL: f32 = 4e-6;

    /// Winograd's error is scaled by `winograd::error_scale` (the whole patch through the
    /// absolute transforms), which is larger than the direct scale, so its bound is tighter:
    /// F(2x2, 3x3) measured at most 7e-8 and F(4x4, 3x3) 2e-8 on the same cases and the
    /// proptest's, a 14x margin; changing one output coefficient from 8 to 8.0001 fails it.
    fn tolerance(v: ConvVariant) -> f32 {
        match v {
            ConvVariant::Direct => WINOGRAD_TOL,
            _ => 1e-6,
        }
    }
    const WINOGRAD: [ConvVariant; 3] = [
        ConvVariant::Winograd2,
        ConvVariant::Winograd4,
        ConvVariant::Fused4,
    ];

    const CPU_BLOCK: (u32, u32, u32) = (4, 4, 16);
    const GPU_BLOCK: (u32, u32, u32) = (2, 2, 64);

    /// (x shape, weight shape, stride, pad, groups, bias, residual)
    type Case = ([usize; 4], [usize; 4], usize, usize, usize, bool, bool);

    #[test]
    fn fixed_shapes_match_cpu() {
        crate::ops::skip_without_gpu!();
        let cases: &[Case] = &[
            ([2, 3, 8, 8], [16, 3, 3, 3], 1, 1, 1, true, false), // stem
            ([2, 16, 9, 7], [20, 16, 3, 3], 2, 1, 1, true, true), // odd Co, strided
            ([1, 8, 6, 6], [8, 8, 1, 1], 1, 0, 1, false, true),  // pointwise + residual
            ([2, 4, 5, 5], [6, 4, 4, 4], 2, 1, 1, true, false),  // GAN-style 4x4 kernel
            ([1, 16, 6, 5], [32, 8, 3, 3], 1, 2, 2, true, true), // grouped GEMM
            ([2, 8, 7, 7], [8, 1, 3, 3], 1, 1, 8, true, true),   // depthwise
            ([1, 6, 5, 6], [12, 1, 3, 3], 2, 0, 6, false, false), // depthwise x2 multiplier
            ([1, 4, 5, 5], [4, 2, 3, 3], 1, 1, 2, true, false),  // few channels per group
            ([1, 3, 7, 9], [5, 3, 5, 5], 1, 2, 1, true, true),   // 5x5: gather path
            ([2, 5, 6, 11], [9, 5, 2, 2], 1, 0, 1, false, true), // 2x2 padded to 4 taps
            ([1, 8, 4, 21], [12, 8, 4, 4], 1, 2, 1, true, false), // wide rows, pad 2
            ([1, 4, 6, 12], [8, 4, 3, 3], 1, 0, 1, true, true),  // aligned rows, pad 0
            ([2, 6, 5, 8], [8, 6, 4, 4], 1, 2, 1, false, false), // aligned rows, pad 2
            ([3, 6, 2, 6], [12, 6, 1, 1], 1, 0, 1, true, true),  // pointwise, tiles span images
            ([1, 16, 4, 4], [16, 8, 1, 1], 1, 0, 2, false, true), // grouped pointwise
            ([2, 16, 4, 6], [20, 16, 1, 1], 1, 0, 1, true, true), // pointwise, 16-channel blocks
            ([2, 8, 7, 8], [32, 8, 3, 3], 1, 1, 1, true, true),  // rows, two channel blocks
            ([2, 16, 32, 32], [32, 16, 3, 3], 2, 1, 1, true, true), // stride-2 rows (ResNet)
            ([1, 8, 9, 30], [12, 8, 3, 3], 2, 1, 1, true, false), // stride-2 rows, any width
            ([1, 5, 6, 36], [8, 5, 4, 4], 2, 2, 1, false, true), // stride-2 rows, 4 taps, pad 2
            ([1, 4, 5, 20], [8, 4, 3, 3], 2, 0, 1, true, true),  // stride-2 rows, pad 0
            ([1, 4, 7, 28], [8, 4, 3, 3], 2, 3, 1, true, false), // stride-2 rows, pad 3
        ];
        // CPU_BLOCK takes the weight-broadcast form on adapters with subgroups (16-channel
        // blocks); `NO_SUBGROUPS` runs it with per-lane loads as well.
        for (i, &(xs, ws, st, pad, groups, b, r)) in cases.iter().enumerate() {
            for (blk, plain) in [
                (CPU_BLOCK, false),
                (CPU_BLOCK, true),
                (GPU_BLOCK, false),
                ((1, 1, 8), false),
            ] {
                winograd::tests::NO_SUBGROUPS.with(|f| f.set(plain));
                let act = ACTS[i % ACTS.len()];
                let e = check(
                    xs,
                    ws,
                    Conv2dParams::new(st, pad, groups),
                    b,
                    r,
                    act,
                    blk,
                    i as u64,
                );
                winograd::tests::NO_SUBGROUPS.with(|f| f.set(false));
                assert!(
                    e < 1e-4,
                    "case {i} {xs:?} {ws:?} block {blk:?} plain {plain}: err {e}"
                );
            }
        }
    }

    #[test]
    fn non_square_kernel_stride_and_padding() {
        crate::ops::skip_without_gpu!();
        let p = Conv2dParams {
            stride: [2, 1],
            pad: [0, 2],
            pad_end: [0, 2],
            dilation: [1, 1],
            groups: 1,
        };
        let e = check(
            [2, 5, 9, 6],
            [7, 5, 1, 4],
            p,
            true,
            true,
            Act::Relu,
            CPU_BLOCK,
            9,
        );
        assert!(e < 1e-4, "err {e}");
        let p = Conv2dParams {
            stride: [2, 1],
            pad: [1, 3],
            pad_end: [1, 3],
            dilation: [1, 1],
            groups: 1,
        };
        let e = check(
            [1, 5, 7, 8],
            [16, 5, 2, 3],
            p,
            true,
            false,
            Act::Sigmoid,
            CPU_BLOCK,
            10,
        );
        assert!(e < 1e-4, "err {e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes_match_cpu(
            n in 1usize..3, cig in 1usize..5, cog in 1usize..10, gsel in 0usize..3,
            h in 1usize..9, w in 1usize..9, kh in prop::sample::select(vec![1usize, 3, 4]),
            kw in prop::sample::select(vec![1usize, 3, 4]), sh in 1usize..3, sw in 1usize..3,
            ph in 0usize..3, pw in 0usize..3, eh in 0usize..3, ew in 0usize..3, bias: bool,
            res: bool, ai in 0usize..6, seed in 0u64..1000,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            // groups 1, 2, or depthwise (one input channel per group)
            let (groups, cig) = match gsel { 0 => (1, cig), 1 => (2, cig), _ => (cig * 2, 1) };
            // End pads differ from begin pads (ONNX asymmetric / SAME padding).
            let p = Conv2dParams { stride: [sh, sw], pad: [ph, pw], pad_end: [eh, ew], dilation: [1, 1], groups };
            prop_assume!(p.out_size(0, h, kh).is_some() && p.out_size(1, w, kw).is_some());
            let (ci, co) = (cig * groups, cog * groups);
            let e = check([n, ci, h, w], [co, cig, kh, kw], p, bias, res, ACTS[ai], CPU_BLOCK, seed);
            prop_assert!(e < 1e-4, "err {}", e);
        }

        /// Dilation per axis with groups, strides and pads, on every kernel path (`rows` takes
        /// height dilation, `gemm` and `direct` any) and both register blocks.
        #[test]
        fn dilated_shapes_match_cpu(
            n in 1usize..3, cig in 1usize..5, cog in 1usize..10, gsel in 0usize..3,
            h in 1usize..12, w in 1usize..12, kh in prop::sample::select(vec![1usize, 2, 3]),
            kw in prop::sample::select(vec![1usize, 3, 4]), sh in 1usize..3, sw in 1usize..3,
            dh in 1usize..4, dw in 1usize..4, ph in 0usize..4, pw in 0usize..4,
            eh in 0usize..4, ew in 0usize..4, bias: bool, res: bool, ai in 0usize..6,
            gpu_block: bool, seed in 0u64..1000,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            let (groups, cig) = match gsel { 0 => (1, cig), 1 => (2, cig), _ => (cig * 2, 1) };
            let p = Conv2dParams { stride: [sh, sw], pad: [ph, pw], pad_end: [eh, ew], dilation: [dh, dw], groups };
            prop_assume!(p.out_size(0, h, kh).is_some() && p.out_size(1, w, kw).is_some());
            let (ci, co) = (cig * groups, cog * groups);
            let blk = if gpu_block { GPU_BLOCK } else { CPU_BLOCK };
            let e = check([n, ci, h, w], [co, cig, kh, kw], p, bias, res, ACTS[ai], blk, seed);
            prop_assert!(e < 1e-4, "err {}", e);
        }
    }

    /// Asymmetric padding means the input zero-padded by [top, left, bottom, right] then an
    /// unpadded conv: checked on the CPU reference and the GPU (all variants) against that.
    #[test]
    fn asymmetric_pads_are_explicit_zero_padding() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let pads = Pads::from_onnx([0, 2, 1, 0]);
        let x = Array::random(&[1, 3, 6, 5], 3);
        let w = Array::random(&[4, 3, 3, 3], 4);
        let [t, l, b, r] = pads.onnx();
        let (h, wd) = (6 + t + b, 5 + l + r);
        let mut xp = Array::zeros(&[1, 3, h, wd]);
        for c in 0..3 {
            for y in 0..6 {
                for i in 0..5 {
                    xp.data[(c * h + y + t) * wd + i + l] = x.data[(c * 6 + y) * 5 + i];
                }
            }
        }
        let want = cpu::conv::conv2d(&xp, &w, None, &Conv2dParams::new(2, 0, 1), None, Act::Relu);
        let p = Conv2dParams::new(2, 0, 1).padded(pads);
        let got = cpu::conv::conv2d(&x, &w, None, &p, None, Act::Relu);
        assert_eq!(want.shape, [1, 4, 3, 3]);
        assert_eq!(got.shape, want.shape);
        assert!(got.max_rel_err(&want.data) < 1e-6);
        let xt = g.upload_f32(&x.shape, &x.data).unwrap();
        let wt = prepare_conv_weight(&g, &w.shape, &w.data, 1).unwrap();
        for v in [
            ConvVariant::Direct,
            ConvVariant::Winograd2,
            ConvVariant::Winograd4,
        ] {
            let p1 = p.padded(Pads {
                begin: [1, 1],
                end: [0, 2],
            }); // stride-1 for Winograd
            let p1 = Conv2dParams {
                stride: [1, 1],
                ..p1
            };
            let want1 = cpu::conv::conv2d(&x, &w, None, &p1, None, Act::Relu);
            assert_eq!(want1.shape, [1, 4, 5, 6]);
            for (pp, want) in [(p, &want), (p1, &want1)] {
                let mut s = g.stream();
                let y = conv2d_variant(&mut s, &xt, &wt, None, &pp, None, Act::Relu, Some(v));
                let y = y.unwrap();
                s.submit();
                assert_eq!(y.shape(), &want.shape[..]);
                let e = Array::new(&want.shape, g.read_f32(&y).unwrap()).max_rel_err(&want.data);
                assert!(e < 1e-4, "{v:?} {pp:?}: err {e}");
            }
        }
    }

    /// The window of a dilated kernel: (k - 1) * d + 1 input pixels.
    #[test]
    fn dilation_widens_the_window() {
        let p = Conv2dParams::new(1, 0, 1).dilated([2, 3]);
        assert_eq!(p.out_size(0, 7, 3), Some(3)); // span 5
        assert_eq!(p.out_size(1, 7, 3), Some(1)); // span 7
        assert_eq!(p.out_size(1, 6, 3), None);
        assert_eq!(
            Conv2dParams::new(2, 2, 1).dilated([2, 2]).out_size(0, 8, 3),
            Some(4)
        );
        assert_eq!(p.dilated([0, 1]).out_size(0, 7, 3), None);
    }

    #[test]
    fn winograd_matches_cpu() {
        crate::ops::skip_without_gpu!();
        // (x shape, Co, pad, bias, residual): odd sizes leave partial 2x2 tiles.
        let cases: &[([usize; 4], usize, usize, bool, bool)] = &[
            ([2, 3, 8, 8], 16, 1, true, false),   // stem
            ([2, 16, 9, 7], 20, 1, true, true),   // odd H, W and Co
            ([1, 5, 6, 5], 7, 0, false, true),    // no padding
            ([1, 4, 3, 4], 4, 2, true, false),    // padding 2: taps entirely outside
            ([3, 8, 1, 1], 8, 1, true, true),     // 1x1 input
            ([1, 1, 5, 5], 3, 1, false, false),   // one input channel
            ([4, 16, 32, 32], 16, 1, true, true), // ResNet-20 stage 1
            ([2, 32, 16, 16], 32, 1, true, true), // stage 2
            ([3, 64, 8, 8], 64, 1, true, false),  // stage 3
        ];
        for (i, &(xs, co, pad, b, r)) in cases.iter().enumerate() {
            let act = ACTS[i % ACTS.len()];
            let conv = (
                xs,
                [co, xs[1], 3, 3],
                Conv2dParams::new(1, pad, 1),
                b,
                r,
                act,
            );
            for v in WINOGRAD {
                let (rel, scaled) = run(conv, GPU_BLOCK, v, i as u64);
                assert!(
                    scaled < tolerance(v),
                    "{v:?} case {i} {xs:?} co {co} pad {pad} {act:?}: scaled err {scaled} (rel {rel})"
                );
            }
            // The direct kernels meet the same bound on the same inputs.
            let (_, direct) = run(conv, CPU_BLOCK, ConvVariant::Direct, i as u64);
            assert!(
                direct < WINOGRAD_TOL,
                "case {i}: direct scaled err {direct}"
            );
        }
    }

    /// The fused kernel's plain-load form (adapters without subgroups) on the same cases as
    /// `winograd_matches_cpu` with few and many channels, odd Co and partial tiles.
    #[test]
    fn fused_without_subgroups_matches_cpu() {
        crate::ops::skip_without_gpu!();
        winograd::tests::NO_SUBGROUPS.with(|f| f.set(true));
        let cases: &[([usize; 4], usize, usize, bool, bool)] = &[
            ([2, 3, 8, 8], 16, 1, true, false),
            ([2, 16, 9, 7], 20, 1, true, true),
            ([1, 5, 6, 5], 7, 0, false, true),
            ([1, 4, 3, 4], 3, 2, true, false),
            ([2, 32, 16, 16], 32, 1, true, true),
        ];
        for (i, &(xs, co, pad, b, r)) in cases.iter().enumerate() {
            let act = ACTS[i % ACTS.len()];
            let conv = (
                xs,
                [co, xs[1], 3, 3],
                Conv2dParams::new(1, pad, 1),
                b,
                r,
                act,
            );
            let (rel, scaled) = run(conv, GPU_BLOCK, ConvVariant::Fused4, i as u64);
            let tol = tolerance(ConvVariant::Fused4);
            assert!(
                scaled < tol,
                "case {i} {xs:?} co {co}: scaled err {scaled} (rel {rel})"
            );
        }
        winograd::tests::NO_SUBGROUPS.with(|f| f.set(false));
    }

    /// Forcing Winograd on a conv it does not serve runs the direct kernel (one dispatch, checked
    /// in `run`) and still matches the CPU.
    #[test]
    fn winograd_falls_back_where_it_does_not_apply() {
        crate::ops::skip_without_gpu!();
        let cases: [Conv; 4] = [
            (
                [1, 4, 9, 9],
                [8, 4, 3, 3],
                Conv2dParams::new(1, 2, 1).dilated([2, 2]),
                true,
                false,
                Act::Relu,
            ),
            (
                [1, 4, 7, 7],
                [8, 4, 3, 3],
                Conv2dParams::new(2, 1, 1),
                true,
                false,
                Act::Relu,
            ),
            (
                [1, 4, 7, 7],
                [8, 2, 3, 3],
                Conv2dParams::new(1, 1, 2),
                true,
                true,
                Act::Relu,
            ),
            (
                [1, 4, 7, 7],
                [8, 4, 1, 1],
                Conv2dParams::new(1, 0, 1),
                false,
                true,
                Act::Tanh,
            ),
        ];
        for (i, c) in cases.into_iter().enumerate() {
            for v in WINOGRAD {
                let (rel, _) = run(c, CPU_BLOCK, v, i as u64);
                assert!(rel < 1e-4, "{v:?} case {i}: err {rel}");
            }
        }
    }

    /// The automatic choice runs one of the variants and gives the same result.
    #[test]
    fn auto_variant_matches_cpu() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let (xs, ws) = ([2, 8, 6, 6], [8, 8, 3, 3]);
        let x = Array::random(&xs, 5);
        let w = Array::random(&ws, 6);
        let p = Conv2dParams::new(1, 1, 1);
        let want = cpu::conv::conv2d(&x, &w, None, &p, None, Act::Relu);
        let xt = g.upload_f32(&xs, &x.data).unwrap();
        let wt = prepare_conv_weight(&g, &ws, &w.data, 1).unwrap();
        let mut s = g.stream();
        let y = conv2d(&mut s, &xt, &wt, None, &p, None, Act::Relu).unwrap();
        s.submit();
        let e = Array::new(&want.shape, g.read_f32(&y).unwrap()).max_rel_err(&want.data);
        assert!(e < 1e-4, "err {e}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn winograd_random_shapes_match_cpu(
            n in 1usize..3, ci in 1usize..12, co in 1usize..12, h in 1usize..12,
            w in 1usize..12, pad in 0usize..3, eh in 0usize..3, ew in 0usize..3, bias: bool,
            res: bool, ai in 0usize..6, seed in 0u64..1000, vi in 0usize..3,
        ) {
            crate::ops::skip_without_gpu!(proptest);
            // Asymmetric end pads only change the output size: the tiles still index from `pad`.
            let p = Conv2dParams::new(1, pad, 1).padded(Pads { begin: [pad; 2], end: [eh, ew] });
            prop_assume!(p.out_size(0, h, 3).is_some() && p.out_size(1, w, 3).is_some());
            let conv = ([n, ci, h, w], [co, ci, 3, 3], p, bias, res, ACTS[ai]);
            let (_, e) = run(conv, GPU_BLOCK, WINOGRAD[vi], seed);
            prop_assert!(e < tolerance(WINOGRAD[vi]), "{:?}: scaled err {}", WINOGRAD[vi], e);
        }
    }

    #[test]
    fn shape_errors_name_the_op() {
        crate::ops::skip_without_gpu!();
        let g = gpu();
        let x = g.upload_f32(&[1, 3, 4, 4], &[0.0; 48]).unwrap();
        let w = prepare_conv_weight(&g, &[8, 4, 3, 3], &[0.0; 288], 1).unwrap();
        let p = Conv2dParams::new(1, 1, 1);
        let err = conv2d(&mut g.stream(), &x, &w, None, &p, None, Act::Relu)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("conv2d") && err.contains("[1, 3, 4, 4]") && err.contains("[8, 4, 3, 3]"),
            "{err}"
        );

        let err = prepare_conv_weight(&g, &[6, 1, 3, 3], &[0.0; 54], 4)
            .unwrap_err()
            .to_string();
        assert!(err.contains("groups 4"), "{err}");
        let w2 = prepare_conv_weight(&g, &[8, 1, 3, 3], &[0.0; 72], 2).unwrap();
        let err = conv2d(
            &mut g.stream(),
            &x,
            &w2,
            None,
            &Conv2dParams::new(1, 1, 2),
            None,
            Act::Identity,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("channels"), "{err}");

        let w5 = prepare_conv_weight(&g, &[2, 3, 5, 5], &[0.0; 150], 1).unwrap();
        let err = conv2d(
            &mut g.stream(),
            &x,
            &w5,
            None,
            &Conv2dParams::new(1, 0, 1),
            None,
            Act::Identity,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("zero-size output"), "{err}");

        let w3 = prepare_conv_weight(&g, &[8, 3, 3, 3], &[0.0; 216], 1).unwrap();
        let r = g.upload_f32(&[1, 8, 3, 3], &[0.0; 72]).unwrap();
        let err = conv2d(&mut g.stream(), &x, &w3, None, &p, Some(&r), Act::Identity)
            .unwrap_err()
            .to_string();
        assert!(err.contains("residual"), "{err}");
        let err = conv2d(
            &mut g.stream(),
            &x,
            &w3,
            None,
            &Conv2dParams::new(1, 1, 3),
            None,
            Act::Identity,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("prepared for 1"), "{err}");
    }
}
