// Local response normalization across channels (ONNX LRN) over [N, C, H*W]:
// y = x / (bias + alpha / size * sum of x^2 over the channel window)^beta.

struct Params {
    total: u32,
    c: u32,
    hw: u32,
    size: u32,
    alpha: f32,
    beta: f32,
    bias: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn lrn(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.total { return; }
    let s = i % p.hw;
    let c = (i / p.hw) % p.c;
    let n = i / (p.hw * p.c);
    // Window [c - floor((size-1)/2), c + ceil((size-1)/2)], clipped to the channels.
    let lo = max(i32(c) - i32((p.size - 1u) / 2u), 0);
    let hi = min(i32(c) + i32(p.size / 2u), i32(p.c) - 1);
    var sum = 0.0;
    for (var k = lo; k <= hi; k++) {
        let v = x[(n * p.c + u32(k)) * p.hw + s];
        sum += v * v;
    }
    y[i] = x[i] / pow(p.bias + p.alpha / f32(p.size) * sum, p.beta);
}
