//! The host tensor: a dense row-major f32 array (weights, CPU references, test data).

/// A dense row-major f32 array on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl Array {
    pub fn new(shape: &[usize], data: Vec<f32>) -> Self {
        assert_eq!(
            shape.iter().product::<usize>(),
            data.len(),
            "Array::new: shape {shape:?} vs {} values",
            data.len()
        );
        Array {
            shape: shape.to_vec(),
            data,
        }
    }

    pub fn zeros(shape: &[usize]) -> Self {
        Array::new(shape, vec![0.0; shape.iter().product()])
    }

    /// Seeded uniform values in [-1, 1) (tests and random-weight model checks).
    pub fn random(shape: &[usize], seed: u64) -> Self {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let n = shape.iter().product();
        Array::new(shape, (0..n).map(|_| rng.random_range(-1.0..1.0)).collect())
    }

    pub fn numel(&self) -> usize {
        self.data.len()
    }

    pub fn map(&self, f: impl Fn(f32) -> f32) -> Array {
        Array::new(&self.shape, self.data.iter().map(|&v| f(v)).collect())
    }

    /// Largest |a - b| / max(1, |b|): the relative-with-absolute-floor error tests bound by 1e-4.
    /// Equal values (equal infinities too: a max pool over padding alone) count 0; a NaN on
    /// either side is NaN, so that a NaN result never passes.
    pub fn max_rel_err(&self, reference: &[f32]) -> f32 {
        assert_eq!(self.data.len(), reference.len(), "length mismatch");
        worst(self.data.iter().zip(reference).map(|(&a, &b)| {
            if a == b {
                0.0
            } else {
                (a - b).abs() / b.abs().max(1.0)
            }
        }))
    }
}

/// The largest of `errors`, or NaN if any is NaN (`f32::max` would skip it, and a kernel that
/// writes NaN would pass every `< tolerance` check); 0 for none.
pub fn worst(errors: impl IntoIterator<Item = f32>) -> f32 {
    errors
        .into_iter()
        .fold(0.0, |m, e| if e.is_nan() || e > m { e } else { m })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A NaN anywhere is the worst error, so that a kernel writing NaN fails every tolerance.
    #[test]
    fn nan_errors_are_never_below_a_tolerance() {
        let nan = Array::new(&[3], vec![1.0, f32::NAN, 1.0]);
        assert!(nan.max_rel_err(&[1.0, 1.0, 1.0]).is_nan());
        assert!(worst([f32::NAN, 0.5]).is_nan() && worst([0.5, f32::NAN]).is_nan());
        assert_eq!(worst([0.25, 0.5, 0.125]), 0.5);
        let inf = Array::new(&[2], vec![f32::NEG_INFINITY, 2.0]);
        assert_eq!(inf.max_rel_err(&[f32::NEG_INFINITY, 2.0]), 0.0);
        assert!(inf.max_rel_err(&[f32::INFINITY, 2.0]).is_nan());
        assert_eq!(worst(std::iter::empty()), 0.0);
    }
}
