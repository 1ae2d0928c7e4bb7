// Pure data movement (one invocation per output element; no arithmetic on values).

struct Params {
    total: u32,
    a: u32,
    b: u32,
    c: u32,
    d: u32,
    e: u32,
    f: u32,
    g: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// copy_channels and shuffle run x over the elements of one image's block (looping past 65535
// workgroups), y over output channels (shuffle) and z over images from f on, so no element
// index is divided (lavapipe has no vector integer division). lavapipe pays per lane for each
// storage access, so where S is a multiple of 4 the vec4 forms at the end of this file run.

// A block of channels between [N, C, S] tensors (concat, split, slice): a = block C*S,
// b = source C*S, c = source offset, d = dest C*S, e = dest offset (offsets * S).
@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let n = p.f + gid.z;
    for (var r = gid.x; r < p.a; r += nwg.x * 256u) {
        y[n * p.d + p.e + r] = x[n * p.b + p.c + r];
    }
}

// [N, g, c, S] -> [N, c, g, S]: a = g, b = c, c = S. The source channel is uniform across a
// workgroup.
@compute @workgroup_size(64)
fn shuffle(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let oc = gid.y;
    let ct = p.a * p.b;
    let n = p.f + gid.z;
    let src = (n * ct + (oc % p.a) * p.b + oc / p.a) * p.c;
    let dst = (n * ct + oc) * p.c;
    for (var s = gid.x; s < p.c; s += nwg.x * 64u) {
        y[dst + s] = x[src + s];
    }
}

// Nearest upsampling of [N*C, H, W] by f, one invocation per output row (no per-element
// division): total = N*C*H*f rows, a = H, b = W, c = f.
@compute @workgroup_size(256)
fn upsample(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = index(gid, nwg);
    if row >= p.total { return; }
    let src = (row / p.c) * p.b; // input row (nc * H + oy / f) starts here
    var o = row * p.b * p.c;
    for (var ix = 0u; ix < p.b; ix++) {
        let v = x[src + ix];
        for (var r = 0u; r < p.c; r++) {
            y[o] = v;
            o++;
        }
    }
}

// ResNet option-A shortcut, x[:, :, ::2, ::2] with `pad` zero channels either side, one
// invocation per output row (three integer divisions per row, not four per element: lavapipe
// has no vector integer division): total = N * (C + 2 pad) * out H rows, a = C, b = H, c = W,
// d = pad, e = out H, f = out W.
@compute @workgroup_size(256)
fn shortcut_a(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let row = index(gid, nwg);
    if row >= p.total { return; }
    let oy = row % p.e;
    let plane = row / p.e;
    let cp = p.a + 2u * p.d;
    let co = plane % cp;
    let n = plane / cp;
    let o = row * p.f;
    if co >= p.d && co < p.a + p.d {
        let src = ((n * p.a + co - p.d) * p.b + 2u * oy) * p.c;
        for (var ox = 0u; ox < p.f; ox++) { y[o + ox] = x[src + 2u * ox]; }
    } else {
        for (var ox = 0u; ox < p.f; ox++) { y[o + ox] = 0.0; }
    }
}

// The same two copies four elements at a time, where every offset and extent is a multiple of
// 4 (a..e and S counted in vec4s).
@group(0) @binding(1) var<storage, read> x4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4f>;

@compute @workgroup_size(256)
fn copy_channels4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let n = p.f + gid.z;
    for (var r = gid.x; r < p.a; r += nwg.x * 256u) {
        y4[n * p.d + p.e + r] = x4[n * p.b + p.c + r];
    }
}

@compute @workgroup_size(64)
fn shuffle4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let oc = gid.y;
    let ct = p.a * p.b;
    let n = p.f + gid.z;
    let src = (n * ct + (oc % p.a) * p.b + oc / p.a) * p.c;
    let dst = (n * ct + oc) * p.c;
    for (var s = gid.x; s < p.c; s += nwg.x * 64u) {
        y4[dst + s] = x4[src + s];
    }
}
