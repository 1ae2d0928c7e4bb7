// The fused Winograd kernel's epilogue where the output width is a multiple of 4 (a prelude of
// winograd_fused.wgsl): a tile row's four pixels are one aligned vec4.

@group(0) @binding(4) var<storage, read> res: array<vec4f>;
@group(0) @binding(5) var<storage, read_write> out: array<vec4f>;

// Output row y (four pixels from column x) of plane offset o: bias, residual, activation.
fn put4(o: u32, y: u32, x: u32, v: vec4f, b: f32) {
    if y >= p.oh { return; }
    let i = (o + y * p.ow + x) / 4u;
    var s = v + vec4f(b);
    if HAS_RES {
        s += res[i];
    }
    out[i] = act_vec4(s, ACT, p.slope);
}
