// Patch row loads for any width and padding (a prelude of the Winograd input transforms).

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
