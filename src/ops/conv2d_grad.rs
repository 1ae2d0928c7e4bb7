//! conv2d for training: the kernel weight layout built on the GPU from PyTorch-layout weights
//! (they change every step), and the two gradients. The input gradient is a stride-1 conv of
//! the padded dy with the transposed, flipped weight, so it runs on the fast forward kernel
//! (a strided conv's as one conv per output phase, `conv2d_phases`; where that does not apply,
//! of the zero-inserted dy); the weight gradient has its own kernel, partial over image chunks,
//! or for large layers im2col and the matmul kernel. Stride-1 3x3 convs and their input
//! gradients run on the Winograd forms where inference's rule picks them (`winograd_train`).
//!
//! Pieces: shader `shaders/conv2d_grad.wgsl` plus the forward conv kernels; forward `conv2d`;
//! tests in `tests/grad.rs` (against exact f64 gradients).

use super::bytes_of;
use super::conv2d::{conv2d, padded_k, taps_per_row, Conv2dParams, ConvWeight};
use super::conv2d_phases::phases;
use super::conv_select::ConvVariant;
use super::pad2d::{pad2d, PadMode};
use super::winograd_train;
use super::{Act, Pads};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Shader, Stream, Tensor};

const SHADER: Shader = crate::shader!("conv2d_grad");

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
struct Params {
    co: u32,
    cig: u32,
    kh: u32,
    kw: u32,
    groups: u32,
    kp: u32,
    cogp: u32,
    kwp: u32,
    flip: u32,
    total: u32,
    n: u32,
    c: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    stride: u32,
    pad_lo: u32,
    zh: u32,
    zw: u32,
    chunk: u32,
    chunks: u32,
    oblocks: u32,
    tblocks: u32,
    dil: u32,
    skh: u32,
    skw: u32,
    ry: u32,
    rx: u32,
    step: u32,
    py: u32,
    px: u32,
    n0: u32,
    cols: u32,
    _pad: [u32; 2],
}

fn weight_dims(op: &'static str, w: &Tensor, groups: usize) -> Result<[usize; 4]> {
    let d = w.dims::<4>(op)?;
    if w.dtype() != DType::F32 || groups == 0 || d[0] % groups != 0 {
        return shape_err(op, format!("weight {:?} with groups {groups}", w.shape()));
    }
    Ok(d)
}

/// One of the shader's one-output-per-invocation entries (`p.total` outputs; workgroups of 256).
fn elementwise(s: &mut Stream, entry: &'static str, p: &Params, bind: &[&Tensor]) -> Result<()> {
    let grid = grid_1d(p.total as usize, 256);
    s.dispatch(SHADER, entry, &[], bytes_of(p), bind, grid)
}

/// Which taps of a PyTorch-layout kernel a transposed, flipped layout takes: rows
/// `r[0] + step * j` and columns `r[1] + step * j` of a `src`-sized kernel (all of them: r = 0,
/// step 1). The input gradient's kernel.
#[derive(Clone, Copy)]
struct Flip {
    src: [usize; 2],
    r: [usize; 2],
    step: usize,
}

fn layout(
    s: &mut Stream,
    w: &Tensor,
    target: [usize; 4],
    groups: usize,
    flip: Option<Flip>,
) -> Result<ConvWeight> {
    let [co, cig, kh, kw] = target;
    let cogp = (co / groups).next_multiple_of(4);
    let kp = padded_k(cig, kh, kw);
    let total = groups * kp * cogp;
    let mut p = Params {
        co: co as u32,
        cig: cig as u32,
        kh: kh as u32,
        kw: kw as u32,
        groups: groups as u32,
        kp: kp as u32,
        cogp: cogp as u32,
        kwp: taps_per_row(kw) as u32,
        flip: flip.is_some() as u32,
        total: total as u32,
        ..Default::default()
    };
    if let Some(f) = flip {
        (p.skh, p.skw) = (f.src[0] as u32, f.src[1] as u32);
        (p.ry, p.rx, p.step) = (f.r[0] as u32, f.r[1] as u32, f.step as u32);
    }
    let t = s
        .gpu()
        .alloc("conv_weight_layout", &[groups, kp, cogp], DType::F32)?;
    elementwise(s, "prep_weight", &p, &[w, &t])?;
    Ok(ConvWeight::from_layout(t, target, groups))
}

/// The forward kernels' layout of PyTorch weights `[Co, Ci/groups, KH, KW]` on the GPU.
pub fn weight_layout(s: &mut Stream, w: &Tensor, groups: usize) -> Result<ConvWeight> {
    let d = weight_dims("weight_layout", w, groups)?;
    layout(s, w, d, groups, None)
}

/// y = conv2d(x, w) (+ bias) with PyTorch-layout weights, for training.
pub fn conv2d_train(
    s: &mut Stream,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    p: &Conv2dParams,
) -> Result<Tensor> {
    let [co, cig, kh, kw] = weight_dims("conv2d_train", w, p.groups)?;
    let xs = x.dims::<4>("conv2d_train")?;
    let v = winograd_train::variant(s.gpu(), xs, co, [kh, kw], p);
    let fits = x.dtype() == DType::F32
        && xs[1] == cig
        && bias.is_none_or(|b| b.shape() == [co] && b.dtype() == DType::F32);
    // Shapes that do not fit take the direct path, whose checks name the problem.
    if v != ConvVariant::Direct && fits {
        return winograd_train::conv2d(s, x, w, false, bias, p, v);
    }
    let cw = layout(s, w, [co, cig, kh, kw], p.groups, None)?;
    conv2d(s, x, &cw, bias, p, None, Act::Identity)
}

/// `[N, C, H, W]` zero-padded by `pads` (the input itself when there is none).
pub fn pad_input(s: &mut Stream, x: &Tensor, pads: Pads) -> Result<Tensor> {
    if pads == Pads::same(0) {
        return Ok(x.clone());
    }
    pad2d(s, x, pads, PadMode::Constant(0.0))
}

/// dx `[N, Ci, H, W]` of y = conv2d(x, w) from dy.
pub fn conv2d_backward_data(
    s: &mut Stream,
    dy: &Tensor,
    w: &Tensor,
    x_shape: [usize; 4],
    p: &Conv2dParams,
) -> Result<Tensor> {
    const OP: &str = "conv2d_backward_data";
    let [co, cig, kh, kw] = weight_dims(OP, w, p.groups)?;
    let [n, oc, oh, ow] = dy.dims::<4>(OP)?;
    let [xn, ci, h, wd] = x_shape;
    let (stride, pad, dil) = (p.stride[0], p.pad[0], p.dilation[0]);
    if p.stride[1] != stride
        || p.pad[1] != pad
        || p.pad_end != p.pad
        || p.dilation[1] != dil
        || dil == 0
        || kh != kw
        || xn != n
        || oc != co
        || ci != cig * p.groups
    {
        return shape_err(
            OP,
            format!(
                "dy {:?}, w {:?}, x {x_shape:?}, {p:?}: square kernels, strides, symmetric pads and dilations only",
                dy.shape(),
                w.shape()
            ),
        );
    }
    // A dilated kernel covers ke input pixels; its transpose is the flipped kernel, same dilation.
    let ke = kh.saturating_sub(1) * dil + 1;
    if pad >= ke || (h + 2 * pad - ke) / stride + 1 != oh || (wd + 2 * pad - ke) / stride + 1 != ow
    {
        return shape_err(
            OP,
            format!(
                "dy {:?} is not the output of x {x_shape:?} with {p:?}",
                dy.shape()
            ),
        );
    }
    if stride > 1 && dil == 1 {
        if let Some(dx) = backward_data_phases(s, dy, w, x_shape, p)? {
            return Ok(dx);
        }
    }
    let lo = ke - 1 - pad;
    let (extra_h, extra_w) = ((h + 2 * pad - ke) % stride, (wd + 2 * pad - ke) % stride);
    let flip = Flip {
        src: [kh, kw],
        r: [0, 0],
        step: 1,
    };
    if stride == 1 {
        // A plain conv of dy padded by K-1-pad.
        let q = Conv2dParams::new(1, lo, p.groups).dilated([dil; 2]);
        let v = winograd_train::variant(s.gpu(), [n, co, oh, ow], ci, [kh, kw], &q);
        if v != ConvVariant::Direct {
            return winograd_train::conv2d(s, dy, w, true, None, &q, v);
        }
        let wt = layout(s, w, [ci, co / p.groups, kh, kw], p.groups, Some(flip))?;
        return conv2d(s, dy, &wt, None, &q, None, Act::Identity);
    }
    let wt = layout(s, w, [ci, co / p.groups, kh, kw], p.groups, Some(flip))?;
    let (zh, zw) = (
        (oh - 1) * stride + 1 + 2 * lo + extra_h,
        (ow - 1) * stride + 1 + 2 * lo + extra_w,
    );
    let total = n * co * zh * zw;
    let q = Params {
        n: n as u32,
        oh: oh as u32,
        ow: ow as u32,
        stride: stride as u32,
        pad_lo: lo as u32,
        zh: zh as u32,
        zw: zw as u32,
        total: total as u32,
        ..Default::default()
    };
    let z = s.gpu().alloc(OP, &[n, co, zh, zw], DType::F32)?;
    elementwise(s, "dilate_pad", &q, &[dy, &z])?;
    conv2d(
        s,
        &z,
        &wt,
        None,
        &Conv2dParams::new(1, 0, p.groups).dilated([dil; 2]),
        None,
        Act::Identity,
    )
}

/// dx `[N, Ci, H, W]` of a strided, undilated conv as one conv per output phase, or None where
/// [`phases`] does not apply. The caller has checked the shapes.
fn backward_data_phases(
    s: &mut Stream,
    dy: &Tensor,
    w: &Tensor,
    x_shape: [usize; 4],
    p: &Conv2dParams,
) -> Result<Option<Tensor>> {
    let [co, _, kh, kw] = w.dims::<4>("conv2d_backward_data")?;
    let [_, _, oh, ow] = dy.dims::<4>("conv2d_backward_data")?;
    let [n, ci, h, wd] = x_shape;
    let stride = p.stride[0];
    let (Some(rows), Some(cols)) = (
        phases(h, oh, kh, stride, p.pad[0]),
        phases(wd, ow, kw, stride, p.pad[1]),
    ) else {
        return Ok(None);
    };
    let dx = s
        .gpu()
        .alloc("conv2d_backward_data", &[n, ci, h, wd], DType::F32)?;
    for py in &rows {
        for px in &cols {
            let flip = Flip {
                src: [kh, kw],
                r: [py.r, px.r],
                step: stride,
            };
            let target = [ci, co / p.groups, py.taps, px.taps];
            let wt = layout(s, w, target, p.groups, Some(flip))?;
            let q = Conv2dParams {
                pad: [py.pad[0], px.pad[0]],
                pad_end: [py.pad[1], px.pad[1]],
                ..Conv2dParams::new(1, 0, p.groups)
            };
            let part = conv2d(s, dy, &wt, None, &q, None, Act::Identity)?;
            put_phase(s, &part, &dx, [py.off, px.off], stride)?;
        }
    }
    Ok(Some(dx))
}

/// Writes `phase` `[N, C, M, MX]` into `dx` `[N, C, H, W]` at rows `off[0] + stride * m` and
/// columns `off[1] + stride * mx`.
fn put_phase(
    s: &mut Stream,
    phase: &Tensor,
    dx: &Tensor,
    off: [usize; 2],
    stride: usize,
) -> Result<()> {
    let [n, c, m, mx] = phase.dims::<4>("put_phase")?;
    let [_, _, h, w] = dx.dims::<4>("put_phase")?;
    let total = n * c * m * mx;
    let q = Params {
        h: h as u32,
        w: w as u32,
        oh: m as u32,
        ow: mx as u32,
        stride: stride as u32,
        py: off[0] as u32,
        px: off[1] as u32,
        total: total as u32,
        ..Default::default()
    };
    elementwise(s, "put_phase", &q, &[phase, dx])
}

/// dw `[Co, Ci/groups, KH, KW]` of y = conv2d(x, w) from x and dy.
pub fn conv2d_backward_weight(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    w_shape: [usize; 4],
    p: &Conv2dParams,
) -> Result<Tensor> {
    let (stride, pad, groups, dil) = (p.stride[0], p.pad[0], p.groups, p.dilation[0]);
    if p.stride[1] != stride || p.pad[1] != pad || p.pad_end != p.pad || p.dilation[1] != dil {
        return shape_err(
            "conv2d_backward_weight",
            format!("{p:?}: the training backward needs equal axes"),
        );
    }
    if let Some(dw) = weight_grad_winograd(s, x, dy, w_shape, p)? {
        return Ok(dw);
    }
    let xp = pad_input(s, x, pad.into())?;
    weight_grad_padded(s, &xp, dy, w_shape, stride, dil, groups)
}

/// The Winograd weight gradient where the forward conv runs on Winograd (`winograd_train`'s
/// variant) and its scratch fits; None elsewhere.
fn weight_grad_winograd(
    s: &mut Stream,
    x: &Tensor,
    dy: &Tensor,
    w_shape: [usize; 4],
    p: &Conv2dParams,
) -> Result<Option<Tensor>> {
    let [co, ci, kh, kw] = w_shape;
    let (Ok(xs), Ok([dn, dc, oh, ow])) = (x.dims::<4>(""), dy.dims::<4>("")) else {
        return Ok(None);
    };
    let fits = x.dtype() == DType::F32
        && dy.dtype() == DType::F32
        && xs[1] == ci
        && [dn, dc] == [xs[0], co]
        && p.out_size(0, xs[2], kh) == Some(oh)
        && p.out_size(1, xs[3], kw) == Some(ow);
    if !fits || winograd_train::variant(s.gpu(), xs, co, [kh, kw], p) == ConvVariant::Direct {
        return Ok(None);
    }
    super::winograd_wgrad::weight_grad(s, x, dy, p)
}

/// dw `[Co, Ci/groups, KH, KW]` of `y = conv2d(xp, w)` with no padding (pad `xp` first with
/// [`pad_input`]; AdaRound pads once and reuses it every step), from dy.
pub fn weight_grad_padded(
    s: &mut Stream,
    xp: &Tensor,
    dy: &Tensor,
    w_shape: [usize; 4],
    stride: usize,
    dil: usize,
    groups: usize,
) -> Result<Tensor> {
    const OP: &str = "conv2d weight gradient";
    let [co, cig, kh, kw] = w_shape;
    let [n, c, h, w] = xp.dims::<4>(OP)?;
    let [dn, dc, oh, ow] = dy.dims::<4>(OP)?;
    let span = |k: usize| dil * (k.max(1) - 1) + 1;
    if dn != n
        || dc != co
        || groups == 0
        || stride == 0
        || dil == 0
        || c != cig * groups
        || co % groups != 0
        || h < span(kh)
        || w < span(kw)
        || (h - span(kh)) / stride + 1 != oh
        || (w - span(kw)) / stride + 1 != ow
    {
        return shape_err(
            OP,
            format!(
                "x {:?}, dy {:?}, w {w_shape:?}, stride {stride}, dilation {dil}, groups {groups}",
                xp.shape(),
                dy.shape()
            ),
        );
    }
    // im2col chunks of at most 128 MiB: larger ones only hold more memory on big GPUs.
    let max_floats = ((s.gpu().max_binding() / 4) as usize).min(1 << 25);
    let limits = (GEMM_MIN_WEIGHTS, max_floats);
    if let Some(dw) = weight_grad_gemm(s, xp, dy, w_shape, (stride, dil, groups), limits)? {
        return Ok(dw);
    }
    let (oblocks, tblocks) = ((co / groups).div_ceil(8), (cig * kh * kw).div_ceil(8));
    let threads = oblocks * tblocks * groups;
    // A few hundred threads keep lavapipe's lanes busy; more chunks only add partial sums.
    let chunk = n.div_ceil(n.min(256usize.div_ceil(threads)).max(1));
    let chunks = n.div_ceil(chunk);
    let q = Params {
        co: co as u32,
        cig: cig as u32,
        kh: kh as u32,
        kw: kw as u32,
        groups: groups as u32,
        n: n as u32,
        c: c as u32,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        stride: stride as u32,
        chunk: chunk as u32,
        chunks: chunks as u32,
        oblocks: oblocks as u32,
        tblocks: tblocks as u32,
        dil: dil as u32,
        ..Default::default()
    };
    let part = s.gpu().alloc(OP, &[chunks, co, cig, kh, kw], DType::F32)?;
    s.dispatch(
        SHADER,
        "wgrad",
        &[],
        bytes_of(&q),
        &[xp, dy, &part],
        grid_1d(threads * chunks, 64),
    )?;
    if chunks == 1 {
        return part.reshape(&w_shape);
    }
    super::stats::sum_chunks(s, &part, &w_shape)
}

/// Below this many weights (co x taps) the matrix product's output is too small for the matmul
/// kernel to keep its speed over such long sums, and `wgrad` is faster (README: training).
const GEMM_MIN_WEIGHTS: usize = 100_000;

/// The weight gradient as im2col and a matrix product per chunk of images (ungrouped convs with
/// at least `min_weights` weights, chunks of at most `max_floats` im2col values), or None where
/// `wgrad` serves. Shapes checked by the caller.
pub(super) fn weight_grad_gemm(
    s: &mut Stream,
    xp: &Tensor,
    dy: &Tensor,
    w_shape: [usize; 4],
    (stride, dil, groups): (usize, usize, usize),
    (min_weights, max_floats): (usize, usize),
) -> Result<Option<Tensor>> {
    const OP: &str = "conv2d weight gradient";
    let [co, cig, kh, kw] = w_shape;
    let taps = cig * kh * kw;
    // Taps and channels index the grid's z axis (at most 65535 workgroups).
    if groups != 1 || co * taps < min_weights || taps.max(co) > 65535 {
        return Ok(None);
    }
    let [n, c, h, w] = xp.dims::<4>(OP)?;
    let [_, _, oh, ow] = dy.dims::<4>(OP)?;
    let per_image = taps * oh * ow;
    // Columns index the grid's x axis in workgroups of 64.
    let max_images = (65535 * 64) / (oh * ow).max(1);
    if per_image > max_floats || max_images == 0 {
        return Ok(None);
    }
    let per_chunk = (max_floats / per_image.max(1)).min(max_images).clamp(1, n);
    let mut dw: Option<Tensor> = None;
    for n0 in (0..n).step_by(per_chunk) {
        let images = per_chunk.min(n - n0);
        let cols = images * oh * ow;
        let q = Params {
            co: co as u32,
            kh: kh as u32,
            kw: kw as u32,
            c: c as u32,
            h: h as u32,
            w: w as u32,
            oh: oh as u32,
            ow: ow as u32,
            stride: stride as u32,
            dil: dil as u32,
            n0: n0 as u32,
            cols: cols as u32,
            ..Default::default()
        };
        let col = s.gpu().alloc(OP, &[taps, cols], DType::F32)?;
        let grid = |z: usize, per: usize| [cols.div_ceil(64 * per) as u32, 1, z as u32];
        // Four columns an invocation where they stay in one output row: lavapipe divides per
        // lane, and the index math cost more than the copy (see README).
        let (entry, per) = if ow % 4 == 0 {
            ("im2col_t4", 4)
        } else {
            ("im2col_t", 1)
        };
        s.dispatch(
            SHADER,
            entry,
            &[],
            bytes_of(&q),
            &[xp, &col],
            grid(taps, per),
        )?;
        let rows = s.gpu().alloc(OP, &[co, cols], DType::F32)?;
        s.dispatch(
            SHADER,
            "dy_rows",
            &[],
            bytes_of(&q),
            &[dy, &rows],
            grid(co, 1),
        )?;
        let part = super::matmul::linear(s, &rows, &col, None, Act::Identity)?;
        dw = Some(match dw {
            None => part,
            Some(acc) => super::elementwise::add(s, &acc, &part, Act::Identity)?,
        });
    }
    dw.map(|dw| dw.reshape(&w_shape)).transpose()
}
