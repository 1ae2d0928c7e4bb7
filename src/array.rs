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
    pub fn max_rel_err(&self, reference: &[f32]) -> f32 {
        assert_eq!(self.data.len(), reference.len(), "length mismatch");
        self.data
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
            .fold(0.0, f32::max)
    }
}
