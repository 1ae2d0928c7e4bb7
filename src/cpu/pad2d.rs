//! Reference spatial padding (ONNX Pad on H and W: constant, reflect, edge).

use crate::array::Array;
use crate::ops::pad2d::PadMode;
use crate::ops::Pads;

/// Source index along an axis of size `n` for padded position `i` (begin padding `b`), or
/// None for the constant fill.
pub(crate) fn source(i: usize, b: usize, n: usize, mode: PadMode) -> Option<usize> {
    let s = i as isize - b as isize;
    let last = n as isize - 1;
    let s = match mode {
        _ if (0..=last).contains(&s) => s,
        PadMode::Constant(_) => return None,
        PadMode::Reflect if s < 0 => -s,
        PadMode::Reflect => 2 * last - s,
        PadMode::Edge => s.clamp(0, last),
    };
    Some(s as usize)
}

/// `x` `[N, C, H, W]` padded by `pads`. Panics on pads the GPU op refuses.
pub fn pad2d(x: &Array, pads: Pads, mode: PadMode) -> Array {
    let [n, c, h, w] = x.shape[..] else {
        panic!("pad2d: 4-d input")
    };
    let (oh, ow) = (h + pads.total(0).unwrap(), w + pads.total(1).unwrap());
    let fill = match mode {
        PadMode::Constant(v) => v,
        _ => 0.0,
    };
    let mut out = Array::zeros(&[n, c, oh, ow]);
    for (o, y) in out.data.iter_mut().enumerate() {
        let (plane, oy, ox) = (o / (oh * ow), (o / ow) % oh, o % ow);
        let sy = source(oy, pads.begin[0], h, mode);
        let sx = source(ox, pads.begin[1], w, mode);
        *y = match (sy, sx) {
            (Some(sy), Some(sx)) => x.data[(plane * h + sy) * w + sx],
            _ => fill,
        };
    }
    out
}
