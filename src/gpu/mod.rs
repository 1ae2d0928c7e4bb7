//! The wgpu runtime: adapter selection, tensors, a buffer pool, a pipeline cache and a
//! recording stream that batches many dispatches into one submit.

mod device;
mod pipeline;
mod pool;
mod stream;
mod tensor;

pub use device::{AdapterChoice, Gpu};
pub use pipeline::Shader;
pub use pool::size_class;
pub use stream::{grid_1d, Stream};
pub use tensor::{DType, Tensor};
