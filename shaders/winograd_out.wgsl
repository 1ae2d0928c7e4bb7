// Winograd output transforms with the conv epilogue: for output tile t and channel co,
// Y = A^T M A over the GEMM results M[e][co][t], then out = act(Y + bias + residual) on the
// tile's outputs that lie inside the image. `output2`: F(2x2, 3x3), 16 elements, 2x2 outputs;
// `output4`: F(4x4, 3x3), 36 elements, 4x4 outputs. M is [elements][Co rounded up to 4][tiles
// rounded up to 4].

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, cop: u32,
    pad_h: i32, pad_w: i32, tiles_h: u32, tiles_w: u32,
    tiles: u32, tiles_p: u32, act: u32, slope: f32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var<storage, read> bias: array<f32>;
@group(0) @binding(3) var<storage, read> res: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

fn row(e0: u32, plane: u32) -> vec4f {
    return vec4f(m[e0], m[e0 + plane], m[e0 + 2u * plane], m[e0 + 3u * plane]);
}

// A^T applied along a vector: (a0 + a1 + a2, a1 - a2 - a3).
fn at(a: vec4f) -> vec2f {
    return vec2f(a.x + a.y + a.z, a.y - a.z - a.w);
}

fn put(o: u32, y: i32, x: i32, v: f32, b: f32) {
    if u32(y) >= p.oh || u32(x) >= p.ow { return; }
    let i = o + u32(y) * p.ow + u32(x);
    var s = v + b;
    if p.has_res != 0u { s += res[i]; }
    out[i] = act_vec4(vec4f(s), p.act, p.slope).x;
}

@compute @workgroup_size(WG)
fn output2(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.co * p.tiles { return; }
    let t = i % p.tiles;
    let co = i / p.tiles;
    let plane = p.cop * p.tiles_p;
    let e = co * p.tiles_p + t;
    let r0 = row(e, plane);
    let r1 = row(e + 4u * plane, plane);
    let r2 = row(e + 8u * plane, plane);
    let r3 = row(e + 12u * plane, plane);
    let s0 = at(r0 + r1 + r2); // rows of A^T M, reduced along columns by A
    let s1 = at(r1 - r2 - r3);
    var b = 0.0;
    if p.has_bias != 0u { b = bias[co]; }
    let per_image = p.tiles_h * p.tiles_w;
    let n = t / per_image;
    let r = t % per_image;
    let y = i32((r / p.tiles_w) * 2u);
    let x = i32((r % p.tiles_w) * 2u);
    let o = (n * p.co + co) * p.oh * p.ow;
    put(o, y, x, s0.x, b);
    put(o, y, x + 1, s0.y, b);
    put(o, y + 1, x, s1.x, b);
    put(o, y + 1, x + 1, s1.y, b);
}

// A^T of F(4x4, 3x3) applied along a vector.
fn at6(a: array<f32, 6>) -> vec4f {
    return vec4f(
        a[0] + a[1] + a[2] + a[3] + a[4],
        a[1] - a[2] + 2.0 * (a[3] - a[4]),
        a[1] + a[2] + 4.0 * (a[3] + a[4]),
        a[1] - a[2] + 8.0 * (a[3] - a[4]) + a[5],
    );
}

@compute @workgroup_size(WG)
fn output4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.co * p.tiles { return; }
    let t = i % p.tiles;
    let co = i / p.tiles;
    let plane = p.cop * p.tiles_p;
    let e = co * p.tiles_p + t;
    // am[b][y] = (A^T M)[y][b]
    var am: array<vec4f, 6>;
    for (var b = 0u; b < 6u; b++) {
        var col: array<f32, 6>;
        for (var a = 0u; a < 6u; a++) { col[a] = m[e + (a * 6u + b) * plane]; }
        am[b] = at6(col);
    }
    var bv = 0.0;
    if p.has_bias != 0u { bv = bias[co]; }
    let per_image = p.tiles_h * p.tiles_w;
    let n = t / per_image;
    let r = t % per_image;
    let y0 = i32((r / p.tiles_w) * 4u);
    let x0 = i32((r % p.tiles_w) * 4u);
    let o = (n * p.co + co) * p.oh * p.ow;
    for (var y = 0u; y < 4u; y++) {
        let row = array<f32, 6>(am[0][y], am[1][y], am[2][y], am[3][y], am[4][y], am[5][y]);
        let out4 = at6(row);
        for (var x = 0u; x < 4u; x++) { put(o, y0 + i32(y), x0 + i32(x), out4[x], bv); }
    }
}
