// Winograd input transforms: V[e][ci][t] = (B^T d B)[e] for the input patch d under output
// tile t, zero outside the image. `input2` is F(2x2, 3x3) (4x4 patches, 16 elements), `input4`
// F(4x4, 3x3) (6x6 patches, 36 elements). V is [elements][Ci][tiles rounded up to 4]; the
// padding tiles are written as zeros so that the GEMM that reads V never meets stale values.
// See src/ops/winograd.rs.

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

// Patch rows (R6, bt_rows) come from the prelude shaders/winograd_rows.wgsl, row6 from
// winograd_row6.wgsl.
alias S = f32;
alias X = f32;
alias XR6 = R6;
fn fill() -> f32 { return 0.0; }

// Row a of V (elements 6a..6a+5) of tile i.
fn store_row(r: R6, a: u32, plane: u32, i: u32) {
    let o = a * 6u * plane + i;
    v[o] = r.lo.x;
    v[o + plane] = r.lo.y;
    v[o + 2u * plane] = r.lo.z;
    v[o + 3u * plane] = r.lo.w;
    v[o + 4u * plane] = r.hi.x;
    v[o + 5u * plane] = r.hi.y;
}

@compute @workgroup_size(WG)
fn input4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.ci * p.tiles_p { return; }
    let t = i % p.tiles_p;
    let ci = i / p.tiles_p;
    let plane = p.ci * p.tiles_p;
    let z = R6(vec4f(), vec2f());
    var d0 = z; var d1 = z; var d2 = z; var d3 = z; var d4 = z; var d5 = z;
    if t < p.tiles {
        let per_image = p.tiles_h * p.tiles_w;
        let n = t / per_image;
        let r = t % per_image;
        let ih = i32((r / p.tiles_w) * 4u) - p.pad_h; // 4x4 outputs per tile
        let iw = i32((r % p.tiles_w) * 4u) - p.pad_w;
        let rb = i32((n * p.ci + ci) * p.h * p.w);
        d0 = row6(rb, ih, iw);
        d1 = row6(rb, ih + 1, iw);
        d2 = row6(rb, ih + 2, iw);
        d3 = row6(rb, ih + 3, iw);
        d4 = row6(rb, ih + 4, iw);
        d5 = row6(rb, ih + 5, iw);
    }
    let m = bt_rows(d0, d1, d2, d3, d4, d5);
    store_row(m.r0, 0u, plane, i);
    store_row(m.r1, 1u, plane, i);
    store_row(m.r2, 2u, plane, i);
    store_row(m.r3, 3u, plane, i);
    store_row(m.r4, 4u, plane, i);
    store_row(m.r5, 5u, plane, i);
}
