// Backward kernels of the pointwise, layout and normalization ops, the losses, Adam and
// spectral normalization. One uniform layout for all entries; each reads the fields it needs.

struct Params {
    n: u32,      // elements (outputs of the entry)
    c: u32,      // channels
    s: u32,      // spatial size per channel (or inner size)
    outer: u32,  // batch (or chunks)
    kind: u32,   // activation / loss kind
    slope: f32,  // LeakyReLU slope / loss sign
    w: f32,      // loss weight / learning rate
    eps: f32,
    b1: f32,
    b2: f32,
    bc1: f32,    // 1 - b1^t
    bc2: f32,    // 1 - b2^t
    h: u32,
    wd: u32,
    f: u32,      // upsample factor
    count: f32,  // divisor of mean losses
}

@group(0) @binding(0) var<uniform> p: Params;

fn index(gid: vec3u, nwg: vec3u) -> u32 {
    return gid.x + gid.y * nwg.x * 256u;
}

const WG: u32 = 256u;
var<workgroup> partial: array<f32, WG>;
var<workgroup> partial2: array<f32, WG>;

// Sums v and u over the workgroup (every thread gets both totals).
fn workgroup_sum2(lid: u32, v: f32, u: f32) -> vec2f {
    partial[lid] = v;
    partial2[lid] = u;
    workgroupBarrier();
    for (var step = WG / 2u; step > 0u; step >>= 1u) {
        if lid < step {
            partial[lid] += partial[lid + step];
            partial2[lid] += partial2[lid + step];
        }
        workgroupBarrier();
    }
    let total = vec2f(partial[0], partial2[0]);
    workgroupBarrier();
    return total;
}

// ---- activations: dx from the forward output y (every supported activation is monotone,
// so its derivative is a function of y).
@group(0) @binding(1) var<storage, read> y_in: array<f32>;
@group(0) @binding(2) var<storage, read> dy_in: array<f32>;
@group(0) @binding(3) var<storage, read_write> dx_out: array<f32>;

fn act_grad(y: f32) -> f32 {
    switch p.kind {
        case 1u: { return select(0.0, 1.0, y > 0.0); }
        case 2u: { return select(0.0, 1.0, y > 0.0 && y < 6.0); }
        case 3u: { return select(p.slope, 1.0, y >= 0.0); }
        case 4u: { return 1.0 - y * y; }
        case 5u: { return y * (1.0 - y); }
        default: { return 1.0; }
    }
}

@compute @workgroup_size(256)
fn act_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    dx_out[i] = dy_in[i] * act_grad(y_in[i]);
}

// ---- GLU over dim 1: x [N, 2, C*S] (y_in binds x), dy [N, C*S] -> dx [N, 2, C*S].
@compute @workgroup_size(256)
fn glu_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let cs = p.s;
    let nn = i / cs;
    let ia = i + nn * cs;
    let ib = ia + cs;
    let a = y_in[ia];
    let b = y_in[ib];
    let e = exp(-abs(b));
    let sig = select(e / (1.0 + e), 1.0 / (1.0 + e), b >= 0.0);
    let g = dy_in[i];
    dx_out[ia] = g * sig;
    dx_out[ib] = g * a * sig * (1.0 - sig);
}

// ---- nearest upsample by f: dx [N*C, H, W] sums its f x f block of dy (r_in -> r_out).
@compute @workgroup_size(256)
fn upsample_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let xw = i % p.wd;
    let xh = (i / p.wd) % p.h;
    let plane = i / (p.wd * p.h);
    let ow = p.wd * p.f;
    var acc = 0.0;
    for (var a = 0u; a < p.f; a++) {
        let row = (plane * p.h * p.f + xh * p.f + a) * ow + xw * p.f;
        for (var b = 0u; b < p.f; b++) {
            acc += r_in[row + b];
        }
    }
    r_out[i] = acc;
}

// ---- training-mode batch norm, x viewed as [N, C, S].
// bn_reduce: one workgroup per channel: dbeta = sum dy, dgamma = sum dy * xhat.
@group(0) @binding(3) var<storage, read> bn_mean: array<f32>;
@group(0) @binding(4) var<storage, read> bn_istd: array<f32>;
@group(0) @binding(5) var<storage, read_write> dgamma: array<f32>;
@group(0) @binding(6) var<storage, read_write> dbeta: array<f32>;

// Offset of the j-th element of channel c, as norm.wgsl's `at`.
fn at(c: u32, j: u32, s: u32) -> u32 {
    let n = j / s;
    return (n * p.c + c) * s + (j - n * s);
}

@compute @workgroup_size(256)
fn bn_reduce(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let m = p.outer * p.s;
    var sd = 0.0;
    var sdx = 0.0;
    for (var j = lid; j < m; j += WG) {
        let k = at(c, j, p.s);
        let g = dy_in[k];
        sd += g;
        sdx += g * (y_in[k] - bn_mean[c]) * bn_istd[c];
    }
    let t = workgroup_sum2(lid, sd, sdx);
    if lid == 0u {
        dbeta[c] = t.x;
        dgamma[c] = t.y;
    }
}

// `bn_reduce` where S is a multiple of 4: four elements a load (y4_in, dy4_in alias y_in,
// dy_in), each lane's sums kept per vector component until the end.
@group(0) @binding(1) var<storage, read> y4_in: array<vec4f>;
@group(0) @binding(2) var<storage, read> dy4_in: array<vec4f>;

@compute @workgroup_size(256)
fn bn_reduce4(@builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) lid: u32) {
    let c = wid.x;
    let s4 = p.s / 4u;
    let m4 = p.outer * s4;
    let mean = vec4f(bn_mean[c]);
    let istd = bn_istd[c];
    var sd = vec4f();
    var sdx = vec4f();
    for (var j = lid; j < m4; j += WG) {
        let k = at(c, j, s4);
        let g = dy4_in[k];
        sd += g;
        sdx += g * (y4_in[k] - mean) * istd;
    }
    let t = workgroup_sum2(lid, sd.x + sd.y + sd.z + sd.w, sdx.x + sdx.y + sdx.z + sdx.w);
    if lid == 0u {
        dbeta[c] = t.x;
        dgamma[c] = t.y;
    }
}

// bn_apply: dx = gamma * istd / M * (M * dy - dbeta - xhat * dgamma).
@group(0) @binding(3) var<storage, read> ap_mean: array<f32>;
@group(0) @binding(4) var<storage, read> ap_istd: array<f32>;
@group(0) @binding(5) var<storage, read> ap_gamma: array<f32>;
@group(0) @binding(6) var<storage, read> ap_dgamma: array<f32>;
@group(0) @binding(7) var<storage, read> ap_dbeta: array<f32>;
@group(0) @binding(8) var<storage, read_write> ap_dx: array<f32>;

@compute @workgroup_size(256)
fn bn_apply(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let c = (i / p.s) % p.c;
    let m = f32(p.outer * p.s);
    let istd = ap_istd[c];
    let xhat = (y_in[i] - ap_mean[c]) * istd;
    ap_dx[i] = ap_gamma[c] * istd / m * (m * dy_in[i] - ap_dbeta[c] - xhat * ap_dgamma[c]);
}

// ---- reductions (also zero, below, through ad_x).
// sum_channels: x [outer, C, S] -> out[c] = sum over outer and S; one workgroup per channel.
@group(0) @binding(1) var<storage, read> r_in: array<f32>;
@group(0) @binding(2) var<storage, read_write> r_out: array<f32>;

@compute @workgroup_size(256)
fn sum_channels(@builtin(workgroup_id) wid: vec3u, @builtin(num_workgroups) nwg: vec3u,
                @builtin(local_invocation_index) lid: u32) {
    let c = wid.x + wid.y * nwg.x;
    if c >= p.c { return; }
    var acc = 0.0;
    for (var j = lid; j < p.outer * p.s; j += WG) {
        acc += r_in[at(c, j, p.s)];
    }
    let t = workgroup_sum2(lid, acc, 0.0);
    if lid == 0u {
        r_out[c] = t.x;
    }
}

// sum_chunks: x [outer, n] -> out[i] = sum over outer (partial weight gradients).
@compute @workgroup_size(256)
fn sum_chunks(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    var acc = 0.0;
    for (var k = 0u; k < p.outer; k++) {
        acc += r_in[k * p.n + i];
    }
    r_out[i] = acc;
}

@compute @workgroup_size(256)
fn zero(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    ad_x[i] = 0.0;
}

// ---- losses, x [n] against a target t [n] (L1) or the margin 1 (hinge):
//   kind 0: hinge  relu(1 - sign * x)
//   kind 1: linear sign * x
//   kind 2: l1     |x - t|
//   kind 3: hinge per element, t = +-weight: |t| relu(1 - sign(t) x)
//   kind 4: softmax cross-entropy over rows of c logits, t = class weights:
//           element j adds t_j (lse - x_j); its gradient is softmax_j sum(t) - t_j
// loss_value writes the mean (scaled by w) into out[0] with one workgroup; loss_grad writes
// d(w * mean)/dx.
@group(0) @binding(1) var<storage, read> lx: array<f32>;
@group(0) @binding(2) var<storage, read> lt: array<f32>;
@group(0) @binding(3) var<storage, read_write> lout: array<f32>;

fn loss_elem(i: u32) -> vec2f {
    let x = lx[i];
    switch p.kind {
        case 0u: {
            let m = 1.0 - p.slope * x;
            return select(vec2f(0.0, 0.0), vec2f(m, -p.slope), m > 0.0);
        }
        case 1u: { return vec2f(p.slope * x, p.slope); }
        case 3u: {
            let t = lt[i];
            let m = 1.0 - sign(t) * x;
            return select(vec2f(0.0, 0.0), vec2f(abs(t) * m, -t), m > 0.0);
        }
        case 4u: {
            // Rows are short (the classes), so each element rescans its own row.
            let r0 = (i / p.c) * p.c;
            var mx = lx[r0];
            for (var j = 1u; j < p.c; j++) { mx = max(mx, lx[r0 + j]); }
            var se = 0.0;
            var st = 0.0;
            for (var j = 0u; j < p.c; j++) {
                se += exp(lx[r0 + j] - mx);
                st += lt[r0 + j];
            }
            let lse = mx + log(se);
            let t = lt[i];
            return vec2f(t * (lse - x), exp(x - lse) * st - t);
        }
        default: {
            let d = x - lt[i];
            return vec2f(abs(d), sign(d));
        }
    }
}

@compute @workgroup_size(256)
fn loss_value(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += loss_elem(i).x;
    }
    let t = workgroup_sum2(lid, acc, 0.0);
    if lid == 0u {
        lout[0] = p.w * t.x / p.count;
    }
}

@compute @workgroup_size(256)
fn loss_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    lout[i] = p.w * loss_elem(i).y / p.count;
}

// ---- Adam over one flat parameter buffer (no weight decay):
// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2; x -= lr * (m / bc1) / (sqrt(v / bc2) + eps).
@group(0) @binding(1) var<storage, read_write> ad_x: array<f32>;
@group(0) @binding(2) var<storage, read> ad_g: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> ad_v: array<f32>;

@compute @workgroup_size(256)
fn adam(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let g = ad_g[i];
    let m = p.b1 * ad_m[i] + (1.0 - p.b1) * g;
    let v = p.b2 * ad_v[i] + (1.0 - p.b2) * g * g;
    ad_m[i] = m;
    ad_v[i] = v;
    ad_x[i] -= p.w * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}

// ---- spectral normalization of W [c rows, s cols].
// sn_normalize: out = x / max(|x|, eps), norm into nrm[0]; one workgroup.
@group(0) @binding(1) var<storage, read> sn_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sn_out: array<f32>;
@group(0) @binding(3) var<storage, read_write> sn_norm: array<f32>;

@compute @workgroup_size(256)
fn sn_normalize(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += sn_x[i] * sn_x[i];
    }
    let nrm = max(sqrt(workgroup_sum2(lid, acc, 0.0).x), p.eps);
    for (var i = lid; i < p.n; i += WG) {
        sn_out[i] = sn_x[i] / nrm;
    }
    if lid == 0u {
        sn_norm[0] = nrm;
    }
}

// sn_scale: out = x / sigma.
@group(0) @binding(2) var<storage, read> sn_sigma: array<f32>;
@group(0) @binding(3) var<storage, read_write> sn_scaled: array<f32>;

@compute @workgroup_size(256)
fn sn_scale(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    sn_scaled[i] = sn_x[i] / sn_sigma[0];
}

// sn_dot: out[0] = sum(a * b); one workgroup.
@group(0) @binding(1) var<storage, read> dot_a: array<f32>;
@group(0) @binding(2) var<storage, read> dot_b: array<f32>;
@group(0) @binding(3) var<storage, read_write> dot_out: array<f32>;

@compute @workgroup_size(256)
fn sn_dot(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var i = lid; i < p.n; i += WG) {
        acc += dot_a[i] * dot_b[i];
    }
    let t = workgroup_sum2(lid, acc, 0.0);
    if lid == 0u {
        dot_out[0] = t.x;
    }
}

// sn_backward: with W_sn = W / sigma and sigma = u^T W v (u, v held constant, as PyTorch):
// dW = (g - <g, W_sn> u v^T) / sigma.
@group(0) @binding(1) var<storage, read> sb_g: array<f32>;
@group(0) @binding(2) var<storage, read> sb_u: array<f32>;
@group(0) @binding(3) var<storage, read> sb_v: array<f32>;
@group(0) @binding(4) var<storage, read> sb_sigma: array<f32>;
@group(0) @binding(5) var<storage, read> sb_dot: array<f32>;
@group(0) @binding(6) var<storage, read_write> sb_dw: array<f32>;

@compute @workgroup_size(256)
fn sn_backward(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let r = i / p.s;
    let col = i % p.s;
    sb_dw[i] = (sb_g[i] - sb_dot[0] * sb_u[r] * sb_v[col]) / sb_sigma[0];
}

// ---- ZeroQ's batch-norm statistics loss for one BN input x [N, C, S]:
//   L = sum_c (m_c - rm_c)^2 + (sd_c - rsd_c)^2
// with the batch mean m, sd = 1 / inv (biased variance + eps), and the stored running mean
// and std `ref` = [rm; rsd]. stat_value writes L into out[0] with one workgroup; stat_grad
// writes w dL/dx = w (2 (m - rm) + 2 (sd - rsd) (x - m) / sd) / (N S).
@group(0) @binding(1) var<storage, read> sv_mean: array<f32>;
@group(0) @binding(2) var<storage, read> sv_inv: array<f32>;
@group(0) @binding(3) var<storage, read> sv_ref: array<f32>;
@group(0) @binding(4) var<storage, read_write> sv_out: array<f32>;

@compute @workgroup_size(256)
fn stat_value(@builtin(local_invocation_index) lid: u32) {
    var acc = 0.0;
    for (var c = lid; c < p.c; c += WG) {
        let dm = sv_mean[c] - sv_ref[c];
        let ds = 1.0 / sv_inv[c] - sv_ref[p.c + c];
        acc += dm * dm + ds * ds;
    }
    let t = workgroup_sum2(lid, acc, 0.0);
    if lid == 0u {
        sv_out[0] = t.x;
    }
}

@group(0) @binding(1) var<storage, read> sg_x: array<f32>;
@group(0) @binding(2) var<storage, read> sg_mean: array<f32>;
@group(0) @binding(3) var<storage, read> sg_inv: array<f32>;
@group(0) @binding(4) var<storage, read> sg_ref: array<f32>;
@group(0) @binding(5) var<storage, read_write> sg_out: array<f32>;

@compute @workgroup_size(256)
fn stat_grad(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = index(gid, nwg);
    if i >= p.n { return; }
    let c = (i / p.s) % p.c;
    let m = sg_mean[c];
    let inv = sg_inv[c];
    let count = f32(p.outer * p.s);
    let g = 2.0 * (m - sg_ref[c]) + 2.0 * (1.0 / inv - sg_ref[p.c + c]) * (sg_x[i] - m) * inv;
    sg_out[i] = p.w * g / count;
}
