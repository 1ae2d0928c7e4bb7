// Fake quantization (quantize-dequantize) of activations at a per-tensor format, as
// QFormat::quantize rounds: q = clamp(round(x * inv), lo, hi), y = q * scale, where `inv` is
// the host's f32 reciprocal (WGSL division is not correctly rounded), or 1 / scale for a
// learned scale. Backward: straight-through inside [lo, hi], zero outside; the step size's
// gradient is LSQ's (Esser et al. 2020): dy * (q - x / s) inside, dy * lo or dy * hi outside.

struct Params {
    n: u32,        // elements
    learned: u32,  // 1: the scale is learned, inv = 1 / scale
    lo: f32,       // smallest integer
    hi: f32,       // largest integer
    threads: u32,  // step_partial: threads, each summing a strided share
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
// [scale, inv] (inv unused when learned).
@group(0) @binding(2) var<storage, read> sc: array<f32>;

const WG: u32 = 256u;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn scale() -> f32 {
    return max(sc[0], 1e-8);
}

fn inv() -> f32 {
    return select(sc[1], 1.0 / scale(), p.learned == 1u);
}

// ---- forward: y = clamp(round(x * inv), lo, hi) * scale.
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let q = clamp(round(x[i] * inv()), p.lo, p.hi);
    // +0 for -0, as the integer model's dequantization gives.
    y[i] = select(q * scale(), 0.0, q == 0.0);
}

// ---- backward: dx = dy where lo <= x * inv <= hi, else 0.
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let v = x[i] * inv();
    dx[i] = select(0.0, dy[i], v >= p.lo && v <= p.hi);
}

// ---- step_partial: thread t sums the LSQ terms of elements t, t + threads, ... (no
// workgroup memory: fastest on lavapipe).
@group(0) @binding(4) var<storage, read_write> part: array<f32>;

@compute @workgroup_size(256)
fn step_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let t = index(gid, nwg);
    if t >= p.threads { return; }
    let r = inv();
    var acc = 0.0;
    for (var i = t; i < p.n; i += p.threads) {
        let v = x[i] * r;
        var d = clamp(round(v), p.lo, p.hi) - v;
        if v < p.lo { d = p.lo; }
        if v > p.hi { d = p.hi; }
        acc += dy[i] * d;
    }
    part[t] = acc;
}

// ---- step_sum: total = [sum of the partials, 0] (one thread).
@group(0) @binding(1) var<storage, read> parts: array<f32>;
@group(0) @binding(2) var<storage, read_write> total: array<f32>;

@compute @workgroup_size(1)
fn step_sum() {
    var acc = 0.0;
    for (var i = 0u; i < p.threads; i++) {
        acc += parts[i];
    }
    total[0] = acc;
    total[1] = 0.0;
}
