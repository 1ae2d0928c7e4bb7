// qconv prelude for adapters with subgroups of 8 or more lanes: a workgroup's lanes share their
// output-channel tile (the grid's z), so lane l of each 8 loads word (or vec4) l of a step and
// the others take it by broadcast (lavapipe pays per lane for each load). Every lane of a
// group must reach the broadcasts: the conv entries never return early.
struct W8 { a: vec4<u32>, b: vec4<u32> }
fn weights8(wi: u32, lane: u32) -> W8 {
    let v = weight(wi, lane);
    return W8(vec4<u32>(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u),
                        subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u)),
              vec4<u32>(subgroupBroadcast(v, 4u), subgroupBroadcast(v, 5u),
                        subgroupBroadcast(v, 6u), subgroupBroadcast(v, 7u)));
}
struct WF4 { k0: vec4f, k1: vec4f, k2: vec4f, k3: vec4f }
fn weights4f(wi: u32, lane: u32) -> WF4 {
    let v = wvec(wi + lane % 4u);
    return WF4(subgroupBroadcast(v, 0u), subgroupBroadcast(v, 1u),
               subgroupBroadcast(v, 2u), subgroupBroadcast(v, 3u));
}
