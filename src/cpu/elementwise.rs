//! Pointwise activations and binary ops.

use super::Array;

/// The activations that kernels can apply (also fused into conv/linear epilogues later).
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Act {
    Identity,
    Relu,
    Relu6,
    LeakyRelu(f32),
    Tanh,
    Sigmoid,
}

impl Act {
    pub fn apply(self, v: f32) -> f32 {
        match self {
            Act::Identity => v,
            Act::Relu => v.max(0.0),
            Act::Relu6 => v.clamp(0.0, 6.0),
            Act::LeakyRelu(s) => {
                if v >= 0.0 {
                    v
                } else {
                    v * s
                }
            }
            Act::Tanh => v.tanh(),
            Act::Sigmoid => 1.0 / (1.0 + (-v).exp()),
        }
    }

    /// (kind code used by the WGSL kernels, slope parameter).
    pub fn code(self) -> (u32, f32) {
        match self {
            Act::Identity => (0, 0.0),
            Act::Relu => (1, 0.0),
            Act::Relu6 => (2, 0.0),
            Act::LeakyRelu(s) => (3, s),
            Act::Tanh => (4, 0.0),
            Act::Sigmoid => (5, 0.0),
        }
    }
}

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
