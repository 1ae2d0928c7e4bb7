//! INT8 channel gathers (option-A shortcut, slice, shuffle, concat), max, average and global
//! average pooling, padding and flatten on packed int8 tensors (`qconv`'s layout). The math is `quant::int8_ops`;
//! the CPU reference `cpu::qlayout`; shader `shaders/qlayout.wgsl` (appended to qconv.wgsl and its plain-load prelude).

use super::pad2d::{padded_shape, PadMode};
use super::pool::Window;
use super::qconv::{Params, QTensor};
use super::{bytes_of, Pads};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, Shader, Stream};
use crate::quant::int8::QFormat;
use crate::quant::int8_ops::{gap_multiplier, pool_shape, QAvgPool, QGather};

const SHADER: Shader = Shader {
    name: "qlayout",
    source: concat!(
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qconv.wgsl")),
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qint.wgsl")),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/qconv_w_plain.wgsl"
        )),
        include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/shaders/pad_source.wgsl"
        )),
        include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qlayout.wgsl")),
        "\nfn dot4(a: u32, b: u32) -> i32 { return dot4_u8(a, b); }\n"
    ),
};

/// Channel gather `g` of `a` (and `b` for a concat).
pub fn gather(s: &mut Stream, g: &QGather, a: &QTensor, b: Option<&QTensor>) -> Result<QTensor> {
    let ap = g.params()?;
    let [n, ca, h, w] = a.shape;
    let os = g.check_inputs((a.fmt, a.shape), b.map(|x| (x.fmt, x.shape)))?;
    let [_, co, oh, ow] = os;
    let y = QTensor::alloc(s.gpu(), "int8 gather", os, g.output)?;
    let words = g.word_map();
    let map = padded(words.as_ref().unwrap_or(&g.map));
    let map = s.gpu().upload_i32(&[map.len()], &map)?;
    let bt = b.unwrap_or(a);
    let p = Params {
        n: n as u32,
        c4: ca.div_ceil(4) as u32,
        c4b: bt.shape[1].div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        c: ca as u32,
        co: co as u32,
        co4: co.div_ceil(4) as u32,
        oh: oh as u32,
        ow: ow as u32,
        stride: g.stride as u32,
        lo: ap.lo,
        hi: ap.hi,
        ma: ap.ma,
        mb: ap.mb,
        shift: ap.shift,
        a_offset: a.fmt.offset(),
        b_offset: bt.fmt.offset(),
        out_offset: g.output.offset(),
        pad_word: super::qconv::pad_word(g.output),
        ..Default::default()
    };
    if words.is_some() && quad_rows(g.stride, [h, w], [oh, ow]) {
        let q = QuadParams {
            n: n as u32,
            co4: co.div_ceil(4) as u32,
            oh: oh as u32,
            ow: ow as u32,
            h: h as u32,
            w: w as u32,
            c4: ca.div_ceil(4) as u32,
            stride: g.stride as u32,
            pad_word: p.pad_word,
            _pad: [0; 3],
        };
        let grid = grid_1d(n * co.div_ceil(4) * oh * ow / 4, 64);
        let tensors = [&a.data, &y.data, &map];
        s.dispatch(QUADS, "gather_words4", &[], bytes_of(&q), &tensors, grid)?;
        return Ok(y);
    }
    let grid = grid_1d(n * co.div_ceil(4) * oh * ow, 256);
    if words.is_some() {
        // Its map (in binding 3) is all it reads besides the input.
        let tensors = [&a.data, &y.data, &map];
        s.dispatch(SHADER, "gather_words", &[], bytes_of(&p), &tensors, grid)?;
    } else {
        let tensors = [&a.data, &y.data, &bt.data, &map];
        s.dispatch(SHADER, "gather", &[], bytes_of(&p), &tensors, grid)?;
    }
    Ok(y)
}

const QUADS: Shader = crate::shader!("qgather4");

/// `QuadParams` in qgather4.wgsl.
#[repr(C)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct QuadParams {
    n: u32,
    co4: u32,
    oh: u32,
    ow: u32,
    h: u32,
    w: u32,
    c4: u32,
    stride: u32,
    pad_word: u32,
    _pad: [u32; 3],
}

/// Whether a word gather's rows run four words at a time (shaders/qgather4.wgsl): output and
/// input widths multiples of 4, every sampled input pixel inside the input, stride 1 or 2.
fn quad_rows(stride: usize, [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> bool {
    (stride == 1 || stride == 2)
        && oh > 0
        && ow > 0
        && ow.is_multiple_of(4)
        && w.is_multiple_of(4)
        && (oh - 1) * stride < h
        && ow * stride <= w
}

/// An empty map still needs a binding.
fn padded(map: &[i32]) -> Vec<i32> {
    if map.is_empty() {
        vec![-1]
    } else {
        map.to_vec()
    }
}

/// Max pooling of any undilated window in the input's format.
pub fn max_pool(s: &mut Stream, x: &QTensor, win: &Window) -> Result<QTensor> {
    let [n, c, h, w] = x.shape;
    let os = pool_shape("int8 max pool", x.shape, win)?;
    let [_, _, oh, ow] = os;
    let y = QTensor::alloc(s.gpu(), "int8 max pool", os, x.fmt)?;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        oh: oh as u32,
        ow: ow as u32,
        kh: win.kernel as u32,
        stride: win.stride as u32,
        pad: window_pad(win),
        ..Default::default()
    };
    let grid = grid_1d(n * c.div_ceil(4) * oh * ow, 256);
    let tensors = [&x.data, &y.data];
    s.dispatch(SHADER, "max_pool", &[], bytes_of(&p), &tensors, grid)?;
    Ok(y)
}

/// A window's top and left padding as the pool entries read it: top | left << 16
/// (`pool_shape` bounds both by the kernel).
fn window_pad(win: &Window) -> u32 {
    (win.pads.begin[0] | win.pads.begin[1] << 16) as u32
}

/// Spatial padding (ONNX Pad on H and W) in the input's format: a constant fill is the
/// quantized value, reflect and edge copy stored words.
pub fn pad2d(s: &mut Stream, x: &QTensor, pads: Pads, mode: PadMode) -> Result<QTensor> {
    let [n, c, h, w] = x.shape;
    let os = match padded_shape(x.shape, pads, mode) {
        Ok(o) => o,
        Err(e) => return shape_err("int8 pad", format!("x {:?}: {e}", x.shape)),
    };
    let (code, fill) = match mode {
        PadMode::Constant(v) => (0, x.fmt.quantize(v)),
        PadMode::Reflect => (1, 0),
        PadMode::Edge => (2, 0),
    };
    let y = QTensor::alloc(s.gpu(), "int8 pad", os, x.fmt)?;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        oh: os[2] as u32,
        ow: os[3] as u32,
        kh: pads.begin[0] as u32,
        kw: pads.begin[1] as u32,
        mode: code,
        // The stored byte (real value minus the offset) in all four bytes.
        pad_word: ((fill - x.fmt.offset()) as u8 as u32) * 0x0101_0101,
        ..Default::default()
    };
    let grid = grid_1d(n * c.div_ceil(4) * os[2] * os[3], 256);
    let tensors = [&x.data, &y.data];
    s.dispatch(SHADER, "pad2d", &[], bytes_of(&p), &tensors, grid)?;
    Ok(y)
}

/// Global average pooling to `[N, C, 1, 1]` in `output`.
pub fn global_avg_pool(s: &mut Stream, x: &QTensor, output: QFormat) -> Result<QTensor> {
    let [n, c, h, w] = x.shape;
    let m = gap_multiplier(x.fmt, h * w, output)?;
    let (lo, hi) = output.range();
    let y = QTensor::alloc(s.gpu(), "int8 global average pool", [n, c, 1, 1], output)?;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        qscale: m,
        lo,
        hi,
        a_offset: x.fmt.offset(),
        out_offset: output.offset(),
        ..Default::default()
    };
    let grid = grid_1d(n * c.div_ceil(4), 256);
    s.dispatch(
        SHADER,
        "global_avg_pool",
        &[],
        bytes_of(&p),
        &[&x.data, &y.data],
        grid,
    )?;
    Ok(y)
}

/// Average pooling of any undilated window (`QAvgPool`).
pub fn avg_pool(s: &mut Stream, x: &QTensor, pool: &QAvgPool) -> Result<QTensor> {
    let [n, c, h, w] = x.shape;
    let os = pool.out_shape(x.shape)?;
    let [_, _, oh, ow] = os;
    let m = s
        .gpu()
        .upload_f32(&[pool.window.kernel.pow(2) + 1], &pool.multipliers()?)?;
    let y = QTensor::alloc(s.gpu(), "int8 average pool", os, pool.output)?;
    let (lo, hi) = pool.output.range();
    let pads = pool.window.pads;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        oh: oh as u32,
        ow: ow as u32,
        kh: pool.window.kernel as u32,
        stride: pool.window.stride as u32,
        pad: window_pad(&pool.window),
        dh: (h + pads.begin[0] + pads.end[0]) as u32,
        dw: (w + pads.begin[1] + pads.end[1]) as u32,
        mode: pool.count_pad as u32,
        lo,
        hi,
        a_offset: x.fmt.offset(),
        out_offset: pool.output.offset(),
        ..Default::default()
    };
    let grid = grid_1d(n * c.div_ceil(4) * oh * ow, 256);
    let tensors = [&x.data, &y.data, &m];
    s.dispatch(SHADER, "avg_pool", &[], bytes_of(&p), &tensors, grid)?;
    Ok(y)
}

/// Flatten to `[N, C * H * W, 1, 1]` in the input's format (a linear layer's input); a
/// `[N, C, 1, 1]` tensor is that already.
pub fn flatten(s: &mut Stream, x: &QTensor) -> Result<QTensor> {
    let [n, c, h, w] = x.shape;
    if h * w == 1 {
        return Ok(x.clone());
    }
    let k = c * h * w;
    let y = QTensor::alloc(s.gpu(), "int8 flatten", [n, k, 1, 1], x.fmt)?;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        co: k as u32,
        co4: k.div_ceil(4) as u32,
        pad_word: super::qconv::pad_word(x.fmt),
        ..Default::default()
    };
    let grid = grid_1d(n * k.div_ceil(4), 256);
    s.dispatch(
        SHADER,
        "flatten",
        &[],
        bytes_of(&p),
        &[&x.data, &y.data],
        grid,
    )?;
    Ok(y)
}

#[cfg(test)]
#[path = "qlayout_tests.rs"]
mod tests;
