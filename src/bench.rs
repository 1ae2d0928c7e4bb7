//! Kernel throughput: the figures `synthcal bench` prints and `benches/kernels.rs` reports.
//! Each timing records many dispatches on one stream and does one submit + wait, so it measures
//! the kernels rather than submit latency.

use crate::array::Array;
use crate::error::Result;
use crate::gpu::{Gpu, Stream, Tensor};
use crate::ops::conv2d::{conv2d, prepare_conv_weight, Conv2dParams, ConvWeight};
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
    Conv(Tensor, ConvWeight, Tensor, Conv2dParams),
}

/// One benchmarked kernel call with its inputs resident on the GPU.
pub struct Case {
    pub name: &'static str,
    /// Floating-point operations per call.
    pub flops: f64,
    inputs: Inputs,
}

impl Case {
    /// Records one call (its output is dropped back into the pool).
    pub fn record(&self, s: &mut Stream) -> Result<()> {
        match &self.inputs {
            Inputs::Matmul(a, b) => matmul(s, a, b, false, false).map(drop),
            Inputs::Conv(x, w, b, p) => conv2d(s, x, w, Some(b), p, None, Act::Relu).map(drop),
        }
    }

    /// Wall time of `calls` calls recorded on one stream, submitted once and waited for.
    pub fn time(&self, gpu: &Gpu, calls: u64) -> Result<Duration> {
        let start = Instant::now();
        let mut s = gpu.stream();
        for _ in 0..calls {
            self.record(&mut s)?;
        }
        s.submit();
        gpu.wait()?;
        Ok(start.elapsed())
    }
}

fn upload_random(gpu: &Gpu, shape: &[usize], seed: u64) -> Result<Tensor> {
    gpu.upload_f32(shape, &Array::random(shape, seed).data)
}

/// matmul 1024^3, and conv 3x3 pad 1 on batch 64 x 64 channels x 32x32 (64 output channels).
pub fn cases(gpu: &Gpu) -> Result<Vec<Case>> {
    let (n, c, hw) = (64, 64, 32);
    let conv = Inputs::Conv(
        upload_random(gpu, &[n, c, hw, hw], 1)?,
        prepare_conv_weight(gpu, &[c, c, 3, 3], &Array::random(&[c, c, 3, 3], 2).data, 1)?,
        upload_random(gpu, &[c], 3)?,
        Conv2dParams::new(1, 1, 1),
    );
    let m = 1024;
    Ok(vec![
        Case {
            name: "matmul 1024x1024x1024",
            flops: 2.0 * (m * m * m) as f64,
            inputs: Inputs::Matmul(
                upload_random(gpu, &[m, m], 4)?,
                upload_random(gpu, &[m, m], 5)?,
            ),
        },
        Case {
            name: "conv3x3 b64 64->64 32x32",
            flops: 2.0 * (n * c * hw * hw * c * 9) as f64,
            inputs: conv,
        },
    ])
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
                        name: case.name.to_string(),
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

/// Images/s of a model's FP32 and INT8 forms (random weights; INT8 calibrated on noise, which
/// does not change the kernels' speed).
pub fn model_bench(
    gpu: &std::sync::Arc<Gpu>,
    arch: &str,
    batch: usize,
    reps: usize,
) -> Result<(f64, f64)> {
    use crate::eval::Classifier;
    use crate::models::{self, Model};
    let a = models::arch(arch)?;
    let params = models::random_params(&a, 1);
    let model = Model::new(a, params)?;
    let noise: Vec<u8> = (0..batch * 3072).map(|i| (i * 7919 % 251) as u8).collect();
    let ds = crate::data::Dataset::new(
        noise,
        (0..batch).map(|i| (i % 10) as u8).collect(),
        model.class_names.clone(),
        "bench",
    )?;
    let q = crate::quant::default_quantization(
        gpu,
        &model,
        &ds,
        &crate::quant::QuantOptions::default(),
    )?;
    let x = ds
        .images()
        .to_f32_normalized(0..batch, model.arch.norm.mean, model.arch.norm.std);
    let speed = |r: &crate::graph::exec::Runner| -> Result<f64> {
        r.logits(&x, batch, [32, 32])?;
        let t = Instant::now();
        for _ in 0..reps {
            r.logits(&x, batch, [32, 32])?;
        }
        Ok((batch * reps) as f64 / t.elapsed().as_secs_f64())
    };
    let fp = speed(&Classifier::Fp32(model).runner(gpu, false)?)?;
    let int8 = speed(&q.runner(gpu)?)?;
    Ok((fp, int8))
}

#[cfg(test)]
mod tests {
    /// Prints the bench table: `cargo test --lib bench -- --ignored --nocapture`.
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
