//! Gated linear unit over dim 1: out = a * sigmoid(b), [a, b] = the two channel halves.

use super::layout::ncs;
use crate::array::Array;
use crate::ops::Act;

pub fn glu(x: &Array) -> Array {
    let (n, c2, s) = ncs(&x.shape);
    let cs = c2 / 2 * s;
    let mut data = Vec::with_capacity(n * cs);
    for b in 0..n {
        let (a, g) = x.data[b * 2 * cs..(b + 1) * 2 * cs].split_at(cs);
        data.extend(a.iter().zip(g).map(|(a, g)| a * Act::Sigmoid.apply(*g)));
    }
    let mut shape = x.shape.clone();
    shape[1] = c2 / 2;
    Array::new(&shape, data)
}
