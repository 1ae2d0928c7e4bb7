// Patch rows for the F(4x4, 3x3) transforms, shared by the split input transform and the fused
// kernel (a prelude: `p` and `x` are the body's). A 6-wide row is columns 0..3 and 4..5; the
// transforms work on whole rows as vectors and on single rows by swizzles, in straight-line
// code: lavapipe spills arrays indexed in loops to memory, which made an array version slower.
struct R6 { lo: vec4f, hi: vec2f }

// Input row ih, columns iw..iw+5 of the plane at offset rb, zero outside the image.
fn row6(rb: i32, ih: i32, iw: i32) -> R6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    let e = vec4i(iw) + vec4i(0, 1, 2, 3);
    let f = vec2i(iw + 4, iw + 5);
    let ok = vec4<bool>(row_ok) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let okf = vec2<bool>(row_ok) & (f >= vec2i(0)) & (f < vec2i(i32(p.w)));
    let i = vec4u(select(vec4i(0), vec4i(r) + e, ok));
    let j = vec2u(select(vec2i(0), vec2i(r) + f, okf));
    return R6(select(vec4f(0.0), vec4f(x[i.x], x[i.y], x[i.z], x[i.w]), ok),
              select(vec2f(0.0), vec2f(x[j.x], x[j.y]), okf));
}

// a * s + b * t, a + b and a - b for patch rows.
fn lin(a: R6, s: f32, b: R6, t: f32) -> R6 { return R6(a.lo * s + b.lo * t, a.hi * s + b.hi * t); }
fn add(a: R6, b: R6) -> R6 { return R6(a.lo + b.lo, a.hi + b.hi); }
fn sub(a: R6, b: R6) -> R6 { return R6(a.lo - b.lo, a.hi - b.hi); }
