// The INT8 Winograd kernel's epilogue stores for any shape (a prelude of qwinograd.wgsl).

@group(0) @binding(5) var<storage, read_write> out: array<u32>;
@group(0) @binding(6) var<storage, read> res: array<u32>;

// One output pixel's channels c..c+3.
fn store(n: u32, y: u32, xo: u32, c: u32, e: Epi, acc: vec4i) {
    if xo >= p.ow { return; }
    let ohw = p.oh * p.ow;
    let r = y * p.ow + xo;
    if MODE == 1u {
        let i = (n * p.co4 + c / 4u) * ohw + r;
        var q = packed(c, e, acc);
        if HAS_RES { q = add_word(q, res[i], p.add); }
        out[i] = q;
        return;
    }
    let v = real(e, acc);
    for (var k = 0u; k < 4u; k++) {
        if c + k < p.co { out[(n * p.co + c + k) * ohw + r] = bitcast<u32>(v[k]); }
    }
}

// Tile row y of channels c..c+3 (their sums a, b, cc, d), pixel by pixel.
fn store_row(n: u32, y: u32, xo: u32, c: u32, e: Epi, a: vec4i, b: vec4i, cc: vec4i, d: vec4i) {
    if y >= p.oh { return; }
    store(n, y, xo, c, e, vec4i(a.x, b.x, cc.x, d.x));
    store(n, y, xo + 1u, c, e, vec4i(a.y, b.y, cc.y, d.y));
    store(n, y, xo + 2u, c, e, vec4i(a.z, b.z, cc.z, d.z));
    store(n, y, xo + 3u, c, e, vec4i(a.w, b.w, cc.w, d.w));
}
