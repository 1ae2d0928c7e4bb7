//! INT8 post-training quantization following OpenVINO POT (see `scheme` for the quantizers).

pub mod histogram;
pub mod int8;
pub mod int8_ops;
pub mod observer;
pub mod scheme;

pub use int8::WeightRange;
pub use observer::{Observer, RangeEstimator};
pub use scheme::activation_format;
pub mod accuracy_aware;
pub mod adaround;
pub mod brecq;
mod cursor;
pub mod default;
pub mod model;

pub use accuracy_aware::{accuracy_aware, AccuracyAwareReport};
pub use adaround::{AdaRoundOptions, LayerReport, BRECQ_ITERS};
pub use brecq::BlockReport;
pub use default::{default_quantization, Int8Ops, QuantOptions};
pub use model::{LayerBits, Provenance, QuantizedModel};
mod quantize;
pub use quantize::{quantize, quantize_with_set, Algorithm};
