//! Index lookups: one-hot encoding and embedding tables. Out-of-range indices give zero rows,
//! matching the GPU kernels (which cannot raise errors).

use crate::array::Array;

/// labels `[N]` -> `[N, K]`.
pub fn one_hot(labels: &[i32], k: usize) -> Array {
    let mut out = Array::zeros(&[labels.len(), k]);
    for (n, &l) in labels.iter().enumerate() {
        if (0..k as i32).contains(&l) {
            out.data[n * k + l as usize] = 1.0;
        }
    }
    out
}

/// table [V, D], indices [...] -> [..., D].
pub fn embedding(table: &Array, idx: &[i32], idx_shape: &[usize]) -> Array {
    let (v, d) = (table.shape[0], table.shape[1]);
    let mut data = Vec::with_capacity(idx.len() * d);
    for &i in idx {
        if (0..v as i32).contains(&i) {
            data.extend_from_slice(&table.data[i as usize * d..(i as usize + 1) * d]);
        } else {
            data.extend(std::iter::repeat_n(0.0, d));
        }
    }
    let mut shape = idx_shape.to_vec();
    shape.push(d);
    Array::new(&shape, data)
}
