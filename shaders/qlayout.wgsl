// INT8 gathers and pools on the packed layout of qconv.wgsl (this file is appended to it; see
// src/ops/qlayout.rs and quant::int8_ops for the exact math).

// Output word i of a gather: its image, channel word and input pixel (sampled by the stride).
struct Gathered { n: u32, cw: u32, pix: u32 }
fn gathered(i: u32) -> Gathered {
    let ohw = p.oh * p.ow;
    let r = i % ohw;
    let pix = (r / p.ow) * p.stride * p.w + (r % p.ow) * p.stride;
    return Gathered(i / (ohw * p.co4), (i / ohw) % p.co4, pix);
}

// Output word i (four channels of one output pixel) from packed a (x) and b (wt); the channel
// map is in `bias`: m < p.c reads a's channel m, m >= p.c reads b's channel m - p.c, -1 is real
// zero. Each source is requantized by its multiplier and the shift, then clamped.
@compute @workgroup_size(256)
fn gather(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.co4 * p.oh * p.ow {
        return;
    }
    let g = gathered(i);
    let n = g.n;
    let cw = g.cw;
    let pix = g.pix;
    let hw = p.h * p.w;
    var q = vec4<i32>(0);
    for (var k = 0u; k < 4u; k++) {
        let c = 4u * cw + k;
        if c >= p.co {
            break;
        }
        let m = bias[c];
        var v = 0;
        if m >= 0 && u32(m) < p.c {
            let ch = u32(m);
            v = (unpack(x[(n * p.c4 + ch / 4u) * hw + pix])[ch % 4u] + p.a_offset) * p.ma;
        } else if m >= 0 {
            let ch = u32(m) - p.c;
            v = (unpack(wt[(n * p.c4b + ch / 4u) * hw + pix])[ch % 4u] + p.b_offset) * p.mb;
        }
        q[k] = clamp(shift_rne(vec4<i32>(v), p.shift).x, p.lo, p.hi);
    }
    out[i] = pack(q - p.out_offset);
}

// A gather that moves whole words (`QGather::word_map`, in `wt`): output word i is input word
// map[cw] of the same image and sampled pixel, or real zero (pad_word) for -1.
@compute @workgroup_size(256)
fn gather_words(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.co4 * p.oh * p.ow {
        return;
    }
    let g = gathered(i);
    let m = bitcast<i32>(wt[g.cw]);
    let word = x[(g.n * p.c4 + u32(max(m, 0))) * p.h * p.w + g.pix];
    out[i] = select(p.pad_word, word, m >= 0);
}

// The window of a pool's output word i: its plane, its start in the padded input (sy, sx) and
// its rows [ya, yb) and columns [xa, xb) inside the input. kh: the kernel; pad: top | left << 16.
struct PoolWin { plane: u32, sy: i32, sx: i32, ya: i32, yb: i32, xa: i32, xb: i32 }

fn pool_window(i: u32) -> PoolWin {
    let ohw = p.oh * p.ow;
    let r = i % ohw;
    let sy = i32((r / p.ow) * p.stride);
    let sx = i32((r % p.ow) * p.stride);
    let y0 = sy - i32(p.pad & 0xffffu);
    let x0 = sx - i32(p.pad >> 16u);
    let k = i32(p.kh);
    return PoolWin(i / ohw, sy, sx, max(y0, 0), min(y0 + k, i32(p.h)), max(x0, 0),
                   min(x0 + k, i32(p.w)));
}

// Max over each window of the stored values (one offset, so their order is the real one);
// padding is skipped. One output word a thread.
@compute @workgroup_size(256)
fn max_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.c4 * p.oh * p.ow {
        return;
    }
    let win = pool_window(i);
    var best = vec4<i32>(-1000);
    for (var iy = win.ya; iy < win.yb; iy++) {
        let row = (win.plane * p.h + u32(iy)) * p.w;
        for (var ix = win.xa; ix < win.xb; ix++) {
            best = max(best, unpack(x[row + u32(ix)]));
        }
    }
    out[i] = pack(best);
}

// Global average pool of one (image, channel word): exact i32 sums of the real integers, then
// one f32 multiply, round half to even and clamp (as the conv epilogue).
@compute @workgroup_size(256)
fn global_avg_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.c4 {
        return;
    }
    let hw = p.h * p.w;
    var sum = vec4<i32>(0);
    for (var r = 0u; r < hw; r++) {
        sum += unpack(x[i * hw + r]);
    }
    sum += vec4<i32>(i32(hw) * p.a_offset);
    let v = vec4<f32>(sum) * p.qscale;
    out[i] = requant_word(v, 4u * (i % p.c4), p.c, p.lo, p.hi, p.out_offset);
}

// Spatial padding of packed words (ONNX Pad on H and W), one output word a thread; kh, kw:
// the top and left padding; mode 0 fills with pad_word (the quantized constant in all four
// bytes), 1 reflects without repeating the edge, 2 repeats the edge.
@compute @workgroup_size(256)
fn pad2d(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    let ohw = p.oh * p.ow;
    if i >= p.n * p.c4 * ohw {
        return;
    }
    let r = i % ohw;
    let plane = i / ohw;
    let sy = pad_source(r / p.ow, p.kh, p.h, p.mode);
    let sx = pad_source(r % p.ow, p.kw, p.w, p.mode);
    if sy < 0 || sx < 0 {
        out[i] = p.pad_word;
    } else {
        out[i] = x[(plane * p.h + u32(sy)) * p.w + u32(sx)];
    }
}

// Average pool (quant::int8_ops::QAvgPool), one output word a thread: the exact i32 sum of
// the window's real integers times the multiplier of its divisor (`wt[d]`, f32 bits), then
// round half to even and clamp. dh, dw: the padded input's size; mode 1: the padding counts in
// the divisor (the window clipped to dh x dw).
@compute @workgroup_size(256)
fn avg_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.c4 * p.oh * p.ow {
        return;
    }
    let win = pool_window(i);
    var sum = vec4<i32>(0);
    for (var iy = win.ya; iy < win.yb; iy++) {
        let row = (win.plane * p.h + u32(iy)) * p.w;
        for (var ix = win.xa; ix < win.xb; ix++) {
            sum += unpack(x[row + u32(ix)]);
        }
    }
    var d = max(win.yb - win.ya, 0) * max(win.xb - win.xa, 0);
    sum += vec4<i32>(d * p.a_offset);
    if p.mode == 1u {
        let k = i32(p.kh);
        d = min(k, i32(p.dh) - win.sy) * min(k, i32(p.dw) - win.sx);
    }
    let v = vec4<f32>(sum) * bitcast<f32>(wt[d]);
    out[i] = requant_word(v, 4u * (win.plane % p.c4), p.c, p.lo, p.hi, p.out_offset);
}

// Flatten to [N, C * H * W, 1, 1], one output word a thread: features 4j..4j+3 of an image
// (feature f = channel * H * W + pixel), stored bytes moved; co: features, co4: their words;
// lanes from co on take pad_word's byte (real 0).
@compute @workgroup_size(256)
fn flatten(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.n * p.co4 {
        return;
    }
    let n = i / p.co4;
    let hw = p.h * p.w;
    var word = 0u;
    for (var t = 0u; t < 4u; t++) {
        let f = 4u * (i % p.co4) + t;
        var b = p.pad_word & 255u;
        if f < p.co {
            let c = f / hw;
            b = (x[(n * p.c4 + c / 4u) * hw + f % hw] >> (8u * (c % 4u))) & 255u;
        }
        word |= b << (8u * t);
    }
    out[i] = word;
}
