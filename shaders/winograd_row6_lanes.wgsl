// Patch row loads where, besides winograd_row6_aligned.wgsl's conditions, each subgroup of
// exactly 8 lanes holds whole rows of tiles (tiles per row divides 8): a tile's columns left
// and right of its aligned middle four are then the middle columns of its neighbours in the
// subgroup, or padding at a row's ends. Each row is one vec4 load and two exchanges between
// lanes (broadcasts from constant lanes, register shuffles on lavapipe) instead of three
// loads, each of which lavapipe runs lane by lane. The op checks the conditions; the body sets
// `lane_id`, its lane in the subgroup. Generic as winograd_row6.wgsl.
@group(0) @binding(6) var<storage, read> x4: array<vec4<X>>;

// v of the previous lane, or of the next one with `next` (a lane without one gets lane 0's,
// never used: its tile starts or ends a row).
fn neighbour(v: X, next: bool) -> X {
    let src = select(lane_id - 1u, lane_id + 1u, next);
    var r = subgroupBroadcast(v, 0u);
    r = select(r, subgroupBroadcast(v, 1u), src == 1u);
    r = select(r, subgroupBroadcast(v, 2u), src == 2u);
    r = select(r, subgroupBroadcast(v, 3u), src == 3u);
    r = select(r, subgroupBroadcast(v, 4u), src == 4u);
    r = select(r, subgroupBroadcast(v, 5u), src == 5u);
    r = select(r, subgroupBroadcast(v, 6u), src == 6u);
    return select(r, subgroupBroadcast(v, 7u), src == 7u);
}

// Input row ih, columns iw..iw+5 of the plane at offset rb, `fill()` outside the image.
fn row6(rb: i32, ih: i32, iw: i32) -> XR6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    let mid_ok = row_ok && iw + 1 < i32(p.w);
    let mid = select(vec4<X>(fill()), x4[u32(select(0, r + iw + 1, mid_ok)) / 4u], mid_ok);
    let left = select(fill(), neighbour(mid.w, false), row_ok && iw >= 0);
    let right = select(fill(), neighbour(mid.x, true), row_ok && iw + 5 < i32(p.w));
    return XR6(vec4<X>(left, mid.xyz), vec2<X>(mid.w, right));
}
