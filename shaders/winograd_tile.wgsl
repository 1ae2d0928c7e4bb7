// The fused F(4x4, 3x3) kernels' tile math, shared by the FP32 kernel (winograd_fused.wgsl) and
// the exact INT8 one (qwinograd.wgsl), generic over the body's scalar `S` (with
// winograd_rows.wgsl). The 36 elements e = 6 * row + col of a 6x6 matrix are packed in nine
// vec4s, all in straight-line code: lavapipe spills arrays indexed in loops to memory.

// The weights' vector type, for the weight preludes (winograd_u_*.wgsl).
alias WV = vec4<S>;
struct P9 { a: WV, b: WV, c: WV, d: WV, e: WV, f: WV, g: WV, h: WV, i: WV }

fn pack_rows(m: Rows6) -> P9 {
    return P9(m.r0.lo, WV(m.r0.hi, m.r1.lo.xy), WV(m.r1.lo.zw, m.r1.hi),
              m.r2.lo, WV(m.r2.hi, m.r3.lo.xy), WV(m.r3.lo.zw, m.r3.hi),
              m.r4.lo, WV(m.r4.hi, m.r5.lo.xy), WV(m.r5.lo.zw, m.r5.hi));
}

fn unpack_rows(m: P9) -> Rows6 {
    return Rows6(R6(m.a, m.b.xy), R6(WV(m.b.zw, m.c.xy), m.c.zw),
                 R6(m.d, m.e.xy), R6(WV(m.e.zw, m.f.xy), m.f.zw),
                 R6(m.g, m.h.xy), R6(WV(m.h.zw, m.i.xy), m.i.zw));
}

// acc + w . v, elementwise.
fn mac(acc: P9, w: P9, v: P9) -> P9 {
    return P9(acc.a + w.a * v.a, acc.b + w.b * v.b, acc.c + w.c * v.c,
              acc.d + w.d * v.d, acc.e + w.e * v.e, acc.f + w.f * v.f,
              acc.g + w.g * v.g, acc.h + w.h * v.h, acc.i + w.i * v.i);
}

// acc + w . v + y . z + q . r + s . t, elementwise, summed in that order (as four `mac`s).
fn mac4(acc: P9, w: P9, v: P9, y: P9, z: P9, q: P9, r: P9, s: P9, t: P9) -> P9 {
    return P9(acc.a + w.a * v.a + y.a * z.a + q.a * r.a + s.a * t.a,
              acc.b + w.b * v.b + y.b * z.b + q.b * r.b + s.b * t.b,
              acc.c + w.c * v.c + y.c * z.c + q.c * r.c + s.c * t.c,
              acc.d + w.d * v.d + y.d * z.d + q.d * r.d + s.d * t.d,
              acc.e + w.e * v.e + y.e * z.e + q.e * r.e + s.e * t.e,
              acc.f + w.f * v.f + y.f * z.f + q.f * r.f + s.f * t.f,
              acc.g + w.g * v.g + y.g * z.g + q.g * r.g + s.g * t.g,
              acc.h + w.h * v.h + y.h * z.h + q.h * r.h + s.h * t.h,
              acc.i + w.i * v.i + y.i * z.i + q.i * r.i + s.i * t.i);
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

// mac8 for four input channels at once, patches v0..v3 with weights from vec4s j + d * s:
// each accumulator is read and written once for all four, where four calls of mac8 would do
// it four times (lavapipe keeps the accumulators in memory, and blends each write inside a
// loop with the lanes' mask).
fn mac8x4(a: ptr<function, Acc8>, base: u32, j: u32, s: u32, lane: u32,
          v0: P9, v1: P9, v2: P9, v3: P9) {
    let j1 = j + s; let j2 = j1 + s; let j3 = j2 + s;
    let m0 = u_fetch(j, lane); let m1 = u_fetch(j1, lane);
    let m2 = u_fetch(j2, lane); let m3 = u_fetch(j3, lane);
    (*a).c0 = mac4((*a).c0, u_0(m0, j), v0, u_0(m1, j1), v1, u_0(m2, j2), v2, u_0(m3, j3), v3);
    if base + 1u < COB {
        (*a).c1 = mac4((*a).c1, u_1(m0, j), v0, u_1(m1, j1), v1, u_1(m2, j2), v2, u_1(m3, j3), v3);
    }
    if base + 2u < COB {
        (*a).c2 = mac4((*a).c2, u_2(m0, j), v0, u_2(m1, j1), v1, u_2(m2, j2), v2, u_2(m3, j3), v3);
    }
    if base + 3u < COB {
        (*a).c3 = mac4((*a).c3, u_3(m0, j), v0, u_3(m1, j1), v1, u_3(m2, j2), v2, u_3(m3, j3), v3);
    }
    if base + 4u < COB {
        (*a).c4 = mac4((*a).c4, u_4(m0, j), v0, u_4(m1, j1), v1, u_4(m2, j2), v2, u_4(m3, j3), v3);
    }
    if base + 5u < COB {
        (*a).c5 = mac4((*a).c5, u_5(m0, j), v0, u_5(m1, j1), v1, u_5(m2, j2), v2, u_5(m3, j3), v3);
    }
    if base + 6u < COB {
        (*a).c6 = mac4((*a).c6, u_6(m0, j), v0, u_6(m1, j1), v1, u_6(m2, j2), v2, u_6(m3, j3), v3);
    }
    if base + 7u < COB {
        (*a).c7 = mac4((*a).c7, u_7(m0, j), v0, u_7(m1, j1), v1, u_7(m2, j2), v2, u_7(m3, j3), v3);
    }
}

// The 4x4 output tile of invocation t0 (the last tile for invocations past the end, which are
// not `live`: they take part in the weight broadcasts and store nothing).
struct Tile { n: u32, oy: u32, ox: u32, ih: i32, iw: i32, live: bool }
fn tile_at(t0: u32) -> Tile {
    let t = min(t0, p.tiles - 1u);
    let per_image = p.tiles_h * p.tiles_w;
    let r = t % per_image;
    let oy = (r / p.tiles_w) * 4u;
    let ox = (r % p.tiles_w) * 4u;
    return Tile(t / per_image, oy, ox, i32(oy) - p.pad_h, i32(ox) - p.pad_w, t0 < p.tiles);
}
