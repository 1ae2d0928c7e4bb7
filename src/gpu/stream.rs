//! Records many dispatches into one command buffer; `submit` sends them in one go.
//! A submit+wait round trip costs more than many small dispatches, so whole forward passes are
//! one submit.

use super::device::Gpu;
use super::pipeline::Shader;
use super::tensor::Tensor;
use crate::error::{Error, Result};

/// Size of one block of uniform slots; each dispatch's parameters take one aligned slot.
const UNIFORM_BLOCK: u64 = 64 * 1024;
/// Largest parameter struct a kernel may take.
pub const MAX_PARAMS: usize = 256;

struct UniformBlock {
    buffer: wgpu::Buffer,
    data: Vec<u8>,
}

/// A dispatch resource: a tensor (a storage buffer; the stream holds it until submitted, since
/// a dropped tensor goes back to the pool) or a texture view (wgpu's bind group holds it).
#[derive(Clone, Copy)]
pub enum Bind<'a> {
    /// A storage buffer binding.
    Tensor(&'a Tensor),
    /// A sampled-texture binding (`texture_2d`).
    Texture(&'a wgpu::TextureView),
    /// A binding this pipeline's shader does not read (its layout omits it).
    Unused,
}

/// Records dispatches into one command encoder, submitted together.
pub struct Stream<'g> {
    gpu: &'g Gpu,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
    blocks: Vec<UniformBlock>,
    align: usize,
    dispatches: usize,
    /// Tensors read or written by recorded commands, kept alive until submit.
    keep_alive: Vec<Tensor>,
    /// Timestamps around each dispatch while the GPU times kernels.
    timed: super::kernel_times::Pending,
}

impl Gpu {
    /// A new recording stream on this device.
    pub fn stream(&self) -> Stream<'_> {
        Stream {
            gpu: self,
            encoder: Some(
                self.device
                    .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                        label: Some("stream"),
                    }),
            ),
            pass: None,
            blocks: Vec::new(),
            align: self.limits.min_uniform_buffer_offset_alignment.max(16) as usize,
            dispatches: 0,
            keep_alive: Vec::new(),
            timed: Default::default(),
        }
    }
}

impl<'g> Stream<'g> {
    /// The GPU it records for.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Dispatches recorded so far.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Copies `params` into this stream's uniform blocks; returns (block index, offset).
    fn push_params(&mut self, params: &[u8]) -> (usize, u64) {
        let need = params.len().max(16).next_multiple_of(16);
        let fits = self.blocks.last().is_some_and(|b| {
            b.data.len().next_multiple_of(self.align) + need <= UNIFORM_BLOCK as usize
        });
        if !fits {
            let buffer = self.gpu.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("params"),
                size: UNIFORM_BLOCK,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            self.blocks.push(UniformBlock {
                buffer,
                data: Vec::new(),
            });
        }
        let align = self.align;
        let block = self.blocks.last_mut().expect("a block was just ensured");
        let offset = block.data.len().next_multiple_of(align);
        block.data.resize(offset, 0);
        block.data.extend_from_slice(params);
        block.data.resize(offset + need, 0);
        (self.blocks.len() - 1, offset as u64)
    }

    /// Records one dispatch. Binding 0 is the uniform `params`; bindings 1.. are `tensors` in order.
    pub fn dispatch(
        &mut self,
        shader: Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &[u8],
        tensors: &[&Tensor],
        groups: [u32; 3],
    ) -> Result<()> {
        let bound: Vec<Bind> = tensors.iter().map(|t| Bind::Tensor(t)).collect();
        self.dispatch_bound(shader, entry, constants, params, &bound, groups)
    }

    /// [`Stream::dispatch`] with textures among the resources at bindings 1.. .
    pub fn dispatch_bound(
        &mut self,
        shader: Shader,
        entry: &'static str,
        constants: &[(&'static str, f64)],
        params: &[u8],
        bound: &[Bind],
        groups: [u32; 3],
    ) -> Result<()> {
        if params.len() > MAX_PARAMS {
            return Err(Error::Invalid(format!(
                "{}::{entry}: {} bytes of params exceed {MAX_PARAMS}",
                shader.name,
                params.len()
            )));
        }
        let max = self.gpu.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Invalid(format!(
                "{}::{entry}: grid {groups:?} exceeds {max} workgroups per dimension",
                shader.name
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let pipeline = self.gpu.pipelines.get(shader, entry, constants);
        let (bi, offset) = self.push_params(params);
        let size = params.len().max(16).next_multiple_of(16) as u64;
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.blocks[bi].buffer,
                offset,
                size: std::num::NonZeroU64::new(size),
            }),
        }];
        for (i, b) in bound.iter().enumerate() {
            let resource = match b {
                Bind::Tensor(t) => t.binding(),
                Bind::Texture(v) => wgpu::BindingResource::TextureView(v),
                Bind::Unused => continue,
            };
            entries.push(wgpu::BindGroupEntry {
                binding: i as u32 + 1,
                resource,
            });
        }
        let bind_group = self
            .gpu
            .device
            .create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some(entry),
                layout: &pipeline.get_bind_group_layout(0),
                entries: &entries,
            });
        let timed = self.gpu.timing_kernels();
        if timed {
            let (set, i) = self
                .timed
                .before(self.gpu, format!("{}::{entry}", shader.name));
            self.write_timestamp(&set, i);
        }
        let pass = self.pass.get_or_insert_with(|| {
            self.encoder
                .as_mut()
                .expect("encoder present until submit")
                .begin_compute_pass(&wgpu::ComputePassDescriptor::default())
                .forget_lifetime()
        });
        pass.set_pipeline(&pipeline);
        pass.set_bind_group(0, &bind_group, &[]);
        pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        self.dispatches += 1;
        if timed {
            let (set, i) = self.timed.after();
            self.write_timestamp(&set, i);
        }
        self.keep_alive.extend(bound.iter().filter_map(|b| match b {
            Bind::Tensor(t) => Some((*t).clone()),
            Bind::Texture(_) | Bind::Unused => None,
        }));
        Ok(())
    }

    /// Records a buffer copy (ends the current compute pass).
    pub fn copy(
        &mut self,
        src: &Tensor,
        src_offset: u64,
        dst: &Tensor,
        dst_offset: u64,
        bytes: u64,
    ) {
        self.pass = None;
        if let Some(enc) = self.encoder.as_mut() {
            enc.copy_buffer_to_buffer(
                src.buffer(),
                src.offset() + src_offset,
                dst.buffer(),
                dst.offset() + dst_offset,
                bytes,
            );
        }
        self.keep_alive.push(src.clone());
        self.keep_alive.push(dst.clone());
    }

    /// Records a GPU timestamp into `set[index]` between passes (ends the current compute
    /// pass; needs `TIMESTAMP_QUERY_INSIDE_ENCODERS`).
    pub fn write_timestamp(&mut self, set: &wgpu::QuerySet, index: u32) {
        self.pass = None;
        if let Some(enc) = self.encoder.as_mut() {
            enc.write_timestamp(set, index);
        }
    }

    /// Sends everything recorded so far; does not wait.
    pub fn submit(mut self) {
        self.pass = None;
        for b in &self.blocks {
            self.gpu.queue.write_buffer(&b.buffer, 0, &b.data);
        }
        if let Some(enc) = self.encoder.take() {
            self.gpu.queue.submit([enc.finish()]);
        }
        let timed = std::mem::take(&mut self.timed);
        if let Err(e) = timed.collect(self.gpu) {
            log::warn!("kernel times lost: {e}");
        }
    }

    /// Submits and reads the given tensors back (waits).
    pub fn submit_and_read(self, tensors: &[&Tensor]) -> Result<Vec<Vec<u8>>> {
        let gpu = self.gpu;
        self.submit();
        gpu.read_bytes(tensors)
    }
}

/// Workgroup counts for `n` threads in 1-D groups of `wg`, folded into y past the per-dimension
/// limit. Kernels rebuild the index as `gid.x + gid.y * num_workgroups.x * wg`.
pub fn grid_1d(n: usize, wg: u32) -> [u32; 3] {
    let groups = n.div_ceil(wg as usize) as u64;
    const MAX: u64 = 65535;
    if groups <= MAX {
        [groups as u32, 1, 1]
    } else {
        [MAX as u32, groups.div_ceil(MAX) as u32, 1]
    }
}
