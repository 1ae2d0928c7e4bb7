//! `synthcal models`, `synthcal import` and `synthcal bench`: the zoo, checkpoint conversion
//! and the kernel benchmark table.

use crate::bench::{kernel_bench, model_bench};
use crate::error::Result;
use crate::gpu::Gpu;
use std::path::Path;

/// `synthcal import`.
pub fn import(ckpt: &Path, out: &Path, arch: Option<&str>) -> Result<()> {
    let model = crate::models::import(ckpt, out, arch)?;
    println!(
        "{} -> {} ({}, {} tensors, {} parameters)",
        ckpt.display(),
        out.display(),
        model.arch.name,
        model.params.tensors.len(),
        model.arch.param_count()
    );
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

/// `synthcal bench`: kernel GFLOP/s and GOP/s, and ResNet-20 images/s, on this adapter.
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
    let (batch, reps) = if quick { (64, 1) } else { (250, 3) };
    let (fp, q) = model_bench(gpu, "akamaster_resnet20", batch, reps)?;
    for (what, v) in [("FP32", fp), ("INT8", q)] {
        rows.push(Row {
            name: format!("ResNet-20 {what} (batch {batch})"),
            value: v,
            unit: "images/s",
            ms_per_call: None,
        });
    }
    print!("{}", bench_table(&rows));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
