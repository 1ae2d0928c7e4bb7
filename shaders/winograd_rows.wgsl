// Patch rows for the F(4x4, 3x3) transforms, shared by the split input transform and the fused
// kernel (a prelude; winograd_row6.wgsl or winograd_row6_aligned.wgsl loads them, from the
// body's `p` and `x`). A 6-wide row is columns 0..3 and 4..5; the
// transforms work on whole rows as vectors and on single rows by swizzles, in straight-line
// code: lavapipe spills arrays indexed in loops to memory, which made an array version slower.
struct R6 { lo: vec4f, hi: vec2f }

// a * s + b * t, a + b and a - b for patch rows.
fn lin(a: R6, s: f32, b: R6, t: f32) -> R6 { return R6(a.lo * s + b.lo * t, a.hi * s + b.hi * t); }
fn add(a: R6, b: R6) -> R6 { return R6(a.lo + b.lo, a.hi + b.hi); }
fn sub(a: R6, b: R6) -> R6 { return R6(a.lo - b.lo, a.hi - b.hi); }
