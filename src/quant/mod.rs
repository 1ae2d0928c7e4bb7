//! INT8 post-training quantization following OpenVINO POT (see `scheme` for the quantizers).

pub mod observer;
pub mod scheme;

pub use observer::{Observer, RangeEstimator};
pub use scheme::{ActQuant, WeightQuant};
