// conv2d prelude: each lane loads the weight tiles it uses (any adapter).
struct WTiles { w0: mat4x4f, w1: mat4x4f, w2: mat4x4f, w3: mat4x4f }
fn w_tiles(wr: u32, wc: vec4u, lane: u32) -> WTiles {
    var t = WTiles();
    t.w0 = wtile(wr, wc.x);
    if TM4 > 1u { t.w1 = wtile(wr, wc.y); }
    if TM4 > 2u { t.w2 = wtile(wr, wc.z); }
    if TM4 > 3u { t.w3 = wtile(wr, wc.w); }
    return t;
}
