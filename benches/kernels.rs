//! GFLOP/s of the main kernels: `cargo bench --bench kernels`. Each sample records many
//! dispatches on one stream and times one submit + wait (see `synthcal::bench`).

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;
use synthcal::gpu::Gpu;

fn kernels(c: &mut Criterion) {
    let gpu = Gpu::default_adapter().expect("a GPU adapter (or lavapipe)");
    let cases = synthcal::bench::cases(&gpu).expect("bench inputs");
    let mut group = c.benchmark_group("kernels");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    for case in &cases {
        case.time(&gpu, 1).expect("warm-up");
        group.throughput(Throughput::Elements(case.flops as u64));
        group.bench_function(&case.name, |b| {
            b.iter_custom(|iters| case.time(&gpu, iters).expect("kernel run"))
        });
    }
    group.finish();
}

criterion_group!(benches, kernels);
criterion_main!(benches);
