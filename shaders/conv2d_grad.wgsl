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
    oblocks: u32, // ceil(cog / 4)
    tblocks: u32, // ceil(cig * kh * kw / 4)
    dil: u32,     // wgrad: tap spacing (dilation) on both axes
    _p0: u32,
    _p1: u32,
    _p2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// One element of the kernel layout. Target row k = (c * kh + y) * kwp + x; rows past the
// weight and the padding taps are zero. With flip, the target is W'[g*cog' + o, c, y, x] =
// W[g*cig' + c, o, kh-1-y, kw-1-x] where W (the source) is [groups*cig', cog', kh, kw].
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
            v = src[(((g * p.cig + c) * cog + o) * p.kh + (p.kh - 1u - y)) * p.kw + (p.kw - 1u - x)];
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

// Weight gradient, partial over image chunks: part[chunk, o, t] = sum over the chunk's images
// and output pixels of dy[n, o, oy, ox] * xp[n, g*cig + c, oy*s + ky*d, ox*s + kx*d], with xp the
// input zero-padded beforehand (so the inner loop has no bounds checks) and
// t = (c * kh + ky) * kw + kx. A thread owns 8 output channels (of one group) x 8 taps: 16
// loads feed 64 FMAs, in registers (no workgroup memory: barriers are slow on CPU drivers).
@group(0) @binding(1) var<storage, read> wx: array<f32>;
@group(0) @binding(2) var<storage, read> wdy: array<f32>;
@group(0) @binding(3) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(64)
fn wgrad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 64u;
    let taps = p.cig * p.kh * p.kw;
    if i >= p.tblocks * p.oblocks * p.groups * p.chunks { return; }
    let tb = i % p.tblocks;
    let ob = (i / p.tblocks) % p.oblocks;
    let g = (i / (p.tblocks * p.oblocks)) % p.groups;
    let chunk = i / (p.tblocks * p.oblocks * p.groups);
    let cog = p.co / p.groups;
    // Offset of each tap in an image; taps past the end repeat the last (never written).
    var off: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        let t = min(tb * 8u + j, taps - 1u);
        let c = g * p.cig + t / (p.kh * p.kw);
        off[j] = (c * p.h + ((t / p.kw) % p.kh) * p.dil) * p.w + (t % p.kw) * p.dil;
    }
    var oc: array<u32, 8>;
    for (var j = 0u; j < 8u; j++) {
        oc[j] = g * cog + min(ob * 8u + j, cog - 1u);
    }
    var lo: array<vec4f, 8>;
    var hi: array<vec4f, 8>;
    let n0 = chunk * p.chunk;
    let n1 = min(n0 + p.chunk, p.n);
    let plane = p.oh * p.ow;
    for (var nn = n0; nn < n1; nn++) {
        let xb = nn * p.c * p.h * p.w;
        let db = nn * p.co;
        for (var oy = 0u; oy < p.oh; oy++) {
            let row = xb + oy * p.stride * p.w;
            for (var ox = 0u; ox < p.ow; ox++) {
                let at = row + ox * p.stride;
                let x0 = vec4f(wx[at + off[0]], wx[at + off[1]], wx[at + off[2]], wx[at + off[3]]);
                let x1 = vec4f(wx[at + off[4]], wx[at + off[5]], wx[at + off[6]], wx[at + off[7]]);
                let px = oy * p.ow + ox;
                for (var j = 0u; j < 8u; j++) {
                    let d = wdy[(db + oc[j]) * plane + px];
                    lo[j] += d * x0;
                    hi[j] += d * x1;
                }
            }
        }
    }
    for (var j = 0u; j < 8u; j++) {
        if ob * 8u + j >= cog { continue; }
        let base = (chunk * p.co + oc[j]) * taps + tb * 8u;
        for (var k = 0u; k < 4u; k++) {
            if tb * 8u + k < taps { part[base + k] = lo[j][k]; }
            if tb * 8u + k + 4u < taps { part[base + k + 4u] = hi[j][k]; }
        }
    }
}
