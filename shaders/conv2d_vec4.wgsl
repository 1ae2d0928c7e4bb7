// conv2d prelude for input widths that are a multiple of 4 (and for `pointwise` on planes of a
// multiple of 4): rows start 16-byte aligned, so `rows` loads aligned vec4 blocks and shifts
// them into its windows, and `pointwise` reads four pixels per load.
@group(0) @binding(1) var<storage, read> x: array<vec4f>;
override OFF: u32 = 1u; // (4 - pad_w % 4) % 4: where a window starts within its first block
fn ldx4(i: u32) -> vec4f { return x[i / 4u]; } // i % 4 == 0
fn ldx(i: u32) -> f32 { return x[i / 4u][i % 4u]; }
// Aligned input columns c..c+3 (c % 4 == 0) of the row at offset rb, zero outside the image.
fn row_block(rb: i32, c: i32, row_ok: bool) -> vec4f {
    let e = vec4i(c) + vec4i(0, 1, 2, 3);
    let ok = vec4<bool>(row_ok) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let i = select(0, rb + c, any(ok));
    return select(vec4f(0.0), x[u32(i) / 4u], ok);
}
// Elements OFF..OFF+3 of lo ++ hi.
fn join(lo: vec4f, hi: vec4f) -> vec4f {
    switch OFF {
        case 1u: { return vec4f(lo.yzw, hi.x); }
        case 2u: { return vec4f(lo.zw, hi.xy); }
        case 3u: { return vec4f(lo.w, hi.xyz); }
        default: { return lo; }
    }
}
