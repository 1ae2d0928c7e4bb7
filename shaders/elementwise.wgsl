// Pointwise kernels: activations (kind codes as in ops::elementwise::Act::code) and residual add.

struct Params {
    n: u32,
    _p0: u32,
    slope: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

fn activate(v: f32, kind: u32, slope: f32) -> f32 {
    return act_scalar(v, kind, slope);
}

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

@compute @workgroup_size(256)
fn unary(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    y[i] = activate(x[i], ACT, p.slope);
}

// add and mul read their second input through a read-only binding, so that both inputs may
// be one tensor (x + x): a buffer bound read_write may not be bound again in a dispatch.
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// out = act(x + y): the residual add with the block's activation fused in.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = activate(x[i] + b[i], ACT, p.slope);
}

// out = x * y (elementwise; its own backward, with the other factor).
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = x[i] * b[i];
}

// unary, add and mul four elements at a time where n is a multiple of 4 (p.n counts vec4s):
// lavapipe pays per lane for each storage access.
@group(0) @binding(1) var<storage, read> x4: array<vec4f>;
@group(0) @binding(2) var<storage, read_write> y4: array<vec4f>;
@group(0) @binding(2) var<storage, read> b4: array<vec4f>;
@group(0) @binding(3) var<storage, read_write> out4: array<vec4f>;

@compute @workgroup_size(256)
fn unary4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    y4[i] = act_vec4(x4[i], ACT, p.slope);
}

@compute @workgroup_size(256)
fn add4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out4[i] = act_vec4(x4[i] + b4[i], ACT, p.slope);
}

@compute @workgroup_size(256)
fn mul4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out4[i] = x4[i] * b4[i];
}
