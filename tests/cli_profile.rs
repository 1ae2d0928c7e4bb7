//! `synthcal bench --model`: the per-layer profile names every layer that runs on the GPU,
//! its shares add up to the whole, and throughput and batch-1 latency follow. No timing asserts.

mod common;

use std::process::Command;

/// `synthcal bench --model M [--int8 Q] --batch 2 --reps 1` on a random ResNet-20 M, with
/// `int8` (a file name in the run's folder) as Q.
fn bench(tag: &str, int8: Option<&str>) -> std::process::Output {
    let dir = std::env::temp_dir().join(format!("synthcal-profile-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = dir.join("model.safetensors");
    common::write_random_model("resnet20", 1, &model);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_synthcal"));
    cmd.args(["bench", "--model"]).arg(&model);
    if let Some(q) = int8 {
        cmd.arg("--int8").arg(dir.join(q));
    }
    let out = cmd.args(["--batch", "2", "--reps", "1"]).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    out
}

#[test]
fn bench_model_prints_every_layer_and_shares_that_sum_to_100() {
    common::skip_without_gpu!();
    let out = bench("fp32", None);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The layers the GPU runs: the folded graph less Input and Flatten (which record nothing).
    let gpu = common::gpu();
    let runner = synthcal::eval::Classifier::Fp32(
        synthcal::models::Model::new(
            synthcal::models::arch("resnet20").unwrap(),
            synthcal::models::random_params(&synthcal::models::arch("resnet20").unwrap(), 1),
        )
        .unwrap(),
    )
    .runner(&gpu, false)
    .unwrap();
    let names: Vec<&str> = runner
        .graph
        .nodes
        .iter()
        .filter(|n| {
            !matches!(
                n.op,
                synthcal::graph::Op::Input | synthcal::graph::Op::Flatten
            )
        })
        .map(|n| n.name.as_str())
        .collect();
    assert!(names.len() > 20, "{names:?}");
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| l.contains('%') && !l.starts_with("total"))
        .collect();
    let printed: Vec<&str> = rows
        .iter()
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(printed, names, "{text}");
    let shares: f64 = rows
        .iter()
        .map(|l| {
            let pct = l.split_whitespace().find(|w| w.ends_with('%')).unwrap();
            pct.trim_end_matches('%').parse::<f64>().unwrap()
        })
        .sum();
    // Each share is rounded to 0.1%.
    assert!(
        (shares - 100.0).abs() <= 0.05 * rows.len() as f64,
        "{shares}\n{text}"
    );
    assert!(text.contains("timed by "), "{text}");
    assert!(text.contains("images/s at batch 2"), "{text}");
    assert!(text.contains("batch-1 latency"), "{text}");
}

/// A missing `--int8` file fails before the FP32 model is profiled (it used to print the whole
/// FP32 table first).
#[test]
fn a_missing_int8_file_fails_before_any_timing() {
    common::skip_without_gpu!();
    let out = bench("int8", Some("nothere.safetensors"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("nothere.safetensors"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
