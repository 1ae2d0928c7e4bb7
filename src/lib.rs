//! synthcal: data-free INT8 post-training quantization on wgpu.

pub mod bench;
pub mod cpu;
pub mod error;
pub mod gpu;
pub mod ops;

pub use error::{Error, Result};
