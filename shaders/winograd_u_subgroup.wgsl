// Fused Winograd prelude for adapters with subgroups of 8 or more lanes (the op checks), with
// winograd_u_broadcast.wgsl: lane l of each group of eight loads vec4 q of channel l for every q
// from a storage buffer. Needs all 8 lanes of a group active (only whole groups return early).
@group(0) @binding(2) var<storage, read> u: array<WV>;
fn u_fetch(j: u32, lane: u32) -> P9 {
    let i = j + lane;
    return P9(u[i + 0u], u[i + 8u], u[i + 16u], u[i + 24u], u[i + 32u], u[i + 40u], u[i + 48u], u[i + 56u], u[i + 64u]);
}
