// matmul prelude: every contiguous axis is a multiple of 4, so rows are 16-byte aligned.
@group(0) @binding(1) var<storage, read> a: array<vec4f>;
@group(0) @binding(2) var<storage, read> b: array<vec4f>;
@group(0) @binding(4) var<storage, read_write> c: array<vec4f>;
fn lda4(i: u32) -> vec4f { return a[i / 4u]; }
fn ldb4(i: u32) -> vec4f { return b[i / 4u]; }
fn lda1(i: u32) -> f32 { return a[i / 4u][i % 4u]; }
fn ldb1(i: u32) -> f32 { return b[i / 4u][i % 4u]; }
fn stc4(i: u32, v: vec4f, live: u32) { c[i / 4u] = v; }
