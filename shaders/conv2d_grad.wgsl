// conv2d training support: the forward kernels' weight layout built on the GPU (also in the
// transposed, flipped form that turns the input gradient into a plain conv), zero insertion
// for strided input gradients, and the weight gradient.

struct Params {
    // prep_weight: target weight [co, cig, kh, kw] in groups `groups`, kernel layout
    // [groups][kp][cogp] with kwp taps per row.
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
    // dilate_pad / wgrad: input [n, c, h, w], output grad [n, co, oh, ow].
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
    chunk: u32,   // images per wgrad chunk
    chunks: u32,
    oblocks: u32, // ceil(cog / 8)
    tblocks: u32, // ceil(cig * kh * kw / 8)
    dil: u32,     // wgrad: tap spacing (dilation) on both axes
    // prep_weight with flip: source kernel size and the taps the target takes from it (rows
    // ry + step * j, columns rx + step * j), so one phase of a strided input gradient.
    skh: u32,
    skw: u32,
    ry: u32,
    rx: u32,
    step: u32,
    // put_phase: the phase's row and column offset.
    py: u32,
    px: u32,
    // im2col_t / dy_rows: the chunk's first image and its columns (images x oh x ow).
    n0: u32,
    cols: u32,
    _p0: u32,
    _p1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One element of the kernel layout. Target row k = (c * kh + y) * kwp + x; rows past the
// weight and the padding taps are zero. With flip, the target is W'[g*cog' + o, c, y, x] =
// W[g*cig' + c, o, ry + step*(kh-1-y), rx + step*(kw-1-x)] where W (the source) is
// [groups*cig', cog', skh, skw] (the plain flip: ry = rx = 0, step = 1, skh = kh, skw = kw).
@compute @workgroup_size(256)
fn prep_weight(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let cog = p.co / p.groups;
    let o = i % p.cogp;
    let row = (i / p.cogp) % p.kp;
    let g = i / (p.cogp * p.kp);
    let x = row % p.kwp;
    let y = (row / p.kwp) % p.kh;
    let c = row / (p.kwp * p.kh);
    var v = 0.0;
    if o < cog && x < p.kw && c < p.cig {
        if p.flip == 1u {
            let sy = p.ry + p.step * (p.kh - 1u - y);
            let sx = p.rx + p.step * (p.kw - 1u - x);
            v = src[(((g * p.cig + c) * cog + o) * p.skh + sy) * p.skw + sx];
        } else {
            v = src[(((g * cog + o) * p.cig + c) * p.kh + y) * p.kw + x];
        }
    }
    dst[i] = v;
}

// z [n, c, zh, zw]: dy placed at (pad_lo + oh * stride, pad_lo + ow * stride), zeros elsewhere.
@compute @workgroup_size(256)
fn dilate_pad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let zx = i % p.zw;
    let zy = (i / p.zw) % p.zh;
    let plane = i / (p.zw * p.zh);
    var v = 0.0;
    if zx >= p.pad_lo && zy >= p.pad_lo {
        let dx = zx - p.pad_lo;
        let dy = zy - p.pad_lo;
        if dx % p.stride == 0u && dy % p.stride == 0u && dx / p.stride < p.ow && dy / p.stride < p.oh {
            v = src[(plane * p.oh + dy / p.stride) * p.ow + dx / p.stride];
        }
    }
    dst[i] = v;
}

// One phase of a strided input gradient into place: dst [n, c, h, w] at rows py + stride * m
// and columns px + stride * mx takes src [n, c, oh, ow] at (m, mx).
@compute @workgroup_size(256)
fn put_phase(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let mx = i % p.ow;
    let m = (i / p.ow) % p.oh;
    let plane = i / (p.ow * p.oh);
    dst[(plane * p.h + p.py + p.stride * m) * p.w + p.px + p.stride * mx] = src[i];
}

// Weight gradient, partial over image chunks: part[chunk, o, t] = sum over the chunk's images
// and output pixels of dy[n, o, oy, ox] * xp[n, g*cig + c, oy*s + ky*d, ox*s + kx*d], with xp the
// input zero-padded beforehand (so the inner loop has no bounds checks) and
// t = (c * kh + ky) * kw + kx. A thread owns 8 output channels (of one group) x 8 taps as four
// mat4x4 accumulators in named variables: lavapipe keeps those in registers, whereas arrays
// indexed in loops spill to memory (several times slower). No workgroup memory: barriers are slow on
// CPU drivers.
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> wdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

// Offset of tap t of group g in an image (taps past the end repeat the last, never stored).
fn tap_off(g: u32, t: u32) -> u32 {
    let tt = min(t, p.cig * p.kh * p.kw - 1u);
    let c = g * p.cig + tt / (p.kh * p.kw);
    return (c * p.h + ((tt / p.kw) % p.kh) * p.dil) * p.w + (tt % p.kw) * p.dil;
}

// Offset of output channel o of group g in an image's dy.
fn out_off(g: u32, o: u32) -> u32 {
    let cog = p.co / p.groups;
    return (g * cog + min(o, cog - 1u)) * p.oh * p.ow;
}

fn outer(x: vec4f, d: vec4f) -> mat4x4f {
    return mat4x4f(x * d.x, x * d.y, x * d.z, x * d.w);
}

// Stores column j of m (taps t0..t0+3) for output channels o0 + j of group g.
fn put(m: mat4x4f, base: u32, g: u32, o0: u32, t0: u32) {
    let taps = p.cig * p.kh * p.kw;
    let cog = p.co / p.groups;
    for (var j = 0u; j < 4u; j++) {
        if o0 + j >= cog { continue; }
        for (var k = 0u; k < 4u; k++) {
            if t0 + k < taps { part[base + (g * cog + o0 + j) * taps + t0 + k] = m[j][k]; }
        }
    }
}

@compute @workgroup_size(64)
fn wgrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.tblocks * p.oblocks * p.groups * p.chunks { return; }
    let tb = i % p.tblocks;
    let ob = (i / p.tblocks) % p.oblocks;
    let g = (i / (p.tblocks * p.oblocks)) % p.groups;
    let chunk = i / (p.tblocks * p.oblocks * p.groups);
    let t0 = tb * 8u;
    let o0 = ob * 8u;
    let a0 = tap_off(g, t0); let a1 = tap_off(g, t0 + 1u);
    let a2 = tap_off(g, t0 + 2u); let a3 = tap_off(g, t0 + 3u);
    let a4 = tap_off(g, t0 + 4u); let a5 = tap_off(g, t0 + 5u);
    let a6 = tap_off(g, t0 + 6u); let a7 = tap_off(g, t0 + 7u);
    let d0 = out_off(g, o0); let d1 = out_off(g, o0 + 1u);
    let d2 = out_off(g, o0 + 2u); let d3 = out_off(g, o0 + 3u);
    let d4 = out_off(g, o0 + 4u); let d5 = out_off(g, o0 + 5u);
    let d6 = out_off(g, o0 + 6u); let d7 = out_off(g, o0 + 7u);
    var c00 = mat4x4f(); var c01 = mat4x4f(); var c10 = mat4x4f(); var c11 = mat4x4f();
    let n0 = chunk * p.chunk;
    let n1 = min(n0 + p.chunk, p.n);
    for (var nn = n0; nn < n1; nn++) {
        let xb = nn * p.c * p.h * p.w;
        let db = nn * p.co * p.oh * p.ow;
        for (var oy = 0u; oy < p.oh; oy++) {
            let row = xb + oy * p.stride * p.w;
            let drow = db + oy * p.ow;
            for (var ox = 0u; ox < p.ow; ox++) {
                let at = row + ox * p.stride;
                let q = drow + ox;
                let x0 = vec4f(wx[at + a0], wx[at + a1], wx[at + a2], wx[at + a3]);
                let x1 = vec4f(wx[at + a4], wx[at + a5], wx[at + a6], wx[at + a7]);
                let e0 = vec4f(wdy[q + d0], wdy[q + d1], wdy[q + d2], wdy[q + d3]);
                let e1 = vec4f(wdy[q + d4], wdy[q + d5], wdy[q + d6], wdy[q + d7]);
                c00 += outer(x0, e0);
                c01 += outer(x1, e0);
                c10 += outer(x0, e1);
                c11 += outer(x1, e1);
            }
        }
    }
    let base = chunk * p.co * p.cig * p.kh * p.kw;
    put(c00, base, g, o0, t0);
    put(c01, base, g, o0, t0 + 4u);
    put(c10, base, g, o0 + 4u, t0);
    put(c11, base, g, o0 + 4u, t0 + 4u);
}

// The weight gradient as a matrix product dw [co, taps] = dy [co, cols] x col [taps, cols]^T over
// a chunk of images (cols = images x output pixels): `im2col_t` writes col[t, q] =
// xp[n0 + n, c, oy*s + ky*d, ox*s + kx*d] with t = (c * kh + ky) * kw + kx and q = (n, oy, ox);
// `dy_rows` writes dy's chunk as [co, cols]. The grid is (column, tap or channel): the tap's
// index math is uniform.
// The index in src (xp) of column q, tap t.
fn im2col_src(q: u32, t: u32) -> u32 {
    let kx = t % p.kw;
    let ky = (t / p.kw) % p.kh;
    let c = t / (p.kw * p.kh);
    let ohw = p.oh * p.ow;
    let n = q / ohw;
    let r = q - n * ohw;
    let oy = r / p.ow;
    let ox = r - oy * p.ow;
    let iy = oy * p.stride + ky * p.dil;
    let ix = ox * p.stride + kx * p.dil;
    return (((p.n0 + n) * p.c + c) * p.h + iy) * p.w + ix;
}

@compute @workgroup_size(64)
fn im2col_t(@builtin(global_invocation_id) gid: vec3u) {
    let q = gid.x;
    if q >= p.cols { return; }
    dst[gid.z * p.cols + q] = src[im2col_src(q, gid.z)];
}

// im2col_t for four adjacent columns per invocation (output widths of 4k, so all four lie in
// one output row): one set of index divisions per four elements.
@compute @workgroup_size(64)
fn im2col_t4(@builtin(global_invocation_id) gid: vec3u) {
    let q = 4u * gid.x;
    if q >= p.cols { return; }
    let s = im2col_src(q, gid.z);
    let d = gid.z * p.cols + q;
    dst[d] = src[s];
    dst[d + 1u] = src[s + p.stride];
    dst[d + 2u] = src[s + 2u * p.stride];
    dst[d + 3u] = src[s + 3u * p.stride];
}

@compute @workgroup_size(64)
fn dy_rows(@builtin(global_invocation_id) gid: vec3u) {
    let q = gid.x;
    if q >= p.cols { return; }
    let o = gid.z;
    let ohw = p.oh * p.ow;
    let n = q / ohw;
    dst[o * p.cols + q] = src[((p.n0 + n) * p.co + o) * ohw + q - n * ohw];
}
