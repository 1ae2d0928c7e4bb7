// conv2d prelude for any input width: scalar loads.
@group(0) @binding(1) var<storage, read> x: array<f32>;
override OFF: u32 = 0u; // unused here: windows start exactly at their blocks
fn ldx4(i: u32) -> vec4f { return vec4f(x[i], x[i + 1u], x[i + 2u], x[i + 3u]); }
fn ldx(i: u32) -> f32 { return x[i]; }
// Input columns c..c+3 of the row at offset rb, zero outside the image.
fn row_block(rb: i32, c: i32, row_ok: bool) -> vec4f {
    let e = vec4i(c) + vec4i(0, 1, 2, 3);
    let ok = vec4<bool>(row_ok) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let i = vec4u(select(vec4i(0), vec4i(rb) + e, ok));
    return select(vec4f(0.0), vec4f(x[i.x], x[i.y], x[i.z], x[i.w]), ok);
}
fn join(lo: vec4f, hi: vec4f) -> vec4f { return lo; }
