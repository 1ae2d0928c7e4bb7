//! The shader shared by the training kernels (`shaders/grad.wgsl`) and its one uniform layout.
//! The launches live with what they compute: op backwards beside their forwards
//! (`elementwise::act_backward`, `glu::glu_backward`, `layout::upsample_backward`,
//! `batchnorm::batch_norm_backward`, `stats::sum_channels`), the losses in `loss`, Adam in
//! `adam`, spectral normalization in `spectral_norm`. `tests/grad.rs` checks every backward
//! against finite differences.

use crate::gpu::Shader;

pub(super) const SHADER: Shader = crate::shader!("grad");

#[repr(C)]
#[derive(Clone, Copy, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub(super) struct Params {
    pub(super) n: u32,
    pub(super) c: u32,
    pub(super) s: u32,
    pub(super) outer: u32,
    pub(super) kind: u32,
    pub(super) slope: f32,
    pub(super) w: f32,
    pub(super) eps: f32,
    pub(super) b1: f32,
    pub(super) b2: f32,
    pub(super) bc1: f32,
    pub(super) bc2: f32,
    pub(super) h: u32,
    pub(super) wd: u32,
    pub(super) f: u32,
    pub(super) count: f32,
}
