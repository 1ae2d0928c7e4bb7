// The weight gradient of a stride-1 3x3 conv by F(4x4, 3x3) (Lavin & Gray 2016, the transpose
// of the forward algorithm): dW = G^T [sum over tiles of (A dy A^T) . (B^T d B)] G, where d is a
// tile's 6x6 input patch (V, from winograd_in.wgsl's input4), dy its 4x4 output gradient, A the
// 6x4 transpose of the forward output transform and G the forward weight transform. 36 products
// per tile and channel pair instead of 144. `dy4` writes DY [36][Co][tiles rounded up to 4]
// (zeros past the outputs and in the padding tiles), a batched matrix product sums DY . V^T
// over tiles into M [36][Co][Ci], and `back4` applies G^T . G. See src/ops/winograd_wgrad.rs.

@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// Row y of the gradient plane at offset o, columns x..x+3, zero outside the outputs.
fn dy_row(o: u32, y: u32, x: u32) -> vec4f {
    var r = vec4f();
    if y < p.oh {
        for (var c = 0u; c < 4u; c++) {
            if x + c < p.ow { r[c] = src[o + y * p.ow + x + c]; }
        }
    }
    return r;
}

// A (6x4) applied along a vector: (a0, a0+a1+a2+a3, a0-a1+a2-a3, a0+2a1+4a2+8a3,
// a0-2a1+4a2-8a3, a3), as its first four and last two elements.
fn a_lo(a: vec4f) -> vec4f {
    let e = a.x + a.z;
    let o = a.y + a.w;
    return vec4f(a.x, e + o, e - o, a.x + 2.0 * a.y + 4.0 * a.z + 8.0 * a.w);
}
fn a_hi(a: vec4f) -> vec2f {
    return vec2f(a.x - 2.0 * a.y + 4.0 * a.z - 8.0 * a.w, a.w);
}

// Row j of A dy A^T (six elements) to DY[6j..6j+5] of (co, t).
fn store_row(r: vec4f, j: u32, plane: u32, i: u32) {
    let lo = a_lo(r);
    let hi = a_hi(r);
    let o = j * 6u * plane + i;
    dst[o] = lo.x;
    dst[o + plane] = lo.y;
    dst[o + 2u * plane] = lo.z;
    dst[o + 3u * plane] = lo.w;
    dst[o + 4u * plane] = hi.x;
    dst[o + 5u * plane] = hi.y;
}

@compute @workgroup_size(WG)
fn dy4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    if i >= p.co * p.tiles_p { return; }
    let t = i % p.tiles_p;
    let co = i / p.tiles_p;
    let plane = p.co * p.tiles_p;
    var r0 = vec4f(); var r1 = vec4f(); var r2 = vec4f(); var r3 = vec4f();
    if t < p.tiles {
        let per_image = p.tiles_h * p.tiles_w;
        let n = t / per_image;
        let r = t % per_image;
        let y = (r / p.tiles_w) * 4u;
        let x = (r % p.tiles_w) * 4u;
        let o = (n * p.co + co) * p.oh * p.ow;
        r0 = dy_row(o, y, x);
        r1 = dy_row(o, y + 1u, x);
        r2 = dy_row(o, y + 2u, x);
        r3 = dy_row(o, y + 3u, x);
    }
    // Rows of A dy (combinations of dy's rows), then A along each row.
    let e = r0 + r2;
    let d = r1 + r3;
    store_row(r0, 0u, plane, i);
    store_row(e + d, 1u, plane, i);
    store_row(e - d, 2u, plane, i);
    store_row(r0 + 2.0 * r1 + 4.0 * r2 + 8.0 * r3, 3u, plane, i);
    store_row(r0 - 2.0 * r1 + 4.0 * r2 - 8.0 * r3, 4u, plane, i);
    store_row(r3, 5u, plane, i);
}

// G^T (3x6) applied along six values.
fn gt(m0: f32, m1: f32, m2: f32, m3: f32, m4: f32, m5: f32) -> vec3f {
    let s12 = m1 + m2;
    let d12 = m2 - m1;
    let s34 = m3 + m4;
    let d34 = m3 - m4;
    return vec3f(
        m0 / 4.0 - s12 / 6.0 + s34 / 24.0,
        d12 / 6.0 + d34 / 12.0,
        (s34 - s12) / 6.0 + m5,
    );
}

// Row a of G^T M's right factor: G^T along M[6a..6a+5] of (co, ci).
fn m_row(a: u32, plane: u32, i: u32) -> vec3f {
    let o = a * 6u * plane + i;
    return gt(src[o], src[o + plane], src[o + 2u * plane], src[o + 3u * plane],
              src[o + 4u * plane], src[o + 5u * plane]);
}

@compute @workgroup_size(WG)
fn back4(@builtin(global_invocation_id) gid: vec3u, @builtin(num_workgroups) nwg: vec3u) {
    let i = gid.x + gid.y * nwg.x * WG;
    let plane = p.co * p.ci;
    if i >= plane { return; }
    // M G (rows of M reduced along their columns).
    let q0 = m_row(0u, plane, i);
    let q1 = m_row(1u, plane, i);
    let q2 = m_row(2u, plane, i);
    let q3 = m_row(3u, plane, i);
    let q4 = m_row(4u, plane, i);
    let q5 = m_row(5u, plane, i);
    // Column kx of dW: G^T along column kx of M G.
    let c0 = gt(q0.x, q1.x, q2.x, q3.x, q4.x, q5.x);
    let c1 = gt(q0.y, q1.y, q2.y, q3.y, q4.y, q5.y);
    let c2 = gt(q0.z, q1.z, q2.z, q3.z, q4.z, q5.z);
    // dW [Co][Ci][3][3]: i = co * Ci + ci.
    let o = i * 9u;
    dst[o] = c0.x; dst[o + 1u] = c1.x; dst[o + 2u] = c2.x;
    dst[o + 3u] = c0.y; dst[o + 4u] = c1.y; dst[o + 5u] = c2.y;
    dst[o + 6u] = c0.z; dst[o + 7u] = c1.z; dst[o + 8u] = c2.z;
}
