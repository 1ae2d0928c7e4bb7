// Winograd output transforms with the conv epilogue: for output tile t and channel co,
// Y = A^T M A over the GEMM results M[e][co][t], then out = act(Y + bias + residual) on the
// tile's outputs that lie inside the image. `output2`: F(2x2, 3x3), 16 elements, 2x2 outputs;
// `output4`: F(4x4, 3x3), 36 elements, 4x4 outputs. M is [elements][Co rounded up to 4][tiles
// rounded up to 4].

// Whether the epilogue adds a residual, fixed per pipeline as ACT is (activation.wgsl).
override HAS_RES: bool = false;

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
    if HAS_RES { s += res[i]; }
    out[i] = act_vec4(vec4f(s), ACT, p.slope).x;
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

// A 6-wide row of M: elements 0..3 and 4..5. Straight-line vector code as in
// winograd_in.wgsl (arrays indexed in loops are spilled to memory on lavapipe).
struct R6 { lo: vec4f, hi: vec2f }

fn row6(e: u32, plane: u32) -> R6 {
    return R6(vec4f(m[e], m[e + plane], m[e + 2u * plane], m[e + 3u * plane]),
              vec2f(m[e + 4u * plane], m[e + 5u * plane]));
}

fn lin(a: R6, s: f32, b: R6, t: f32) -> R6 { return R6(a.lo * s + b.lo * t, a.hi * s + b.hi * t); }
fn add(a: R6, b: R6) -> R6 { return R6(a.lo + b.lo, a.hi + b.hi); }
fn sub(a: R6, b: R6) -> R6 { return R6(a.lo - b.lo, a.hi - b.hi); }

// A^T of F(4x4, 3x3) along one row: four outputs.
fn at6(r: R6) -> vec4f {
    let a1 = r.lo.y; let a2 = r.lo.z; let a3 = r.lo.w; let a4 = r.hi.x;
    return vec4f(
        r.lo.x + a1 + a2 + a3 + a4,
        a1 - a2 + 2.0 * (a3 - a4),
        a1 + a2 + 4.0 * (a3 + a4),
        a1 - a2 + 8.0 * (a3 - a4) + r.hi.y,
    );
}

// Output row y (four pixels from column x) of plane offset o: bias, residual, activation.
fn put4(o: u32, y: i32, x: i32, v: vec4f, b: f32) {
    if u32(y) >= p.oh { return; }
    let i = o + u32(y) * p.ow + u32(x);
    let live = min(p.ow - u32(x), 4u);
    var s = v + vec4f(b);
    if HAS_RES {
        for (var c = 0u; c < live; c++) { s[c] += res[i + c]; }
    }
    s = act_vec4(s, ACT, p.slope);
    for (var c = 0u; c < live; c++) { out[i + c] = s[c]; }
}

@compute @workgroup_size(WG)
fn output4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.co * p.tiles { return; }
    let t = i % p.tiles;
    let co = i / p.tiles;
    let plane = p.cop * p.tiles_p;
    let e = co * p.tiles_p + t;
    let m0 = row6(e, plane);
    let m1 = row6(e + 6u * plane, plane);
    let m2 = row6(e + 12u * plane, plane);
    let m3 = row6(e + 18u * plane, plane);
    let m4 = row6(e + 24u * plane, plane);
    let m5 = row6(e + 30u * plane, plane);
    // Rows of A^T M (combinations of M's rows), then A^T along each row.
    let p12 = add(m1, m2);
    let d12 = sub(m1, m2);
    let p34 = add(m3, m4);
    let d34 = sub(m3, m4);
    let y0 = at6(add(add(m0, p12), p34));
    let y1 = at6(lin(d12, 1.0, d34, 2.0));
    let y2 = at6(lin(p12, 1.0, p34, 4.0));
    let y3 = at6(add(lin(d12, 1.0, d34, 8.0), m5));
    var bv = 0.0;
    if p.has_bias != 0u { bv = bias[co]; }
    let per_image = p.tiles_h * p.tiles_w;
    let n = t / per_image;
    let r = t % per_image;
    let oy = i32((r / p.tiles_w) * 4u);
    let ox = i32((r % p.tiles_w) * 4u);
    let o = (n * p.co + co) * p.oh * p.ow;
    put4(o, oy, ox, y0, bv);
    put4(o, oy + 1, ox, y1, bv);
    put4(o, oy + 2, ox, y2, bv);
    put4(o, oy + 3, ox, y3, bv);
}
