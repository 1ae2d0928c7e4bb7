// Row loads and stores of the INT8 Winograd kernel where the input and output widths are
// multiples of 4 and the left padding is 1 (a prelude of qwinograd.wgsl; the op checks): tiles
// start at input column 4k - 1, so words 1..4 of each patch row are one aligned vec4, read
// through a vec4 view of the input (binding 6), and each tile row's four outputs are one
// aligned vec4 store. lavapipe pays per lane for every storage access, less for one vec4.

@group(0) @binding(5) var<storage, read_write> out: array<vec4u>;
@group(0) @binding(6) var<storage, read> x4: array<vec4u>;
@group(0) @binding(7) var<storage, read> res: array<vec4u>;

fn row6(rb: i32, ih: i32, iw: i32) -> W6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    let left_ok = row_ok && iw >= 0;
    // Words iw+1..iw+4 are all inside or all outside (right padding past a whole vec4).
    let mid_ok = row_ok && iw + 1 < i32(p.w);
    let right_ok = row_ok && iw + 5 < i32(p.w);
    let pad = p.pad_word;
    let mid = select(vec4u(pad), x4[u32(select(0, r + iw + 1, mid_ok)) / 4u], mid_ok);
    let left = select(pad, x[u32(select(0, r + iw, left_ok))], left_ok);
    let right = select(pad, x[u32(select(0, r + iw + 5, right_ok))], right_ok);
    return W6(vec4u(left, mid.xyz), vec2u(mid.w, right));
}

// Tile row y of channels c..c+3 (their sums a, b, cc, d): one vec4 per output word row.
fn store_row(n: u32, y: u32, xo: u32, c: u32, e: Epi, a: vec4i, b: vec4i, cc: vec4i, d: vec4i) {
    if y >= p.oh { return; }
    let ohw = p.oh * p.ow;
    let r = y * p.ow + xo;
    let p0 = vec4i(a.x, b.x, cc.x, d.x);
    let p1 = vec4i(a.y, b.y, cc.y, d.y);
    let p2 = vec4i(a.z, b.z, cc.z, d.z);
    let p3 = vec4i(a.w, b.w, cc.w, d.w);
    if p.mode == 1u {
        let i = ((n * p.co4 + c / 4u) * ohw + r) / 4u;
        var q = vec4u(packed(c, e, p0), packed(c, e, p1), packed(c, e, p2), packed(c, e, p3));
        if p.has_res != 0u {
            let b = res[i];
            q = vec4u(add_word(q.x, b.x, p.add), add_word(q.y, b.y, p.add),
                      add_word(q.z, b.z, p.add), add_word(q.w, b.w, p.add));
        }
        out[i] = q;
        return;
    }
    let v0 = real(e, p0); let v1 = real(e, p1); let v2 = real(e, p2); let v3 = real(e, p3);
    let o = ((n * p.co + c) * ohw + r) / 4u;
    let plane = ohw / 4u;
    out[o] = bitcast<vec4u>(vec4f(v0.x, v1.x, v2.x, v3.x));
    if c + 1u < p.co { out[o + plane] = bitcast<vec4u>(vec4f(v0.y, v1.y, v2.y, v3.y)); }
    if c + 2u < p.co { out[o + 2u * plane] = bitcast<vec4u>(vec4f(v0.z, v1.z, v2.z, v3.z)); }
    if c + 3u < p.co { out[o + 3u * plane] = bitcast<vec4u>(vec4f(v0.w, v1.w, v2.w, v3.w)); }
}
