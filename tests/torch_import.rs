//! Loads the published checkpoints from the shared folder (skipped if absent).
//! Set SYNTHCAL_TENSOR_LISTING=<file> to also save the name/shape listing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use synthcal::io::{load_tensors, TensorData};

mod common;

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// Learnable parameters: everything but BN running stats and counters.
fn param_count(t: &[(String, TensorData)]) -> usize {
    t.iter()
        .filter(|(n, d)| {
            d.is_float() && !n.ends_with("running_mean") && !n.ends_with("running_var")
        })
        .map(|(_, d)| d.numel())
        .sum()
}

fn shape<'a>(t: &'a [(String, TensorData)], name: &str) -> &'a [usize] {
    let found = t.iter().find(|(n, _)| n == name);
    &found.unwrap_or_else(|| panic!("no tensor {name}")).1.shape
}

#[test]
fn loads_published_checkpoints() {
    let Some(shared) = common::shared_models() else {
        return;
    };
    let models = shared.join("models");
    let mut all = files(&models.join("akamaster"), "th");
    all.extend(files(&models.join("chenyaofo"), "pt"));
    assert!(!all.is_empty(), "no checkpoints under {}", models.display());

    let mut listing = String::new();
    for path in &all {
        let t = load_tensors(path).unwrap_or_else(|e| panic!("{e}"));
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let params = param_count(&t);
        let _ = writeln!(
            listing,
            "== {file}: {} tensors, {params} parameters",
            t.len()
        );
        for (name, d) in &t {
            let _ = writeln!(listing, "{name} {:?} {:?}", d.shape, d.dtype_orig);
            assert!(
                d.to_f32().iter().all(|x| x.is_finite()),
                "{file} {name} not finite"
            );
        }
        let close = |want: f64, tol: f64| (params as f64 - want).abs() <= tol;
        if file.starts_with("resnet20") {
            assert_eq!(shape(&t, "conv1.weight"), [16, 3, 3, 3]);
            assert_eq!(shape(&t, "linear.weight"), [10, 64]);
            assert!(close(0.27e6, 0.005e6), "{file}: {params}");
        } else if file.starts_with("cifar10_resnet20") {
            assert_eq!(shape(&t, "conv1.weight"), [16, 3, 3, 3]);
            assert_eq!(shape(&t, "fc.weight"), [10, 64]);
            assert!(close(0.27e6, 0.005e6), "{file}: {params}");
        } else if file.starts_with("cifar10_shufflenetv2_x0_5") {
            assert!(close(0.35e6, 0.01e6), "{file}: {params}");
        }
    }
    print!("{listing}");
    if let Some(out) = std::env::var_os("SYNTHCAL_TENSOR_LISTING") {
        std::fs::write(&out, &listing).expect("write listing");
    }
}

/// Corrupted copies (truncated, bytes overwritten) must give errors, not panics.
#[test]
fn corrupted_checkpoints_fail_cleanly() {
    let Some(shared) = common::shared_models() else {
        return;
    };
    let models = shared.join("models");
    let sources = [
        models.join("akamaster/resnet20-12fca82f.th"),
        models.join("chenyaofo/cifar10_resnet20-4118986f.pt"),
    ];
    if !sources.iter().all(|p| p.is_file()) {
        common::skip(&format!("checkpoints under {} not found", models.display()));
        return;
    }
    let dir = std::env::temp_dir().join(format!("synthcal-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    for src in &sources {
        let orig = std::fs::read(src).expect("read checkpoint");
        for i in 0..150 {
            let mut b = orig.clone();
            if i % 2 == 0 {
                b.truncate(rnd() % b.len());
            } else {
                // Mostly hit the pickles, which sit near the start.
                for _ in 0..1 + rnd() % 4 {
                    let at = rnd() % b.len().min(20_000);
                    b[at] = rnd() as u8;
                }
            }
            let p = dir.join("corrupt");
            std::fs::write(&p, &b).expect("write");
            let r = std::panic::catch_unwind(|| load_tensors(&p));
            assert!(r.is_ok(), "panic on corruption {i} of {}", src.display());
        }
    }
}
