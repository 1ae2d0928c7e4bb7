// matmul prelude for adapters with subgroups of 8 or more lanes, TM4 = 4 and the row block taken
// from the workgroup (MZ), so that every lane of a subgroup uses the same A tiles: each of 8
// lanes loads two of the 16 vec4s and they are broadcast (lavapipe pays per lane for each load).
// Needs all 8 lanes of a group active: with MZ only whole groups return early.
struct ATiles { a0: mat4x4f, a1: mat4x4f, a2: mat4x4f, a3: mat4x4f }
fn a_tiles(ao: u32, m0: u32, k: u32, lane: u32) -> ATiles {
    var x: vec4f;
    var y: vec4f;
    if TA {
        // vec4 q = 4i + r is A[k + r][m0 + 4i ..]: lane l holds q = l and q = l + 8.
        let i = ao + (k + lane % 4u) * p.m + m0 + 4u * (lane / 4u);
        x = lda4(i);
        y = lda4(i + 8u);
    } else {
        // vec4 q is A[m0 + q][k ..]: lane l holds rows m0 + l and m0 + 8 + l.
        let i = ao + (m0 + lane) * p.k + k;
        x = lda4(i);
        y = lda4(i + 8u * p.k);
    }
    let m0_ = mat4x4f(subgroupBroadcast(x, 0u), subgroupBroadcast(x, 1u),
                      subgroupBroadcast(x, 2u), subgroupBroadcast(x, 3u));
    let m1 = mat4x4f(subgroupBroadcast(x, 4u), subgroupBroadcast(x, 5u),
                     subgroupBroadcast(x, 6u), subgroupBroadcast(x, 7u));
    let m2 = mat4x4f(subgroupBroadcast(y, 0u), subgroupBroadcast(y, 1u),
                     subgroupBroadcast(y, 2u), subgroupBroadcast(y, 3u));
    let m3 = mat4x4f(subgroupBroadcast(y, 4u), subgroupBroadcast(y, 5u),
                     subgroupBroadcast(y, 6u), subgroupBroadcast(y, 7u));
    if TA { return ATiles(m0_, m1, m2, m3); }
    return ATiles(transpose(m0_), transpose(m1), transpose(m2), transpose(m3));
}
