// Winograd input transforms: V[e][ci][t] = (B^T d B)[e] for the input patch d under output
// tile t, zero outside the image. `input2` is F(2x2, 3x3) (4x4 patches, 16 elements), `input4`
// F(4x4, 3x3) (6x6 patches, 36 elements). V is [elements][Ci][tiles rounded up to 4]; the
// padding tiles are written as zeros so that the GEMM that reads V never meets stale values.
// See src/ops/winograd.rs.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, cop: u32,
    pad_h: i32, pad_w: i32, tiles_h: u32, tiles_w: u32,
    tiles: u32, tiles_p: u32, act: u32, slope: f32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}

override WG: u32 = 64u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;

// Input row `ih` (offset `rb` of row 0), columns c..c+3, zero outside the image.
fn row4(rb: i32, ih: i32, c: i32) -> vec4f {
    let e = vec4i(c) + vec4i(0, 1, 2, 3);
    let ok = vec4<bool>(ih >= 0 && ih < i32(p.h)) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let i = vec4u(select(vec4i(0), vec4i(rb + ih * i32(p.w)) + e, ok));
    return select(vec4f(0.0), vec4f(x[i.x], x[i.y], x[i.z], x[i.w]), ok);
}

// B^T applied along a vector: (a0 - a2, a1 + a2, a2 - a1, a1 - a3).
fn bt(a: vec4f) -> vec4f {
    return vec4f(a.x - a.z, a.y + a.z, a.z - a.y, a.y - a.w);
}

@compute @workgroup_size(WG)
fn input2(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.ci * p.tiles_p { return; }
    let t = i % p.tiles_p;
    let ci = i / p.tiles_p;
    let plane = p.ci * p.tiles_p; // stride between the 16 elements
    var m = array<vec4f, 4>();
    if t < p.tiles {
        let per_image = p.tiles_h * p.tiles_w;
        let n = t / per_image;
        let r = t % per_image;
        let ih = i32((r / p.tiles_w) * 2u) - p.pad_h; // 2x2 outputs per tile
        let iw = i32((r % p.tiles_w) * 2u) - p.pad_w;
        let rb = i32((n * p.ci + ci) * p.h * p.w);
        let d0 = row4(rb, ih, iw);
        let d1 = row4(rb, ih + 1, iw);
        let d2 = row4(rb, ih + 2, iw);
        let d3 = row4(rb, ih + 3, iw);
        // Rows of B^T d, then B^T along each row (= (B^T d) B).
        m[0] = bt(d0 - d2);
        m[1] = bt(d1 + d2);
        m[2] = bt(d2 - d1);
        m[3] = bt(d1 - d3);
    }
    for (var a = 0u; a < 4u; a++) {
        for (var b = 0u; b < 4u; b++) {
            v[(a * 4u + b) * plane + i] = m[a][b];
        }
    }
}

// Input value at row ih, column iw of the plane at offset rb, zero outside the image.
fn ld(rb: i32, ih: i32, iw: i32) -> f32 {
    let ok = ih >= 0 && ih < i32(p.h) && iw >= 0 && iw < i32(p.w);
    return select(0.0, x[u32(select(0, rb + ih * i32(p.w) + iw, ok))], ok);
}

// B^T of F(4x4, 3x3) (interpolation points 0, +-1, +-2) applied along a vector.
fn bt6(a: array<f32, 6>) -> array<f32, 6> {
    return array<f32, 6>(
        4.0 * a[0] - 5.0 * a[2] + a[4],
        a[3] + a[4] - 4.0 * (a[1] + a[2]),
        a[4] - a[3] + 4.0 * (a[1] - a[2]),
        a[4] - a[2] + 2.0 * (a[3] - a[1]),
        a[4] - a[2] + 2.0 * (a[1] - a[3]),
        4.0 * a[1] - 5.0 * a[3] + a[5],
    );
}

@compute @workgroup_size(WG)
fn input4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.ci * p.tiles_p { return; }
    let t = i % p.tiles_p;
    let ci = i / p.tiles_p;
    let plane = p.ci * p.tiles_p;
    // bd[c][a] = (B^T d)[a][c]
    var bd: array<array<f32, 6>, 6>;
    if t < p.tiles {
        let per_image = p.tiles_h * p.tiles_w;
        let n = t / per_image;
        let r = t % per_image;
        let ih = i32((r / p.tiles_w) * 4u) - p.pad_h; // 4x4 outputs per tile
        let iw = i32((r % p.tiles_w) * 4u) - p.pad_w;
        let rb = i32((n * p.ci + ci) * p.h * p.w);
        for (var c = 0u; c < 6u; c++) {
            var col: array<f32, 6>;
            for (var k = 0u; k < 6u; k++) { col[k] = ld(rb, ih + i32(k), iw + i32(c)); }
            bd[c] = bt6(col);
        }
    }
    for (var a = 0u; a < 6u; a++) {
        var row: array<f32, 6>;
        for (var c = 0u; c < 6u; c++) { row[c] = bd[c][a]; }
        let e = bt6(row);
        for (var b = 0u; b < 6u; b++) { v[(a * 6u + b) * plane + i] = e[b]; }
    }
}
