// GLU over dim 1: x viewed as [N, 2, C*S]; out[n, r] = x[n, 0, r] * sigmoid(x[n, 1, r]).

struct Params {
    total: u32, // N * C * S outputs
    cs: u32,    // C * S: one half of a batch item
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn glu(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.total { return; }
    let n = i / p.cs;
    let a = x[i + n * p.cs];
    let b = x[i + (n + 1u) * p.cs];
    // sigmoid through exp(-|b|) so it never overflows.
    let e = exp(-abs(b));
    y[i] = a * select(e / (1.0 + e), 1.0 / (1.0 + e), b >= 0.0);
}
