//! The wgpu runtime: adapter selection, tensors, a buffer pool, a pipeline cache and a
//! recording stream that batches many dispatches into one submit.

mod device;
mod kernel_times;
mod pipeline;
mod pool;
mod stream;
mod tensor;
mod timing;

pub use device::{AdapterChoice, Gpu};
pub use kernel_times::KernelTime;
pub(crate) use timing::read_timestamps;
pub use timing::{gpu_time, gpu_time_each};
// The engine's internals (kernels, buffers, streams): public for synthcal's tests only.
#[doc(hidden)]
pub use pipeline::Shader;
#[doc(hidden)]
pub use pool::size_class;
#[doc(hidden)]
pub use stream::{grid_1d, Bind, Stream};
#[doc(hidden)]
pub use tensor::{DType, Tensor};
