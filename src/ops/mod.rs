//! Kernel launches, one file per op family. Each op checks shapes (typed errors, never panics),
//! allocates its output from the pool and records its dispatch on a `Stream`.

pub mod batchnorm;
mod checks;
pub mod conv2d;
pub mod conv2d_grad;
pub mod elementwise;
pub mod embed;
pub mod glu;
pub mod grad;
pub mod layout;
pub mod matmul;
pub mod pool;
pub mod qconv;
pub mod softmax;
pub mod stats;

pub use crate::cpu::elementwise::Act;

/// Parameter structs are plain `u32`/`f32` records uploaded as uniforms.
pub(crate) fn bytes_of<T: bytemuck::Pod>(p: &T) -> &[u8] {
    bytemuck::bytes_of(p)
}

/// Shared test fixtures: one GPU per test binary.
#[cfg(test)]
pub(crate) mod testing {
    use crate::gpu::Gpu;
    use std::sync::{Arc, OnceLock};

    pub fn gpu() -> Arc<Gpu> {
        static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
        GPU.get_or_init(|| match Gpu::default_adapter() {
            Ok(g) => g,
            Err(e) => panic!("GPU tests need an adapter (install lavapipe): {e}"),
        })
        .clone()
    }
}
