// Fused Winograd F(4x4, 3x3), one dispatch, no scratch: each invocation owns one 4x4 output tile
// and COB output channels (the channel block is the workgroup's z index, so the weight loads are
// uniform across the workgroup). Per input channel it transforms the 6x6 input patch
// (V = B^T d B) and accumulates U[co] . V elementwise for its channels; at the end it applies
// A^T (.) A and the epilogue. For few channels this replaces the 3-dispatch form's small GEMMs,
// whose stores and scratch cost more than their arithmetic. lavapipe pays per lane for every
// storage load, so the more channels share one patch's loads and transform the better, even
// though their accumulators spill (see `channels_per_invocation`). Preludes declare U and its
// loads: winograd_u_loads.wgsl loads each channel's weights in every lane; on adapters with
// subgroups of 8 or more, winograd_u_texture.wgsl (the 3x3 kernels in a texture, transformed
// per lane) or winograd_u_subgroup.wgsl (U in a buffer) loads them once per subgroup, one
// eighth per lane, and winograd_u_broadcast.wgsl broadcasts them. The 36 elements e = 6 * row + col of a 6x6 matrix
// are packed in nine vec4s (`P9`, winograd_tile.wgsl). See src/ops/winograd.rs.

// Output channels per invocation: 1..8 or 16, in blocks of eight (8 or 16 with the subgroup
// prelude); U's channel axis is padded to a multiple of 8.
override COB: u32 = 8u;
// Whether the epilogue adds a residual, fixed per pipeline as ACT is (activation.wgsl).
override HAS_RES: bool = false;
// Input channels per loop step: 1, or 4 where Ci is a multiple of 4, whose accumulation
// (`mac8x4`) reads and writes each accumulator once for the four (CPU adapters).
override CPI: u32 = 1u;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
// The residual and output bindings and `put4`, the epilogue's stores, come from a prelude:
// winograd_put_f32.wgsl, or winograd_put_vec4.wgsl where the output width is a multiple of 4
// (one load and one store per row of four instead of four each: lavapipe pays per lane for
// every storage access).

// Patch rows (R6, Rows6, lin, add, sub, bt_rows) come from the prelude
// shaders/winograd_rows.wgsl, their loads (row6) from winograd_row6.wgsl or, where widths and
// padding allow, winograd_row6_aligned.wgsl or winograd_row6_lanes.wgsl (which reads `lane_id`);
// P9, mac8 and mac8x4 from winograd_tile.wgsl.
alias S = f32;
alias X = f32;
alias XR6 = R6;
fn fill() -> f32 { return 0.0; }
// The invocation's lane in its group of 8: the weight broadcasts' and winograd_row6_lanes.wgsl's.
var<private> lane_id: u32;

// V = B^T d B of the patch whose top-left input pixel is (ih, iw) in the plane at offset rb.
fn transform_input(rb: i32, ih: i32, iw: i32) -> P9 {
    return pack_rows(bt_rows(row6(rb, ih, iw), row6(rb, ih + 1, iw), row6(rb, ih + 2, iw),
                        row6(rb, ih + 3, iw), row6(rb, ih + 4, iw), row6(rb, ih + 5, iw)));
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
    let r = unpack_rows(m);
    let m0 = r.r0; let m1 = r.r1; let m2 = r.r2; let m3 = r.r3; let m4 = r.r4; let m5 = r.r5;
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
    lane_id = li % 8u;
    let tl = tile_at(t0);
    let n = tl.n; let oy = tl.oy; let ox = tl.ox; let ih = tl.ih; let iw = tl.iw;
    let co0 = wid.z * COB;
    let hw = i32(p.h * p.w);
    var rb = i32(n * p.ci) * hw;
    let cop8 = (p.co + 7u) / 8u * 8u;
    // U is [Ci][Co / 8][9][8] vec4s: vec4 q of channel 8b + c is at (b * 9 + q) * 8 + c.
    var j = co0 / 8u * 72u + co0 % 8u;
    // Two blocks of eight channels, 72 vec4s apart in U (COB 16 starts at a multiple of 8).
    var a0: Acc8;
    var a1: Acc8;
    let step = cop8 * 9u;
    for (var c = 0u; c < p.ci; c += CPI) {
        let v0 = transform_input(rb, ih, iw);
        if CPI == 4u {
            let v1 = transform_input(rb + hw, ih, iw);
            let v2 = transform_input(rb + 2 * hw, ih, iw);
            let v3 = transform_input(rb + 3 * hw, ih, iw);
            mac8x4(&a0, 0u, j, step, lane_id, v0, v1, v2, v3);
            if COB > 8u { mac8x4(&a1, 8u, j + 72u, step, lane_id, v0, v1, v2, v3); }
        } else {
            mac8(&a0, 0u, j, lane_id, v0);
            if COB > 8u { mac8(&a1, 8u, j + 72u, lane_id, v0); }
        }
        rb += i32(CPI) * hw;
        j += CPI * step;
    }
    if !tl.live { return; }
    finish8(a0, co0, 0u, n, oy, ox);
    if COB > 8u { finish8(a1, co0, 8u, n, oy, ox); }
}
