//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

/// The shared data folder (`SYNTHCAL_SHARED`, default `../shared`), or None with a printed
/// reason when it is absent, so that a checkout elsewhere still passes.
pub fn shared() -> Option<PathBuf> {
    let p = std::env::var_os("SYNTHCAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    if p.join("data/cifar-10-batches-bin/test_batch.bin").exists() {
        Some(p)
    } else {
        eprintln!(
            "skipped: shared data not found at {} (set SYNTHCAL_SHARED)",
            p.display()
        );
        None
    }
}

/// A random-weight model of architecture `arch` written as a safetensors weights file.
pub fn write_random_model(arch: &str, seed: u64, path: &std::path::Path) {
    let p = synthcal::models::random_params(&synthcal::models::arch(arch).unwrap(), seed);
    let t: Vec<(&str, &[usize], &[f32])> = p
        .tensors
        .iter()
        .map(|(n, a)| (n.as_str(), &a.shape[..], &a.data[..]))
        .collect();
    synthcal::io::write_safetensors(path, &t, &Default::default()).unwrap();
}
