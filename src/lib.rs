//! synthcal: data-free INT8 post-training quantization on wgpu.

pub mod bench;
pub mod calib;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
pub mod cpu;
pub mod data;
pub mod error;
pub mod eval;
pub mod gan;
pub mod gpu;
pub mod graph;
pub mod io;
pub mod limits;
pub mod models;
pub mod ops;
pub mod progress;
pub mod quant;
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
