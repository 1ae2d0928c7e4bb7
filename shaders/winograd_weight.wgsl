// Winograd weights U = G g G^T of 3x3 kernels on the GPU, for training, whose weights change
// every step (inference transforms them once on the host: src/ops/winograd.rs, which gives the
// layouts). One invocation per (output channel o, input channel c) of the padded layout;
// channels past Co get zeros.

struct Params {
    co: u32,     // output channels of the conv the weights are for
    ci: u32,     // its input channels
    cop: u32,    // Co padded: to 4 (split layout) or 8 (fused)
    total: u32,  // cop * ci
    // 1: the input gradient's kernel, K[o][c][y][x] = W[c][o][2-y][2-x] with W `[Ci, Co, 3, 3]`
    // (the forward conv's PyTorch weights); 0: K = W `[Co, Ci, 3, 3]`.
    transposed: u32,
    _p0: u32, _p1: u32, _p2: u32,
}

// 4: F(2x2, 3x3); 6: F(4x4, 3x3).
override ALPHA: u32 = 6u;
// The fused kernel's layout [Ci][Cop / 8][9][8][4] (ALPHA 6) instead of [ALPHA^2][Cop][Ci].
override FUSED: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> w: array<f32>;
@group(0) @binding(2) var<storage, read_write> u: array<f32>;

// Row a of G (src/ops/winograd.rs: G2, G4).
fn g_row(a: u32) -> vec3f {
    if ALPHA == 4u {
        switch a {
            case 0u: { return vec3f(1.0, 0.0, 0.0); }
            case 1u: { return vec3f(0.5, 0.5, 0.5); }
            case 2u: { return vec3f(0.5, -0.5, 0.5); }
            default: { return vec3f(0.0, 0.0, 1.0); }
        }
    }
    switch a {
        case 0u: { return vec3f(1.0 / 4.0, 0.0, 0.0); }
        case 1u: { return vec3f(-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0); }
        case 2u: { return vec3f(-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0); }
        case 3u: { return vec3f(1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0); }
        case 4u: { return vec3f(1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0); }
        default: { return vec3f(0.0, 0.0, 1.0); }
    }
}

// Row y of the kernel of (o, c).
fn kernel_row(o: u32, c: u32, y: u32) -> vec3f {
    if p.transposed == 1u {
        let b = (c * p.co + o) * 9u + (2u - y) * 3u;
        return vec3f(w[b + 2u], w[b + 1u], w[b]);
    }
    let b = (o * p.ci + c) * 9u + y * 3u;
    return vec3f(w[b], w[b + 1u], w[b + 2u]);
}

fn put(o: u32, c: u32, e: u32, v: f32) {
    if FUSED {
        let blk = c * p.cop / 8u + o / 8u;
        u[((blk * 9u + e / 4u) * 8u + o % 8u) * 4u + e % 4u] = v;
    } else {
        u[(e * p.cop + o) * p.ci + c] = v;
    }
}

@compute @workgroup_size(64)
fn transform(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * 64u;
    if i >= p.total { return; }
    let o = i / p.ci;
    let c = i % p.ci;
    var k0 = vec3f(0.0);
    var k1 = vec3f(0.0);
    var k2 = vec3f(0.0);
    if o < p.co {
        k0 = kernel_row(o, c, 0u);
        k1 = kernel_row(o, c, 1u);
        k2 = kernel_row(o, c, 2u);
    }
    for (var a = 0u; a < ALPHA; a++) {
        // Row a of G g, then its products with the rows of G.
        let ga = g_row(a);
        let t = ga.x * k0 + ga.y * k1 + ga.z * k2;
        for (var b = 0u; b < ALPHA; b++) {
            put(o, c, a * ALPHA + b, dot(t, g_row(b)));
        }
    }
}
