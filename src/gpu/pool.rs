//! A buffer pool keyed by size class: ops allocate outputs freely, and dropping a tensor returns
//! its buffer for reuse instead of freeing GPU memory.
//!
//! Reuse is safe without fences because every op writes its outputs from the GPU in queue order:
//! a buffer freed after dispatch k and reused by dispatch k+j is written after k has read it.
//! Uploads therefore never take pool buffers for `queue.write_buffer` (which would run at submit,
//! ahead of earlier recorded reads); they create a buffer mapped at creation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub const STORAGE_USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

/// Rounds up to one of four classes per power of two (at most 25% over the request above 1
/// KiB), aligned to 256 bytes.
pub fn size_class(bytes: u64) -> u64 {
    let b = bytes.max(256);
    let p = 63 - b.leading_zeros() as u64; // floor(log2)
    if p < 3 {
        return 256;
    }
    let step = 1u64 << (p - 2);
    (b.div_ceil(step) * step).next_multiple_of(256)
}

/// Idle bytes kept for reuse, or the most bytes ever in use at once where that is more; past
/// it, the idle buffers returned longest ago are freed. A process that runs model after model
/// (each with its own sizes) stays bounded, a working set larger than this constant (a big
/// batch's Winograd scratch) is kept whole, and buffers a pass no longer uses (a variant
/// measured once, an earlier model's sizes) give way to those it does: either way, freeing
/// what the next pass needs would cost new allocations every pass.
pub const MAX_IDLE_BYTES: u64 = 1 << 30;

struct PoolInner {
    device: wgpu::Device,
    free: Mutex<Free>,
    max_idle: u64,
}

#[derive(Default)]
struct Free {
    /// Idle buffers by size class, each with the count of returns when it came back (oldest
    /// first).
    by_class: HashMap<u64, Vec<(u64, wgpu::Buffer)>>,
    returns: u64,
    bytes: u64,
    /// Bytes of the pool's buffers now held by tensors, and the most there ever were.
    in_use: u64,
    peak_in_use: u64,
}

impl Free {
    fn lend(&mut self, bytes: u64) {
        self.in_use += bytes;
        self.peak_in_use = self.peak_in_use.max(self.in_use);
    }

    /// Frees the idle buffer returned longest ago; false when none is idle.
    fn evict_oldest(&mut self) -> bool {
        let oldest = self
            .by_class
            .iter()
            .filter_map(|(&class, list)| list.first().map(|(t, _)| (*t, class)))
            .min();
        let Some((_, class)) = oldest else {
            return false;
        };
        if let Some(list) = self.by_class.get_mut(&class) {
            list.remove(0);
            self.bytes -= class;
        }
        true
    }
}

/// Cheap to clone; all clones share the free lists.
#[derive(Clone)]
pub struct BufferPool(Arc<PoolInner>);

/// A storage buffer that goes back to its pool when the last tensor using it is dropped.
pub struct PooledBuffer {
    buffer: Option<wgpu::Buffer>,
    pool: BufferPool,
}

impl PooledBuffer {
    pub fn raw(&self) -> &wgpu::Buffer {
        self.buffer.as_ref().expect("buffer present until drop")
    }
}

impl Drop for PooledBuffer {
    fn drop(&mut self) {
        let Some(b) = self.buffer.take() else {
            return;
        };
        let mut free = self.pool.0.free.lock().unwrap_or_else(|e| e.into_inner());
        free.in_use = free.in_use.saturating_sub(b.size());
        // Only class-sized buffers can be handed out again; any other is freed.
        let keep = self.pool.0.max_idle.max(free.peak_in_use);
        if b.size() != size_class(b.size()) || b.size() > keep {
            return;
        }
        while free.bytes + b.size() > keep && free.evict_oldest() {}
        free.bytes += b.size();
        free.returns += 1;
        let stamp = free.returns;
        free.by_class.entry(b.size()).or_default().push((stamp, b));
    }
}

impl BufferPool {
    /// A pool that keeps at most `max_idle` bytes of idle buffers.
    pub fn new(device: wgpu::Device, max_idle: u64) -> Self {
        BufferPool(Arc::new(PoolInner {
            device,
            max_idle,
            free: Mutex::new(Free::default()),
        }))
    }

    /// A buffer of at least `bytes`, reused when one of its class is free.
    pub fn get(&self, bytes: u64) -> Arc<PooledBuffer> {
        let class = size_class(bytes);
        let reused = {
            let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
            let b = free
                .by_class
                .get_mut(&class)
                .and_then(Vec::pop)
                .map(|(_, b)| b);
            if b.is_some() {
                free.bytes -= class;
            }
            free.lend(class);
            b
        };
        let buffer = reused.unwrap_or_else(|| {
            self.0.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some("pooled"),
                size: class,
                usage: STORAGE_USAGE,
                mapped_at_creation: false,
            })
        });
        Arc::new(PooledBuffer {
            buffer: Some(buffer),
            pool: self.clone(),
        })
    }

    /// Wraps a buffer created elsewhere (an upload) so that it joins the pool when dropped.
    pub fn adopt(&self, buffer: wgpu::Buffer) -> Arc<PooledBuffer> {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        free.lend(buffer.size());
        drop(free);
        Arc::new(PooledBuffer {
            buffer: Some(buffer),
            pool: self.clone(),
        })
    }

    /// Frees every idle buffer (returns the bytes released).
    pub fn trim(&self) -> u64 {
        let mut free = self.0.free.lock().unwrap_or_else(|e| e.into_inner());
        free.by_class.clear();
        std::mem::take(&mut free.bytes)
    }

    /// Bytes held idle in the pool.
    pub fn idle_bytes(&self) -> u64 {
        self.0.free.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::{size_class, BufferPool};

    #[test]
    fn idle_memory_is_bounded() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let pool = BufferPool::new(gpu.device.clone(), 10_000);
        // Model after model, each with its own sizes, one buffer in use at a time: idle memory
        // stays under the bound (the peak in use, 8 KiB, is below it), the oldest giving way.
        for bytes in [4096, 5120] {
            drop(pool.get(bytes));
        }
        assert_eq!(pool.idle_bytes(), 4096 + 5120);
        drop(pool.get(6144));
        assert_eq!(
            pool.idle_bytes(),
            6144,
            "4 and 5 KiB freed for the newer 6 KiB"
        );
        drop(pool.get(4096));
        assert_eq!(pool.idle_bytes(), 4096, "the 6 KiB one, oldest, gave way");
        let again = pool.get(4096);
        assert_eq!(pool.idle_bytes(), 0, "a kept buffer was reused");
        drop(again);
        drop(pool.get(5120));
        assert_eq!(pool.trim(), 4096 + 5120);
        assert_eq!(pool.idle_bytes(), 0);
    }

    #[test]
    fn a_working_set_above_the_bound_is_kept_whole() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let pool = BufferPool::new(gpu.device.clone(), 10_000);
        let held: Vec<_> = (0..5).map(|_| pool.get(4096)).collect();
        drop(held);
        assert_eq!(pool.idle_bytes(), 5 * 4096, "all five were in use at once");
        let again: Vec<_> = (0..5).map(|_| pool.get(4096)).collect();
        assert_eq!(pool.idle_bytes(), 0, "the next pass reuses them all");
        drop(again);
        assert_eq!(pool.trim(), 5 * 4096);
    }

    #[test]
    fn size_classes_bound_slack() {
        for b in [
            1u64,
            255,
            256,
            257,
            1000,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
            123_456_789,
        ] {
            let c = size_class(b);
            assert!(c >= b && c.is_multiple_of(256), "{b} -> {c}");
            assert!(c as f64 <= (b.max(256) as f64) * 1.25 + 256.0, "{b} -> {c}");
        }
        assert_eq!(size_class(4096), 4096);
    }
}
