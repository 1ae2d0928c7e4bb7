// Pooling over [N*C, H, W], one invocation per output (PyTorch floor mode).

struct Params {
    total: u32,
    h: u32,
    w: u32,
    oh: u32,
    ow: u32,
    k: u32,
    stride: u32,
    pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

// Window of output i: (plane base, first row, first column), the start possibly in the padding.
fn window(i: u32) -> vec3i {
    let ox = i % p.ow;
    let oy = (i / p.ow) % p.oh;
    let nc = i / (p.ow * p.oh);
    return vec3i(i32(nc * p.h * p.w), i32(oy * p.stride) - i32(p.pad), i32(ox * p.stride) - i32(p.pad));
}

// count_include_pad=True: in floor mode every window lies inside the padded input, so the
// divisor is always k*k.
@compute @workgroup_size(256)
fn avg_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let win = window(i);
    var acc = 0.0;
    for (var ky = max(win.y, 0); ky < min(win.y + i32(p.k), i32(p.h)); ky++) {
        for (var kx = max(win.z, 0); kx < min(win.z + i32(p.k), i32(p.w)); kx++) {
            acc += x[u32(win.x + ky * i32(p.w) + kx)];
        }
    }
    y[i] = acc / f32(p.k * p.k);
}

// Padding is -inf, so only real elements compete (padding <= k/2 leaves one in every window).
@compute @workgroup_size(256)
fn max_pool(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    let win = window(i);
    var acc = bitcast<f32>(0xff800000u); // -inf
    for (var ky = max(win.y, 0); ky < min(win.y + i32(p.k), i32(p.h)); ky++) {
        for (var kx = max(win.z, 0); kx < min(win.z + i32(p.k), i32(p.w)); kx++) {
            acc = max(acc, x[u32(win.x + ky * i32(p.w) + kx)]);
        }
    }
    y[i] = acc;
}

// [N*C, H*W] -> [N*C]: total = N*C, h = H*W.
@compute @workgroup_size(256)
fn global_avg(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.total { return; }
    var acc = 0.0;
    for (var j = 0u; j < p.h; j++) {
        acc += x[i * p.h + j];
    }
    y[i] = acc / f32(p.h);
}
