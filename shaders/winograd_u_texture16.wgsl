// The INT8 fused Winograd kernel's texture prelude (as winograd_u_texture.wgsl, with
// winograd_u_broadcast.wgsl): U' as i16 pairs in an Rgba32Uint texture of 40 texels per row,
// texel 8q + l holding elements 8q..8q+7 of channel l (element e in word e / 2, the low half
// for even e). Lane l loads five texels instead of nine and widens them to i32 before the
// broadcasts; on lavapipe each texel load is a call of some hundred instructions.
@group(0) @binding(2) var u: texture_2d<u32>;
fn u_texel(row: u32, col: u32) -> vec4u {
    return textureLoad(u, vec2u(col, row), 0);
}
// Elements 8q..8q+3 (from words x, y) and 8q+4..8q+7 (z, w) of texel t.
fn u_low(t: vec4u) -> vec4i {
    let l = bitcast<vec4i>(t.xxyy << vec4u(16u, 0u, 16u, 0u));
    return l >> vec4u(16u);
}
fn u_high(t: vec4u) -> vec4i {
    let h = bitcast<vec4i>(t.zzww << vec4u(16u, 0u, 16u, 0u));
    return h >> vec4u(16u);
}
fn u_fetch(j: u32, lane: u32) -> P9 {
    let r = j / 72u;
    let t0 = u_texel(r, lane);
    let t1 = u_texel(r, lane + 8u);
    let t2 = u_texel(r, lane + 16u);
    let t3 = u_texel(r, lane + 24u);
    let t4 = u_texel(r, lane + 32u);
    return P9(u_low(t0), u_high(t0), u_low(t1), u_high(t1), u_low(t2), u_high(t2),
              u_low(t3), u_high(t3), u_low(t4));
}
