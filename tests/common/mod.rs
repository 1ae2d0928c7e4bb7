//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::PathBuf;

pub mod cli;
pub mod ort;

#[allow(unused_imports)]
pub use synthcal::testing::{gpu, skip, try_gpu};

/// Returns from the calling test (after `skip`) when there is no GPU adapter.
#[allow(unused_macros)]
macro_rules! skip_without_gpu {
    () => {
        if common::try_gpu().is_none() {
            return;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use skip_without_gpu;

/// The shared data folder (`SYNTHCAL_SHARED`, default `../shared`) when it holds the CIFAR-10
/// test batch, or None after `skip` (a failure in CI).
pub fn shared() -> Option<PathBuf> {
    shared_with(&["data/cifar-10-batches-bin/test_batch.bin"])
}

/// The shared folder when it holds the test batch and every file in `needs` (relative paths),
/// or None after `skip` (a failure in CI).
pub fn shared_with(needs: &[&str]) -> Option<PathBuf> {
    let p = std::env::var_os("SYNTHCAL_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared")));
    let data = "data/cifar-10-batches-bin/test_batch.bin";
    match std::iter::once(&data)
        .chain(needs)
        .find(|f| !p.join(f).exists())
    {
        None => Some(p),
        Some(missing) => {
            skip(&format!(
                "{missing} not found under the shared folder {} (set SYNTHCAL_SHARED)",
                p.display()
            ));
            None
        }
    }
}

/// The shared folder when it also holds the published checkpoints the tests use.
pub fn shared_models() -> Option<PathBuf> {
    shared_with(&[
        "models/akamaster/resnet20-12fca82f.th",
        "models/akamaster/resnet32-d509ac18.th",
        "models/akamaster/resnet44-014dd654.th",
        "models/akamaster/resnet56-4bfd9763.th",
        "models/chenyaofo/cifar10_resnet20-4118986f.pt",
        "models/chenyaofo/cifar10_resnet56-187c023a.pt",
        "models/chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt",
    ])
}

/// A random-weight model of architecture `arch` written as a safetensors weights file.
pub fn write_random_model(arch: &str, seed: u64, path: &std::path::Path) {
    write_random_model_with_meta(arch, seed, path, &[]);
}

/// [`write_random_model`] with these metadata entries.
pub fn write_random_model_with_meta(
    arch: &str,
    seed: u64,
    path: &std::path::Path,
    meta: &[(&str, &str)],
) {
    let p = synthcal::models::random_params(&synthcal::models::arch(arch).unwrap(), seed);
    let t: Vec<(&str, &[usize], &[f32])> = p
        .tensors
        .iter()
        .map(|(n, a)| (n.as_str(), &a.shape[..], &a.data[..]))
        .collect();
    let meta = meta
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    synthcal::io::write_safetensors(path, &t, &meta).unwrap();
}

/// `n` 32x32 images of seeded pseudo-random pixels.
pub fn random_images(n: usize, seed: u64) -> synthcal::Images {
    let mut s = seed;
    let px = (0..n * 3 * 32 * 32)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (s >> 56) as u8
        })
        .collect();
    synthcal::Images::new(px, 32, 32).unwrap()
}
