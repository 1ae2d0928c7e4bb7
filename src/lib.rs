//! synthcal: INT8 post-training quantization of image classifiers without their training
//! data, on any GPU through wgpu (or a CPU through Mesa's lavapipe).
//!
//! Calibration images come from a class-conditional GAN, fractals, noise, the model's own
//! BatchNorm statistics, or real images when you have them ([`CalibSource`]). The whole API:
//! a [`Gpu`], a [`Model`] to [`quantize`] into a [`QuantizedModel`], [`Images`] to
//! classify, and the [`Logits`] that come back.
//!
//! ```no_run
//! use synthcal::{quantize, CalibSource, Gpu, Images, Model, QuantOptions, ResizePolicy};
//!
//! # fn main() -> synthcal::Result<()> {
//! let gpu = Gpu::default_adapter()?;
//! let model = Model::load("resnet20.safetensors")?;
//! let source = CalibSource::Gan {
//!     generator: "assets/distylegan-cifar10.safetensors".into(),
//!     per_class: 50,
//!     seed: 0,
//! };
//! let int8 = quantize(&gpu, &model, &source, &QuantOptions::default())?;
//! int8.save("resnet20-int8.safetensors")?;
//! let images = Images::load(&["cat.png"], model.input_size(), ResizePolicy::Resize)?;
//! for (class, p) in int8.predict(&gpu, &images)?.top_k(0, 3) {
//!     println!("{class}: {:.1}%", 100.0 * p);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! The same, runnable anywhere (a random-weight ResNet-20 and noise images stand in for a
//! checkpoint and a generator):
//!
//! ```
//! use synthcal::{quantize, CalibSource, Gpu, Images, Model, QuantOptions};
//!
//! # fn main() -> synthcal::Result<()> {
//! let gpu = Gpu::default_adapter()?;
//! let model = Model::random("resnet20", 0)?;
//! let source = CalibSource::Noise { per_class: 2, seed: 0 };
//! let int8 = quantize(&gpu, &model, &source, &QuantOptions::default())?;
//! assert_eq!(int8.layers.len(), 22); // 19 3x3 convs, 2 shortcut convs, the classifier
//!
//! let images = Images::new(vec![128; 2 * 3 * 32 * 32], 32, 32)?;
//! let logits = int8.predict(&gpu, &images)?;
//! assert_eq!((logits.len(), logits.class_names()[0].as_str()), (2, "airplane"));
//! // For many calls, keep the model on the GPU: the same logits, no upload per call.
//! let resident = int8.predictor(&gpu)?;
//! assert_eq!(resident.predict(&images)?, logits);
//! let fp32 = model.predict(&gpu, &images)?;
//! assert_eq!(fp32.values().len(), 2 * 10);
//! # Ok(())
//! # }
//! ```
//!
//! Long work reports progress and can be stopped through [`Hooks`] (in
//! [`QuantOptions::hooks`]). Modules hidden from these docs (`ops`, `cpu`, `graph`, `gpu`'s
//! stream and buffer pool, ...) are the engine's internals: public only for synthcal's own
//! tests and benchmarks, with no stability promise.
#![warn(missing_docs)]

pub mod calib;
pub mod data;
pub mod error;
pub mod eval;
pub mod gpu;
pub mod infer;
pub mod models;
pub mod onnx;
pub mod progress;
pub mod quant;

#[doc(hidden)]
pub mod array;
#[doc(hidden)]
pub mod bench;
#[cfg(feature = "cli")]
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod cpu;
#[doc(hidden)]
pub mod gan;
#[doc(hidden)]
pub mod graph;
#[doc(hidden)]
pub mod io;
#[doc(hidden)]
pub mod limits;
#[doc(hidden)]
pub mod ops;
#[doc(hidden)]
pub mod testing;

pub use calib::CalibSource;
pub use data::{Dataset, Images, ResizePolicy};
pub use error::{Error, Result};
pub use gpu::{AdapterChoice, Gpu};
pub use infer::{Logits, Predictor};
pub use models::Model;
pub use progress::{Cancel, Hooks, Progress};
pub use quant::{quantize, Algorithm, Provenance, QuantOptions, QuantizedModel};
