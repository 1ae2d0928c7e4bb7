// The INT8 fused Winograd kernel's texture prelude (as winograd_u_texture.wgsl, with
// winograd_u_broadcast.wgsl): the layer's int8 weights in an Rgba32Uint texture of 8 texels
// per row, texel l holding channel l's 3x3 kernel (bytes 0..8, row-major). Lane l loads one
// texel and computes U' = G' g G'^T itself, in exact integers, before the broadcasts: on
// lavapipe each texel load is a call of some hundred instructions, the transform some eighty
// vector operations.
@group(0) @binding(2) var u: texture_2d<u32>;

// G' (the rows of shaders/qwinograd.wgsl: 1 0 0 / 1 1 1 / 1 -1 1 / 1 2 4 / 1 -2 4 / 0 0 1)
// applied to a 3-vector.
fn g6(t: vec3i) -> R6 {
    let s = t.x + t.z;
    let q = t.x + 4 * t.z;
    let d = 2 * t.y;
    return R6(vec4i(t.x, s + t.y, s - t.y, q + d), vec2i(q - d, t.z));
}

fn u_fetch(j: u32, lane: u32) -> P9 {
    let t = textureLoad(u, vec2u(lane, j / 72u), 0);
    let a = unpack(t.x);
    let b = unpack(t.y);
    let r0 = a.xyz;
    let r1 = vec3i(a.w, b.xy);
    let r2 = vec3i(b.zw, bitcast<i32>(t.z << 24u) >> 24u);
    // The rows of G' g, then G' along each.
    let s = r0 + r2;
    let q = r0 + 4 * r2;
    let d = 2 * r1;
    return pack_rows(Rows6(g6(r0), g6(s + r1), g6(s - r1), g6(q + d), g6(q - d), g6(r2)));
}
