// Fused Winograd F(4x4, 3x3), one dispatch, no scratch: each invocation owns one 4x4 output tile
// and COB output channels (the channel block is the workgroup's z index, so the weight loads are
// uniform across the workgroup). Per input channel it transforms the 6x6 input patch
// (V = B^T d B) and accumulates U[co] . V elementwise for its channels; at the end it applies
// A^T (.) A and the epilogue. For few channels this replaces the 3-dispatch form's small GEMMs,
// whose stores and scratch cost more than their arithmetic. lavapipe pays per lane for every
// storage load, so the more channels share one patch's loads and transform the better, even
// though their accumulators spill (see `channels_per_invocation`). Preludes declare U and its
// loads: winograd_u_loads.wgsl loads each channel's weights in every lane; on adapters with
// subgroups of 8 or more, winograd_u_texture.wgsl (U in a texture) or winograd_u_subgroup.wgsl
// (U in a buffer) loads them once per subgroup, one eighth per lane, and
// winograd_u_broadcast.wgsl broadcasts them. The 36 elements e = 6 * row + col of a 6x6 matrix
// are packed in nine vec4s (`P9`), all in straight-line code: lavapipe spills arrays indexed in
// loops to memory. See src/ops/winograd.rs.

struct Params {
    n: u32, ci: u32, h: u32, w: u32,
    co: u32, oh: u32, ow: u32, cop: u32,
    pad_h: i32, pad_w: i32, tiles_h: u32, tiles_w: u32,
    tiles: u32, tiles_p: u32, act: u32, slope: f32,
    has_bias: u32, has_res: u32, _p0: u32, _p1: u32,
}

override WG: u32 = 64u;
// Output channels per invocation: 1..8 or 16, in blocks of eight (8 or 16 with the subgroup
// prelude); U's channel axis is padded to a multiple of 8.
override COB: u32 = 8u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// The residual and output bindings and `put4`, the epilogue's stores, come from a prelude:
// winograd_put_f32.wgsl, or winograd_put_vec4.wgsl where the output width is a multiple of 4
// (one load and one store per row of four instead of four each: lavapipe pays per lane for
// every storage access).

// Patch rows (R6, lin, add, sub) come from the prelude shaders/winograd_rows.wgsl, their loads
// (row6) from winograd_row6.wgsl or, where widths and padding allow, winograd_row6_aligned.wgsl.
// A 6x6 matrix, row-major, in nine vec4s.
// The weights' vector type (the integer kernel, qwinograd.wgsl, shares the weight preludes).
alias WV = vec4f;
struct P9 { a: vec4f, b: vec4f, c: vec4f, d: vec4f, e: vec4f, f: vec4f, g: vec4f, h: vec4f, i: vec4f }

fn pack(r0: R6, r1: R6, r2: R6, r3: R6, r4: R6, r5: R6) -> P9 {
    return P9(r0.lo, vec4f(r0.hi, r1.lo.xy), vec4f(r1.lo.zw, r1.hi),
              r2.lo, vec4f(r2.hi, r3.lo.xy), vec4f(r3.lo.zw, r3.hi),
              r4.lo, vec4f(r4.hi, r5.lo.xy), vec4f(r5.lo.zw, r5.hi));
}


// B^T along one row (interpolation points 0, +-1, +-2).
fn bt6(r: R6) -> R6 {
    let a0 = r.lo.x; let a1 = r.lo.y; let a2 = r.lo.z; let a3 = r.lo.w;
    let a4 = r.hi.x; let a5 = r.hi.y;
    return R6(vec4f(4.0 * a0 - 5.0 * a2 + a4,
                    a3 + a4 - 4.0 * (a1 + a2),
                    a4 - a3 + 4.0 * (a1 - a2),
                    a4 - a2 + 2.0 * (a3 - a1)),
              vec2f(a4 - a2 + 2.0 * (a1 - a3),
                    4.0 * a1 - 5.0 * a3 + a5));
}

// V = B^T d B of the patch whose top-left input pixel is (ih, iw) in the plane at offset rb.
fn transform_input(rb: i32, ih: i32, iw: i32) -> P9 {
    let d0 = row6(rb, ih, iw);
    let d1 = row6(rb, ih + 1, iw);
    let d2 = row6(rb, ih + 2, iw);
    let d3 = row6(rb, ih + 3, iw);
    let d4 = row6(rb, ih + 4, iw);
    let d5 = row6(rb, ih + 5, iw);
    return pack(bt6(add(lin(d0, 4.0, d2, -5.0), d4)),
                bt6(add(lin(d1, -4.0, d2, -4.0), add(d3, d4))),
                bt6(add(lin(d1, 4.0, d2, -4.0), lin(d3, -1.0, d4, 1.0))),
                bt6(add(lin(d1, -2.0, d2, -1.0), lin(d3, 2.0, d4, 1.0))),
                bt6(add(lin(d1, 2.0, d2, -1.0), lin(d3, -2.0, d4, 1.0))),
                bt6(add(lin(d1, 4.0, d3, -5.0), d5)));
}

// acc + w . v, elementwise.
fn mac(acc: P9, w: P9, v: P9) -> P9 {
    return P9(acc.a + w.a * v.a, acc.b + w.b * v.b, acc.c + w.c * v.c,
              acc.d + w.d * v.d, acc.e + w.e * v.e, acc.f + w.f * v.f,
              acc.g + w.g * v.g, acc.h + w.h * v.h, acc.i + w.i * v.i);
}

// A^T of F(4x4, 3x3) along one row: four outputs.
fn at6(r: R6) -> vec4f {
    let a1 = r.lo.y; let a2 = r.lo.z; let a3 = r.lo.w; let a4 = r.hi.x;
    return vec4f(r.lo.x + a1 + a2 + a3 + a4,
                 a1 - a2 + 2.0 * (a3 - a4),
                 a1 + a2 + 4.0 * (a3 + a4),
                 a1 - a2 + 8.0 * (a3 - a4) + r.hi.y);
}

// Y = A^T M A of channel co for the tile at image n, output row oy, column ox, then the epilogue.
fn finish(m: P9, co: u32, n: u32, oy: u32, ox: u32) {
    if co >= p.co { return; }
    let m0 = R6(m.a, m.b.xy);
    let m1 = R6(vec4f(m.b.zw, m.c.xy), m.c.zw);
    let m2 = R6(m.d, m.e.xy);
    let m3 = R6(vec4f(m.e.zw, m.f.xy), m.f.zw);
    let m4 = R6(m.g, m.h.xy);
    let m5 = R6(vec4f(m.h.zw, m.i.xy), m.i.zw);
    let p12 = add(m1, m2);
    let d12 = sub(m1, m2);
    let p34 = add(m3, m4);
    let d34 = sub(m3, m4);
    var b = 0.0;
    if p.has_bias != 0u { b = bias[co]; }
    let o = (n * p.co + co) * p.oh * p.ow;
    put4(o, oy, ox, at6(add(add(m0, p12), p34)), b);
    put4(o, oy + 1u, ox, at6(lin(d12, 1.0, d34, 2.0)), b);
    put4(o, oy + 2u, ox, at6(lin(p12, 1.0, p34, 4.0)), b);
    put4(o, oy + 3u, ox, at6(add(lin(d12, 1.0, d34, 8.0), m5)), b);
}

// The accumulators of a block of eight output channels.
struct Acc8 { c0: P9, c1: P9, c2: P9, c3: P9, c4: P9, c5: P9, c6: P9, c7: P9 }

// a += U[co] . v for the block's channels base.., whose weights start at vec4 j; channels past
// COB (only in a first block of fewer than eight) are skipped.
fn mac8(a: ptr<function, Acc8>, base: u32, j: u32, lane: u32, v: P9) {
    let m = u_fetch(j, lane);
    (*a).c0 = mac((*a).c0, u_0(m, j), v);
    if base + 1u < COB { (*a).c1 = mac((*a).c1, u_1(m, j), v); }
    if base + 2u < COB { (*a).c2 = mac((*a).c2, u_2(m, j), v); }
    if base + 3u < COB { (*a).c3 = mac((*a).c3, u_3(m, j), v); }
    if base + 4u < COB { (*a).c4 = mac((*a).c4, u_4(m, j), v); }
    if base + 5u < COB { (*a).c5 = mac((*a).c5, u_5(m, j), v); }
    if base + 6u < COB { (*a).c6 = mac((*a).c6, u_6(m, j), v); }
    if base + 7u < COB { (*a).c7 = mac((*a).c7, u_7(m, j), v); }
}

// The epilogue of the block's channels co0 + base.. .
fn finish8(a: Acc8, co0: u32, base: u32, n: u32, oy: u32, ox: u32) {
    let co = co0 + base;
    finish(a.c0, co, n, oy, ox);
    if base + 1u < COB { finish(a.c1, co + 1u, n, oy, ox); }
    if base + 2u < COB { finish(a.c2, co + 2u, n, oy, ox); }
    if base + 3u < COB { finish(a.c3, co + 3u, n, oy, ox); }
    if base + 4u < COB { finish(a.c4, co + 4u, n, oy, ox); }
    if base + 5u < COB { finish(a.c5, co + 5u, n, oy, ox); }
    if base + 6u < COB { finish(a.c6, co + 6u, n, oy, ox); }
    if base + 7u < COB { finish(a.c7, co + 7u, n, oy, ox); }
}

@compute @workgroup_size(WG)
fn fused4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u,
          @builtin(workgroup_id) wid: vec3u, @builtin(local_invocation_index) li: u32) {
    // With the subgroup prelude every lane of a group of 8 takes part in the broadcasts, so
    // lanes past the last tile compute the last tile again and store nothing.
    let t0 = gid.x + gid.y * nwg.x * WG;
    if t0 - li % 8u >= p.tiles { return; } // a whole group of 8 past the end
    let live = t0 < p.tiles;
    let t = min(t0, p.tiles - 1u);
    let co0 = wid.z * COB;
    let per_image = p.tiles_h * p.tiles_w;
    let n = t / per_image;
    let r = t % per_image;
    let oy = (r / p.tiles_w) * 4u;
    let ox = (r % p.tiles_w) * 4u;
    let ih = i32(oy) - p.pad_h;
    let iw = i32(ox) - p.pad_w;
    let hw = i32(p.h * p.w);
    var rb = i32(n * p.ci) * hw;
    let cop8 = (p.co + 7u) / 8u * 8u;
    // U is [Ci][Co / 8][9][8] vec4s: vec4 q of channel 8b + c is at (b * 9 + q) * 8 + c.
    var j = co0 / 8u * 72u + co0 % 8u;
    let lane = li % 8u;
    // Two blocks of eight channels, 72 vec4s apart in U (COB 16 starts at a multiple of 8).
    var a0: Acc8;
    var a1: Acc8;
    for (var c = 0u; c < p.ci; c++) {
        let v = transform_input(rb, ih, iw);
        mac8(&a0, 0u, j, lane, v);
        if COB > 8u { mac8(&a1, 8u, j + 72u, lane, v); }
        rb += hw;
        j += cop8 * 9u;
    }
    if !live { return; }
    finish8(a0, co0, 0u, n, oy, ox);
    if COB > 8u { finish8(a1, co0, 8u, n, oy, ox); }
}
