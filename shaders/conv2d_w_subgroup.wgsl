// conv2d prelude for adapters with subgroups of 8 or more lanes and TM4 = 4: a workgroup's lanes
// share their channel block (the grid's z), so each of 8 lanes loads two of the 16 weight vec4s
// of a step and they are broadcast (lavapipe pays per lane for each load). Needs all 8 lanes
// of a group active: only whole groups return early.
struct WTiles { w0: mat4x4f, w1: mat4x4f, w2: mat4x4f, w3: mat4x4f }
fn w_tiles(wr: u32, wc: vec4u, lane: u32) -> WTiles {
    // vec4 q = 4i + kk is wt[wr + kk * r + wc[i]]: lane l holds q = l and q = l + 8. The fourth
    // tap of a 3-wide kernel is a zero weight, so loading it changes nothing.
    let r = p.cogp / 4u;
    let x = wt[wr + (lane % 4u) * r + wc[lane / 4u]];
    let y = wt[wr + (lane % 4u) * r + wc[2u + lane / 4u]];
    return WTiles(
        mat4x4f(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u),
                subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u)),
        mat4x4f(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u),
                subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u)),
        mat4x4f(subgroupBroadcast(y, 0u), subgroupBroadcast(y, 1u),
                subgroupBroadcast(y, 2u), subgroupBroadcast(y, 3u)),
        mat4x4f(subgroupBroadcast(y, 4u), subgroupBroadcast(y, 5u),
                subgroupBroadcast(y, 6u), subgroupBroadcast(y, 7u)));
}
