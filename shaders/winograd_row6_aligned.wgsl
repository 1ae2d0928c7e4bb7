// Patch row loads where the input width is a multiple of 4 and the left padding is 1 (a prelude
// of the fused Winograd kernel, whose tiles then start at columns of 4k - 1): columns 1..4 of a
// row are one aligned vec4, read through a second, vec4 view of the input (binding 6), and
// columns 0 and 5 are single loads. lavapipe pays per lane for every storage load, and for
// each component; one vec4 load costs less than four. The op checks the conditions. Generic as
// winograd_row6.wgsl.
@group(0) @binding(6) var<storage, read> x4: array<vec4<X>>;

// Input row ih, columns iw..iw+5 of the plane at offset rb, `fill()` outside the image.
fn row6(rb: i32, ih: i32, iw: i32) -> XR6 {
    let row_ok = ih >= 0 && ih < i32(p.h);
    let r = rb + ih * i32(p.w);
    // Past the width where the right padding spans more than a tile.
    let left_ok = row_ok && iw >= 0 && iw < i32(p.w);
    // Columns iw+1..iw+4 are all inside or all outside (right padding past a whole vec4).
    let mid_ok = row_ok && iw + 1 < i32(p.w);
    let right_ok = row_ok && iw + 5 < i32(p.w);
    let mid = select(vec4<X>(fill()), x4[u32(select(0, r + iw + 1, mid_ok)) / 4u], mid_ok);
    let left = select(fill(), x[u32(select(0, r + iw, left_ok))], left_ok);
    let right = select(fill(), x[u32(select(0, r + iw + 5, right_ok))], right_ok);
    return XR6(vec4<X>(left, mid.xyz), vec2<X>(mid.w, right));
}
