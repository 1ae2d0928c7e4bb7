// AdaRound's soft-quantized weights (Nagel et al. 2020) and the kernels around them:
// W~ = scale[c] * clamp(floor(W / scale) + h(V), lo, hi),
// h(V) = clamp(sigmoid(V) * (ZETA - GAMMA) + GAMMA, 0, 1).

struct Params {
    n: u32,      // elements of the entry's output
    per: u32,    // weights per output channel
    relu: u32,   // recon_grad: 1 where the layer's ReLU backward is folded in
    _pad: u32,
    lo: f32,     // smallest integer weight
    hi: f32,     // largest integer weight
    beta: f32,   // regularizer exponent
    w: f32,      // regularizer weight / gradient scale
}

@group(0) @binding(0) var<uniform> p: Params;

const ZETA: f32 = 1.1;
const GAMMA: f32 = -0.1;
const WG: u32 = 256u;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * WG;
}

fn sig(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

fn h_of(v: f32) -> f32 {
    return clamp(sig(v) * (ZETA - GAMMA) + GAMMA, 0.0, 1.0);
}

// dh/dV (0 where h is clamped).
fn dh_of(v: f32) -> f32 {
    let s = sig(v);
    let u = s * (ZETA - GAMMA) + GAMMA;
    return select(0.0, s * (1.0 - s) * (ZETA - GAMMA), u > 0.0 && u < 1.0);
}

// ---- soft_weight: wf (floors), v, scale -> w~.
@group(0) @binding(1) var<storage, read> wf: array<f32>;
@group(0) @binding(2) var<storage, read> vv: array<f32>;
@group(0) @binding(3) var<storage, read> sc: array<f32>;
@group(0) @binding(4) var<storage, read_write> w_out: array<f32>;

@compute @workgroup_size(256)
fn soft_weight(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    w_out[i] = sc[i / p.per] * clamp(wf[i] + h_of(vv[i]), p.lo, p.hi);
}

// ---- soft_weight_backward: wf, v, scale, dw~ -> dV (zero where the clamp to [lo, hi] bites).
@group(0) @binding(4) var<storage, read> dw_in: array<f32>;
@group(0) @binding(5) var<storage, read_write> dv_out: array<f32>;

@compute @workgroup_size(256)
fn soft_weight_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let x = wf[i] + h_of(vv[i]);
    let inside = x >= p.lo && x <= p.hi;
    dv_out[i] = select(0.0, dw_in[i] * sc[i / p.per] * dh_of(vv[i]), inside);
}

// ---- reg_grad_add: g += w * d/dV sum(1 - |2h - 1|^beta), in place.
@group(0) @binding(1) var<storage, read> rv: array<f32>;
@group(0) @binding(2) var<storage, read_write> rg: array<f32>;

fn reg_term(v: f32) -> f32 {
    return 1.0 - pow(abs(2.0 * h_of(v) - 1.0), p.beta);
}

@compute @workgroup_size(256)
fn reg_grad_add(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let d = 2.0 * h_of(rv[i]) - 1.0;
    let a = abs(d);
    // d/dd (1 - |d|^beta) = -beta |d|^(beta - 1) sign(d); 0 at d = 0 (beta > 1).
    let dd = select(0.0, -p.beta * pow(a, p.beta - 1.0) * sign(d), a > 0.0);
    rg[i] += p.w * dd * 2.0 * dh_of(rv[i]);
}

// ---- reg_partial: per-workgroup sums of 1 - |2h - 1|^beta (the host adds them up).
@group(0) @binding(2) var<storage, read_write> partial_out: array<f32>;
var<workgroup> part: array<f32, WG>;

fn reduce(lid: u32, x: f32) -> f32 {
    part[lid] = x;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if lid < step {
            part[lid] += part[lid + step];
        }
        workgroupBarrier();
    }
    return part[0];
}

@compute @workgroup_size(256)
fn reg_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
               @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
    let i = index(gid, nwg);
    var x = 0.0;
    if i < p.n { x = reg_term(rv[i]); }
    let t = reduce(lid, x);
    if lid == 0u { partial_out[wid.x + wid.y * nwg.x] = t; }
}

// ---- sq_err_partial: per-workgroup sums of (y - t)^2.
@group(0) @binding(1) var<storage, read> ey: array<f32>;
@group(0) @binding(2) var<storage, read> et: array<f32>;
@group(0) @binding(3) var<storage, read_write> epart: array<f32>;

@compute @workgroup_size(256)
fn sq_err_partial(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                  @builtin(local_invocation_index) lid: u32, @builtin(workgroup_id) wid: vec3u) {
    let i = index(gid, nwg);
    var x = 0.0;
    if i < p.n {
        let d = ey[i] - et[i];
        x = d * d;
    }
    let t = reduce(lid, x);
    if lid == 0u { epart[wid.x + wid.y * nwg.x] = t; }
}

// ---- recon_grad: dy = w * (y - t) (w = 2 / divisor of the mean), zero where y <= 0 when
// `total` is 1 (y a ReLU's output: its backward fused in).
@group(0) @binding(3) var<storage, read_write> dy_out: array<f32>;

@compute @workgroup_size(256)
fn recon_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    dy_out[i] = select(p.w * (ey[i] - et[i]), 0.0, p.relu == 1u && ey[i] <= 0.0);
}
