// Pointwise kernels: activations (kind codes as in cpu::elementwise::Act) and residual add.

struct Params {
    n: u32,
    kind: u32,
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
    y[i] = activate(x[i], p.kind, p.slope);
}

@group(0) @binding(3) var<storage, read_write> out: array<f32>;

// out = act(x + y): the residual add with the block's activation fused in.
@compute @workgroup_size(256)
fn add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = activate(x[i] + y[i], p.kind, p.slope);
}

// out = x * y (elementwise; its own backward, with the other factor).
@compute @workgroup_size(256)
fn mul(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    out[i] = x[i] * y[i];
}
