// Fake quantization (quantize-dequantize) of activations at a per-tensor format, as
// QFormat::quantize rounds: q = clamp(round(x * inv), lo, hi), y = q * scale, where `inv` is
// the host's f32 reciprocal (WGSL division is not correctly rounded), or 1 / scale for a
// learned scale. Backward: straight-through inside [lo, hi], zero outside; the step size's
// gradient is LSQ's (Esser et al. 2020): dy * (q - x / s) inside, dy * lo or dy * hi outside.
// QDrop (Wei et al. 2022): with drop > 0, element i whose hash (of i and seed) falls below the
// threshold passes unquantized (y = x, dx = dy) and adds nothing to the step gradient.

struct Params {
    n: u32,        // elements
    learned: u32,  // 1: the scale is learned, inv = 1 / scale
    lo: f32,       // smallest integer
    hi: f32,       // largest integer
    threads: u32,  // step_partial: threads, each summing a strided share
    drop: u32,     // QDrop: drop where hash >> 8 < drop (p * 2^24; 0: never, 2^24: always)
    seed: u32,     // QDrop: the mask's seed
    _pad0: u32,
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

// lowbias32 (Wellons); the CPU reference (ops::fake_quant::hash) is the same.
fn hash(v: u32) -> u32 {
    var h = v;
    h ^= h >> 16u;
    h *= 0x7feb352du;
    h ^= h >> 15u;
    h *= 0x846ca68bu;
    h ^= h >> 16u;
    return h;
}

fn dropped(i: u32) -> bool {
    return (hash(hash(i) ^ p.seed) >> 8u) < p.drop;
}

// ---- forward: y = clamp(round(x * inv), lo, hi) * scale.
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn forward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let q = clamp(round(x[i] * inv()), p.lo, p.hi);
    // +0 for -0, as the integer model's dequantization gives.
    y[i] = select(select(q * scale(), 0.0, q == 0.0), x[i], dropped(i));
}

// ---- backward: dx = dy where lo <= x * inv <= hi, else 0.
@group(0) @binding(3) var<storage, read> dy: array<f32>;
@group(0) @binding(4) var<storage, read_write> dx: array<f32>;

@compute @workgroup_size(256)
fn backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let v = x[i] * inv();
    dx[i] = select(0.0, dy[i], (v >= p.lo && v <= p.hi) || dropped(i));
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
        if dropped(i) { d = 0.0; }
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

// ---- drop_mix: QDrop at a block's input, y = dropped ? fp : quantized (x).
@group(0) @binding(2) var<storage, read> fp: array<f32>;
@group(0) @binding(3) var<storage, read_write> mixed: array<f32>;

@compute @workgroup_size(256)
fn drop_mix(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    mixed[i] = select(x[i], fp[i], dropped(i));
}
