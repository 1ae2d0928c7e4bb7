// matmul prelude: each lane loads the A tiles it uses (any adapter).
struct ATiles { a0: mat4x4f, a1: mat4x4f, a2: mat4x4f, a3: mat4x4f }
fn a_tiles(ao: u32, m0: u32, k: u32, lane: u32) -> ATiles {
    var t = ATiles();
    t.a0 = tile_a(ao, m0, k);
    if TM4 > 1u { t.a1 = tile_a(ao, m0 + 4u, k); }
    if TM4 > 2u { t.a2 = tile_a(ao, m0 + 8u, k); }
    if TM4 > 3u { t.a3 = tile_a(ao, m0 + 12u, k); }
    return t;
}
