// Patch rows for the F(4x4, 3x3) transforms, shared by the split input transform, the fused FP32
// kernel and the INT8 one (a prelude; winograd_row6.wgsl or winograd_row6_aligned.wgsl loads
// them, from the body's `p` and `x`). Generic over the body's scalar type `S` (f32, or i32 for
// the exact INT8 form: integer literals below are exact in both). A 6-wide row is columns 0..3
// and 4..5; the transforms work on whole rows as vectors and on single rows by swizzles, in
// straight-line code: lavapipe spills arrays indexed in loops to memory, which made an array
// version slower.
struct R6 { lo: vec4<S>, hi: vec2<S> }

// a * s + b * t, a + b and a - b for patch rows.
fn lin(a: R6, s: S, b: R6, t: S) -> R6 { return R6(a.lo * s + b.lo * t, a.hi * s + b.hi * t); }
fn add(a: R6, b: R6) -> R6 { return R6(a.lo + b.lo, a.hi + b.hi); }
fn sub(a: R6, b: R6) -> R6 { return R6(a.lo - b.lo, a.hi - b.hi); }

// The six rows of a 6x6 matrix.
struct Rows6 { r0: R6, r1: R6, r2: R6, r3: R6, r4: R6, r5: R6 }

// B^T along one row (interpolation points 0, +-1, +-2).
fn bt6(r: R6) -> R6 {
    let a0 = r.lo.x; let a1 = r.lo.y; let a2 = r.lo.z; let a3 = r.lo.w;
    let a4 = r.hi.x; let a5 = r.hi.y;
    return R6(vec4<S>(4 * a0 - 5 * a2 + a4,
                      a3 + a4 - 4 * (a1 + a2),
                      a4 - a3 + 4 * (a1 - a2),
                      a4 - a2 + 2 * (a3 - a1)),
              vec2<S>(a4 - a2 + 2 * (a1 - a3),
                      4 * a1 - 5 * a3 + a5));
}

// V = B^T d B of the patch with rows d0..d5: the rows of B^T d, then B^T along each.
fn bt_rows(d0: R6, d1: R6, d2: R6, d3: R6, d4: R6, d5: R6) -> Rows6 {
    return Rows6(bt6(add(lin(d0, 4, d2, -5), d4)),
                 bt6(add(lin(d1, -4, d2, -4), add(d3, d4))),
                 bt6(add(lin(d1, 4, d2, -4), lin(d3, -1, d4, 1))),
                 bt6(add(lin(d1, -2, d2, -1), lin(d3, 2, d4, 1))),
                 bt6(add(lin(d1, 2, d2, -1), lin(d3, -2, d4, 1))),
                 bt6(add(lin(d1, 4, d3, -5), d5)));
}
