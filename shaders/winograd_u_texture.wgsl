// Fused Winograd prelude for adapters with subgroups of 8 or more lanes, with
// winograd_u_broadcast.wgsl: U as an Rgba32Uint texture of 72 texels per row, the row of each
// (input channel, block of eight output channels), so that lane l loads vec4 q of channel l
// from texel 8q + l. lavapipe (Mesa 22.3) fetches texels without the per-lane branches of its
// storage-buffer loads. Takes COB >= 8, so that `j` is a whole row (a multiple of 72).
@group(0) @binding(2) var u: texture_2d<u32>;
fn u_texel(row: u32, col: u32) -> WV {
    return bitcast<WV>(textureLoad(u, vec2u(col, row), 0));
}
fn u_fetch(j: u32, lane: u32) -> P9 {
    let r = j / 72u;
    return P9(u_texel(r, lane), u_texel(r, lane + 8u), u_texel(r, lane + 16u),
              u_texel(r, lane + 24u), u_texel(r, lane + 32u), u_texel(r, lane + 40u),
              u_texel(r, lane + 48u), u_texel(r, lane + 56u), u_texel(r, lane + 64u));
}
