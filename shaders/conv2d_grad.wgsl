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
// and output pixels of dy[n, o, oy, ox] * x[n, g*cig + c, oy*s - pad + ky, ox*s - pad + kx],
// t = (c * kh + ky) * kw + kx. A thread owns 4 output channels (of one group) x 4 taps.
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
    // Per tap: input channel offset and kernel offsets; invalid taps read nothing.
    var tc: array<u32, 4>;
    var ty: array<i32, 4>;
    var tx: array<i32, 4>;
    var tok: array<bool, 4>;
    for (var j = 0u; j < 4u; j++) {
        let t = tb * 4u + j;
        tok[j] = t < taps;
        let tt = min(t, taps - 1u);
        tc[j] = g * p.cig + tt / (p.kh * p.kw);
        ty[j] = i32((tt / p.kw) % p.kh) - i32(p.pad_lo);
        tx[j] = i32(tt % p.kw) - i32(p.pad_lo);
    }
    var ook: array<bool, 4>;
    var oc: array<u32, 4>;
    for (var j = 0u; j < 4u; j++) {
        let o = ob * 4u + j;
        ook[j] = o < cog;
        oc[j] = g * cog + min(o, cog - 1u);
    }
    var acc: array<vec4f, 4>;
    let n0 = chunk * p.chunk;
    let n1 = min(n0 + p.chunk, p.n);
    let plane = p.oh * p.ow;
    for (var nn = n0; nn < n1; nn++) {
        for (var oy = 0u; oy < p.oh; oy++) {
            for (var ox = 0u; ox < p.ow; ox++) {
                var xv = vec4f(0.0);
                for (var j = 0u; j < 4u; j++) {
                    let iy = i32(oy * p.stride) + ty[j];
                    let ix = i32(ox * p.stride) + tx[j];
                    if tok[j] && iy >= 0 && ix >= 0 && iy < i32(p.h) && ix < i32(p.w) {
                        xv[j] = wx[((nn * p.c + tc[j]) * p.h + u32(iy)) * p.w + u32(ix)];
                    }
                }
                let px = oy * p.ow + ox;
                for (var j = 0u; j < 4u; j++) {
                    acc[j] += wdy[(nn * p.co + oc[j]) * plane + px] * xv;
                }
            }
        }
    }
    for (var j = 0u; j < 4u; j++) {
        if !ook[j] { continue; }
        let base = (chunk * p.co + oc[j]) * taps;
        for (var k = 0u; k < 4u; k++) {
            if tok[k] {
                part[base + tb * 4u + k] = acc[j][k];
            }
        }
    }
}
