//! Initializers as the reference uses them (PyTorch's `orthogonal_`, N(1, 0.02) BN scales).

use crate::array::Array;
use rand::rngs::StdRng;
use rand_distr::{Distribution, Normal, StandardNormal};

/// `nn.init.orthogonal_` (gain 1): W viewed as [rows, cols] gets orthonormal rows (when
/// rows <= cols) or columns, from the QR factorization of a Gaussian matrix with R's
/// diagonal made positive (Gram-Schmidt yields exactly that factor).
pub fn orthogonal(shape: &[usize], rng: &mut StdRng) -> Array {
    let rows = shape[0];
    let cols: usize = shape[1..].iter().product();
    // Orthonormalize the vectors of the shorter side (each as long as the longer side).
    let (k, len) = if rows <= cols {
        (rows, cols)
    } else {
        (cols, rows)
    };
    let mut q: Vec<Vec<f64>> = (0..k)
        .map(|_| (0..len).map(|_| StandardNormal.sample(rng)).collect())
        .collect();
    for i in 0..k {
        for j in 0..i {
            let (a, b) = q.split_at_mut(i);
            let d: f64 = a[j].iter().zip(&b[0]).map(|(x, y)| x * y).sum();
            for (x, y) in b[0].iter_mut().zip(&a[j]) {
                *x -= d * y;
            }
        }
        let n = q[i].iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-30);
        q[i].iter_mut().for_each(|x| *x /= n);
    }
    let mut data = vec![0.0f32; rows * cols];
    for r in 0..rows {
        for c in 0..cols {
            data[r * cols + c] = if rows <= cols { q[r][c] } else { q[c][r] } as f32;
        }
    }
    Array::new(shape, data)
}

/// BatchNorm scales ~ N(1, 0.02).
pub fn bn_weight(c: usize, rng: &mut StdRng) -> Array {
    let d = Normal::new(1.0f32, 0.02).expect("valid normal");
    Array::new(&[c], (0..c).map(|_| d.sample(rng)).collect())
}

/// A random unit vector (spectral norm's initial `u`, as PyTorch: normalize(N(0, 1))).
pub fn unit_normal(n: usize, rng: &mut StdRng) -> Array {
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    Array::new(&[n], v.iter().map(|x| x / norm).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn orthogonal_rows_or_columns() {
        let mut rng = StdRng::seed_from_u64(1);
        for shape in [vec![4, 3, 2, 2], vec![20, 6], vec![5, 5]] {
            let a = orthogonal(&shape, &mut rng);
            let (r, c) = (shape[0], a.numel() / shape[0]);
            let at = |i: usize, j: usize| a.data[i * c + j] as f64;
            let (k, dot): (usize, Box<dyn Fn(usize, usize) -> f64>) = if r <= c {
                (
                    r,
                    Box::new(|i, j| (0..c).map(|t| at(i, t) * at(j, t)).sum()),
                )
            } else {
                (
                    c,
                    Box::new(|i, j| (0..r).map(|t| at(t, i) * at(t, j)).sum()),
                )
            };
            for i in 0..k {
                for j in 0..k {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((dot(i, j) - want).abs() < 1e-5, "{shape:?} ({i},{j})");
                }
            }
        }
    }
}
