//! Kernel launches, one file per op family. Each op checks shapes (typed errors, never panics),
//! allocates its output from the pool and records its dispatch on a `Stream`.

pub mod adam;
pub mod adaround;
pub mod batchnorm;
mod checks;
pub mod conv2d;
pub mod conv2d_grad;
mod conv2d_phases;
pub mod conv_select;
pub mod elementwise;
pub mod embed;
pub mod fake_quant;
pub mod glu;
mod grad;
pub mod layout;
pub mod loss;
pub mod lrn;
pub mod matmul;
pub mod pad2d;
pub mod pads;
pub mod pool;
pub mod qconv;
pub mod qlayout;
pub mod softmax;
pub mod spectral_norm;
pub mod stats;
mod winograd;
mod winograd_train;
mod winograd_wgrad;

pub use elementwise::Act;
pub use pads::Pads;

/// Parameter structs are plain `u32`/`f32` records uploaded as uniforms.
pub(crate) fn bytes_of<T: bytemuck::Pod>(p: &T) -> &[u8] {
    bytemuck::bytes_of(p)
}

/// Says (through `testing::skip`, so CI fails) that this adapter lacks subgroups of 8 or more
/// lanes, so `what`'s subgroup form goes untested while its plain-load form runs.
#[cfg(test)]
pub(crate) fn note_untested_subgroups(g: &crate::gpu::Gpu, what: &str) {
    if !g.subgroups {
        let why = format!("the adapter has no subgroups: {what}'s subgroup form is untested");
        crate::testing::skip(&why);
    }
}

/// Returns from the calling test (after `testing::skip`) when there is no GPU adapter.
#[cfg(test)]
macro_rules! skip_without_gpu {
    () => {
        if crate::testing::try_gpu().is_none() {
            return;
        }
    };
    (proptest) => {
        if crate::testing::try_gpu().is_none() {
            return Ok(());
        }
    };
}
#[cfg(test)]
pub(crate) use skip_without_gpu;
