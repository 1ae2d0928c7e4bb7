// ONNX Pad's index rule, shared by the f32 pad (pad2d.wgsl) and the int8 one (qlayout.wgsl):
// the source index along an axis of size n for padded position i with begin padding b, or -1
// for the constant fill. mode 1 reflects without repeating the edge (pads below n, checked by
// the host), 2 repeats the edge.
fn pad_source(i: u32, b: u32, n: u32, mode: u32) -> i32 {
    let s = i32(i) - i32(b);
    let last = i32(n) - 1;
    if s >= 0 && s <= last {
        return s;
    }
    switch mode {
        case 1u: { return select(2 * last - s, -s, s < 0); }
        case 2u: { return clamp(s, 0, last); }
        default: { return -1; }
    }
}
