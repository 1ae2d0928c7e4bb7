//! Training speed: the conv gradient kernels (GFLOP/s; criterion's "elem/s" are FLOP/s) and
//! whole DiStyleGAN iterations (one D step and one G step) at batch 128, for the reference
//! widths (ngf 256, ndf 128) and the CPU-scale recipe (ngf 64, ndf 32); "elem/s" there are
//! samples/s, and the time per iteration is seconds per iteration.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::{Duration, Instant};
use synthcal::array::Array;
use synthcal::gan::train::{TrainOptions, Trainer};
use synthcal::gpu::{Gpu, Stream};
use synthcal::ops::conv2d::Conv2dParams;
use synthcal::ops::conv2d_grad::{conv2d_backward_data, conv2d_backward_weight, conv2d_train};

fn timed(gpu: &Gpu, iters: u64, f: &dyn Fn(&mut Stream)) -> Duration {
    let t = Instant::now();
    for _ in 0..iters {
        let mut s = gpu.stream();
        f(&mut s);
        s.submit();
        gpu.wait().expect("wait");
    }
    t.elapsed()
}

fn conv_grads(c: &mut Criterion) {
    let gpu = Gpu::default_adapter().expect("a GPU adapter (install lavapipe)");
    let mut g = c.benchmark_group("conv_grad_flops");
    g.sample_size(10);
    // The generator's middle up-block and the discriminator's second block, batch 64.
    for (name, xs, ws, stride) in [
        ("g_up_32x16x16", [64, 32, 16, 16], [32, 32, 3, 3], 1),
        ("d_block_32x16x16_s2", [64, 32, 16, 16], [32, 32, 4, 4], 2),
    ] {
        let p = Conv2dParams::new(stride, 1, 1);
        let x = gpu
            .upload_f32(&xs, &Array::random(&xs, 1).data)
            .expect("upload");
        let w = gpu
            .upload_f32(&ws, &Array::random(&ws, 2).data)
            .expect("upload");
        let mut s = gpu.stream();
        let y = conv2d_train(&mut s, &x, &w, None, &p).expect("conv");
        s.submit();
        let flops = 2 * y.numel() * ws[1] * ws[2] * ws[3];
        g.throughput(Throughput::Elements(flops as u64));
        g.bench_function(format!("{name}_forward"), |b| {
            b.iter_custom(|n| timed(&gpu, n, &|s| drop(conv2d_train(s, &x, &w, None, &p))))
        });
        g.bench_function(format!("{name}_input_grad"), |b| {
            b.iter_custom(|n| timed(&gpu, n, &|s| drop(conv2d_backward_data(s, &y, &w, xs, &p))))
        });
        g.bench_function(format!("{name}_weight_grad"), |b| {
            b.iter_custom(|n| {
                timed(&gpu, n, &|s| {
                    drop(conv2d_backward_weight(s, &x, &y, ws, &p))
                })
            })
        });
    }
    g.finish();
}

fn gan_iterations(c: &mut Criterion) {
    let gpu = Gpu::default_adapter().expect("a GPU adapter (install lavapipe)");
    let mut g = c.benchmark_group("gan_samples_per_s");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(30));
    g.throughput(Throughput::Elements(128));
    for (name, ngf, ndf) in [
        ("cpu_scale_ngf64_ndf32", 64, 32),
        ("reference_ngf256_ndf128", 256, 128),
    ] {
        let mut o = TrainOptions::faithful(None);
        o.config.ngf = ngf;
        o.config.ndf = ndf;
        let mut tr = Trainer::new(
            gpu.clone(),
            o,
            synthcal::bench::patterned_images(1024).expect("images"),
            None,
        )
        .expect("trainer");
        tr.step().expect("warm-up step");
        let tr = std::cell::RefCell::new(tr);
        g.bench_function(name, |b| {
            b.iter_custom(|n| {
                let t = Instant::now();
                for _ in 0..n {
                    tr.borrow_mut().step().expect("step");
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, conv_grads, gan_iterations);
criterion_main!(benches);
