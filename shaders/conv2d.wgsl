// conv2d NCHW with a fused epilogue: out = act(conv(x, w) + bias + residual).
//
// `gemm` is an implicit GEMM with register blocking and no workgroup memory (barriers are very
// slow on CPU drivers): each invocation accumulates TM4*4 output channels x TN4*4 output pixels
// over K = Ci/groups * KH * KW. Weights are pre-transposed to [groups][K][CoG padded to 4] so that
// four consecutive output channels are one vec4 load; input pixels are gathered with zero padding.
// `direct` serves depthwise and other few-channel groups, where GEMM blocking over channels
// does not fit.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, groups: u32,
    cig: u32, cog: u32, cogp: u32, pixels: u32,
    pad_h: i32, pad_w: i32, tiles_co: u32, tiles_px: u32,
    act: u32, slope: f32, has_bias: u32, has_res: u32,
}

// Kernel size and stride are specialized so the compiler can unroll and fold index math.
override KH: u32 = 3u;
override KW: u32 = 3u;
override SH: u32 = 1u;
override SW: u32 = 1u;
// Register block: TM4 x TN4 tiles of 4 channels x 4 pixels (1..4 each), workgroup size WG.
override TM4: u32 = 2u;
override TN4: u32 = 2u;
override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> wt: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn activate(v: vec4f) -> vec4f {
    switch p.act {
        case 1u: { return max(v, vec4f(0.0)); }
        case 2u: { return clamp(v, vec4f(0.0), vec4f(6.0)); }
        case 3u: { return select(v * p.slope, v, v >= vec4f(0.0)); }
        case 4u: {
            let e = exp(-2.0 * abs(v));
            return sign(v) * (1.0 - e) / (1.0 + e);
        }
        case 5u: {
            let e = exp(-abs(v));
            return select(e / (1.0 + e), 1.0 / (1.0 + e), v >= vec4f(0.0));
        }
        default: { return v; }
    }
}

fn thread_index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Adds bias and residual, activates and stores four channels (co..co+3) of one pixel.
fn store(v: vec4f, co: u32, g: u32, px: u32) {
    if px >= p.pixels { return; }
    let ohw = p.oh * p.ow;
    let n = px / ohw;
    let base = (n * p.co + g * p.cog) * ohw + px % ohw;
    var s = v;
    for (var r = 0u; r < 4u; r++) {
        let c = min(co + r, p.cog - 1u);
        if p.has_bias != 0u { s[r] += bias[g * p.cog + c]; }
        if p.has_res != 0u { s[r] += res[base + c * ohw]; }
    }
    s = activate(s);
    for (var r = 0u; r < 4u; r++) {
        if co + r < p.cog { out[base + (co + r) * ohw] = s[r]; }
    }
}

fn outer(w: vec4f, xv: vec4f) -> mat4x4f {
    return mat4x4f(w * xv.x, w * xv.y, w * xv.z, w * xv.w);
}

// Where four consecutive output pixels read the input: per-lane image base, top and left.
struct Pix { base: vec4i, ih: vec4i, iw: vec4i }

fn pixels(px: u32, g: u32) -> Pix {
    let q = min(px + vec4u(0u, 1u, 2u, 3u), vec4u(p.pixels - 1u));
    let ohw = p.oh * p.ow;
    let r = q % ohw;
    let base = ((q / ohw) * p.ci + g * p.cig) * p.h * p.w;
    return Pix(vec4i(base), vec4i((r / p.ow) * SH) - p.pad_h, vec4i((r % p.ow) * SW) - p.pad_w);
}

// Input values under kernel tap (kh, kw) of channel plane `plane`, zero outside the image.
fn gather(q: Pix, plane: i32, kh: u32, kw: u32) -> vec4f {
    let ih = q.ih + i32(kh);
    let iw = q.iw + i32(kw);
    let ok = (ih >= vec4i(0)) & (ih < vec4i(i32(p.h))) & (iw >= vec4i(0)) & (iw < vec4i(i32(p.w)));
    let i = vec4u(select(vec4i(0), q.base + plane + ih * i32(p.w) + iw, ok));
    return select(vec4f(0.0), vec4f(x[i.x], x[i.y], x[i.z], x[i.w]), ok);
}

@compute @workgroup_size(WG)
fn gemm(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let t = thread_index(gid, nwg);
    if t >= p.tiles_px * p.tiles_co * p.groups { return; }
    let px0 = (t % p.tiles_px) * TN4 * 4u;
    let tc = t / p.tiles_px;
    let co0 = (tc % p.tiles_co) * TM4 * 4u;
    let g = tc / p.tiles_co;
    let q0 = pixels(px0, g);
    let q1 = pixels(px0 + 4u, g);
    let q2 = pixels(px0 + 8u, g);
    let q3 = pixels(px0 + 12u, g);
    // Weight vec4 columns, clamped into the padded row: channels past CoG are never stored.
    let last = p.cogp / 4u - 1u;
    let wc = min(vec4u(co0 / 4u) + vec4u(0u, 1u, 2u, 3u), vec4u(last));
    let kk = p.cig * KH * KW;
    var wr = g * kk * (last + 1u);
    var c00 = mat4x4f(); var c01 = mat4x4f(); var c02 = mat4x4f(); var c03 = mat4x4f();
    var c10 = mat4x4f(); var c11 = mat4x4f(); var c12 = mat4x4f(); var c13 = mat4x4f();
    var c20 = mat4x4f(); var c21 = mat4x4f(); var c22 = mat4x4f(); var c23 = mat4x4f();
    var c30 = mat4x4f(); var c31 = mat4x4f(); var c32 = mat4x4f(); var c33 = mat4x4f();
    let hw = i32(p.h * p.w);
    for (var ci = 0u; ci < p.cig; ci++) {
        let plane = i32(ci) * hw;
        for (var kh = 0u; kh < KH; kh++) {
            for (var kw = 0u; kw < KW; kw++) {
                let x0 = gather(q0, plane, kh, kw);
                var x1 = vec4f(); var x2 = vec4f(); var x3 = vec4f();
                if TN4 > 1u { x1 = gather(q1, plane, kh, kw); }
                if TN4 > 2u { x2 = gather(q2, plane, kh, kw); }
                if TN4 > 3u { x3 = gather(q3, plane, kh, kw); }
                let w0 = wt[wr + wc.x];
                c00 += outer(w0, x0);
                if TN4 > 1u { c01 += outer(w0, x1); }
                if TN4 > 2u { c02 += outer(w0, x2); }
                if TN4 > 3u { c03 += outer(w0, x3); }
                if TM4 > 1u {
                    let w1 = wt[wr + wc.y];
                    c10 += outer(w1, x0);
                    if TN4 > 1u { c11 += outer(w1, x1); }
                    if TN4 > 2u { c12 += outer(w1, x2); }
                    if TN4 > 3u { c13 += outer(w1, x3); }
                }
                if TM4 > 2u {
                    let w2 = wt[wr + wc.z];
                    c20 += outer(w2, x0);
                    if TN4 > 1u { c21 += outer(w2, x1); }
                    if TN4 > 2u { c22 += outer(w2, x2); }
                    if TN4 > 3u { c23 += outer(w2, x3); }
                }
                if TM4 > 3u {
                    let w3 = wt[wr + wc.w];
                    c30 += outer(w3, x0);
                    if TN4 > 1u { c31 += outer(w3, x1); }
                    if TN4 > 2u { c32 += outer(w3, x2); }
                    if TN4 > 3u { c33 += outer(w3, x3); }
                }
                wr += last + 1u;
            }
        }
    }
    // Column j of c<i><j> holds channels co0+4i.. of pixel px0+4j+column.
    for (var c = 0u; c < 4u; c++) {
        let px = px0 + c;
        store(c00[c], co0, g, px);
        if TN4 > 1u { store(c01[c], co0, g, px + 4u); }
        if TN4 > 2u { store(c02[c], co0, g, px + 8u); }
        if TN4 > 3u { store(c03[c], co0, g, px + 12u); }
        if TM4 > 1u {
            store(c10[c], co0 + 4u, g, px);
            if TN4 > 1u { store(c11[c], co0 + 4u, g, px + 4u); }
            if TN4 > 2u { store(c12[c], co0 + 4u, g, px + 8u); }
            if TN4 > 3u { store(c13[c], co0 + 4u, g, px + 12u); }
        }
        if TM4 > 2u {
            store(c20[c], co0 + 8u, g, px);
            if TN4 > 1u { store(c21[c], co0 + 8u, g, px + 4u); }
            if TN4 > 2u { store(c22[c], co0 + 8u, g, px + 8u); }
            if TN4 > 3u { store(c23[c], co0 + 8u, g, px + 12u); }
        }
        if TM4 > 3u {
            store(c30[c], co0 + 12u, g, px);
            if TN4 > 1u { store(c31[c], co0 + 12u, g, px + 4u); }
            if TN4 > 2u { store(c32[c], co0 + 12u, g, px + 8u); }
            if TN4 > 3u { store(c33[c], co0 + 12u, g, px + 12u); }
        }
    }
}

// One output channel x four consecutive pixels per invocation; weights read as scalars.
@compute @workgroup_size(WG)
fn direct(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let t = thread_index(gid, nwg);
    if t >= p.tiles_px * p.co { return; }
    let px0 = (t % p.tiles_px) * 4u;
    let co = t / p.tiles_px;
    let g = co / p.cog;
    let cg = co % p.cog;
    let q = pixels(px0, g);
    let kk = p.cig * KH * KW;
    var wi = g * kk * p.cogp + cg;
    var acc = vec4f();
    let hw = i32(p.h * p.w);
    for (var ci = 0u; ci < p.cig; ci++) {
        for (var kh = 0u; kh < KH; kh++) {
            for (var kw = 0u; kw < KW; kw++) {
                acc += wt[wi / 4u][wi % 4u] * gather(q, i32(ci) * hw, kh, kw);
                wi += p.cogp;
            }
        }
    }
    for (var c = 0u; c < 4u; c++) {
        store_one(acc[c], co, px0 + c);
    }
}

fn store_one(v: f32, co: u32, px: u32) {
    if px >= p.pixels { return; }
    let ohw = p.oh * p.ow;
    let idx = ((px / ohw) * p.co + co) * ohw + px % ohw;
    var s = v;
    if p.has_bias != 0u { s += bias[co]; }
    if p.has_res != 0u { s += res[idx]; }
    out[idx] = activate(vec4f(s)).x;
}
