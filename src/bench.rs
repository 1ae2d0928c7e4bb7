//! Kernel throughput: the figures `synthcal bench` prints and `benches/kernels.rs` reports.
//! Each call is timed on the GPU alone (timestamps where the device has them), so the figures
//! are the kernels' own: neither submit latency nor overlap between independent calls.

use crate::array::Array;
use crate::error::Result;
use crate::gpu::{Gpu, Stream, Tensor};
use crate::ops::conv2d::{conv2d_variant, prepare_conv_weight, Conv2dParams, ConvWeight};
use crate::ops::conv_select::ConvVariant;
use crate::ops::{matmul::matmul, Act};
use std::time::{Duration, Instant};

#[derive(Clone, Debug)]
pub struct BenchRow {
    pub name: String,
    pub gflops: f64,
    pub ms_per_call: f64,
}

enum Inputs {
    Matmul(Tensor, Tensor),
    /// x, weight, bias, params, forced variant (None: the per-shape choice).
    Conv(
        Tensor,
        Box<ConvWeight>,
        Tensor,
        Conv2dParams,
        Option<ConvVariant>,
    ),
}

/// One benchmarked kernel call with its inputs resident on the GPU.
pub struct Case {
    pub name: String,
    /// Floating-point operations per call.
    pub flops: f64,
    inputs: Inputs,
}

impl Case {
    /// Records one call (its output is dropped back into the pool).
    pub fn record(&self, s: &mut Stream) -> Result<()> {
        match &self.inputs {
            Inputs::Matmul(a, b) => matmul(s, a, b, false, false).map(drop),
            Inputs::Conv(x, w, b, p, v) => {
                conv2d_variant(s, x, w, Some(b), p, None, Act::Relu, *v).map(drop)
            }
        }
    }

    /// GPU time of `calls` calls, each submitted alone (see `gpu_time`).
    pub fn time(&self, gpu: &Gpu, calls: u64) -> Result<Duration> {
        crate::gpu::gpu_time_each(gpu, calls as usize, |s| self.record(s))
    }
}

fn upload_random(gpu: &Gpu, shape: &[usize], seed: u64) -> Result<Tensor> {
    gpu.upload_f32(shape, &Array::random(shape, seed).data)
}

/// A 3x3 pad-1 conv case on batch `n`, `c` -> `c` channels, `hw` x `hw` pixels.
fn conv_case(gpu: &Gpu, n: usize, c: usize, hw: usize, v: Option<ConvVariant>) -> Result<Case> {
    let suffix = v.map(|v| format!(" {}", v.name())).unwrap_or_default();
    Ok(Case {
        name: format!("conv3x3 b{n} {c}->{c} {hw}x{hw}{suffix}"),
        // Direct-convolution FLOPs, whatever the algorithm: rates stay comparable.
        flops: 2.0 * (n * c * hw * hw * c * 9) as f64,
        inputs: Inputs::Conv(
            upload_random(gpu, &[n, c, hw, hw], 1)?,
            Box::new(prepare_conv_weight(
                gpu,
                &[c, c, 3, 3],
                &Array::random(&[c, c, 3, 3], 2).data,
                1,
            )?),
            upload_random(gpu, &[c], 3)?,
            Conv2dParams::new(1, 1, 1),
            v,
        ),
    })
}

/// The 3x3 conv shapes of ResNet-20's three stages at batch 64: (channels, size).
pub const RESNET20_CONVS: [(usize, usize); 3] = [(16, 32), (32, 16), (64, 8)];

/// matmul 1024^3, conv 3x3 pad 1 on batch 64 x 64 channels x 32x32, and the ResNet-20 convs,
/// each conv with the kernel variant chosen for its shape.
pub fn cases(gpu: &Gpu) -> Result<Vec<Case>> {
    let m = 1024;
    let mut cases = vec![
        Case {
            name: format!("matmul {m}x{m}x{m}"),
            flops: 2.0 * (m * m * m) as f64,
            inputs: Inputs::Matmul(
                upload_random(gpu, &[m, m], 4)?,
                upload_random(gpu, &[m, m], 5)?,
            ),
        },
        conv_case(gpu, 64, 64, 32, None)?,
    ];
    for (c, hw) in RESNET20_CONVS {
        cases.push(conv_case(gpu, 64, c, hw, None)?);
    }
    Ok(cases)
}

/// The variants `conv_variant_bench` compares, in its columns' order.
pub const BENCH_VARIANTS: [ConvVariant; 4] = [
    ConvVariant::Direct,
    ConvVariant::Winograd2,
    ConvVariant::Winograd4,
    ConvVariant::Fused4,
];

/// GFLOP/s (direct-conv FLOPs) of each ResNet-20 conv shape (and 64->64 32x32) with each
/// variant forced: (case name, one figure per [`BENCH_VARIANTS`] entry). Variants are timed
/// alternately, `rounds` times `reps` calls each, best kept, so that load from other processes
/// hits all alike.
pub fn conv_variant_bench(gpu: &Gpu, rounds: usize, reps: u64) -> Result<Vec<(String, [f64; 4])>> {
    let mut shapes = vec![(64, 32)];
    shapes.extend(RESNET20_CONVS);
    let mut rows = Vec::new();
    for (c, hw) in shapes {
        let pair = BENCH_VARIANTS
            .iter()
            .map(|&v| conv_case(gpu, 64, c, hw, Some(v)))
            .collect::<Result<Vec<_>>>()?;
        let mut best = [Duration::MAX; 4];
        for case in &pair {
            case.time(gpu, 1)?;
        }
        for _ in 0..rounds {
            for (i, case) in pair.iter().enumerate() {
                best[i] = best[i].min(case.time(gpu, reps)? / reps as u32);
            }
        }
        let rate = |d: Duration| pair[0].flops / d.as_secs_f64() / 1e9;
        rows.push((format!("conv3x3 b64 {c}->{c} {hw}x{hw}"), best.map(rate)));
    }
    Ok(rows)
}

/// Warms up (pipeline compile, pool) and then times repetitions of each case.
pub fn kernel_bench(gpu: &Gpu, quick: bool) -> Vec<BenchRow> {
    let reps = if quick { 2 } else { 10 };
    let cases = match cases(gpu) {
        Ok(c) => c,
        Err(e) => {
            log::error!("kernel bench inputs: {e}");
            return Vec::new();
        }
    };
    cases
        .iter()
        .filter_map(|case| {
            let t = case.time(gpu, 1).and_then(|_| case.time(gpu, reps));
            match t {
                Ok(t) => {
                    let secs = t.as_secs_f64() / reps as f64;
                    Some(BenchRow {
                        name: case.name.clone(),
                        gflops: case.flops / secs / 1e9,
                        ms_per_call: secs * 1e3,
                    })
                }
                Err(e) => {
                    log::error!("{}: {e}", case.name);
                    None
                }
            }
        })
        .collect()
}

/// A model's speed in FP32 and INT8 ([`model_bench`]).
#[derive(Clone, Copy, Debug)]
pub struct ModelSpeed {
    /// FP32 images/s (the median pass).
    pub fp32: f64,
    /// INT8 images/s (the median pass).
    pub int8: f64,
    /// The median over the alternated pairs of FP32 pass time / INT8 pass time: each pair ran
    /// back to back, so a slow spell that spans several passes cancels in its pairs' ratios.
    pub paired_ratio: f64,
}

/// Images/s of a model's FP32 and INT8 forms (random weights; INT8 calibrated on noise, which
/// does not change the kernels' speed): after a warm-up pass of each, `reps` passes of each,
/// alternated, each form's median pass kept, so that a slow spell of the machine (other
/// processes, a shared host) falls on both forms alike instead of on one.
pub fn model_bench(
    gpu: &std::sync::Arc<Gpu>,
    arch: &str,
    batch: usize,
    reps: usize,
) -> Result<ModelSpeed> {
    use crate::eval::Classifier;
    use crate::models::{self, Model};
    let a = models::arch(arch)?;
    let params = models::random_params(&a, 1);
    let model = Model::new(a, params)?;
    let ds = patterned_images(batch)?;
    let q = crate::quant::default_quantization(
        gpu,
        &model,
        &ds,
        &crate::quant::QuantOptions::default(),
    )?;
    let x = ds
        .images()
        .to_f32_normalized(0..batch, &model.arch.norm.mean, &model.arch.norm.std);
    let runners = [Classifier::Fp32(model).runner(gpu, false)?, q.runner(gpu)?];
    let mut secs = [Vec::new(), Vec::new()];
    for r in &runners {
        r.logits(&x, batch, [32, 32])?;
    }
    for _ in 0..reps.max(1) {
        for (r, s) in runners.iter().zip(&mut secs) {
            let t = Instant::now();
            r.logits(&x, batch, [32, 32])?;
            s.push(t.elapsed().as_secs_f64());
        }
    }
    let median = |mut s: Vec<f64>| {
        s.sort_by(f64::total_cmp);
        s[s.len() / 2]
    };
    let ratios = secs[0].iter().zip(&secs[1]).map(|(f, q)| f / q).collect();
    let [fp, q] = secs;
    Ok(ModelSpeed {
        fp32: batch as f64 / median(fp),
        int8: batch as f64 / median(q),
        paired_ratio: median(ratios),
    })
}

/// `n` deterministic 32x32 RGB images with CIFAR-10's classes: stand-ins where the speed
/// measured does not depend on what the pixels show.
pub fn patterned_images(n: usize) -> Result<crate::data::Dataset> {
    let pixels: Vec<u8> = (0..n * 3072).map(|i| (i * 7919 % 251) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as crate::data::Label).collect();
    let names = crate::data::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Ok(crate::data::Dataset::new(pixels, labels, names, "bench")?)
}

/// DiStyleGAN training samples/s at batch 128 (one discriminator and one generator step per
/// iteration, the paper's recipe without a teacher) at the given widths: one warm-up iteration
/// (pipeline compilation), then the mean over `iters` timed ones.
pub fn gan_bench(gpu: &std::sync::Arc<Gpu>, ngf: usize, ndf: usize, iters: usize) -> Result<f64> {
    let (mut tr, batch) = gan_trainer(gpu, ngf, ndf)?;
    let iters = iters.max(1);
    tr.step()?;
    let t = Instant::now();
    for _ in 0..iters {
        tr.step()?;
    }
    Ok((batch * iters) as f64 / t.elapsed().as_secs_f64())
}

/// A DiStyleGAN trainer on the paper's recipe without a teacher at the given widths, on
/// stand-in images, and its batch.
fn gan_trainer(
    gpu: &std::sync::Arc<Gpu>,
    ngf: usize,
    ndf: usize,
) -> Result<(crate::gan::train::Trainer, usize)> {
    let mut o = crate::gan::train::TrainOptions::faithful(None);
    o.config.ngf = ngf;
    o.config.ndf = ndf;
    let batch = o.batch;
    let tr = crate::gan::train::Trainer::new(gpu.clone(), o, patterned_images(1024)?, None)?;
    Ok((tr, batch))
}

/// GPU time per kernel of one DiStyleGAN training iteration at batch 128 (after one untimed
/// iteration that compiles the pipelines), the slowest first. Needs GPU timestamps.
pub fn gan_kernel_times(
    gpu: &std::sync::Arc<Gpu>,
    ngf: usize,
    ndf: usize,
) -> Result<Vec<crate::gpu::KernelTime>> {
    if !gpu.has_timestamps() {
        return Err(crate::Error::Invalid(format!(
            "adapter {} writes no GPU timestamps, which the kernel times need",
            gpu.info.name
        )));
    }
    let (mut tr, _) = gan_trainer(gpu, ngf, ndf)?;
    tr.step()?;
    gpu.take_kernel_times();
    gpu.time_kernels(true);
    let step = tr.step();
    gpu.time_kernels(false);
    step?;
    Ok(gpu.take_kernel_times())
}

#[cfg(test)]
mod tests {
    /// Prints the bench table: `cargo test --lib bench -- --ignored --nocapture`.
    /// Direct vs Winograd per conv shape: `cargo test --release --lib bench -- --ignored
    /// --nocapture`.
    #[test]
    #[ignore = "timing, run by hand"]
    fn print_conv_variants() {
        crate::ops::skip_without_gpu!();
        let g = crate::testing::gpu();
        println!(
            "load average: {}",
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
        );
        for (name, [d, w2, w4, f4]) in super::conv_variant_bench(&g, 4, 3).unwrap() {
            println!(
                "{name:<26} GFLOP/s direct {d:>6.2}  winograd2 {w2:>6.2} ({:.2}x)  \
                 winograd4 {w4:>6.2} ({:.2}x)  fused4 {f4:>6.2} ({:.2}x)",
                w2 / d,
                w4 / d,
                f4 / d
            );
        }
    }

    #[test]
    #[ignore = "timing, run by hand"]
    fn print_kernel_bench() {
        crate::ops::skip_without_gpu!();
        let g = crate::testing::gpu();
        for r in super::kernel_bench(&g, true) {
            println!(
                "{:<28} {:>8.2} GFLOP/s {:>9.2} ms/call",
                r.name, r.gflops, r.ms_per_call
            );
        }
    }
}
