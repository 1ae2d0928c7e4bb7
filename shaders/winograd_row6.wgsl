// Patch row loads for any width and padding (a prelude of the Winograd input transforms).
// Generic over the body's element type `X` (f32; u32 words of four int8 channels), its row type
// `XR6` and `fill()`, the value outside the image (0; the stored zero point).

// Input row ih, columns iw..iw+5 of the plane at offset rb, `fill()` outside the image.
fn row6(rb: i32, ih: i32, iw: i32) -> XR6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    let e = vec4i(iw) + vec4i(0, 1, 2, 3);
    let f = vec2i(iw + 4, iw + 5);
    let ok = vec4<bool>(row_ok) & (e >= vec4i(0)) & (e < vec4i(i32(p.w)));
    let okf = vec2<bool>(row_ok) & (f >= vec2i(0)) & (f < vec2i(i32(p.w)));
    let i = vec4u(select(vec4i(0), vec4i(r) + e, ok));
    let j = vec2u(select(vec2i(0), vec2i(r) + f, okf));
    return XR6(select(vec4<X>(fill()), vec4<X>(x[i.x], x[i.y], x[i.z], x[i.w]), ok),
               select(vec2<X>(fill()), vec2<X>(x[j.x], x[j.y]), okf));
}
