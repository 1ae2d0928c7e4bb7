//! INT8 conv / linear throughput: criterion reports elements/s as OP/s (2 x MACs).
//! Each sample records `iters` dispatches in one stream and times submit + wait.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synthcal::gpu::Gpu;
use synthcal::ops::qconv::{bench_cases, bench_run};

fn int8(c: &mut Criterion) {
    let gpu = Gpu::default_adapter().expect("a GPU adapter (install lavapipe)");
    let quick = std::env::var_os("SYNTHCAL_BENCH_QUICK").is_some();
    let mut group = c.benchmark_group("int8");
    group.sample_size(10);
    for case in bench_cases(&gpu, quick).expect("bench setup") {
        group.throughput(Throughput::Elements(case.ops as u64));
        group.bench_function(&case.name, |b| {
            b.iter_custom(|iters| bench_run(&gpu, &case, iters as usize).expect("bench run"))
        });
    }
    group.finish();
}

criterion_group!(benches, int8);
criterion_main!(benches);
