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

// A block of channels between [N, C, S] tensors (concat, split, slice). Runs over the block:
// a = block C*S, b = source C*S, c = source offset, d = dest C*S, e = dest offset (offsets * S).
@compute @workgroup_size(256)
fn copy_channels(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let n = i / p.a;
    let r = i - n * p.a;
    y[n * p.d + p.e + r] = x[n * p.b + p.c + r];
}

// [N, g, c, S] -> [N, c, g, S]: a = g, b = c, c = S.
@compute @workgroup_size(256)
fn shuffle(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let s = i % p.c;
    let t = i / p.c;
    let ct = p.a * p.b;
    let oc = t % ct;
    let n = t / ct;
    let src_c = (oc % p.a) * p.b + oc / p.a;
    y[i] = x[(n * ct + src_c) * p.c + s];
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
