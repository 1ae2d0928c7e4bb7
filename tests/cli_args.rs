//! Out-of-range command-line numbers: every one is refused with a message naming the flag and
//! its range, without a panic, a hang or an output file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A run slower than this counts as a hang.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh temporary folder, removed when dropped.
struct Tmp(PathBuf);

impl Drop for Tmp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl std::ops::Deref for Tmp {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

fn tmp(name: &str) -> Tmp {
    let d = std::env::temp_dir().join(format!("synthcal-cli-args-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    Tmp(d)
}

/// Runs the binary with `args` (killed after [`TIMEOUT`]); returns the exit code and stderr.
fn run(dir: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (out, err) = (dir.join("stdout.txt"), dir.join("stderr.txt"));
    let mut child = Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .args(args)
        .env("WGPU_BACKEND", "vulkan")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("synthcal {args:?} still running after {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(err).unwrap())
}

/// Asserts that `args` fail cleanly with `want` in the message and leave `output` unwritten.
fn refused(dir: &Path, args: &[&str], want: &[&str], output: &Path) {
    let (code, err) = run(dir, args);
    assert!(
        code.is_some_and(|c| c != 0),
        "synthcal {args:?}: exit {code:?}\n{err}"
    );
    assert!(
        !err.contains("panicked"),
        "synthcal {args:?} panicked:\n{err}"
    );
    for w in want {
        assert!(err.contains(w), "synthcal {args:?}: no `{w}` in:\n{err}");
    }
    assert!(
        !output.exists(),
        "synthcal {args:?} wrote {}",
        output.display()
    );
}

#[test]
fn max_drop_outside_zero_to_one_is_refused() {
    let d = tmp("max-drop");
    let out = d.join("q.safetensors");
    let o = out.to_str().unwrap();
    for bad in ["-1", "-inf", "NaN", "inf", "200", "1"] {
        let arg = format!("--max-drop={bad}");
        let args = [
            "quantize",
            "--model",
            "m.safetensors",
            "--calib",
            "noise",
            "--algorithm",
            "accuracy-aware",
            &arg,
            "-o",
            o,
        ];
        refused(
            &d,
            &args,
            &["--max-drop", "must be a finite number in [0, 1)"],
            &out,
        );
        let args = ["reproduce", &arg, "-o", o];
        refused(&d, &args, &["--max-drop", "[0, 1)"], &out);
    }
}

#[test]
fn bit_widths_and_the_pot_preset_are_checked_at_parse_time() {
    let d = tmp("bits");
    let out = d.join("q.safetensors");
    let o = out.to_str().unwrap();
    let base = ["quantize", "--model", "m", "--calib", "noise", "-o", o];
    for (flag, bad) in [
        ("--wbits", "5"),
        ("--wbits", "1"),
        ("--abits", "3"),
        ("--abits", "x"),
    ] {
        let args: Vec<&str> = base.iter().copied().chain([flag, bad]).collect();
        refused(&d, &args, &[flag, &format!("`{bad}` is not one of")], &out);
    }
    for other in ["--estimator", "--weight-range"] {
        let args: Vec<&str> = base
            .iter()
            .copied()
            .chain(["--preset", "pot", other, "mse"])
            .collect();
        refused(&d, &args, &["--preset", "cannot be used with"], &out);
    }
}

#[test]
fn zero_batch_and_limit_say_at_least_one() {
    let d = tmp("zero");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    let cases: [(&str, &[&str]); 8] = [
        (
            "--batch",
            &[
                "quantize", "--model", "m", "--calib", "noise", "--batch", "0", "-o", o,
            ],
        ),
        (
            "--batch",
            &[
                "eval", "--model", "m", "--data", "d", "--batch", "0", "--json", o,
            ],
        ),
        (
            "--limit",
            &[
                "eval", "--model", "m", "--data", "d", "--limit", "0", "--json", o,
            ],
        ),
        (
            "--limit",
            &[
                "diagnose", "--model", "m", "--int8", "q", "--data", "d", "--limit", "0", "--json",
                o,
            ],
        ),
        (
            "--rank-images",
            &[
                "diagnose",
                "--model",
                "m",
                "--int8",
                "q",
                "--data",
                "d",
                "--rank-images",
                "0",
                "--json",
                o,
            ],
        ),
        ("--limit", &["reproduce", "--limit", "0", "-o", o]),
        ("--batch", &["bench", "--model", "m", "--batch", "0"]),
        ("--reps", &["bench", "--model", "m", "--reps", "0"]),
    ];
    for (flag, args) in cases {
        refused(&d, args, &[flag, "must be at least 1"], &out);
    }
    refused(
        &d,
        &["train-gan", "--batch", "0", "-o", o],
        &["--batch", "must be at least 2"],
        &out,
    );
    refused(
        &d,
        &[
            "quantize", "--model", "m", "--calib", "noise", "--batch", "10001", "-o", o,
        ],
        &["--batch", "must be at most 10000"],
        &out,
    );
}

#[test]
fn truncation_below_the_minimum_is_refused_at_once() {
    let d = tmp("trunc");
    let out = d.join("gen");
    let o = out.to_str().unwrap();
    for bad in ["1e-30", "0", "-1", "NaN", "inf", "0.09"] {
        let arg = format!("--truncation={bad}");
        refused(
            &d,
            &["generate", &arg, "--per-class", "1", "-o", o],
            &["--truncation", "[0.1, 10]"],
            &out,
        );
    }
}

#[test]
fn distill_count_is_bounded() {
    let d = tmp("distill");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    for bad in [
        "distill:99999999999999",
        "distill:0",
        "distill:x",
        "distill:-3",
    ] {
        refused(
            &d,
            &["quantize", "--model", "m", "--calib", bad, "-o", o],
            &["--calib", "1..=50000"],
            &out,
        );
        refused(&d, &["calib-data", bad, "-o", o], &["1..=50000"], &out);
        refused(&d, &["score", bad, "--model", "m"], &["1..=50000"], &out);
        let arg = format!("--sources=real,{bad}");
        refused(
            &d,
            &["reproduce", &arg, "-o", o],
            &["--sources", "1..=50000"],
            &out,
        );
    }
}

#[test]
fn train_gan_numbers_are_checked() {
    let d = tmp("train");
    let out = d.join("run");
    let o = out.to_str().unwrap();
    let cases: [(&str, &str, &str); 12] = [
        ("--steps", "0", "at least 1"),
        ("--lr-g", "0", "(0, 1]"),
        ("--lr-d", "NaN", "(0, 1]"),
        ("--beta1", "1", "[0, 1)"),
        ("--beta2", "-0.5", "[0, 1)"),
        ("--adv-every", "0", "at least 1"),
        ("--ngf", "0", "at least 8"),
        ("--ndf", "100000", "at most 2048"),
        ("--z-dim", "0", "at least 1"),
        ("--aux-classifier", "-1", "[0, 1000]"),
        ("--guide-weight", "inf", "[0, 1000]"),
        ("--guide-jitter", "99", "at most 16"),
    ];
    for (flag, bad, want) in cases {
        let arg = format!("{flag}={bad}");
        refused(&d, &["train-gan", &arg, "-o", o], &[flag, want], &out);
    }
}

#[test]
fn huge_per_class_is_refused_at_parse_time() {
    let d = tmp("huge");
    let out = d.join("out");
    let o = out.to_str().unwrap();
    let max = "18446744073709551615";
    let cases: [&[&str]; 4] = [
        &[
            "quantize",
            "--model",
            "m",
            "--calib",
            "noise",
            "--per-class",
            max,
            "-o",
            o,
        ],
        &["generate", "--per-class", max, "-o", o],
        &["calib-data", "fractal", "--per-class", max, "-o", o],
        &["generate", "--per-class", "0", "-o", o],
    ];
    for args in cases {
        refused(&d, args, &["--per-class"], &out);
    }
}

#[test]
fn per_class_beyond_memory_is_a_clear_error() {
    let d = tmp("memory");
    let model = d.join("m.safetensors");
    common::write_random_model("resnet20", 1, &model);
    let out = d.join("out");
    let o = out.to_str().unwrap();
    let m = model.to_str().unwrap();
    // 10^8 per class is 3 TB of pixels: refused before any allocation, naming the bytes.
    let want = ["--per-class 100000000: needs", "bytes) of memory"];
    let cases: [&[&str]; 4] = [
        &[
            "quantize",
            "--model",
            m,
            "--calib",
            "noise",
            "--per-class",
            "100000000",
            "-o",
            o,
        ],
        &["calib-data", "fractal", "--per-class", "100000000", "-o", o],
        &["calib-data", "noise", "--per-class", "100000000", "-o", o],
        &["generate", "--per-class", "100000000", "-o", o],
    ];
    for args in cases {
        refused(&d, args, &want, &out);
    }
}

/// On a headless box (no XDG_RUNTIME_DIR) a run prints only its own output: Mesa's
/// device-select layer would add two "XDG_RUNTIME_DIR is invalid" lines.
#[test]
fn a_headless_run_prints_nothing_but_its_own_output() {
    if common::try_gpu().is_none() {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("NODEVICE_SELECT")
        .output()
        .unwrap();
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.trim().is_empty(), "stderr: {err}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("adapter:"));
}

#[test]
fn a_mistyped_model_name_is_refused_naming_the_short_names() {
    let d = tmp("model-name");
    let out = d.join("q.safetensors");
    let o = out.to_str().unwrap();
    let names = ["akamaster_resnet2", "no such file", "akamaster_resnet20,"];
    refused(
        &d,
        &[
            "quantize",
            "--model",
            "akamaster_resnet2",
            "--calib",
            "noise",
            "-o",
            o,
        ],
        &names,
        &out,
    );
    refused(
        &d,
        &["reproduce", "--models", "akamaster_resnet2", "-o", o],
        &names,
        &out,
    );
}
