// matmul prelude for any sizes: scalar loads and stores.
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(4) var<storage, read_write> c: array<f32>;
fn lda4(i: u32) -> vec4f { return vec4f(a[i], a[i + 1u], a[i + 2u], a[i + 3u]); }
fn ldb4(i: u32) -> vec4f { return vec4f(b[i], b[i + 1u], b[i + 2u], b[i + 3u]); }
fn lda1(i: u32) -> f32 { return a[i]; }
fn ldb1(i: u32) -> f32 { return b[i]; }
fn stc4(i: u32, v: vec4f, live: u32) {
    for (var j = 0u; j < live; j++) { c[i + j] = v[j]; }
}
