// Row loads and stores of the INT8 Winograd kernel for any shape (a prelude of qwinograd.wgsl).

@group(0) @binding(5) var<storage, read_write> out: array<u32>;
@group(0) @binding(6) var<storage, read> res: array<u32>;

// Input row ih, words iw..iw+5 of the plane at offset rb; the stored zero point outside.
fn row6(rb: i32, ih: i32, iw: i32) -> W6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    let e = vec4i(iw) + vec4i(0, 1, 2, 3);
    let f = vec2i(iw + 4, iw + 5);
    let ok = vec4<bool>(row_ok) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let okf = vec2<bool>(row_ok) & (f >= vec2i(0)) & (f < vec2i(i32(p.w)));
    let i = vec4u(select(vec4i(0), vec4i(r) + e, ok));
    let j = vec2u(select(vec2i(0), vec2i(r) + f, okf));
    return W6(select(vec4u(p.pad_word), vec4u(x[i.x], x[i.y], x[i.z], x[i.w]), ok),
              select(vec2u(p.pad_word), vec2u(x[j.x], x[j.y]), okf));
}

// One output pixel's channels c..c+3.
fn store(n: u32, y: u32, xo: u32, c: u32, e: Epi, acc: vec4i) {
    if xo >= p.ow { return; }
    let ohw = p.oh * p.ow;
    let r = y * p.ow + xo;
    if p.mode == 1u {
        let i = (n * p.co4 + c / 4u) * ohw + r;
        let q = packed(c, e, acc);
        out[i] = select(q, add_word(q, res[i], p.add), p.has_res != 0u);
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
