// Batch normalization over dim 1 of x viewed as [N, C, S] (S = 1 for [N, C]).

struct Params {
    n: u32,
    c: u32,
    s: u32,
    total: u32,
    eps: f32,
    momentum: f32,
    _p0: u32,
    slope: f32,
    // apply: 1 when `stat` holds the running variance, 0 when it holds 1/std already.
    stat_is_var: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;

fn activate(v: f32, kind: u32, slope: f32) -> f32 {
    return act_scalar(v, kind, slope);
}

@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read> mean: array<f32>;
@group(0) @binding(5) var<storage, read> stat: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if i >= p.total { return; }
    let c = (i / p.s) % p.c;
    var istd = stat[c];
    if p.stat_is_var == 1u {
        istd = 1.0 / sqrt(istd + p.eps);
    }
    y[i] = activate((x[i] - mean[c]) * istd * gamma[c] + beta[c], ACT, p.slope);
}

// `apply` four elements at a time where S is a multiple of 4 (one channel per vec4; p.total
// still counts elements): lavapipe pays per lane for each storage access.
@group(0) @binding(1) var<storage, read> x4: array<vec4f>;
@group(0) @binding(6) var<storage, read_write> y4: array<vec4f>;

@compute @workgroup_size(256)
fn apply4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 256u;
    if 4u * i >= p.total { return; }
    let c = (4u * i / p.s) % p.c;
    var istd = stat[c];
    if p.stat_is_var == 1u {
        istd = 1.0 / sqrt(istd + p.eps);
    }
    let v = (x4[i] - vec4f(mean[c])) * istd * gamma[c] + vec4f(beta[c]);
    y4[i] = act_vec4(v, ACT, p.slope);
}

// Batch statistics: one workgroup per channel, two passes (mean, then centered variance) so
// large means do not cancel the variance away.
@group(0) @binding(2) var<storage, read_write> batch_mean: array<f32>;
@group(0) @binding(3) var<storage, read_write> batch_istd: array<f32>;
@group(0) @binding(4) var<storage, read_write> running_mean: array<f32>;
@group(0) @binding(5) var<storage, read_write> running_var: array<f32>;

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;

fn workgroup_sum(lid: u32, v: f32) -> f32 {
    partial[lid] = v;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if lid < step {
            partial[lid] += partial[lid + step];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier(); // everyone has read partial[0] before it is reused
    return total;
}

// Offset of the j-th element (of N*S) of channel c, in units of S / s (s = S for
// elements, S / 4 for vec4s).
fn at(c: u32, j: u32, s: u32) -> u32 {
    let n = j / s;
    return (n * p.c + c) * s + (j - n * s);
}

@compute @workgroup_size(256)
fn stats(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let count = p.n * p.s;
    var sum = 0.0;
    for (var j = lid; j < count; j += WG) {
        sum += x[at(c, j, p.s)];
    }
    let m = workgroup_sum(lid, sum) / f32(count);
    var sq = 0.0;
    for (var j = lid; j < count; j += WG) {
        let d = x[at(c, j, p.s)] - m;
        sq += d * d;
    }
    finish(lid, c, m, sq);
}

// `stats` where S is a multiple of 4: four elements a load (x4 aliases x), each lane's sums
// kept per vector component until the end.
@compute @workgroup_size(256)
fn stats4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let s4 = p.s / 4u;
    let count4 = p.n * s4;
    var sum = vec4f();
    for (var j = lid; j < count4; j += WG) {
        sum += x4[at(c, j, s4)];
    }
    let m = workgroup_sum(lid, sum.x + sum.y + sum.z + sum.w) / f32(4u * count4);
    var sq = vec4f();
    for (var j = lid; j < count4; j += WG) {
        let d = x4[at(c, j, s4)] - vec4f(m);
        sq += d * d;
    }
    finish(lid, c, m, sq.x + sq.y + sq.z + sq.w);
}

// Channel c's mean m from the lanes' sums of squared deviations `sq`: the batch statistics
// and the running ones.
fn finish(lid: u32, c: u32, m: f32, sq: f32) {
    let count = p.n * p.s;
    let v = workgroup_sum(lid, sq) / f32(count);
    if lid == 0u {
        batch_mean[c] = m;
        batch_istd[c] = 1.0 / sqrt(v + p.eps);
        let unbiased = v * f32(count) / f32(count - 1u);
        running_mean[c] = (1.0 - p.momentum) * running_mean[c] + p.momentum * m;
        running_var[c] = (1.0 - p.momentum) * running_var[c] + p.momentum * unbiased;
    }
}
