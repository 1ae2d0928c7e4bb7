// Fused Winograd prelude for adapters with subgroups of 8 or more lanes, with
// winograd_u_broadcast.wgsl: the layer's 3x3 kernels (f32) in an Rgba32Uint texture of 24
// texels per row, the row of each (input channel, block of eight output channels), texel
// 8q + l holding weights 4q..4q+3 of channel l. Lane l loads its channel's three texels and
// computes U = G g G^T before the broadcasts: lavapipe (Mesa 22.3) fetches texels without the
// per-lane branches of its storage-buffer loads, but each fetch is a call of some hundred
// instructions, and nine per channel for U itself cost more than the transform. Takes
// COB >= 8, so that `j` is a whole row of U's buffer layout (a multiple of 72).
@group(0) @binding(2) var u: texture_2d<u32>;
fn u_texel(row: u32, col: u32) -> vec4f {
    return bitcast<vec4f>(textureLoad(u, vec2u(col, row), 0));
}

// G of F(4x4, 3x3) (src/ops/winograd.rs) applied to a 3-vector.
fn g6(t: vec3f) -> R6 {
    let s = t.x + t.z;
    let q = t.x * (1.0 / 24.0) + t.z * (1.0 / 6.0);
    let d = t.y * (1.0 / 12.0);
    return R6(vec4f(t.x * 0.25, (s + t.y) * (-1.0 / 6.0), (s - t.y) * (-1.0 / 6.0), q + d),
              vec2f(q - d, t.z));
}

fn u_fetch(j: u32, lane: u32) -> P9 {
    let r = j / 72u;
    let a = u_texel(r, lane);
    let b = u_texel(r, lane + 8u);
    let c = u_texel(r, lane + 16u);
    let g0 = a.xyz;
    let g1 = vec3f(a.w, b.xy);
    let g2 = vec3f(b.zw, c.x);
    // The rows of G g, then G along each.
    let s = g0 + g2;
    let q = g0 * (1.0 / 24.0) + g2 * (1.0 / 6.0);
    let d = g1 * (1.0 / 12.0);
    return pack_rows(Rows6(g6(g0 * 0.25), g6((s + g1) * (-1.0 / 6.0)),
                           g6((s - g1) * (-1.0 / 6.0)), g6(q + d), g6(q - d), g6(g2)));
}
