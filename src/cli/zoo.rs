//! `synthcal models`, `synthcal import` and `synthcal bench`: the zoo, checkpoint conversion
//! and the kernel benchmark table (or a model's per-layer profile).

use crate::array::Array;
use crate::bench::{kernel_bench, model_bench};
use crate::error::{Error, Result};
use crate::eval::Classifier;
use crate::gpu::Gpu;
use crate::graph::profile::Profile;
use std::path::Path;

/// `synthcal import`.
pub fn import(
    ckpt: &Path,
    out: &Path,
    arch: Option<&str>,
    mean: &Option<Vec<f32>>,
    std: &Option<Vec<f32>>,
    classes: &Option<std::path::PathBuf>,
) -> Result<()> {
    // The count is checked against the model's input channels when it is applied.
    let overrides = crate::models::Overrides {
        mean: mean.clone(),
        std: std.clone(),
        class_names: classes
            .as_deref()
            .map(crate::models::read_class_names)
            .transpose()?,
    };
    let model = crate::models::import(ckpt, out, arch, &overrides)?;
    let [c, h, w] = model.input_shape();
    println!(
        "{} -> {} ({}, input {c}x{h}x{w}, {} tensors, {} parameters)",
        ckpt.display(),
        out.display(),
        model.arch.name,
        model.params.tensors.len(),
        model.arch.param_count()
    );
    let norm = &model.arch.norm;
    println!("normalization: mean {:?}, std {:?}", norm.mean, norm.std);
    Ok(())
}

/// `synthcal models`.
pub fn print_zoo() {
    println!(
        "{:<26} {:>12}  normalization (mean / std)",
        "architecture", "parameters"
    );
    for n in crate::models::arch_names() {
        if let Ok(a) = crate::models::arch(&n) {
            println!(
                "{:<26} {:>12}  {:?} / {:?}",
                n,
                a.param_count(),
                a.norm.mean,
                a.norm.std
            );
        }
    }
}

/// One line of the bench table.
struct Row {
    name: String,
    value: f64,
    unit: &'static str,
    ms_per_call: Option<f64>,
}

/// The bench table, its first column as wide as the longest name.
fn bench_table(rows: &[Row]) -> String {
    let w = rows
        .iter()
        .map(|r| r.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!("{:<w$}  {:>18}  {:>9}\n", "kernel", "throughput", "ms/call");
    for r in rows {
        let ms = r.ms_per_call.map(|m| format!("{m:.2}")).unwrap_or_default();
        let value = format!("{:.2} {}", r.value, r.unit);
        out += &format!("{:<w$}  {value:>18}  {ms:>9}\n", r.name);
    }
    out
}

/// `synthcal bench`: kernel GFLOP/s and GOP/s, ResNet-20 images/s and DiStyleGAN training
/// samples/s, on this adapter.
pub fn print_bench(gpu: &std::sync::Arc<Gpu>, quick: bool) -> Result<()> {
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    let mut rows: Vec<Row> = kernel_bench(gpu, quick)
        .into_iter()
        .map(|r| Row {
            name: r.name,
            value: r.gflops,
            unit: "GFLOP/s",
            ms_per_call: Some(r.ms_per_call),
        })
        .collect();
    for (name, gops, ms) in crate::ops::qconv::int8_bench(gpu, quick)? {
        rows.push(Row {
            name,
            value: gops,
            unit: "GOP/s",
            ms_per_call: Some(ms),
        });
    }
    let (batch, reps) = if quick { (64, 1) } else { (250, 5) };
    let speed = model_bench(gpu, "akamaster_resnet20", batch, reps)?;
    for (what, v) in [("FP32", speed.fp32), ("INT8", speed.int8)] {
        rows.push(Row {
            name: format!("ResNet-20 {what} (batch {batch})"),
            value: v,
            unit: "images/s",
            ms_per_call: None,
        });
    }
    rows.push(Row {
        name: format!("ResNet-20 INT8 speed-up, median of paired passes (batch {batch})"),
        value: speed.paired_ratio,
        unit: "x",
        ms_per_call: None,
    });
    // The reference widths take seconds per iteration on a CPU adapter: --quick measures the
    // CPU-scale recipe instead.
    let (ngf, ndf, iters) = if quick { (64, 32, 1) } else { (256, 128, 3) };
    rows.push(Row {
        name: format!("DiStyleGAN training, ngf {ngf} ndf {ndf} (batch 128)"),
        value: crate::bench::gan_bench(gpu, ngf, ndf, iters)?,
        unit: "samples/s",
        ms_per_call: None,
    });
    print!("{}", bench_table(&rows));
    Ok(())
}

/// The per-layer table: name, op, median ms, share of the total and arithmetic rate
/// (GOP/s for INT8 layers; `-` where ops are not counted), then the total.
fn profile_table(p: &Profile) -> String {
    let rate = |ops: f64, ms: f64, int8: bool| {
        if ops > 0.0 && ms > 0.0 {
            let unit = if int8 { "GOP/s" } else { "GFLOP/s" };
            format!("{:.2} {unit}", ops / ms / 1e6)
        } else {
            "-".into()
        }
    };
    let total = "total";
    let w = p
        .layers
        .iter()
        .map(|l| l.name.chars().count())
        .chain([total.len(), "layer".len()])
        .max()
        .unwrap_or(0);
    let ow = p
        .layers
        .iter()
        .map(|l| l.op.len())
        .max()
        .unwrap_or(0)
        .max(2);
    let mut out = format!(
        "{:<w$}  {:<ow$}  {:>9}  {:>7}  {:>16}\n",
        "layer", "op", "ms", "share", "rate"
    );
    for l in &p.layers {
        let r = rate(l.ops, l.ms, l.op.ends_with("int8"));
        out += &format!(
            "{:<w$}  {:<ow$}  {:>9.3}  {:>6.1}%  {r:>16}\n",
            l.name,
            l.op,
            l.ms,
            p.share(l)
        );
    }
    let int8 = p.layers.iter().any(|l| l.op.ends_with("int8"));
    let r = rate(p.total_ops(), p.total_ms(), int8);
    out += &format!(
        "{total:<w$}  {:<ow$}  {:>9.3}  {:>6.1}%  {r:>16}\n",
        "",
        p.total_ms(),
        100.0
    );
    out
}

/// `synthcal bench --gan-kernels`: each kernel's share of one DiStyleGAN training iteration.
pub fn print_gan_kernels(gpu: &std::sync::Arc<Gpu>, quick: bool) -> Result<()> {
    let (ngf, ndf) = if quick { (64, 32) } else { (256, 128) };
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    let times = crate::bench::gan_kernel_times(gpu, ngf, ndf)?;
    println!(
        "DiStyleGAN training iteration, ngf {ngf} ndf {ndf}, batch 128, timed by GPU timestamps"
    );
    print!("{}", kernel_table(&times));
    Ok(())
}

fn kernel_table(times: &[crate::gpu::KernelTime]) -> String {
    let total: f64 = times.iter().map(|k| k.ms).sum();
    let w = times
        .iter()
        .map(|k| k.kernel.len())
        .max()
        .unwrap_or(0)
        .max(6);
    let mut out = format!(
        "{:<w$}  {:>5}  {:>10}  {:>6}\n",
        "kernel", "calls", "ms", "share"
    );
    for k in times {
        let share = 100.0 * k.ms / total.max(f64::MIN_POSITIVE);
        out += &format!(
            "{:<w$}  {:>5}  {:>10.1}  {share:>5.1}%\n",
            k.kernel, k.calls, k.ms
        );
    }
    out + &format!(
        "{:<w$}  {:>5}  {total:>10.1}  {:>5.1}%\n",
        "total", "", 100.0
    )
}

/// `synthcal bench --model M [--int8 Q]`: per-layer profile, throughput and batch-1 latency.
pub fn print_profile(
    gpu: &std::sync::Arc<Gpu>,
    model: &Path,
    int8: Option<&Path>,
    batch: usize,
    reps: usize,
) -> Result<()> {
    if batch == 0 || reps == 0 {
        return Err(Error::Invalid(
            "--batch and --reps must be at least 1".into(),
        ));
    }
    super::defaults::check_models([model])?;
    // Both files load before any timing, so a bad --int8 fails at once.
    let paths: Vec<&Path> = std::iter::once(model).chain(int8).collect();
    let models: Vec<Classifier> = paths
        .iter()
        .map(|p| Classifier::load(p, None))
        .collect::<Result<_>>()?;
    println!("adapter: {} ({:?})", gpu.info.name, gpu.info.backend);
    for (path, c) in paths.into_iter().zip(models) {
        let kind = match &c {
            Classifier::Fp32(_) => "FP32",
            Classifier::Int8(_) => "INT8",
        };
        let [ch, h, w] = c.input_shape();
        let hw = [h, w];
        let r = c.runner(gpu, false)?;
        let x = |n: usize| Array::random(&[n, ch, h, w], 7).data;
        let p = r.profile(&x(batch), batch, hw, reps)?;
        println!(
            "\n{} ({}, {kind}), batch {batch}, median of {reps}, timed by {}",
            path.display(),
            c.arch(),
            p.method
        );
        print!("{}", profile_table(&p));
        let ips = r.images_per_s(&x(batch), batch, hw, reps)?;
        let one = r.median_pass_ms(&x(1), 1, hw, reps)?;
        println!(
            "throughput {ips:.1} images/s at batch {batch}; batch-1 latency {one:.3} ms per image \
             (median of {reps})"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::profile::LayerTime;

    #[test]
    fn profile_columns_align_whatever_the_name_length() {
        let row = |name: &str, op, ms, ops| LayerTime {
            node: 0,
            name: name.into(),
            op,
            ms,
            ops,
        };
        let long = "features.stage3.block7.branch2.conv_depthwise";
        let p = Profile {
            layers: vec![
                row("conv1", "conv", 0.5, 1e6),
                row(long, "conv int8", 12.25, 3e9),
                row("fc", "add", 0.001, 0.0),
            ],
            method: crate::graph::profile::Method::WallClock,
            batch: 1,
        };
        let t = profile_table(&p);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 5, "{t}");
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
        assert!(lines[2].starts_with(long), "{t}");
        assert!(lines[2].ends_with("244.90 GOP/s"), "{t}");
        assert!(lines[1].ends_with("2.00 GFLOP/s"), "{t}");
        assert!(lines[3].ends_with(" -"), "{t}");
        assert!(
            lines[4].starts_with("total") && lines[4].contains("100.0%"),
            "{t}"
        );
    }

    #[test]
    fn kernel_table_gives_shares_and_a_total() {
        let k = |kernel: &str, calls, ms| crate::gpu::KernelTime {
            kernel: kernel.into(),
            calls,
            ms,
        };
        let t = kernel_table(&[
            k("conv2d::rows", 34, 75.0),
            k("a_much_longer::entry", 2, 25.0),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4, "{t}");
        assert!(
            lines[1].starts_with("conv2d::rows") && lines[1].ends_with("75.0%"),
            "{t}"
        );
        assert!(
            lines[2].contains(" 2 ") && lines[2].ends_with("25.0%"),
            "{t}"
        );
        assert!(
            lines[3].starts_with("total") && lines[3].contains("100.0 "),
            "{t}"
        );
        let width = lines[0].len();
        assert!(lines.iter().all(|l| l.len() == width), "{t}");
    }

    #[test]
    fn bench_columns_align_whatever_the_name_length() {
        let row = |name: &str, value, unit| Row {
            name: name.into(),
            value,
            unit,
            ms_per_call: Some(1.5),
        };
        let long = "conv2d 3x3 [64,128,32,32] -> [64,128,32,32] register-blocked";
        let t = bench_table(&[
            row("matmul", 28.0, "GFLOP/s"),
            row(long, 1234.5, "GOP/s"),
            row("x", 0.25, "images/s"),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        let width = lines[0].chars().count();
        assert!(lines.iter().all(|l| l.chars().count() == width), "{t}");
        assert!(
            lines[2].starts_with(long) && lines[2].ends_with("1.50"),
            "{t}"
        );
        // Every throughput ends in the same column, past the longest name.
        let col = long.len() + 2 + 18;
        for l in &lines[1..] {
            assert!(
                l[..col].ends_with("/s") && l[col..].starts_with("  "),
                "{t}"
            );
        }
    }
}
