// conv2d NCHW with a fused epilogue: out = act(conv(x, w) + bias + residual).
//
// `gemm` and `rows` are implicit GEMMs with register blocking and no workgroup memory (barriers
// are very slow on CPU drivers): each invocation accumulates TM4*4 output channels x TN4*4 output
// pixels as 4x4 matrix tiles, four k at a time, over k = (ci * KH + kh) * KWP + kw. Weights are
// pre-transposed to [groups][K rounded up to 4][CoG rounded up to 4] so that four channels of one
// k are one vec4 load (KWP pads 2- and 3-wide kernels to 4 taps with zero weights).
// `gemm` gathers each tap of each pixel; `rows` (width stride 1 or 2, undilated width, KWP == 4) loads a row window
// once per (ci, kh) and builds all four taps of four adjacent pixels from it by swizzles, which
// needs ~3x fewer input loads. `depthwise` (one input channel per group) and `direct` (other
// few-channel groups) serve the convs where blocking over output channels does not fit.
//
// The op prepends a prelude that declares the input `x` and its loads: conv2d_f32.wgsl for any
// width, conv2d_vec4.wgsl (aligned vec4 loads for `rows` and `pointwise`) where they align;
// and one for the weight tiles of a step: conv2d_w_plain.wgsl loads them per lane,
// conv2d_w_subgroup.wgsl shares them across a subgroup.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, groups: u32,
    cig: u32, cog: u32, cogp: u32, pixels: u32,
    pad_h: i32, pad_w: i32, tiles_co: u32, tiles_px: u32,
    _p3: u32, slope: f32, has_bias: u32, _p4: u32,
    k: u32, kp: u32, tiles_row: u32, kh: u32,
    kw: u32, sh: u32, sw: u32, dh: u32,
    dw: u32, _p0: u32, _p1: u32, _p2: u32,
}

// Taps per kernel row in the weight layout, a constant so that the per-tap index math folds.
override KWP: u32 = 4u;
// With KWP == 4, each step of four k is one kernel row; a 3-wide kernel's fourth tap is a zero
// weight, so its loads are skipped (THREE_TAPS).
override THREE_TAPS: bool = false;
// Register block: TM4 x TN4 tiles of 4 channels x 4 pixels (1..4 each), workgroup size WG.
override TM4: u32 = 2u;
override TN4: u32 = 2u;
override WG: u32 = 64u;
// Width stride of `rows` (1 or 2), a constant so that its window shuffles fold.
override SW: u32 = 1u;
// Whether the epilogue adds a residual, fixed per pipeline as ACT is (activation.wgsl).
override HAS_RES: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(2) var<storage, read> wt: array<vec4f>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

fn activate(v: vec4f) -> vec4f {
    return act_vec4(v, ACT, p.slope);
}

fn thread_index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

// Where a block's outputs go: image and offset of its first pixel, real pixels, group.
struct Dst { n: u32, r: u32, live: u32, g: u32 }

fn dst(px0: u32, live: u32, g: u32) -> Dst {
    let ohw = p.oh * p.ow;
    return Dst(px0 / ohw, px0 % ohw, live, g);
}

// Adds bias b and the residual, activates and stores channels co..co+3 of block pixel o.
fn store(v: vec4f, b: vec4f, co: u32, d: Dst, o: u32) {
    let ohw = p.oh * p.ow;
    var n = d.n;
    var r = d.r + o;
    while r >= ohw { r -= ohw; n += 1u; } // a block may run on into the next image
    let base = (n * p.co + d.g * p.cog) * ohw + r;
    var s = v + b;
    if HAS_RES {
        for (var i = 0u; i < 4u; i++) { s[i] += res[base + min(co + i, p.cog - 1u) * ohw]; }
    }
    s = activate(s);
    for (var i = 0u; i < 4u; i++) {
        if co + i < p.cog { out[base + (co + i) * ohw] = s[i]; }
    }
}

// The register block: c<i><j> holds channels co0+4i..+3 (vectors) of pixels px0+4j.. (columns).
struct Acc {
    c00: mat4x4f, c01: mat4x4f, c02: mat4x4f, c03: mat4x4f,
    c10: mat4x4f, c11: mat4x4f, c12: mat4x4f, c13: mat4x4f,
    c20: mat4x4f, c21: mat4x4f, c22: mat4x4f, c23: mat4x4f,
    c30: mat4x4f, c31: mat4x4f, c32: mat4x4f, c33: mat4x4f,
}

// One step of four k: w<i> has columns over k (vectors over channels), x<j> columns over pixels
// (vectors over k). Tiles past TM4/TN4 are compiled out.
fn mac(a: ptr<function, Acc>, w0: mat4x4f, w1: mat4x4f, w2: mat4x4f, w3: mat4x4f,
       x0: mat4x4f, x1: mat4x4f, x2: mat4x4f, x3: mat4x4f) {
    (*a).c00 += w0 * x0;
    if TN4 > 1u { (*a).c01 += w0 * x1; }
    if TN4 > 2u { (*a).c02 += w0 * x2; }
    if TN4 > 3u { (*a).c03 += w0 * x3; }
    if TM4 > 1u {
        (*a).c10 += w1 * x0;
        if TN4 > 1u { (*a).c11 += w1 * x1; }
        if TN4 > 2u { (*a).c12 += w1 * x2; }
        if TN4 > 3u { (*a).c13 += w1 * x3; }
    }
    if TM4 > 2u {
        (*a).c20 += w2 * x0;
        if TN4 > 1u { (*a).c21 += w2 * x1; }
        if TN4 > 2u { (*a).c22 += w2 * x2; }
        if TN4 > 3u { (*a).c23 += w2 * x3; }
    }
    if TM4 > 3u {
        (*a).c30 += w3 * x0;
        if TN4 > 1u { (*a).c31 += w3 * x1; }
        if TN4 > 2u { (*a).c32 += w3 * x2; }
        if TN4 > 3u { (*a).c33 += w3 * x3; }
    }
}

// Stores tile column group j (pixels 4j..4j+3 of the block) of channels co..co+3.
fn store_tile(m: mat4x4f, co: u32, d: Dst, j: u32) {
    var b = vec4f();
    if p.has_bias != 0u {
        for (var i = 0u; i < 4u; i++) { b[i] = bias[d.g * p.cog + min(co + i, p.cog - 1u)]; }
    }
    for (var c = 0u; c < 4u; c++) {
        if 4u * j + c < d.live { store(m[c], b, co, d, 4u * j + c); }
    }
}

// Stores the block whose first channel is co0.
fn finish(a: Acc, co0: u32, d: Dst) {
    store_tile(a.c00, co0, d, 0u);
    if TN4 > 1u { store_tile(a.c01, co0, d, 1u); }
    if TN4 > 2u { store_tile(a.c02, co0, d, 2u); }
    if TN4 > 3u { store_tile(a.c03, co0, d, 3u); }
    if TM4 > 1u {
        store_tile(a.c10, co0 + 4u, d, 0u);
        if TN4 > 1u { store_tile(a.c11, co0 + 4u, d, 1u); }
        if TN4 > 2u { store_tile(a.c12, co0 + 4u, d, 2u); }
        if TN4 > 3u { store_tile(a.c13, co0 + 4u, d, 3u); }
    }
    if TM4 > 2u {
        store_tile(a.c20, co0 + 8u, d, 0u);
        if TN4 > 1u { store_tile(a.c21, co0 + 8u, d, 1u); }
        if TN4 > 2u { store_tile(a.c22, co0 + 8u, d, 2u); }
        if TN4 > 3u { store_tile(a.c23, co0 + 8u, d, 3u); }
    }
    if TM4 > 3u {
        store_tile(a.c30, co0 + 12u, d, 0u);
        if TN4 > 1u { store_tile(a.c31, co0 + 12u, d, 1u); }
        if TN4 > 2u { store_tile(a.c32, co0 + 12u, d, 2u); }
        if TN4 > 3u { store_tile(a.c33, co0 + 12u, d, 3u); }
    }
}

// Weights of four k rows from vec4 row index wr, channel column col: columns over k.
fn wtile(wr: u32, col: u32) -> mat4x4f {
    let r = p.cogp / 4u;
    var w3 = vec4f();
    if !THREE_TAPS { w3 = wt[wr + 3u * r + col]; }
    return mat4x4f(wt[wr + col], wt[wr + r + col], wt[wr + 2u * r + col], w3);
}

// Block coordinates shared by `gemm` and `rows`: the thread's channel tile, group and pixel tile.
struct Block { co0: u32, g: u32, tp: u32, wc: vec4u, wr: u32 }

fn block(t: u32, tc: u32) -> Block {
    let co0 = (tc % p.tiles_co) * TM4 * 4u;
    let g = tc / p.tiles_co;
    // Weight columns clamped into the padded row: channels past CoG are computed, never stored.
    let last = p.cogp / 4u - 1u;
    let wc = min(vec4u(co0 / 4u) + vec4u(0u, 1u, 2u, 3u), vec4u(last));
    return Block(co0, g, t, wc, g * p.kp * (last + 1u));
}

// Where four consecutive output pixels read the input: image base, top row and left column.
struct Pix { base: vec4i, ih: vec4i, iw: vec4i }

fn pixels(px: u32, g: u32) -> Pix {
    let q = min(px + vec4u(0u, 1u, 2u, 3u), vec4u(p.pixels - 1u));
    let ohw = p.oh * p.ow;
    let r = q % ohw;
    let base = ((q / ohw) * p.ci + g * p.cig) * p.h * p.w;
    return Pix(vec4i(base), vec4i((r / p.ow) * p.sh) - p.pad_h, vec4i((r % p.ow) * p.sw) - p.pad_w);
}

// Input under tap k of four pixels (taps dh, dw apart), zero in the padding and for padded taps.
fn tap(q: Pix, k: u32) -> vec4f {
    let ci = k / (p.kh * KWP);
    let kh = (k / KWP) % p.kh;
    let kw = k % KWP;
    let ih = q.ih + i32(kh * p.dh);
    let iw = q.iw + i32(kw * p.dw);
    let ok = (ih >= vec4i(0)) & (ih < vec4i(i32(p.h))) & (iw >= vec4i(0)) & (iw < vec4i(i32(p.w)))
        & vec4<bool>(kw < p.kw && k < p.k);
    let i = vec4u(select(vec4i(0), q.base + i32(ci * p.h * p.w) + ih * i32(p.w) + iw, ok));
    return select(vec4f(0.0), vec4f(ldx(i.x), ldx(i.y), ldx(i.z), ldx(i.w)), ok);
}

// Taps k..k+3 of four pixels: columns over pixels.
fn taps(q: Pix, k: u32) -> mat4x4f {
    var t3 = vec4f();
    if !THREE_TAPS { t3 = tap(q, k + 3u); }
    return transpose(mat4x4f(tap(q, k), tap(q, k + 1u), tap(q, k + 2u), t3));
}

// Any stride and kernel: gathers every tap of every pixel.
@compute @workgroup_size(WG)
fn gemm(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    // The subgroup prelude needs every lane of a group of 8: only whole groups past the end
    // return; other lanes past the end redo the last block and store nothing.
    let t0 = thread_index(gid, nwg);
    if t0 - li % 8u >= p.tiles_px { return; }
    let t = min(t0, p.tiles_px - 1u);
    let b = block(t, wid.z);
    let px0 = b.tp * TN4 * 4u;
    let q0 = pixels(px0, b.g);
    let q1 = pixels(px0 + 4u, b.g);
    let q2 = pixels(px0 + 8u, b.g);
    let q3 = pixels(px0 + 12u, b.g);
    var a: Acc;
    var wr = b.wr;
    for (var k = 0u; k < p.kp; k += 4u) {
        var x1 = mat4x4f(); var x2 = mat4x4f(); var x3 = mat4x4f();
        var w1 = mat4x4f(); var w2 = mat4x4f(); var w3 = mat4x4f();
        let x0 = taps(q0, k);
        if TN4 > 1u { x1 = taps(q1, k); }
        if TN4 > 2u { x2 = taps(q2, k); }
        if TN4 > 3u { x3 = taps(q3, k); }
        let wts = w_tiles(wr, b.wc, li % 8u);
        let w0 = wts.w0;
        if TM4 > 1u { w1 = wts.w1; }
        if TM4 > 2u { w2 = wts.w2; }
        if TM4 > 3u { w3 = wts.w3; }
        mac(&a, w0, w1, w2, w3, x0, x1, x2, x3);
        wr += p.cogp; // four rows of cogp / 4 vec4s
    }
    if t0 < p.tiles_px { finish(a, b.co0, dst(px0, p.pixels - px0, b.g)); }
}

// 1x1 kernels with stride 1 and no padding are a plain GEMM per image: four adjacent pixels of
// one channel are one (aligned) load. Needs H * W % 4 == 0 so groups of 4 stay in one image.
@compute @workgroup_size(WG)
fn pointwise(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    // The subgroup prelude needs every lane of a group of 8: only whole groups past the end
    // return; other lanes past the end redo the last block and store nothing.
    let t0 = thread_index(gid, nwg);
    if t0 - li % 8u >= p.tiles_px { return; }
    let t = min(t0, p.tiles_px - 1u);
    let b = block(t, wid.z);
    let px0 = b.tp * TN4 * 4u;
    let hw = p.h * p.w;
    let o0 = plane_offset(px0, b.g, hw);
    let o1 = plane_offset(px0 + 4u, b.g, hw);
    let o2 = plane_offset(px0 + 8u, b.g, hw);
    let o3 = plane_offset(px0 + 12u, b.g, hw);
    var a: Acc;
    var wr = b.wr;
    for (var k = 0u; k < p.kp; k += 4u) {
        var x1 = mat4x4f(); var x2 = mat4x4f(); var x3 = mat4x4f();
        var w1 = mat4x4f(); var w2 = mat4x4f(); var w3 = mat4x4f();
        let x0 = channels(o0, k, hw);
        if TN4 > 1u { x1 = channels(o1, k, hw); }
        if TN4 > 2u { x2 = channels(o2, k, hw); }
        if TN4 > 3u { x3 = channels(o3, k, hw); }
        let wts = w_tiles(wr, b.wc, li % 8u);
        let w0 = wts.w0;
        if TM4 > 1u { w1 = wts.w1; }
        if TM4 > 2u { w2 = wts.w2; }
        if TM4 > 3u { w3 = wts.w3; }
        mac(&a, w0, w1, w2, w3, x0, x1, x2, x3);
        wr += p.cogp;
    }
    if t0 < p.tiles_px { finish(a, b.co0, dst(px0, p.pixels - px0, b.g)); }
}

// Offset of pixels px..px+3 in the first input channel of group g (clamped past the end).
fn plane_offset(px: u32, g: u32, hw: u32) -> u32 {
    let q = min(px, p.pixels - 4u);
    return ((q / hw) * p.ci + g * p.cig) * hw + q % hw;
}

// Channels k..k+3 of four pixels: columns over pixels; channels past Ci/groups read as zero.
fn channels(o: u32, k: u32, hw: u32) -> mat4x4f {
    let i = o + k * hw;
    let m = mat4x4f(ldx4(i), ldx4(i + hw), ldx4(i + 2u * hw), ldx4(i + 3u * hw));
    if k + 4u <= p.k { return transpose(m); }
    let live = vec4u(k) + vec4u(0u, 1u, 2u, 3u) < vec4u(p.k);
    return transpose(mat4x4f(select(vec4f(), m[0], live.x), select(vec4f(), m[1], live.y),
                             select(vec4f(), m[2], live.z), select(vec4f(), m[3], live.w)));
}

// Column c holds taps 0..3 of pixel c: elements c..c+3 of the window lo ++ hi.
fn slide(lo: vec4f, hi: vec4f) -> mat4x4f {
    return mat4x4f(lo, vec4f(lo.yzw, hi.x), vec4f(lo.zw, hi.xy), vec4f(lo.w, hi.xyz));
}

// Column c holds taps 0..3 of pixel c at width stride 2: elements 2c..2c+3 of a ++ b ++ c.
fn slide2(a: vec4f, b: vec4f, c: vec4f) -> mat4x4f {
    return mat4x4f(a, vec4f(a.zw, b.xy), b, vec4f(b.zw, c.xy));
}

// Width stride SW (1 or 2) and four taps per kernel row: pixel tiles are runs of one output
// row, and each (ci, kh) step loads that run's input window once (SW * TN4 * 4 + 4 values,
// not 4 per tap and pixel).
@compute @workgroup_size(WG)
fn rows(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
        @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    // The subgroup prelude needs every lane of a group of 8: only whole groups past the end
    // return; other lanes past the end redo the last block and store nothing.
    let t0 = thread_index(gid, nwg);
    if t0 - li % 8u >= p.tiles_px { return; }
    let t = min(t0, p.tiles_px - 1u);
    let b = block(t, wid.z);
    let row = b.tp / p.tiles_row; // n * OH + oh
    let ow0 = (b.tp % p.tiles_row) * TN4 * 4u;
    let ih0 = i32((row % p.oh) * p.sh) - p.pad_h;
    let iw0 = i32(ow0 * SW) - p.pad_w;
    let hw = i32(p.h * p.w);
    var rb = i32((row / p.oh) * p.ci + b.g * p.cig) * hw;
    var a: Acc;
    var wr = b.wr;
    for (var ci = 0u; ci < p.cig; ci++) {
        for (var kh = 0u; kh < p.kh; kh++) {
            let ih = ih0 + i32(kh * p.dh);
            let ok = ih >= 0 && ih < i32(p.h);
            let r = rb + ih * i32(p.w);
            var x1 = mat4x4f(); var x2 = mat4x4f(); var x3 = mat4x4f();
            var w1 = mat4x4f(); var w2 = mat4x4f(); var w3 = mat4x4f();
            // Window j covers input columns iw0 + 4j..+3; `join` shifts aligned blocks into it.
            let c0 = iw0 - i32(OFF);
            let e0 = row_block(r, c0, ok);
            let e1 = row_block(r, c0 + 4, ok);
            let e2 = row_block(r, c0 + 8, ok);
            let v1 = join(e1, e2);
            var x0: mat4x4f;
            if SW == 1u {
                x0 = slide(join(e0, e1), v1);
                if TN4 > 1u {
                    let e3 = row_block(r, c0 + 12, ok);
                    let v2 = join(e2, e3);
                    x1 = slide(v1, v2);
                    if TN4 > 2u {
                        let e4 = row_block(r, c0 + 16, ok);
                        let v3 = join(e3, e4);
                        x2 = slide(v2, v3);
                        if TN4 > 3u { x3 = slide(v3, join(e4, row_block(r, c0 + 20, ok))); }
                    }
                }
            } else {
                // Pixel group j reads window elements 8j..8j+9: vec4s v(2j), v(2j+1), v(2j+2).
                let e3 = row_block(r, c0 + 12, ok);
                let v2 = join(e2, e3);
                x0 = slide2(join(e0, e1), v1, v2);
                if TN4 > 1u {
                    let e4 = row_block(r, c0 + 16, ok);
                    let e5 = row_block(r, c0 + 20, ok);
                    let v4 = join(e4, e5);
                    x1 = slide2(v2, join(e3, e4), v4);
                    if TN4 > 2u {
                        let e6 = row_block(r, c0 + 24, ok);
                        let e7 = row_block(r, c0 + 28, ok);
                        let v6 = join(e6, e7);
                        x2 = slide2(v4, join(e5, e6), v6);
                        if TN4 > 3u {
                            let e8 = row_block(r, c0 + 32, ok);
                            let e9 = row_block(r, c0 + 36, ok);
                            x3 = slide2(v6, join(e7, e8), join(e8, e9));
                        }
                    }
                }
            }
            let wts = w_tiles(wr, b.wc, li % 8u);
            let w0 = wts.w0;
            if TM4 > 1u { w1 = wts.w1; }
            if TM4 > 2u { w2 = wts.w2; }
            if TM4 > 3u { w3 = wts.w3; }
            mac(&a, w0, w1, w2, w3, x0, x1, x2, x3);
            wr += p.cogp;
        }
        rb += hw;
    }
    if t0 < p.tiles_px { finish(a, b.co0, dst(row * p.ow + ow0, p.ow - ow0, b.g)); }
}

// One output channel x four consecutive pixels per invocation; weights read as scalars.
@compute @workgroup_size(WG)
fn direct(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let t = thread_index(gid, nwg);
    if t >= p.tiles_px * p.co { return; }
    let px0 = (t % p.tiles_px) * 4u;
    let co = t / p.tiles_px;
    let g = co / p.cog;
    let q = pixels(px0, g);
    let wbase = g * p.kp * p.cogp + co % p.cog;
    var acc = vec4f();
    for (var ci = 0u; ci < p.cig; ci++) {
        for (var kh = 0u; kh < p.kh; kh++) {
            for (var kw = 0u; kw < p.kw; kw++) {
                let k = (ci * p.kh + kh) * KWP + kw;
                let wi = wbase + k * p.cogp;
                acc += wt[wi / 4u][wi % 4u] * tap(q, k);
            }
        }
    }
    let ohw = p.oh * p.ow;
    for (var c = 0u; c < 4u; c++) {
        let px = px0 + c;
        if px >= p.pixels { break; }
        let i = ((px / ohw) * p.co + co) * ohw + px % ohw;
        var s = acc[c];
        if p.has_bias != 0u { s += bias[co]; }
        if HAS_RES { s += res[i]; }
        out[i] = activate(vec4f(s)).x;
    }
}

// Input column e of the row at offset rb, zero outside the image.
fn col(rb: i32, e: i32) -> f32 {
    let ok = e >= 0 && e < i32(p.w);
    return select(0.0, ldx(u32(select(0, rb + e, ok))), ok);
}

// Depthwise-like convs (one input channel per group): one output channel x four adjacent
// outputs of one row per invocation. Unlike `direct`, whose four pixels may straddle rows and
// whose taps are decoded by division, a row's input positions and bounds are set once and
// each tap costs four loads and one weight.
@compute @workgroup_size(WG)
fn depthwise(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let t = thread_index(gid, nwg);
    let plane = p.oh * p.tiles_row;
    if t >= p.n * p.co * plane { return; }
    let nco = t / plane;
    let r = t % plane;
    let oy = r / p.tiles_row;
    let ox0 = (r % p.tiles_row) * 4u;
    let co = nco % p.co;
    let g = co / p.cog;
    let xb = i32(((nco / p.co) * p.ci + g) * p.h * p.w);
    let iy0 = i32(oy * p.sh) - p.pad_h;
    let ix = vec4i(vec4u(ox0) + vec4u(0u, 1u, 2u, 3u)) * i32(p.sw) - vec4i(p.pad_w);
    let wbase = g * p.kp * p.cogp + co % p.cog;
    var acc = vec4f();
    // 3-wide undilated rows at width stride 1 or 2: the 3 * SW + 3 input columns under the
    // four outputs are loaded once and shared by the three taps.
    let row3 = THREE_TAPS && p.dw == 1u && SW <= 2u;
    for (var ky = 0u; ky < p.kh; ky++) {
        let iy = iy0 + i32(ky * p.dh);
        if iy < 0 || iy >= i32(p.h) { continue; }
        let rb = xb + iy * i32(p.w);
        if row3 {
            let e = ix.x;
            let wi = wbase + ky * KWP * p.cogp;
            let w0 = wt[wi / 4u][wi % 4u];
            let w1 = wt[(wi + p.cogp) / 4u][wi % 4u];
            let w2 = wt[(wi + 2u * p.cogp) / 4u][wi % 4u];
            let a = vec4f(col(rb, e), col(rb, e + 1), col(rb, e + 2), col(rb, e + 3));
            if SW == 1u {
                let b = vec2f(col(rb, e + 4), col(rb, e + 5));
                acc += w0 * a + w1 * vec4f(a.yzw, b.x) + w2 * vec4f(a.zw, b);
            } else {
                let b = vec4f(col(rb, e + 4), col(rb, e + 5), col(rb, e + 6), col(rb, e + 7));
                let c8 = col(rb, e + 8);
                acc += w0 * vec4f(a.xz, b.xz) + w1 * vec4f(a.yw, b.yw) + w2 * vec4f(a.z, b.xz, c8);
            }
            continue;
        }
        for (var kx = 0u; kx < p.kw; kx++) {
            let e = ix + vec4i(i32(kx * p.dw));
            let ok = (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
            let i = vec4u(select(vec4i(0), vec4i(rb) + e, ok));
            let v = select(vec4f(0.0), vec4f(ldx(i.x), ldx(i.y), ldx(i.z), ldx(i.w)), ok);
            let wi = wbase + (ky * KWP + kx) * p.cogp;
            acc += wt[wi / 4u][wi % 4u] * v;
        }
    }
    let ob = nco * p.oh * p.ow + oy * p.ow + ox0;
    let live = min(p.ow - ox0, 4u);
    var s = acc;
    if p.has_bias != 0u { s += vec4f(bias[co]); }
    if HAS_RES {
        for (var c = 0u; c < live; c++) { s[c] += res[ob + c]; }
    }
    s = activate(s);
    for (var c = 0u; c < live; c++) { out[ob + c] = s[c]; }
}
