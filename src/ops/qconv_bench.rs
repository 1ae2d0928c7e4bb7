//! INT8 conv workloads for `synthcal bench`, `benches/int8.rs` and `print_int8_bench`.

use super::*;

/// A benchmark workload: a layer with random weights, its input and its op count (2 x MACs).
pub struct BenchCase {
    pub name: String,
    pub layer: QConv2d,
    pub input: QTensor,
    pub ops: f64,
}

/// The INT8 workloads: the ResNet-like conv (batch 64, 64->64, 3x3, 32x32, pad 1, u8 -> u8 with
/// ReLU) and the 1024^3 linear (i8 -> f32), each on every direct path, the conv also in the
/// Winograd form; then the conv at W4A4 with nibble and byte weights. `quick` shrinks the
/// batches.
pub fn bench_cases(gpu: &Gpu, quick: bool) -> Result<Vec<BenchCase>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let (nb, nl) = if quick { (8, 128) } else { (64, 1024) };
    let specs = [
        (
            "conv3x3 64->64 32x32",
            [nb, 64, 32, 32],
            [64, 64, 3, 3],
            1,
            Some(QFormat::unsigned(0.05)),
            8,
        ),
        (
            "linear 1024x1024",
            [nl, 1024, 1, 1],
            [1024, 1024, 1, 1],
            0,
            None,
            8,
        ),
        (
            "conv3x3 64->64 32x32",
            [nb, 64, 32, 32],
            [64, 64, 3, 3],
            1,
            Some(QFormat::unsigned(0.05).with_bits(4)),
            4,
        ),
    ];
    let mut out = Vec::new();
    for (name, xs, ws, pad, output, bits) in specs {
        let input = QFormat {
            scale: 0.02,
            unsigned: output.is_some(),
            bits,
            zero_point: 0,
        };
        let (lo, hi) = input.range();
        let qmax = crate::quant::int8::QWeights::qmax(bits) as i8;
        let x = QArray {
            shape: xs,
            q: (0..xs.iter().product())
                .map(|_| rng.random_range(lo..=hi))
                .collect(),
            fmt: input,
        };
        let desc = QConv {
            weights: crate::quant::int8::QWeights {
                shape: ws,
                bits,
                q: (0..ws.iter().product())
                    .map(|_| rng.random_range(-qmax..=qmax))
                    .collect(),
                scale: vec![0.001; ws[0]],
            },
            bias: None,
            stride: 1,
            pad: pad.into(),
            dilation: [1, 1],
            groups: 1,
            input,
            input_channel_scales: None,
            act: Act::Relu,
            output,
        };
        let input = QTensor::upload(gpu, &x)?;
        let [n, co, oh, ow] = desc.out_shape("bench", xs)?;
        let ops = 2.0 * (n * co * oh * ow * ws[1] * ws[2] * ws[3]) as f64;
        let layouts: &[_] = match bits {
            8 => &[(WeightLayout::Bytes, "")],
            _ => &[
                (WeightLayout::Nibbles, " nibbles"),
                (WeightLayout::Bytes, " bytes"),
            ],
        };
        for &(layout, lname) in layouts {
            for path in [DotPath::Packed, DotPath::Unpacked, DotPath::Float] {
                let mut layer = QConv2d::with_layout(gpu, &desc, layout)?;
                layer.path = path;
                layer.set_winograd(gpu, WinogradUse::Never)?;
                let name = format!("int{bits} {name} batch {n}{lname} ({path:?})");
                out.push(BenchCase {
                    name,
                    layer,
                    input: input.clone(),
                    ops,
                });
            }
        }
        // The Winograd form (its own weights, any width; the default on CPU adapters).
        if winograd_exact(&desc) {
            let layer = QConv2d::new(gpu, &desc)?.with_winograd(gpu, WinogradUse::Always)?;
            out.push(BenchCase {
                name: format!("int{bits} {name} batch {n} (Winograd)"),
                layer,
                input: input.clone(),
                ops,
            });
        }
    }
    Ok(out)
}

/// GPU time of `reps` forwards, each submitted alone (see `gpu_time`).
pub fn bench_run(gpu: &Gpu, case: &BenchCase, reps: usize) -> Result<std::time::Duration> {
    crate::gpu::gpu_time_each(gpu, reps, |s| case.layer.forward(s, &case.input).map(drop))
}

/// (name, GOP/s, ms per op) for each `bench_cases` workload, for the CLI.
pub fn int8_bench(gpu: &Gpu, quick: bool) -> Result<Vec<(String, f64, f64)>> {
    let reps = if quick { 2 } else { 5 };
    let mut rows = Vec::new();
    for case in bench_cases(gpu, quick)? {
        bench_run(gpu, &case, 1)?; // compiles the pipeline
        let secs = bench_run(gpu, &case, reps)?.as_secs_f64() / reps as f64;
        rows.push((case.name, case.ops / secs / 1e9, secs * 1e3));
    }
    Ok(rows)
}
