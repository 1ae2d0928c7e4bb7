// INT8 conv2d / linear with i32 accumulation, plus quantize / dequantize / residual add.
// Layouts (see src/ops/qconv.rs): activations are i8 packed 4 channels per u32, [N, C4, H, W];
// unsigned values are stored minus 128. The host appends `fn dot4(a: u32, b: u32) -> i32`:
// either dot4I8Packed or dot4_u8 below (for adapters without packed dot products), a
// weight-load prelude (qconv_w_plain.wgsl or qconv_w_subgroup.wgsl) and the exact
// float-accumulation entry (qconv_float.wgsl); the byte helpers are in qint.wgsl.

struct Params {
    n: u32, c4: u32, h: u32, w: u32,
    co: u32, co4: u32, oh: u32, ow: u32,
    // pad: the begin padding, top | left << 16.
    kh: u32, kw: u32, stride: u32, pad: u32,
    // Input words per output-channel tile, channels per group in / out.
    win: u32, cig: u32, cog: u32,
    // The stored zero point replicated in all four bytes (padding reads this).
    pad_word: u32,
    lo: i32, hi: i32,
    // Stored = real - out_offset (128 for unsigned outputs).
    out_offset: i32,
    // pad2d (qlayout.wgsl): the fill mode (conv's output form is the MODE override).
    mode: u32,
    // conv and add_f32: leaky ReLU's slope (the activation is the ACT override).
    slope: f32,
    // quantize / dequantize / add: channels, 1 / scale or scale.
    c: u32, qscale: f32,
    // add: integer multipliers, shift and the stored offsets of both inputs.
    ma: i32, mb: i32, shift: u32, a_offset: i32, b_offset: i32,
    // gather: the second source's channel words.
    c4b: u32,
    // conv: tap spacing (dilation) per axis.
    dh: u32, dw: u32,
    _r0: u32,
    // conv with an int8 output and HAS_RES: the residual add fused into the epilogue (the
    // conv's output as its input a, `res` as b).
    add: AddK,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<u32>;
@group(0) @binding(2) var<storage, read_write> out: array<u32>;
@group(0) @binding(3) var<storage, read> wt: array<u32>;
@group(0) @binding(4) var<storage, read> bias: array<i32>;
@group(0) @binding(5) var<storage, read> scale: array<f32>;
@group(0) @binding(6) var<storage, read> res: array<u32>;

const WG: u32 = 64u;
// Conv / depthwise weights of <= 4 bits, two per byte (see `weight` below); 8-bit otherwise.
override NIBBLES: bool = false;
// The high nibble of every byte: a nibble moved there is an i8 lane worth 16x its value.
const HI: u32 = 0xf0f0f0f0u;
// Output pixels per thread (1, 2, 4 or 8), strided by WG so neighbouring threads read
// neighbouring words. The host lowers it for small calls (batch 1 on 8x8 maps), where most of
// 8 pixels per thread would be past the end and computed for nothing.
override PX: u32 = 8u;
// The conv epilogue, fixed per pipeline rather than read from the uniforms: lavapipe runs both
// sides of a branch on a uniform value under a mask, so a uniform choice would pay for both
// output forms at every output. MODE 0: f32 outputs with activation ACT; 1: int8 outputs,
// plus the residual add where HAS_RES.
override MODE: u32 = 0u;
override ACT: u32 = 0u;
override HAS_RES: bool = false;

// The integer dot without the packed builtin, on activations read as unsigned bytes
// (stored + 128) and signed weights: sum((a_k + 128) * b_k). The host's bias for this form
// subtracts 128 x the weight sum (`QConv2d::bias_u8`). With one operand's 17 high bits zero
// and the other's 16 sign bits, LLVM multiplies and adds with x86's vpdpwssd / pmaddwd
// instead of pmulld (README, speed).
fn dot4_u8(a: u32, b: u32) -> i32 {
    let u = (vec4<u32>(a ^ 0x80808080u) >> vec4<u32>(0u, 8u, 16u, 24u)) & vec4<u32>(255u);
    let m = vec4<i32>(u) * unpack(b);
    return m.x + m.y + m.z + m.w;
}

// Weight word i (0..7) of the 8 at `wi`. Nibble weights store words i and i + 4 in one u32,
// word i in the high nibbles: masking gives its i8 lanes times 16 (exact, no sign extension
// needed), so the dot products run unchanged and `store` divides the sums by 16.
fn weight(wi: u32, i: u32) -> u32 {
    if !NIBBLES {
        return wt[wi + i];
    }
    let v = wt[wi + i % 4u];
    return select(v, v << 4u, i >= 4u) & HI;
}

// The float form's weight vec4 i (f32 bits).
fn wvec(i: u32) -> vec4f {
    let o = 4u * i;
    return bitcast<vec4f>(vec4<u32>(wt[o], wt[o + 1u], wt[o + 2u], wt[o + 3u]));
}

fn activate(v: f32) -> f32 {
    switch ACT {
        case 1u: { return max(v, 0.0); }
        case 2u: { return clamp(v, 0.0, 6.0); }
        case 3u: { return select(v * p.slope, v, v >= 0.0); }
        default: { return v; }
    }
}

// One output pixel: image n, flat output position r, and its input window origin.
struct Pix {
    n: u32,
    r: u32,
    live: bool,
    base: u32,
    iy: i32,
    ix: i32,
}

fn pixel(q: u32, word: u32) -> Pix {
    let ohw = p.oh * p.ow;
    let npix = p.n * ohw;
    let c = min(q, npix - 1u);
    let n = c / ohw;
    let r = c % ohw;
    let iy = i32((r / p.ow) * p.stride) - i32(p.pad & 0xffffu);
    let ix = i32((r % p.ow) * p.stride) - i32(p.pad >> 16u);
    return Pix(n, r, q < npix, (n * p.c4 + word) * p.h * p.w, iy, ix);
}

// Word offset of tap (ky, kx) for pixel `px`, with bit 31 set in the padding (offsets stay
// below 2^31 since tensors are far smaller than 8 GiB).
fn tap(px: Pix, ky: u32, kx: u32) -> u32 {
    // Negative coordinates wrap to huge u32s, so one unsigned compare per axis suffices.
    let iy = u32(px.iy + i32(ky * p.dh));
    let ix = u32(px.ix + i32(kx * p.dw));
    return select(px.base | PAD, px.base + iy * p.w + ix, iy < p.h && ix < p.w);
}

const PAD: u32 = 0x80000000u;

// Padding offsets point at the pixel's (valid) base word with bit 31 set, so stepping them by
// whole channel planes keeps them valid.
fn load(o: u32) -> u32 {
    return select(x[o & ~PAD], p.pad_word, o >= PAD);
}

// Epilogue for output channels 4*cw..4*cw+3 of one pixel (see cpu::qconv for the exact math).
fn store(px: Pix, cw: u32, acc: vec4<i32>) {
    if !px.live || cw >= p.co4 {
        return;
    }
    let c = 4u * cw;
    // Nibble weights summed 16x their value; the shift is exact (no wrap, see WeightLayout::auto).
    let sum = select(acc, acc >> vec4<u32>(4u), NIBBLES);
    let total = sum + vec4<i32>(bias[c], bias[c + 1u], bias[c + 2u], bias[c + 3u]);
    let v = vec4<f32>(total) * vec4<f32>(scale[c], scale[c + 1u], scale[c + 2u], scale[c + 3u]);
    let ohw = p.oh * p.ow;
    if MODE == 0u {
        for (var k = 0u; k < 4u; k++) {
            if c + k < p.co {
                out[(px.n * p.co + c + k) * ohw + px.r] = bitcast<u32>(activate(v[k]));
            }
        }
    } else {
        let o = (px.n * p.co4 + cw) * ohw + px.r;
        var q = requant_word(v, c, p.co, p.lo, p.hi, p.out_offset);
        if HAS_RES {
            q = add_word(q, res[o], p.add);
        }
        out[o] = q;
    }
}

// First input word of output-channel tile t (8 channels): the word holding its first group's
// first channel, moved back so that `win` words stay inside the tensor.
fn window_start(t: u32) -> u32 {
    let first_group = (8u * t) / p.cog;
    return min((first_group * p.cig) / 4u, p.c4 - p.win);
}

// Dense and grouped conv / linear: each thread computes 8 output channels (words a, b) x 8
// pixels with dot4 over 4 packed input channels. Register blocking without workgroup memory:
// each loaded word feeds 8 dot4s; the weights of a step are the same for the whole workgroup
// (`weights8` comes from a plain-load or subgroup-broadcast prelude).
@compute @workgroup_size(WG)
fn conv(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(local_invocation_index) lid: u32) {
    let t = wid.z;
    let first = (wid.x + wid.y * nwg.x) * (WG * PX) + lid;
    let start = window_start(t);
    let lane = lid % 8u;
    var px: array<Pix, 8>;
    for (var i = 0u; i < PX; i++) {
        px[i] = pixel(first + i * WG, start);
    }
    let hw = p.h * p.w;
    var a0 = vec4<i32>(0); var a1 = vec4<i32>(0); var a2 = vec4<i32>(0); var a3 = vec4<i32>(0);
    var a4 = vec4<i32>(0); var a5 = vec4<i32>(0); var a6 = vec4<i32>(0); var a7 = vec4<i32>(0);
    var b0 = vec4<i32>(0); var b1 = vec4<i32>(0); var b2 = vec4<i32>(0); var b3 = vec4<i32>(0);
    var b4 = vec4<i32>(0); var b5 = vec4<i32>(0); var b6 = vec4<i32>(0); var b7 = vec4<i32>(0);
    let step = select(8u, 4u, NIBBLES);
    var wi = t * p.kh * p.kw * p.win * step;
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            var o0 = tap(px[0], ky, kx); var o1 = tap(px[1], ky, kx);
            var o2 = tap(px[2], ky, kx); var o3 = tap(px[3], ky, kx);
            var o4 = tap(px[4], ky, kx); var o5 = tap(px[5], ky, kx);
            var o6 = tap(px[6], ky, kx); var o7 = tap(px[7], ky, kx);
            for (var j = 0u; j < p.win; j++) {
                let ws = weights8(wi, lane);
                let w0 = ws.a.x; let w1 = ws.a.y; let w2 = ws.a.z; let w3 = ws.a.w;
                let w4 = ws.b.x; let w5 = ws.b.y; let w6 = ws.b.z; let w7 = ws.b.w;
                wi += step;
                var x = load(o0);
                a0 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                b0 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                if PX > 1u {
                    x = load(o1);
                    a1 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b1 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 2u {
                    x = load(o2);
                    a2 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b2 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 3u {
                    x = load(o3);
                    a3 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b3 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 4u {
                    x = load(o4);
                    a4 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b4 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 5u {
                    x = load(o5);
                    a5 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b5 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 6u {
                    x = load(o6);
                    a6 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b6 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                if PX > 7u {
                    x = load(o7);
                    a7 += vec4<i32>(dot4(x, w0), dot4(x, w1), dot4(x, w2), dot4(x, w3));
                    b7 += vec4<i32>(dot4(x, w4), dot4(x, w5), dot4(x, w6), dot4(x, w7));
                }
                o0 += hw; o1 += hw; o2 += hw; o3 += hw; o4 += hw; o5 += hw; o6 += hw; o7 += hw;
            }
        }
    }
    let ca = 2u * t;
    let cb = ca + 1u;
    store(px[0], ca, a0); store(px[0], cb, b0);
    if PX > 1u { store(px[1], ca, a1); store(px[1], cb, b1); }
    if PX > 2u { store(px[2], ca, a2); store(px[2], cb, b2); }
    if PX > 3u { store(px[3], ca, a3); store(px[3], cb, b3); }
    if PX > 4u { store(px[4], ca, a4); store(px[4], cb, b4); }
    if PX > 5u { store(px[5], ca, a5); store(px[5], cb, b5); }
    if PX > 6u { store(px[6], ca, a6); store(px[6], cb, b6); }
    if PX > 7u { store(px[7], ca, a7); store(px[7], cb, b7); }
}

// Depthwise (one channel per group): the reduction runs over the window only, so channels stay
// packed and each byte lane multiplies its own channel; output word cw reads input word cw.
// Load-bound (4 MACs per loaded word); reusing loads across kx with a
// row-segment mapping is the next step if depthwise layers ever dominate.
@compute @workgroup_size(WG)
fn depthwise(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
             @builtin(local_invocation_index) lid: u32) {
    let cw = wid.z;
    let first = (wid.x + wid.y * nwg.x) * (WG * PX) + lid;
    let p0 = pixel(first, cw); let p1 = pixel(first + WG, cw);
    let p2 = pixel(first + 2u * WG, cw); let p3 = pixel(first + 3u * WG, cw);
    let p4 = pixel(first + 4u * WG, cw); let p5 = pixel(first + 5u * WG, cw);
    let p6 = pixel(first + 6u * WG, cw); let p7 = pixel(first + 7u * WG, cw);
    var a0 = vec4<i32>(0); var a1 = vec4<i32>(0); var a2 = vec4<i32>(0); var a3 = vec4<i32>(0);
    var a4 = vec4<i32>(0); var a5 = vec4<i32>(0); var a6 = vec4<i32>(0); var a7 = vec4<i32>(0);
    // Nibble weights: words cw and cw + 1 (cw even) share a u32, as in `weight`.
    var wi = select(cw, cw / 2u, NIBBLES) * p.kh * p.kw;
    let part = select(0u, 4u * (cw % 2u), NIBBLES);
    for (var ky = 0u; ky < p.kh; ky++) {
        for (var kx = 0u; kx < p.kw; kx++) {
            let w = unpack(weight(wi, part));
            wi++;
            a0 += unpack(load(tap(p0, ky, kx))) * w;
            if PX > 1u { a1 += unpack(load(tap(p1, ky, kx))) * w; }
            if PX > 2u { a2 += unpack(load(tap(p2, ky, kx))) * w; }
            if PX > 3u { a3 += unpack(load(tap(p3, ky, kx))) * w; }
            if PX > 4u { a4 += unpack(load(tap(p4, ky, kx))) * w; }
            if PX > 5u { a5 += unpack(load(tap(p5, ky, kx))) * w; }
            if PX > 6u { a6 += unpack(load(tap(p6, ky, kx))) * w; }
            if PX > 7u { a7 += unpack(load(tap(p7, ky, kx))) * w; }
        }
    }
    store(p0, cw, a0);
    if PX > 1u { store(p1, cw, a1); }
    if PX > 2u { store(p2, cw, a2); }
    if PX > 3u { store(p3, cw, a3); }
    if PX > 4u { store(p4, cw, a4); }
    if PX > 5u { store(p5, cw, a5); }
    if PX > 6u { store(p6, cw, a6); }
    if PX > 7u { store(p7, cw, a7); }
}

// Packed word i of an NCHW tensor: the f32 index of its first channel's value, and that channel.
fn word_origin(i: u32, hw: u32) -> vec2u {
    let c0 = 4u * ((i / hw) % p.c4);
    let n = i / (hw * p.c4);
    return vec2u((n * p.c + c0) * hw + i % hw, c0);
}

// f32 NCHW (bits in x) -> packed: q = clamp(round(v * (1 / scale))) - offset, one word a thread.
@compute @workgroup_size(256)
fn quantize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let hw = p.h * p.w;
    if i >= p.n * p.c4 * hw {
        return;
    }
    let o = word_origin(i, hw);
    let base = o.x;
    let c0 = o.y;
    var q = vec4<i32>(0);
    if c0 + 4u <= p.c {
        // A full word: four loads and one vector round + clamp (same math per lane).
        let v = vec4<f32>(
            bitcast<f32>(x[base]),
            bitcast<f32>(x[base + hw]),
            bitcast<f32>(x[base + 2u * hw]),
            bitcast<f32>(x[base + 3u * hw]),
        ) * p.qscale;
        q = vec4<i32>(clamp(round(v), vec4<f32>(f32(p.lo)), vec4<f32>(f32(p.hi))));
    } else {
        for (var k = 0u; k < 4u; k++) {
            if c0 + k < p.c {
                let v = bitcast<f32>(x[base + k * hw]) * p.qscale;
                q[k] = i32(clamp(round(v), f32(p.lo), f32(p.hi)));
            }
        }
    }
    out[i] = pack(q - p.out_offset);
}

// As `quantize`, with one 1 / scale per channel (f32 bits in wt): depthwise inputs.
@compute @workgroup_size(256)
fn quantize_channels(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let hw = p.h * p.w;
    if i >= p.n * p.c4 * hw {
        return;
    }
    let o = word_origin(i, hw);
    let base = o.x;
    let c0 = o.y;
    var q = vec4<i32>(0);
    for (var k = 0u; k < 4u; k++) {
        if c0 + k < p.c {
            let v = bitcast<f32>(x[base + k * hw]) * bitcast<f32>(wt[c0 + k]);
            q[k] = i32(clamp(round(v), f32(p.lo), f32(p.hi)));
        }
    }
    out[i] = pack(q - p.out_offset);
}

// Packed -> f32 NCHW (bits in out): v = f32(stored + offset) * scale, one value a thread.
@compute @workgroup_size(256)
fn dequantize(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let hw = p.h * p.w;
    if i >= p.n * p.c * hw {
        return;
    }
    let r = i % hw;
    let c = (i / hw) % p.c;
    let n = i / (hw * p.c);
    let q = unpack(x[(n * p.c4 + c / 4u) * hw + r])[c % 4u] + p.out_offset;
    out[i] = bitcast<u32>(f32(q) * p.qscale);
}


// Residual add of packed a (in x) and b (in wt), one word a thread (`add_word`). Two entries,
// as one entry with both outputs behind a uniform branch ran far slower on lavapipe (the f32
// branch's per-lane code costs even when not taken).
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.c4 * p.h * p.w {
        return;
    }
    let k = AddK(p.a_offset, p.b_offset, p.ma, p.mb, p.shift, p.lo, p.hi, p.out_offset);
    out[i] = add_word(x[i], wt[i], k);
}

// The same add with f32 output (the real sum, activated), NCHW.
@compute @workgroup_size(256)
fn add_f32(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let hw = p.h * p.w;
    if i >= p.n * p.c4 * hw {
        return;
    }
    let r = i % hw;
    let c0 = 4u * ((i / hw) % p.c4);
    let n = i / (hw * p.c4);
    let v = vec4<f32>(add_total(i)) * p.qscale;
    for (var k = 0u; k < 4u; k++) {
        if c0 + k < p.c {
            out[(n * p.c + c0 + k) * hw + r] = bitcast<u32>(activate(v[k]));
        }
    }
}

fn add_total(i: u32) -> vec4<i32> {
    return (unpack(x[i]) + p.a_offset) * p.ma + (unpack(wt[i]) + p.b_offset) * p.mb;
}
