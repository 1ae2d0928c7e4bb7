//! GPU time of recorded work: timestamp queries where the device has them.

use super::{Gpu, Stream};
use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// The time `record`'s work takes on the GPU, submitted alone and waited for: measured
/// between two timestamps where the device writes them, else the host's clock around the
/// submit and wait (which then includes a submit round trip). Alone, because independent
/// dispatches in one submission can overlap on a real GPU, which a network's dependent layers
/// never do: timing many calls at once would credit kernels that leave the GPU half idle.
pub fn gpu_time(gpu: &Gpu, record: impl FnOnce(&mut Stream) -> Result<()>) -> Result<Duration> {
    let mut s = gpu.stream();
    if !gpu.has_timestamps() {
        let t = Instant::now();
        record(&mut s)?;
        s.submit();
        gpu.wait()?;
        return Ok(t.elapsed());
    }
    let set = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
        label: Some("gpu_time"),
        ty: wgpu::QueryType::Timestamp,
        count: 2,
    });
    s.write_timestamp(&set, 0);
    record(&mut s)?;
    s.write_timestamp(&set, 1);
    s.submit();
    let ticks = read_timestamps(gpu, &set, 2)?;
    let ns = ticks[1].saturating_sub(ticks[0]) as f64 * f64::from(gpu.queue.get_timestamp_period());
    Ok(Duration::from_secs_f64(ns / 1e9))
}

/// The summed `gpu_time` of `calls` calls of `record`, each submitted alone.
pub fn gpu_time_each(
    gpu: &Gpu,
    calls: usize,
    mut record: impl FnMut(&mut Stream) -> Result<()>,
) -> Result<Duration> {
    let mut total = Duration::ZERO;
    for _ in 0..calls {
        total += gpu_time(gpu, &mut record)?;
    }
    Ok(total)
}

/// Resolves and reads back `count` timestamps (waits for the GPU).
pub fn read_timestamps(gpu: &Gpu, set: &wgpu::QuerySet, count: u32) -> Result<Vec<u64>> {
    let bytes = u64::from(count) * 8;
    let buffer = |usage| {
        gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps"),
            size: bytes,
            usage,
            mapped_at_creation: false,
        })
    };
    let resolved = buffer(wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC);
    let staging = buffer(wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST);
    let mut enc = gpu
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("timestamps"),
        });
    enc.resolve_query_set(set, 0..count, &resolved, 0);
    enc.copy_buffer_to_buffer(&resolved, 0, &staging, 0, bytes);
    gpu.queue.submit([enc.finish()]);
    staging.slice(..).map_async(wgpu::MapMode::Read, |_| {});
    gpu.wait()?;
    let view = staging
        .slice(..)
        .get_mapped_range()
        .map_err(|e| Error::Gpu(format!("timestamp readback: {e}")))?;
    let ticks = bytemuck::pod_collect_to_vec(&view[..]);
    drop(view);
    staging.unmap();
    Ok(ticks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_recorded_work_and_passes_errors_on() {
        let Some(gpu) = crate::testing::try_gpu() else {
            return;
        };
        let a = gpu.upload_f32(&[64, 64], &vec![1.0; 64 * 64]).unwrap();
        let t = gpu_time(&gpu, |s| {
            crate::ops::matmul::matmul(s, &a, &a, false, false).map(drop)
        })
        .unwrap();
        assert!(t > Duration::ZERO, "a dispatch takes some time: {t:?}");
        let e = gpu_time(&gpu, |_| Err(Error::Invalid("planted".into()))).unwrap_err();
        assert!(e.to_string().contains("planted"), "{e}");
    }
}
