//! INT8 conv2d / linear with real integer arithmetic, and the quantize / dequantize ops at the
//! edges of quantized regions. Scheme and the exact epilogue math: `quant::int8`.
//!
//! Layouts (all u32 words):
//! - Activations (`QTensor`): i8 packed four channels per word, `[N, ceil(C/4), H, W]` (a Tensor
//!   of dtype I8x4 and shape `[N, C4, H, W, 4]`): channel 4*c4+k sits in byte k. Unsigned values
//!   are stored as `q - 128` so every operand is i8 for `dot4I8Packed`; the exact correction
//!   `sum(w*q) = sum(w*stored) + offset*sum(w)` (`QFormat::offset`) is folded into the i32 bias. Spatial padding and
//!   the channels past C read the stored zero point (real 0). Linear inputs are `[N, K, 1, 1]`.
//! - Conv weights: output channels in tiles of 8; tile t is `[KH, KW, win, 8]` words, where word
//!   (ky, kx, j, i) packs output channel 8t+i's weights for input channels 4*(start_t+j)+0..3,
//!   zero outside that channel's group. `win` is the most input words a tile's groups span, so
//!   grouped convs with any channel counts run on the dense kernel (zero lanes cost little once
//!   groups have >= 4 input channels; one-channel groups go to the depthwise kernel).
//! - Depthwise weights: `[C4, KH, KW]`, channel-packed like the activations. Depthwise reduces
//!   over the window only, so channels stay packed and each byte lane multiplies its own channel
//!   (unpack + vec4 multiply-add): no zero-padded dot4 lanes, no relayout, same code on both paths.
//! - Weights of at most 4 bits (`WeightLayout::Nibbles`, chosen at load): the same words two per
//!   u32, half the memory. Byte k of a u32 holds lane k of word A in its high nibble and of word
//!   B in its low one; A, B are output channels i, i+4 of a conv tile's 8 words, or depthwise
//!   words cw, cw+1 (cw even). Masking the high nibbles yields A's lanes times 16 as i8, so the
//!   same dot4 runs and the epilogue shifts the i32 sum right by 4 (exact while |sum| < 2^27).
//! - Per output channel, padded to the tile: i32 `bias_q + offset*sum(w)` and f32 scale.
//!
//! Pieces: shader `shaders/qconv.wgsl`; scheme `quant::int8`; CPU reference `cpu::qconv`; no
//! backward (inference only); tests in `qconv_tests.rs` (CPU reference and an f64 oracle).

use super::elementwise::{act_const, res_const};
use super::{bytes_of, Act};
use crate::error::{shape_err, Result};
use crate::gpu::{grid_1d, DType, Gpu, Shader, Stream, Tensor};
use crate::quant::int8::{QAdd, QArray, QConv, QFormat};

// A module that names dot4I8Packed fails to compile where the WGSL extension is missing, so
// the fallback is a second module (the same source with another `dot4`), not just an entry;
// likewise subgroup broadcasts. Every module also holds the float entry (qconv_float.wgsl).
macro_rules! qshader {
    ($name:literal, $loads:literal, $dot4:literal) => {
        Shader {
            name: $name,
            source: concat!(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qconv.wgsl")),
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/qint.wgsl")),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/shaders/qconv_float.wgsl"
                )),
                include_str!(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/shaders/qconv_w_",
                    $loads,
                    ".wgsl"
                )),
                "\nfn dot4(a: u32, b: u32) -> i32 { return ",
                $dot4,
                "(a, b); }\n"
            ),
        }
    };
}
const PACKED: Shader = qshader!("qconv_dot4", "plain", "dot4I8Packed");
const PACKED_SUBGROUP: Shader = qshader!("qconv_dot4_subgroup", "subgroup", "dot4I8Packed");
/// Uses no packed-integer builtin, so it also hosts quantize / dequantize for every adapter.
const UNPACKED: Shader = qshader!("qconv_unpacked", "plain", "dot4_u8");
const UNPACKED_SUBGROUP: Shader = qshader!("qconv_unpacked_subgroup", "subgroup", "dot4_u8");
/// Threads per workgroup of the conv entries (`WG` in the shader).
const WG: u32 = 64;
/// The float entry's pixels and output words per thread (PXF, CWF): on lavapipe 8 x 2 was
/// fastest or tied of 8 x 2, 8 x 1, 6 x 2, 4 x 2 and 4 x 1.
const FLOAT_BLOCK: (u32, u32) = (8, 2);
const TILE: usize = 8;

/// Output pixels per thread (the shaders' `PX`, at most the float entry's `PXF`) for a call
/// with `pixels` outputs per channel: 8 where every workgroup fills up, fewer where most of
/// them would lie past the end (batch 1 on 16x16 and 8x8 maps).
fn pixels_per_thread(pixels: usize) -> u32 {
    match pixels / WG as usize {
        0 | 1 => 1,
        2 | 3 => 2,
        4..=7 => 4,
        _ => 8,
    }
}

/// Which dot product the conv kernel uses; all give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotPath {
    /// `dot4I8Packed` (DP4a on GPUs that have it).
    Packed,
    /// Byte unpacking with shifts and i32 multiplies, activations read as unsigned bytes (the
    /// bias corrected to match): for adapters without the WGSL extension, and CPU adapters,
    /// which emulate it a byte at a time with slower multiplies.
    Unpacked,
    /// f32 FMA on integer values, exact where `float_exact` holds (else the integer path
    /// runs); meant for CPU adapters, which emulate the packed dot.
    Float,
}

impl DotPath {
    /// The adapter's integer path, or the one `SYNTHCAL_INT8_DOT` names (`packed` where the
    /// adapter has it, `unpacked`, `float`) to compare them. Float is not the default on CPU
    /// adapters: on lavapipe it measured no faster than the integer paths (README, speed).
    pub fn auto(gpu: &Gpu) -> Self {
        match std::env::var("SYNTHCAL_INT8_DOT").as_deref() {
            Ok("float") => DotPath::Float,
            Ok("unpacked") => DotPath::Unpacked,
            Ok("packed") if gpu.dot4_packed => DotPath::Packed,
            _ => Self::integer(gpu),
        }
    }

    /// The integer path for this adapter: the packed builtin where it has one, except on CPU
    /// adapters, where the unpacked form measured faster (lavapipe emulates the builtin).
    pub fn integer(gpu: &Gpu) -> Self {
        if gpu.dot4_packed && gpu.info.device_type != wgpu::DeviceType::Cpu {
            DotPath::Packed
        } else {
            DotPath::Unpacked
        }
    }

    fn shader(self, subgroups: bool) -> Shader {
        match (self, subgroups) {
            (DotPath::Packed, false) => PACKED,
            (DotPath::Packed, true) => PACKED_SUBGROUP,
            (_, false) => UNPACKED,
            (_, true) => UNPACKED_SUBGROUP,
        }
    }
}

/// Whether f32 accumulation of layer `desc` is exact: stored inputs and weights are integers
/// with |x| <= 128 and |w| <= 2^(bits-1), so with K = taps x input channels per group every
/// partial sum is an integer of magnitude <= K x 128 x 2^(bits-1), exact in f32 up to 2^24
/// (K <= 1024 for 8-bit weights, 16384 for 4-bit ones). Products with zero-padded lanes are 0.
pub fn float_exact(desc: &QConv) -> bool {
    let w = &desc.weights;
    let wmax = 1i64 << (w.bits.clamp(1, 8) - 1);
    let k = (w.shape[1] * w.shape[2] * w.shape[3]) as i64;
    w.q.iter().all(|&v| (v as i64).abs() <= wmax) && k * 128 * wmax <= 1 << 24
}

/// A quantized activation on the GPU in the channel-packed layout.
#[derive(Clone, Debug)]
pub struct QTensor {
    pub data: Tensor,
    /// Logical `[N, C, H, W]`.
    pub shape: [usize; 4],
    pub fmt: QFormat,
}

impl QTensor {
    pub(super) fn alloc(
        gpu: &Gpu,
        op: &'static str,
        shape: [usize; 4],
        fmt: QFormat,
    ) -> Result<QTensor> {
        let [n, c, h, w] = shape;
        let data = gpu.alloc(op, &[n, c.div_ceil(4), h, w, 4], DType::I8x4)?;
        Ok(QTensor { data, shape, fmt })
    }

    /// Packs and uploads host values (real integers, NCHW).
    pub fn upload(gpu: &Gpu, a: &QArray) -> Result<QTensor> {
        let [n, c, h, w] = a.shape;
        if a.q.len() != n * c * h * w {
            return shape_err(
                "qtensor upload",
                format!("{} values for {:?}", a.q.len(), a.shape),
            );
        }
        let (c4, hw, off) = (c.div_ceil(4), h * w, a.fmt.offset());
        let mut bytes = vec![(-off) as i8; n * c4 * hw * 4];
        for (i, &q) in a.q.iter().enumerate() {
            let (b, ch, r) = (i / (c * hw), (i / hw) % c, i % hw);
            bytes[((b * c4 + ch / 4) * hw + r) * 4 + ch % 4] = (q - off) as i8;
        }
        let data = gpu.upload_i8(&[n, c4, h, w, 4], &bytes)?;
        Ok(QTensor {
            data,
            shape: a.shape,
            fmt: a.fmt,
        })
    }

    /// Reads back and unpacks to real integers in NCHW order (waits).
    pub fn read(&self, gpu: &Gpu) -> Result<QArray> {
        let bytes = gpu.read_i8(&self.data)?;
        let [n, c, h, w] = self.shape;
        let (c4, hw, off) = (c.div_ceil(4), h * w, self.fmt.offset());
        let q = (0..n * c * hw)
            .map(|i| {
                let (b, ch, r) = (i / (c * hw), (i / hw) % c, i % hw);
                bytes[((b * c4 + ch / 4) * hw + r) * 4 + ch % 4] as i32 + off
            })
            .collect();
        Ok(QArray {
            shape: self.shape,
            q,
            fmt: self.fmt,
        })
    }
}

/// Kernel parameters; field order matches `Params` in qconv.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) c4: u32,
    pub(super) h: u32,
    pub(super) w: u32,
    pub(super) co: u32,
    pub(super) co4: u32,
    pub(super) oh: u32,
    pub(super) ow: u32,
    pub(super) kh: u32,
    pub(super) kw: u32,
    pub(super) stride: u32,
    pub(super) pad: u32,
    pub(super) win: u32,
    pub(super) cig: u32,
    pub(super) cog: u32,
    pub(super) pad_word: u32,
    pub(super) lo: i32,
    pub(super) hi: i32,
    pub(super) out_offset: i32,
    pub(super) mode: u32,
    pub(super) slope: f32,
    pub(super) c: u32,
    pub(super) qscale: f32,
    pub(super) ma: i32,
    pub(super) mb: i32,
    pub(super) shift: u32,
    pub(super) a_offset: i32,
    pub(super) b_offset: i32,
    pub(super) c4b: u32,
    pub(super) dh: u32,
    pub(super) dw: u32,
    pub(super) _r: [u32; 1],
    pub(super) add: AddConsts,
}

/// `AddK` in qint.wgsl: a residual add's constants with the conv's output as input a.
#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct AddConsts {
    a_offset: i32,
    b_offset: i32,
    ma: i32,
    mb: i32,
    shift: u32,
    lo: i32,
    hi: i32,
    out_offset: i32,
}

impl AddConsts {
    /// `add`'s constants with the conv's output as input a (`conv_first`) or as input b
    /// (then the two inputs' constants swap: the sum is the same integer).
    fn new(add: &QAdd, conv_first: bool) -> Result<AddConsts> {
        let k = add.params()?;
        let (a, b, ma, mb) = if conv_first {
            (add.a, add.b, k.ma, k.mb)
        } else {
            (add.b, add.a, k.mb, k.ma)
        };
        Ok(AddConsts {
            a_offset: a.offset(),
            b_offset: b.offset(),
            ma,
            mb,
            shift: k.shift,
            lo: k.lo,
            hi: k.hi,
            out_offset: add.output.map_or(0, |f| f.offset()),
        })
    }
}

/// The begin padding [top, left] in one word (16 bits each): the kernel indexes from it, and
/// the end padding only sets the output size.
fn pack_pad([t, l]: [usize; 2]) -> Result<u32> {
    if t.max(l) >= 1 << 16 {
        return shape_err("qconv", format!("padding {t}, {l} exceeds 65535"));
    }
    Ok(t as u32 | (l as u32) << 16)
}

/// The stored zero point in all four bytes.
pub(super) fn pad_word(fmt: QFormat) -> u32 {
    (fmt.offset().wrapping_neg() as u8 as u32) * 0x0101_0101
}

/// f32 `[N, C, H, W]` or `[N, K]` -> packed, `clamp(rne(x * (1 / scale)))`.
pub fn quantize(s: &mut Stream, x: &Tensor, fmt: QFormat) -> Result<QTensor> {
    if x.dtype() != DType::F32 {
        return shape_err("quantize", format!("expected f32, got {:?}", x.dtype()));
    }
    let shape = match *x.shape() {
        [n, c, h, w] => [n, c, h, w],
        [n, k] => [n, k, 1, 1],
        _ => {
            return shape_err(
                "quantize",
                format!("expected 2-d or 4-d, got {:?}", x.shape()),
            )
        }
    };
    if !(fmt.scale > 0.0 && fmt.scale.is_finite()) {
        return shape_err("quantize", format!("scale {} is not positive", fmt.scale));
    }
    launch_quantize(s, x, shape, fmt, InvScale::PerTensor(1.0 / fmt.scale))
}

/// What the quantize kernels multiply by: one `1 / scale`, or one per channel (`[C]` f32).
enum InvScale<'a> {
    PerTensor(f32),
    PerChannel(&'a Tensor),
}

/// One `quantize` or `quantize_channels` dispatch.
fn launch_quantize(
    s: &mut Stream,
    x: &Tensor,
    shape: [usize; 4],
    fmt: QFormat,
    inv: InvScale,
) -> Result<QTensor> {
    let y = QTensor::alloc(s.gpu(), "quantize", shape, fmt)?;
    let [n, c, h, w] = shape;
    let (lo, hi) = fmt.range();
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        qscale: match inv {
            InvScale::PerTensor(q) => q,
            InvScale::PerChannel(_) => 0.0,
        },
        lo,
        hi,
        out_offset: fmt.offset(),
        ..Default::default()
    };
    let words = n * c.div_ceil(4) * h * w;
    let (entry, bufs): (&str, Vec<&Tensor>) = match inv {
        InvScale::PerTensor(_) => ("quantize", vec![x, &y.data]),
        InvScale::PerChannel(sc) => ("quantize_channels", vec![x, &y.data, sc]),
    };
    s.dispatch(
        UNPACKED,
        entry,
        &[],
        bytes_of(&p),
        &bufs,
        grid_1d(words, 256),
    )?;
    Ok(y)
}

/// Per-channel quantization of f32 `[N, C, H, W]` with `inv_scales` (`[C]`, 1 / scale as f32,
/// the same reciprocals the CPU reference multiplies by); `fmt` gives signedness and the
/// representative scale the QTensor carries.
fn quantize_channels(
    s: &mut Stream,
    x: &Tensor,
    fmt: QFormat,
    inv_scales: &Tensor,
) -> Result<QTensor> {
    let [n, c, h, w] = x.dims::<4>("quantize")?;
    if inv_scales.numel() != c {
        return shape_err(
            "quantize",
            format!("{} channel scales for {c} channels", inv_scales.numel()),
        );
    }
    launch_quantize(s, x, [n, c, h, w], fmt, InvScale::PerChannel(inv_scales))
}

/// Packed -> f32 `[N, C, H, W]`, `q * scale`.
pub fn dequantize(s: &mut Stream, x: &QTensor) -> Result<Tensor> {
    let [n, c, h, w] = x.shape;
    let y = s.gpu().alloc("dequantize", &x.shape, DType::F32)?;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        c: c as u32,
        qscale: x.fmt.scale,
        out_offset: x.fmt.offset(),
        ..Default::default()
    };
    s.dispatch(
        UNPACKED,
        "dequantize",
        &[],
        bytes_of(&p),
        &[&x.data, &y],
        grid_1d(y.numel(), 256),
    )?;
    Ok(y)
}

/// Residual add `act(a + b)` of two int8 tensors in exact integer math (see `quant::int8::QAdd`).
pub fn qadd(s: &mut Stream, a: &QTensor, b: &QTensor, add: &QAdd) -> Result<QOut> {
    if a.shape != b.shape || a.fmt != add.a || b.fmt != add.b {
        return shape_err("qadd", format!("{:?} + {:?} for {add:?}", a.shape, b.shape));
    }
    let ap = add.params()?;
    let slope = add.act.code().1;
    let [n, c, h, w] = a.shape;
    let p = Params {
        n: n as u32,
        c4: c.div_ceil(4) as u32,
        h: h as u32,
        w: w as u32,
        lo: ap.lo,
        hi: ap.hi,
        out_offset: add.output.map_or(0, |f| f.offset()),
        slope,
        c: c as u32,
        qscale: ap.scale,
        ma: ap.ma,
        mb: ap.mb,
        shift: ap.shift,
        a_offset: a.fmt.offset(),
        b_offset: b.fmt.offset(),
        ..Default::default()
    };
    let out = match add.output {
        Some(fmt) => QOut::Q(QTensor::alloc(s.gpu(), "qadd", a.shape, fmt)?),
        None => QOut::F32(s.gpu().alloc("qadd", &a.shape, DType::F32)?),
    };
    let grid = grid_1d(n * c.div_ceil(4) * h * w, 256);
    let tensors = [&a.data, out.tensor(), &b.data];
    let entry = if add.output.is_some() {
        "add"
    } else {
        "add_f32"
    };
    // The f32 form's activation is the ACT override (see `activate` in the shader).
    let consts: &[_] = if add.output.is_some() {
        &[]
    } else {
        &[act_const(add.act)]
    };
    s.dispatch(UNPACKED, entry, consts, bytes_of(&p), &tensors, grid)?;
    Ok(out)
}

/// Output of a quantized layer: f32 NCHW, or requantized and packed for the next layer.
#[derive(Clone, Debug)]
pub enum QOut {
    F32(Tensor),
    Q(QTensor),
}

impl QOut {
    /// The underlying storage.
    pub fn tensor(&self) -> &Tensor {
        match self {
            QOut::F32(t) => t,
            QOut::Q(q) => &q.data,
        }
    }

    pub fn into_f32(self) -> Result<Tensor> {
        match self {
            QOut::F32(t) => Ok(t),
            QOut::Q(_) => shape_err("qconv", "expected an f32 output, layer requantizes"),
        }
    }

    pub fn into_q(self) -> Result<QTensor> {
        match self {
            QOut::Q(t) => Ok(t),
            QOut::F32(_) => shape_err("qconv", "expected an int8 output, layer writes f32"),
        }
    }
}

/// How a layer's weights are stored on the GPU (module docs); both give identical results.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// One i8 per weight, any width.
    Bytes,
    /// Two signed nibbles per byte: weights in [-8, 7] (`wbits <= 4`).
    Nibbles,
}

impl WeightLayout {
    /// Nibbles when every weight fits a nibble and no output's 16x-scaled sum can overflow
    /// i32 (|x| <= 128 per input), so the epilogue's shift stays exact; else bytes.
    pub fn auto(desc: &QConv) -> Self {
        let w = &desc.weights;
        let per = w.shape[1..].iter().product::<usize>().max(1);
        let fits = w.bits <= 4
            && w.q.iter().all(|&v| (-8..=7).contains(&v))
            && w.q.chunks(per).all(|row| {
                let l1: i64 = row.iter().map(|&v| (v as i64).abs()).sum();
                l1 * 128 * 16 < 1 << 31
            });
        if fits {
            WeightLayout::Nibbles
        } else {
            WeightLayout::Bytes
        }
    }
}

/// Two words of i8 lanes as nibbles: `a` in the high and `b` in the low nibble of each byte.
fn nibble_word(a: &[i8], b: &[i8]) -> [i8; 4] {
    std::array::from_fn(|k| ((a[k] as u8) << 4 | (b[k] as u8 & 0xf)) as i8)
}

/// Halves `pack_weights`'s bytes into the nibble layout (module docs).
fn pack_nibbles(bytes: &[i8], depthwise: bool, taps: usize) -> Vec<i8> {
    let mut out = Vec::with_capacity(bytes.len() / 2 + 4 * taps);
    if depthwise {
        // [C4, taps] words -> [ceil(C4 / 2), taps]: pairs of channel words per tap.
        let plane = 4 * taps;
        for pair in bytes.chunks(2 * plane) {
            let (a, b) = pair.split_at(plane.min(pair.len()));
            for tap in 0..taps {
                let wb = b.get(4 * tap..4 * tap + 4).unwrap_or(&[0; 4]);
                out.extend(nibble_word(&a[4 * tap..4 * tap + 4], wb));
            }
        }
    } else {
        // Each tile's run of 8 words (channels 8t..8t+7) -> 4: words i and i + 4 share one.
        for run in bytes.chunks(4 * TILE) {
            for i in 0..TILE / 2 {
                let lanes = |w: usize| &run[4 * w..4 * w + 4];
                out.extend(nibble_word(lanes(i), lanes(i + TILE / 2)));
            }
        }
    }
    out
}

/// Packs weights into the byte layouts in the module docs; returns (bytes, win).
fn pack_weights(desc: &QConv, depthwise: bool) -> (Vec<i8>, usize) {
    let [co, cig, kh, kw] = desc.weights.shape;
    let (cog, c4, taps) = (co / desc.groups, (cig * desc.groups).div_ceil(4), kh * kw);
    // Output channel o's weight for input channel ci at a tap; 0 outside its group or past co.
    let weight = |o: usize, ci: usize, tap: usize| {
        let g0 = o / cog * cig;
        if o < co && (g0..g0 + cig).contains(&ci) {
            desc.weights.q[(o * cig + ci - g0) * taps + tap]
        } else {
            0
        }
    };
    let mut bytes = Vec::new();
    if depthwise {
        for cw in 0..c4 {
            for tap in 0..taps {
                bytes.extend((4 * cw..4 * cw + 4).map(|c| weight(c, c, tap)));
            }
        }
        return (bytes, 1);
    }
    // Input words spanned by tile t's groups; the shader's window_start() mirrors `start`.
    let span = |t: usize| {
        let last = (TILE * t + TILE).min(co) - 1;
        let first_word = (TILE * t / cog) * cig / 4;
        (
            first_word,
            ((last / cog + 1) * cig).div_ceil(4) - first_word,
        )
    };
    let tiles = co.div_ceil(TILE);
    let win = (0..tiles).map(|t| span(t).1).max().unwrap_or(1);
    for t in 0..tiles {
        let start = span(t).0.min(c4 - win);
        for tap in 0..taps {
            for j in 0..win {
                for o in TILE * t..TILE * t + TILE {
                    bytes.extend((0..4).map(|k| weight(o, 4 * (start + j) + k, tap)));
                }
            }
        }
    }
    (bytes, win)
}

/// `pack_weights`'s conv bytes as the float entry's f32 weights: per run of 8 words (output
/// channels 8t..8t+7 at one tap and input word), vec4 4h + k holds input lane k of channels
/// 8t + 4h + 0..3 (qconv_float.wgsl).
fn float_weights(bytes: &[i8]) -> Vec<f32> {
    let mut out = Vec::with_capacity(bytes.len());
    for run in bytes.chunks(4 * TILE) {
        for h in 0..2 {
            for k in 0..4 {
                out.extend((0..4).map(|m| run[4 * (4 * h + m) + k] as f32));
            }
        }
    }
    out
}

/// A quantized conv2d or linear layer with its weights and epilogue constants on the GPU.
pub struct QConv2d {
    desc: QConv,
    weights: Tensor,
    layout: WeightLayout,
    bias: Tensor,
    /// The bias for `DotPath::Unpacked`'s dense kernel, which reads activations as stored + 128:
    /// `bias` minus 128 x the weight sum.
    bias_u8: Tensor,
    scale: Tensor,
    win: usize,
    depthwise: bool,
    /// 1 / scale per input channel, as f32 bits (depthwise layers with per-channel inputs).
    inv_scales: Option<Tensor>,
    lo: i32,
    hi: i32,
    /// f32 weights for `DotPath::Float` (`float_weights`), where `float_exact` holds.
    float_weights: Option<Tensor>,
    /// The adapter's integer path, run when `path` is Float and the bound fails.
    integer: DotPath,
    /// Which dot product to use (`DotPath::auto` by default; tests force each).
    pub path: DotPath,
    /// Broadcast weights across subgroups (default: where the adapter has them; tests force
    /// the plain-load form with false).
    pub subgroups: bool,
    /// Winograd weights (`winograd_exact` layers only), made where the layer may run the form
    /// (`set_winograd`): 16 bytes a weight, with a texture copy on adapters with subgroups.
    winograd_u: Option<super::winograd::FusedWeight>,
    /// Where the Winograd form runs, for layers that have it (`WinogradUse::auto`).
    winograd: WinogradUse,
    /// The Winograd form reads its weights from a texture where it can (tests force buffers).
    pub texture_weights: bool,
    /// The Winograd form's vec4 row loads and stores where the shape allows (tests force the
    /// form for any shape).
    pub aligned_rows: bool,
}

impl QConv2d {
    /// The layer description it was built from.
    pub fn desc(&self) -> &QConv {
        &self.desc
    }

    /// How the weights are stored.
    pub fn weight_layout(&self) -> WeightLayout {
        self.layout
    }

    /// Bytes of the integer weight buffer on the GPU (the float path's copy not counted).
    pub fn weight_bytes(&self) -> u64 {
        self.weights.bytes()
    }

    /// The path `forward` runs: `path`, or the integer one where Float is not exact (or the
    /// layer is depthwise, which has no float form).
    pub fn effective_path(&self) -> DotPath {
        match (self.path, &self.float_weights) {
            (DotPath::Float, None) => self.integer,
            (p, _) => p,
        }
    }

    /// Uploads the layer with `WeightLayout::auto`: nibbles for weights of <= 4 bits.
    pub fn new(gpu: &Gpu, desc: &QConv) -> Result<QConv2d> {
        Self::with_layout(gpu, desc, WeightLayout::auto(desc))
    }

    /// Uploads the layer with the given weight layout; nibbles must fit (`WeightLayout::auto`).
    pub fn with_layout(gpu: &Gpu, desc: &QConv, layout: WeightLayout) -> Result<QConv2d> {
        if layout == WeightLayout::Nibbles && WeightLayout::auto(desc) != layout {
            return shape_err(
                "qconv",
                format!(
                    "{}-bit weights do not fit the nibble layout (values in [-8, 7], \
                     |sum| < 2^27 per output)",
                    desc.weights.bits
                ),
            );
        }
        let [co, cig, kh, kw] = desc.weights.shape;
        let g = desc.groups.max(1);
        // Validates weights, bias and geometry against the smallest input they fit.
        desc.out_shape("qconv", desc.min_input())?;
        let mut scales = vec![desc.input.scale];
        scales.extend(desc.input_channel_scales.iter().flatten());
        scales.extend(&desc.weights.scale);
        scales.extend(desc.output.map(|o| o.scale));
        if !scales.iter().all(|&s| s > 0.0 && s.is_finite()) {
            return shape_err("qconv", "scales must be positive and finite");
        }
        let rq = desc.requant()?;
        let depthwise = cig == 1 && co == g;
        let (mut words, win) = pack_weights(desc, depthwise);
        let float_weights = if !depthwise && float_exact(desc) {
            let f = float_weights(&words);
            Some(gpu.upload_f32(&[f.len()], &f)?)
        } else {
            None
        };
        if layout == WeightLayout::Nibbles {
            words = pack_nibbles(&words, depthwise, kh * kw);
        }
        let (per, padded) = (cig * kh * kw, co.next_multiple_of(TILE));
        let wq = &desc.weights.q;
        let off = desc.input.offset();
        let mut bias = vec![0i32; padded];
        let mut bias_u8 = vec![0i32; padded];
        let mut scale = vec![0f32; padded];
        for o in 0..co {
            let wsum: i32 = wq[o * per..(o + 1) * per].iter().map(|&v| v as i32).sum();
            bias[o] = rq.bias_q[o].wrapping_add(off * wsum);
            bias_u8[o] = bias[o].wrapping_sub(128 * wsum);
            scale[o] = rq.scale[o];
        }
        QConv2d {
            weights: gpu.upload_i8(&[words.len()], &words)?,
            bias: gpu.upload_i32(&[padded], &bias)?,
            bias_u8: gpu.upload_i32(&[padded], &bias_u8)?,
            scale: gpu.upload_f32(&[padded], &scale)?,
            inv_scales: desc
                .input_channel_scales
                .as_ref()
                .map(|cs| {
                    let bits: Vec<i32> =
                        cs.iter().map(|&v| (1.0f32 / v).to_bits() as i32).collect();
                    gpu.upload_i32(&[cs.len()], &bits)
                })
                .transpose()?,
            desc: desc.clone(),
            layout,
            win,
            depthwise,
            lo: rq.lo,
            hi: rq.hi,
            float_weights,
            integer: DotPath::integer(gpu),
            path: DotPath::auto(gpu),
            subgroups: gpu.subgroups,
            winograd_u: None,
            winograd: WinogradUse::Never,
            texture_weights: true,
            aligned_rows: true,
        }
        .with_winograd(gpu, WinogradUse::auto(gpu))
    }

    /// Quantizes an f32 input for this layer (per channel when it has channel scales).
    pub fn quantize_input(&self, s: &mut Stream, x: &Tensor) -> Result<QTensor> {
        match &self.inv_scales {
            Some(inv) => quantize_channels(s, x, self.desc.input, inv),
            None => quantize(s, x, self.desc.input),
        }
    }

    /// Records the layer on `s`: f32 `[N, Co, OH, OW]` or a packed int8 output.
    pub fn forward(&self, s: &mut Stream, x: &QTensor) -> Result<QOut> {
        let d = &self.desc;
        let [n, co, oh, ow] = d.out_shape("qconv", x.shape)?;
        if x.fmt != d.input {
            return shape_err(
                "qconv",
                format!("input format {:?} != {:?}", x.fmt, d.input),
            );
        }
        let out = match d.output {
            Some(fmt) => QOut::Q(QTensor::alloc(s.gpu(), "qconv", [n, co, oh, ow], fmt)?),
            None => QOut::F32(s.gpu().alloc("qconv", &[n, co, oh, ow], DType::F32)?),
        };
        self.forward_into(s, x, &out, None)?;
        Ok(out)
    }

    /// `add(conv(x), residual)` (`conv_first`) or `add(residual, conv(x))` in one dispatch
    /// (Winograd or direct), bit-identical to `forward` then `qadd`, where the layer and the
    /// add have int8 outputs; else None (the caller runs the two).
    pub fn forward_add(
        &self,
        s: &mut Stream,
        x: &QTensor,
        residual: &QTensor,
        add: &QAdd,
        conv_first: bool,
    ) -> Result<Option<QTensor>> {
        let d = &self.desc;
        let shape = d.out_shape("qconv", x.shape)?;
        let (Some(conv_fmt), Some(out_fmt)) = (d.output, add.output) else {
            return Ok(None);
        };
        let (want_conv, want_res) = if conv_first {
            (add.a, add.b)
        } else {
            (add.b, add.a)
        };
        if x.fmt != d.input
            || conv_fmt != want_conv
            || residual.fmt != want_res
            || residual.shape != shape
        {
            return shape_err(
                "qconv + add",
                format!(
                    "conv output {conv_fmt:?} {shape:?} + {:?} {:?} for {add:?}",
                    residual.fmt, residual.shape
                ),
            );
        }
        let consts = AddConsts::new(add, conv_first)?;
        let out = QTensor::alloc(s.gpu(), "qconv + add", shape, out_fmt)?;
        let qout = QOut::Q(out);
        self.forward_into(s, x, &qout, Some((residual, consts)))?;
        qout.into_q().map(Some)
    }

    /// The layer into `out` by the form its call size takes (`winograd_for`: Winograd or the
    /// direct kernels), with `res`'s residual add fused where given.
    fn forward_into(
        &self,
        s: &mut Stream,
        x: &QTensor,
        out: &QOut,
        res: Option<(&QTensor, AddConsts)>,
    ) -> Result<()> {
        let [n, _, oh, ow] = self.desc.out_shape("qconv", x.shape)?;
        match self.winograd_for(n * oh * ow) {
            Some(u) => self.forward_winograd(s, x, u, out, res),
            None => self.forward_direct(s, x, out, res),
        }
    }

    /// Whether `forward_add` fuses an add: every form does where the layer has an int8 output.
    pub fn fuses_add(&self) -> bool {
        self.desc.output.is_some()
    }

    /// The direct kernels (dense, float or depthwise) into `out`, with `res`'s residual add
    /// fused into an int8 epilogue where given (the caller has checked the input's format and
    /// shape).
    fn forward_direct(
        &self,
        s: &mut Stream,
        x: &QTensor,
        out: &QOut,
        res: Option<(&QTensor, AddConsts)>,
    ) -> Result<()> {
        let d = &self.desc;
        let [n, co, oh, ow] = d.out_shape("qconv", x.shape)?;
        let [_, c, h, w] = x.shape;
        let [_, cig, kh, kw] = d.weights.shape;
        let slope = d.act.code().1;
        let p = Params {
            n: n as u32,
            c4: c.div_ceil(4) as u32,
            h: h as u32,
            w: w as u32,
            co: co as u32,
            co4: co.div_ceil(4) as u32,
            oh: oh as u32,
            ow: ow as u32,
            kh: kh as u32,
            kw: kw as u32,
            stride: d.stride as u32,
            pad: pack_pad(d.pad.begin)?,
            win: self.win as u32,
            cig: cig as u32,
            cog: (co / d.groups) as u32,
            pad_word: pad_word(d.input),
            lo: self.lo,
            hi: self.hi,
            out_offset: d.output.map_or(0, |f| f.offset()),
            slope,
            c: c as u32,
            dh: d.dilation[0] as u32,
            dw: d.dilation[1] as u32,
            add: res.map(|r| r.1).unwrap_or_default(),
            ..Default::default()
        };
        let path = self.effective_path();
        let (pxf, cwf) = FLOAT_BLOCK;
        let px = pixels_per_thread(n * oh * ow);
        let (entry, gz, weights, px) = match (self.depthwise, &self.float_weights) {
            (true, _) => ("depthwise", co.div_ceil(4), &self.weights, px),
            (false, Some(f)) if path == DotPath::Float => (
                "conv_float",
                co.div_ceil(TILE) * (3 - cwf as usize),
                f,
                px.min(pxf),
            ),
            _ => ("conv", co.div_ceil(TILE), &self.weights, px),
        };
        let [gx, gy, _] = grid_1d(n * oh * ow, WG * px);
        // The residual (any tensor where there is none; the shader does not read it then).
        let r = res.map_or(&x.data, |r| &r.0.data);
        let bias = match (entry, path) {
            ("conv", DotPath::Unpacked) => &self.bias_u8,
            _ => &self.bias,
        };
        let tensors = [&x.data, out.tensor(), weights, bias, &self.scale, r];
        let mut consts = if entry == "conv_float" {
            vec![("PXF", px as f64), ("CWF", cwf as f64)]
        } else {
            vec![
                (
                    "NIBBLES",
                    (self.layout == WeightLayout::Nibbles) as u8 as f64,
                ),
                ("PX", px as f64),
            ]
        };
        consts.extend(epilogue_consts(d, res.is_some()));
        s.dispatch(
            path.shader(self.subgroups && s.gpu().subgroups),
            entry,
            &consts,
            bytes_of(&p),
            &tensors,
            [gx, gy, gz as u32],
        )
    }
}

/// A conv epilogue's form as the kernels' overrides (MODE, ACT, HAS_RES), shared by the direct
/// and Winograd kernels: a pipeline each, not uniforms, since lavapipe runs every side of a
/// branch on a uniform value under a mask (see qconv.wgsl).
fn epilogue_consts(d: &QConv, has_res: bool) -> [(&'static str, f64); 3] {
    [
        ("MODE", d.output.is_some() as u8 as f64),
        act_const(d.act),
        res_const(has_res),
    ]
}

#[path = "qconv_winograd.rs"]
mod winograd;
pub use winograd::{winograd_exact, WinogradUse};

#[path = "qconv_bench.rs"]
mod bench;
pub use bench::{bench_cases, bench_run, int8_bench, BenchCase};

/// Every (dot path, subgroup broadcast) form, for tests.
#[cfg(test)]
const VARIANTS: [(DotPath, bool); 6] = [
    (DotPath::Packed, true),
    (DotPath::Packed, false),
    (DotPath::Unpacked, true),
    (DotPath::Unpacked, false),
    (DotPath::Float, true),
    (DotPath::Float, false),
];

#[cfg(test)]
#[path = "qconv_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "qconv_lowbit_tests.rs"]
mod lowbit_tests;

#[cfg(test)]
#[path = "qconv_float_tests.rs"]
mod float_tests;

#[cfg(test)]
#[path = "qconv_winograd_tests.rs"]
mod winograd_tests;
