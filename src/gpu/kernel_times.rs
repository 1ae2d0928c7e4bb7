//! GPU time per kernel (shader and entry point) of everything recorded while switched on: where
//! a training step's time goes, which a per-layer profile of the forward pass does not show.
//! Each dispatch then runs in its own pass between two timestamps, and each submit waits.

use super::Gpu;
use crate::error::Result;
use std::collections::HashMap;
use std::sync::Mutex;

/// Timestamps per query set (wgpu's limit per set is 4,096).
const QUERIES: u32 = 4096;

/// One kernel's summed GPU time.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelTime {
    /// `shader::entry`.
    pub kernel: String,
    /// Dispatches timed.
    pub calls: u64,
    /// Their summed GPU time in milliseconds.
    pub ms: f64,
}

/// The switch and the sums (on [`Gpu`]).
#[derive(Default)]
pub(crate) struct KernelTimes {
    on: std::sync::atomic::AtomicBool,
    sums: Mutex<HashMap<String, (u64, f64)>>,
}

/// A stream's timed dispatches: their query sets and kernel names, in order.
#[derive(Default)]
pub(crate) struct Pending {
    sets: Vec<wgpu::QuerySet>,
    names: Vec<String>,
}

impl Pending {
    /// Where the timestamp before kernel `name`'s dispatch goes.
    pub fn before(&mut self, gpu: &Gpu, name: String) -> (wgpu::QuerySet, u32) {
        let i = (self.names.len() * 2) as u32 % QUERIES;
        if i == 0 {
            self.sets
                .push(gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("kernel_times"),
                    ty: wgpu::QueryType::Timestamp,
                    count: QUERIES,
                }));
        }
        self.names.push(name);
        (self.sets.last().expect("a set was just ensured").clone(), i)
    }

    /// Where the timestamp after the dispatch that [`Pending::before`] named goes.
    pub fn after(&self) -> (wgpu::QuerySet, u32) {
        let i = (self.names.len() * 2 - 1) as u32 % QUERIES;
        (self.sets.last().expect("before() made a set").clone(), i)
    }

    /// Waits for the submitted work and adds each dispatch's time to `gpu`'s sums.
    pub fn collect(self, gpu: &Gpu) -> Result<()> {
        if self.names.is_empty() {
            return Ok(());
        }
        let period = f64::from(gpu.queue.get_timestamp_period());
        let per_set = (QUERIES / 2) as usize;
        let mut ticks = Vec::new();
        for (k, set) in self.sets.iter().enumerate() {
            let n = (self.names.len() - k * per_set).min(per_set) as u32;
            ticks.extend(super::read_timestamps(gpu, set, 2 * n)?);
        }
        let mut sums = gpu
            .kernel_times
            .sums
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for (name, t) in self.names.into_iter().zip(ticks.chunks_exact(2)) {
            let e = sums.entry(name).or_default();
            e.0 += 1;
            e.1 += t[1].saturating_sub(t[0]) as f64 * period / 1e6;
        }
        Ok(())
    }
}

impl Gpu {
    /// Starts or stops timing each kernel (needs GPU timestamps; see [`Gpu::has_timestamps`]).
    /// Slows everything recorded meanwhile: each dispatch is its own pass and each submit waits.
    pub fn time_kernels(&self, on: bool) {
        let on = on && self.has_timestamps();
        self.kernel_times
            .on
            .store(on, std::sync::atomic::Ordering::Relaxed);
    }

    pub(crate) fn timing_kernels(&self) -> bool {
        self.kernel_times
            .on
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The kernels timed since the last call, the slowest first; clears the sums.
    pub fn take_kernel_times(&self) -> Vec<KernelTime> {
        let mut sums = self
            .kernel_times
            .sums
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<KernelTime> = sums
            .drain()
            .map(|(kernel, (calls, ms))| KernelTime { kernel, calls, ms })
            .collect();
        v.sort_by(|a, b| b.ms.total_cmp(&a.ms));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_each_kernel_across_query_sets() {
        // A device of its own: the switch is per device, and other tests share theirs.
        if crate::testing::try_gpu().is_none() {
            return;
        }
        let gpu = Gpu::new(&super::super::AdapterChoice::default()).unwrap();
        if !gpu.has_timestamps() {
            println!("skipped: adapter {} writes no timestamps", gpu.info.name);
            return;
        }
        let a = gpu.upload_f32(&[8, 8], &[1.0; 64]).unwrap();
        gpu.time_kernels(true);
        // More dispatches than one query set holds.
        let mut s = gpu.stream();
        for _ in 0..2100 {
            crate::ops::matmul::matmul(&mut s, &a, &a, false, false).unwrap();
        }
        s.submit();
        gpu.time_kernels(false);
        let t = gpu.take_kernel_times();
        let calls: u64 = t.iter().map(|k| k.calls).sum();
        assert_eq!(calls, 2100, "{t:?}");
        assert!(
            t.iter().all(|k| k.ms > 0.0 && k.kernel.contains("::")),
            "{t:?}"
        );
        assert!(gpu.take_kernel_times().is_empty(), "taking clears the sums");
        // Off: nothing is timed.
        let mut s = gpu.stream();
        crate::ops::matmul::matmul(&mut s, &a, &a, false, false).unwrap();
        s.submit();
        gpu.wait().unwrap();
        assert!(gpu.take_kernel_times().is_empty());
    }
}
