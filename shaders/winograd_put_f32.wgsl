// The fused Winograd kernel's scalar epilogue (a prelude of winograd_fused.wgsl).

@group(0) @binding(4) var<storage, read> res: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

// Output row y (four pixels from column x) of plane offset o: bias, residual, activation.
fn put4(o: u32, y: u32, x: u32, v: vec4f, b: f32) {
    if y >= p.oh { return; }
    let i = o + y * p.ow + x;
    let live = min(p.ow - x, 4u);
    var s = v + vec4f(b);
    if HAS_RES {
        s.x += res[i];
        if live > 1u { s.y += res[i + 1u]; }
        if live > 2u { s.z += res[i + 2u]; }
        if live > 3u { s.w += res[i + 3u]; }
    }
    s = act_vec4(s, ACT, p.slope);
    out[i] = s.x;
    if live > 1u { out[i + 1u] = s.y; }
    if live > 2u { out[i + 2u] = s.z; }
    if live > 3u { out[i + 3u] = s.w; }
}
