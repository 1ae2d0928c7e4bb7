//! Checks the loaders against the real CIFAR-10 files when they are available.

use std::path::PathBuf;

use synthcal::data::{balanced_subset, load_cifar10_bin, Split};

mod common;

fn cifar_dir() -> Option<PathBuf> {
    common::shared().map(|s| s.join("data/cifar-10-batches-bin"))
}

#[test]
fn cifar10_test_split() {
    let Some(dir) = cifar_dir() else { return };
    let ds = load_cifar10_bin(&dir, Split::Test).unwrap();
    assert_eq!(ds.len(), 10_000);
    assert_eq!(ds.class_counts(), vec![1_000; 10]);
    assert_eq!(ds.labels()[..2], [3, 8]);
    assert_eq!(ds.class_names()[3], "cat");
    // The parent directory is accepted too.
    let again = load_cifar10_bin(dir.parent().unwrap(), Split::Test).unwrap();
    assert_eq!(again.labels(), ds.labels());
}

#[test]
fn cifar10_train_split_and_balanced_subset() {
    let Some(dir) = cifar_dir() else { return };
    let ds = load_cifar10_bin(&dir, Split::Train).unwrap();
    assert_eq!(ds.len(), 50_000);
    let sub = balanced_subset(&ds, 500, 0).unwrap();
    assert_eq!(sub.len(), 5_000);
    assert_eq!(sub.class_counts(), vec![500; 10]);
}
