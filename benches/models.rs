//! Images/s of each model family (random weights) on the selected adapter, FP32 and INT8
//! ResNet-20. Criterion's "elem/s" are images/s.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};
use synthcal::eval::Classifier;
use synthcal::gpu::Gpu;
use synthcal::graph::exec::Runner;
use synthcal::models::{arch, random_params, Model};

const BATCH: usize = 100;

fn time(r: &Runner, x: &[f32], iters: u64) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        r.logits(x, BATCH, [32, 32]).expect("forward");
    }
    t.elapsed()
}

fn models(c: &mut Criterion) {
    let gpu = Gpu::default_adapter().expect("a GPU adapter (install lavapipe)");
    let x = synthcal::array::Array::random(&[BATCH, 3, 32, 32], 1).data;
    let mut g = c.benchmark_group("images_per_s");
    g.throughput(Throughput::Elements(BATCH as u64));
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for name in [
        "akamaster_resnet20",
        "resnet56",
        "shufflenetv2_x0_5",
        "mobilenetv2_x0_5",
        "vgg11_bn",
        "repvgg_a0",
    ] {
        let a = arch(name).expect("zoo arch");
        let p = random_params(&a, 1);
        let model = Classifier::Fp32(Model::new(a, p).expect("weights fit"));
        let r = model.runner(&gpu, false).expect("runner");
        r.logits(&x, BATCH, [32, 32]).expect("warm-up");
        g.bench_function(format!("{name}_fp32"), |b| {
            b.iter_custom(|n| time(&r, &x, n))
        });
    }
    // INT8: calibrated on noise images (the kernels' speed does not depend on the ranges).
    let a = arch("akamaster_resnet20").expect("zoo arch");
    let p = random_params(&a, 1);
    let model = Model::new(a, p).expect("weights fit");
    let noise: Vec<u8> = (0..BATCH * 3072).map(|i| (i * 7919 % 251) as u8).collect();
    let labels = (0..BATCH).map(|i| (i % 10) as u16).collect();
    let ds = synthcal::data::Dataset::new(noise, labels, model.class_names.clone(), "noise")
        .expect("dataset");
    let q = synthcal::quant::default_quantization(&gpu, &model, &ds, &Default::default())
        .expect("quantize");
    let r = q.runner(&gpu).expect("runner");
    r.logits(&x, BATCH, [32, 32]).expect("warm-up");
    g.bench_function("akamaster_resnet20_int8", |b| {
        b.iter_custom(|n| time(&r, &x, n))
    });
    g.finish();
}

criterion_group!(benches, models);
criterion_main!(benches);
