//! Pointwise activations and binary ops.

use crate::array::Array;
use crate::ops::elementwise::Act;

pub fn act(x: &Array, a: Act) -> Array {
    x.map(|v| a.apply(v))
}

pub fn add(a: &Array, b: &Array) -> Array {
    assert_eq!(a.shape, b.shape);
    Array::new(
        &a.shape,
        a.data.iter().zip(&b.data).map(|(x, y)| x + y).collect(),
    )
}
