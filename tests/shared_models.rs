//! The published checkpoints in ../shared: accuracy on the real CIFAR-10 test set, FP32 and
//! INT8. Skipped (with a printed reason) where ../shared is absent.

mod common;

use synthcal::data::{self, Split};
use synthcal::eval::{accuracy, argmax_rows, logits, Classifier};

fn top1(c: &Classifier, ds: &data::Dataset) -> f64 {
    let gpu = common::gpu();
    let r = c.runner(&gpu, false).unwrap();
    let l = logits(&r, c.norm(), ds, 250, |_| {}).unwrap();
    let (hit, _) = accuracy(&argmax_rows(&l, 10), ds.labels(), ds.class_names());
    100.0 * hit as f64 / ds.len() as f64
}

fn first(ds: &data::Dataset, n: usize) -> data::Dataset {
    ds.subset(&(0..n).collect::<Vec<_>>()).unwrap()
}

/// The whole test set for akamaster's ResNet-20: exactly the published 91.73%.
#[test]
fn akamaster_resnet20_full_test_set() {
    common::skip_without_gpu!();
    let Some(sh) = common::shared_models() else {
        return;
    };
    let test = data::load_cifar10_bin(sh.join("data/cifar-10-batches-bin"), Split::Test).unwrap();
    let m = Classifier::load(&sh.join("models/akamaster/resnet20-12fca82f.th"), None).unwrap();
    let acc = top1(&m, &test);
    assert!((acc - 91.73).abs() <= 0.05, "top-1 {acc}");
}

/// Every shared checkpoint loads (architecture detected from its tensors) and reaches its
/// published accuracy on the first 1,000 test images (within sampling noise: 2.5 pp).
#[test]
fn every_shared_checkpoint_on_a_test_subset() {
    common::skip_without_gpu!();
    let Some(sh) = common::shared_models() else {
        return;
    };
    let test = data::load_cifar10_bin(sh.join("data/cifar-10-batches-bin"), Split::Test).unwrap();
    let sub = first(&test, 1000);
    let cases = [
        (
            "akamaster/resnet32-d509ac18.th",
            "akamaster_resnet32",
            92.63,
        ),
        (
            "akamaster/resnet44-014dd654.th",
            "akamaster_resnet44",
            93.10,
        ),
        (
            "akamaster/resnet56-4bfd9763.th",
            "akamaster_resnet56",
            93.39,
        ),
        ("chenyaofo/cifar10_resnet20-4118986f.pt", "resnet20", 92.60),
        ("chenyaofo/cifar10_resnet56-187c023a.pt", "resnet56", 94.37),
        (
            "chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt",
            "shufflenetv2_x0_5",
            90.65,
        ),
    ];
    // Every model is checked and all failures reported together, so one bad model does not
    // hide another.
    let mut failures = Vec::new();
    for (file, arch, published) in cases {
        let m = match Classifier::load(&sh.join("models").join(file), None) {
            Ok(m) => m,
            Err(e) => {
                failures.push(format!("{file}: {e}"));
                continue;
            }
        };
        if m.arch() != arch {
            failures.push(format!("{file}: architecture {} != {arch}", m.arch()));
            continue;
        }
        let acc = top1(&m, &sub);
        if (acc - published).abs() >= 2.5 {
            failures.push(format!(
                "{file}: {acc} on 1,000 images vs published {published}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// INT8 (DefaultQuantization, 1,000 real training images) stays close to FP32.
#[test]
fn resnet20_int8_with_real_calibration() {
    common::skip_without_gpu!();
    let Some(sh) = common::shared_models() else {
        return;
    };
    let gpu = common::gpu();
    let dir = sh.join("data/cifar-10-batches-bin");
    let train = data::load_cifar10_bin(&dir, Split::Train).unwrap();
    let calib = data::balanced_subset(&train, 100, 0).unwrap();
    let test = first(&data::load_cifar10_bin(&dir, Split::Test).unwrap(), 2000);
    let model = synthcal::models::load_model(
        &sh.join("models/chenyaofo/cifar10_resnet20-4118986f.pt"),
        None,
    )
    .unwrap();
    let q =
        synthcal::quant::default_quantization(&gpu, &model, &calib, &Default::default()).unwrap();
    let fp = top1(&Classifier::Fp32(model), &test);
    let int8 = top1(&Classifier::Int8(q), &test);
    assert!(fp - int8 < 1.0, "FP32 {fp} vs INT8 {int8}");
}

/// `synthcal import` keeps every tensor under its original name, with the metadata, and the
/// result loads as the same model.
#[test]
fn import_round_trips_through_safetensors() {
    let Some(sh) = common::shared_models() else {
        return;
    };
    let ckpt = sh.join("models/chenyaofo/cifar10_resnet20-4118986f.pt");
    let dir = std::env::temp_dir().join(format!("synthcal-import-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("r20.safetensors");
    synthcal::models::import(&ckpt, &out, None).unwrap();
    let (orig, _) = synthcal::models::read_params(&ckpt).unwrap();
    let (back, meta) = synthcal::models::read_params(&out).unwrap();
    assert_eq!(orig.tensors, back.tensors);
    assert_eq!(meta.get("arch").map(String::as_str), Some("resnet20"));
    assert!(meta.contains_key("norm_mean") && meta.contains_key("class_names"));
    let m = synthcal::models::load_model(&out, None).unwrap();
    assert_eq!(m.arch.name, "resnet20");
    std::fs::remove_dir_all(&dir).ok();
}
