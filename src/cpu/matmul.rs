//! Reference batched matmul and linear layer.

use crate::array::Array;
use crate::ops::Act;

/// `C[b] = op(A[b]) * op(B[b])` for 3-d A, B; op transposes the last two axes when asked.
/// A batch of 1 broadcasts over the other operand's batch.
pub fn matmul(a: &Array, b: &Array, trans_a: bool, trans_b: bool) -> Array {
    let [ba, ar, ac] = a.shape[..] else {
        panic!("a must be 3-d")
    };
    let [bb, br, bc] = b.shape[..] else {
        panic!("b must be 3-d")
    };
    let (m, k) = if trans_a { (ac, ar) } else { (ar, ac) };
    let (k2, n) = if trans_b { (bc, br) } else { (br, bc) };
    assert_eq!(k, k2, "inner dimensions");
    let batch = ba.max(bb);
    let mut c = Array::zeros(&[batch, m, n]);
    for z in 0..batch {
        let (oa, ob) = ((z % ba) * ar * ac, (z % bb) * br * bc);
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0.0f64;
                for t in 0..k {
                    let av = if trans_a {
                        a.data[oa + t * ac + i]
                    } else {
                        a.data[oa + i * ac + t]
                    };
                    let bv = if trans_b {
                        b.data[ob + j * bc + t]
                    } else {
                        b.data[ob + t * bc + j]
                    };
                    acc += av as f64 * bv as f64;
                }
                c.data[(z * m + i) * n + j] = acc as f32;
            }
        }
    }
    c
}

/// act(x * w^T + bias) with x [N, in], w [out, in] (PyTorch layout).
pub fn linear(x: &Array, w: &Array, bias: Option<&Array>, act: Act) -> Array {
    let [n, _] = x.shape[..] else {
        panic!("x must be 2-d")
    };
    let out = w.shape[0];
    let x3 = Array::new(&[1, n, x.shape[1]], x.data.clone());
    let w3 = Array::new(&[1, out, w.shape[1]], w.data.clone());
    let mut y = matmul(&x3, &w3, false, true);
    for (i, v) in y.data.iter_mut().enumerate() {
        *v = act.apply(*v + bias.map_or(0.0, |b| b.data[i % out]));
    }
    Array::new(&[n, out], y.data)
}
