//! GPU tensors: a pooled buffer plus a logical shape. Views (reshape, flatten) share the buffer.

use super::device::Gpu;
use super::pool::PooledBuffer;
use crate::error::{shape_err, Error, Result};
use std::sync::Arc;

/// A tensor's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit signed integer.
    I32,
    /// Signed 8-bit values packed four per u32 (element i in byte i % 4 of word i / 4).
    I8x4,
}

impl DType {
    /// Bytes of storage for `numel` elements (always a multiple of 4).
    pub fn storage_bytes(self, numel: usize) -> u64 {
        match self {
            DType::F32 | DType::I32 => numel as u64 * 4,
            DType::I8x4 => numel.div_ceil(4) as u64 * 4,
        }
    }
}

/// A buffer on the GPU with a shape and element type (cheap to clone: shared).
#[derive(Clone)]
pub struct Tensor {
    buf: Arc<PooledBuffer>,
    shape: Vec<usize>,
    dtype: DType,
    /// Byte offset into the buffer: non-zero only for [`Tensor::sub_view`]s.
    offset: u64,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tensor({:?}, {:?})", self.dtype, self.shape)
    }
}

impl Tensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.dtype.storage_bytes(self.numel())
    }
    /// The wgpu buffer.
    pub fn buffer(&self) -> &wgpu::Buffer {
        self.buf.raw()
    }
    /// True when both tensors view the same storage.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.buf, &other.buf)
    }

    /// The shape as exactly `N` dimensions, or a shape error naming `op`.
    pub fn dims<const N: usize>(&self, op: &'static str) -> Result<[usize; N]> {
        self.shape.as_slice().try_into().or_else(|_| {
            shape_err(
                op,
                format!("expected a {N}-d tensor, got shape {:?}", self.shape),
            )
        })
    }

    /// A view with another shape of the same element count (no copy).
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if n != self.numel() {
            return shape_err(
                "reshape",
                format!("cannot view {:?} as {:?}", self.shape, shape),
            );
        }
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            offset: self.offset,
        })
    }

    /// A view of `shape` starting `start` elements into this f32/i32 tensor's storage, so that
    /// many parameters can live in one flat buffer (one Adam dispatch updates them all).
    /// `start * 4` must be a multiple of 256 bytes, the largest offset alignment WebGPU allows.
    pub fn sub_view(&self, start: usize, shape: &[usize]) -> Result<Tensor> {
        let n: usize = shape.iter().product();
        if self.dtype == DType::I8x4
            || !(start * 4).is_multiple_of(256)
            || start + n > self.numel()
            || n == 0
        {
            return shape_err(
                "sub_view",
                format!(
                    "cannot view {shape:?} at element {start} of {:?} {:?}",
                    self.dtype, self.shape
                ),
            );
        }
        Ok(Tensor {
            buf: self.buf.clone(),
            shape: shape.to_vec(),
            dtype: self.dtype,
            offset: self.offset + start as u64 * 4,
        })
    }

    /// Byte offset of this view in its buffer.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// `[N, ...] -> [N, prod(...)]` as a view.
    pub fn flatten(&self) -> Result<Tensor> {
        let Some(&n) = self.shape.first() else {
            return shape_err("flatten", "cannot flatten a 0-d tensor");
        };
        self.reshape(&[n, self.numel() / n.max(1)])
    }

    /// Raw binding of the tensor's bytes.
    pub fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: self.buffer(),
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes()),
        })
    }
}

impl Gpu {
    fn check_size(&self, op: &'static str, shape: &[usize], dtype: DType) -> Result<u64> {
        let numel: usize = shape.iter().product();
        if numel == 0 {
            return shape_err(op, format!("empty tensor of shape {shape:?}"));
        }
        let bytes = dtype.storage_bytes(numel);
        if bytes > self.max_binding() {
            return Err(Error::TooLarge {
                op,
                bytes,
                limit: self.max_binding(),
            });
        }
        Ok(bytes)
    }

    /// An uninitialized output tensor for `op` (contents undefined until a kernel writes it).
    pub fn alloc(&self, op: &'static str, shape: &[usize], dtype: DType) -> Result<Tensor> {
        let bytes = self.check_size(op, shape, dtype)?;
        Ok(Tensor {
            buf: self.pool.get(bytes),
            shape: shape.to_vec(),
            dtype,
            offset: 0,
        })
    }

    fn upload_bytes(&self, shape: &[usize], dtype: DType, bytes: &[u8]) -> Result<Tensor> {
        let n = self.check_size("upload", shape, dtype)?;
        if bytes.len() as u64 > n {
            return shape_err(
                "upload",
                format!("{} bytes for shape {shape:?}", bytes.len()),
            );
        }
        // Created at its pool size class (zero-filled past the data, which also pads I8x4
        // storage to whole words) so that, once dropped, later allocations reuse it.
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("upload"),
            size: super::pool::size_class(n),
            usage: super::pool::STORAGE_USAGE,
            mapped_at_creation: true,
        });
        buffer
            .slice(..)
            .get_mapped_range_mut()
            .map_err(|e| Error::Gpu(format!("upload: {e}")))?
            .slice(..bytes.len())
            .copy_from_slice(bytes);
        buffer.unmap();
        Ok(Tensor {
            buf: self.pool.adopt(buffer),
            shape: shape.to_vec(),
            dtype,
            offset: 0,
        })
    }

    /// Overwrites an f32 tensor (or view) with host data, ordered before the next submit.
    pub fn write_f32(&self, t: &Tensor, data: &[f32]) -> Result<()> {
        if t.dtype != DType::F32 || data.len() != t.numel() {
            return shape_err(
                "write_f32",
                format!("{} values for {:?} {:?}", data.len(), t.dtype, t.shape),
            );
        }
        self.queue
            .write_buffer(t.buffer(), t.offset, bytemuck::cast_slice(data));
        Ok(())
    }

    /// A new tensor holding `data` with `shape`.
    pub fn upload_f32(&self, shape: &[usize], data: &[f32]) -> Result<Tensor> {
        self.check_len("upload_f32", shape, data.len())?;
        self.upload_bytes(shape, DType::F32, bytemuck::cast_slice(data))
    }

    /// A new integer tensor holding `data` with `shape`.
    pub fn upload_i32(&self, shape: &[usize], data: &[i32]) -> Result<Tensor> {
        self.check_len("upload_i32", shape, data.len())?;
        self.upload_bytes(shape, DType::I32, bytemuck::cast_slice(data))
    }

    /// Packs `data` four per u32 into an `I8x4` tensor.
    pub fn upload_i8(&self, shape: &[usize], data: &[i8]) -> Result<Tensor> {
        self.check_len("upload_i8", shape, data.len())?;
        self.upload_bytes(shape, DType::I8x4, bytemuck::cast_slice(data))
    }

    fn check_len(&self, op: &'static str, shape: &[usize], len: usize) -> Result<()> {
        let n: usize = shape.iter().product();
        if n != len {
            return shape_err(op, format!("{len} values for shape {shape:?}"));
        }
        Ok(())
    }

    /// Copies tensors back to the host (one submit for all of them).
    pub fn read_bytes(&self, tensors: &[&Tensor]) -> Result<Vec<Vec<u8>>> {
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("read"),
            });
        let stagings: Vec<wgpu::Buffer> = tensors
            .iter()
            .map(|t| {
                let s = self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: t.bytes(),
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                });
                enc.copy_buffer_to_buffer(t.buffer(), t.offset, &s, 0, t.bytes());
                s
            })
            .collect();
        self.queue.submit([enc.finish()]);
        for s in &stagings {
            s.slice(..).map_async(wgpu::MapMode::Read, |_| {});
        }
        self.wait()?;
        stagings
            .iter()
            .map(|s| {
                let view = s
                    .slice(..)
                    .get_mapped_range()
                    .map_err(|e| Error::Gpu(format!("readback map: {e}")))?;
                let v = view.to_vec();
                drop(view);
                s.unmap();
                Ok(v)
            })
            .collect()
    }

    /// Reads a float tensor back (waits for the GPU).
    pub fn read_f32(&self, t: &Tensor) -> Result<Vec<f32>> {
        let bytes = self.read_bytes(&[t])?.pop().unwrap_or_default();
        Ok(bytemuck::pod_collect_to_vec(&bytes[..t.numel() * 4]))
    }

    /// Reads an integer tensor back (waits for the GPU).
    pub fn read_i32(&self, t: &Tensor) -> Result<Vec<i32>> {
        let bytes = self.read_bytes(&[t])?.pop().unwrap_or_default();
        Ok(bytemuck::pod_collect_to_vec(&bytes[..t.numel() * 4]))
    }

    /// Reads a tensor of packed bytes back as `i8` (waits for the GPU).
    pub fn read_i8(&self, t: &Tensor) -> Result<Vec<i8>> {
        let bytes = self.read_bytes(&[t])?.pop().unwrap_or_default();
        Ok(bytemuck::cast_slice(&bytes[..t.numel()]).to_vec())
    }
}
