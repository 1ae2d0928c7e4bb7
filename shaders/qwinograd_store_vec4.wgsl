// The INT8 Winograd kernel's epilogue stores where the output width is a multiple of 4 (a
// prelude of qwinograd.wgsl): each tile row's four outputs are one aligned vec4 store. lavapipe
// pays per lane for every storage access, less for one vec4.

@group(0) @binding(5) var<storage, read_write> out: array<vec4u>;
@group(0) @binding(7) var<storage, read> res: array<vec4u>;

// Tile row y of channels c..c+3 (their sums a, b, cc, d): one vec4 per output word row.
fn store_row(n: u32, y: u32, xo: u32, c: u32, e: Epi, a: vec4i, b: vec4i, cc: vec4i, d: vec4i) {
    if y >= p.oh { return; }
    let ohw = p.oh * p.ow;
    let r = y * p.ow + xo;
    let p0 = vec4i(a.x, b.x, cc.x, d.x);
    let p1 = vec4i(a.y, b.y, cc.y, d.y);
    let p2 = vec4i(a.z, b.z, cc.z, d.z);
    let p3 = vec4i(a.w, b.w, cc.w, d.w);
    if MODE == 1u {
        let i = ((n * p.co4 + c / 4u) * ohw + r) / 4u;
        var q = vec4u(packed(c, e, p0), packed(c, e, p1), packed(c, e, p2), packed(c, e, p3));
        if HAS_RES {
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
