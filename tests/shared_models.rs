//! The published checkpoints in ../shared: accuracy on the real CIFAR-10 test set, FP32 and
//! INT8. Skipped (with a printed reason) where ../shared is absent.

mod common;

use synthcal::data::{self, Split};
use synthcal::eval::{accuracy, Classifier};
use synthcal::infer::{argmax_rows, logits};

fn top1(c: &Classifier, ds: &data::Dataset) -> f64 {
    let gpu = common::gpu();
    let r = c.runner(&gpu, false).unwrap();
    let l = logits(&r, c.norm(), ds, 250, &Default::default()).unwrap();
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
    synthcal::models::import(&ckpt, &out, None, &Default::default()).unwrap();
    let (orig, _) = synthcal::models::read_params(&ckpt).unwrap();
    let (back, meta) = synthcal::models::read_params(&out).unwrap();
    assert_eq!(orig.tensors, back.tensors);
    assert_eq!(meta.get("arch").map(String::as_str), Some("resnet20"));
    assert!(meta.contains_key("norm_mean") && meta.contains_key("class_names"));
    let m = synthcal::models::load_model(&out, None).unwrap();
    assert_eq!(m.arch.name, "resnet20");
    std::fs::remove_dir_all(&dir).ok();
}

fn int8_logits(q: &synthcal::quant::QuantizedModel, ds: &data::Dataset) -> Vec<f32> {
    logits(
        &q.runner(&common::gpu()).unwrap(),
        q.norm.clone(),
        ds,
        250,
        &Default::default(),
    )
    .unwrap()
}

fn top1_of(l: &[f32], ds: &data::Dataset) -> f64 {
    let (hit, _) = accuracy(&argmax_rows(l, 10), ds.labels(), ds.class_names());
    100.0 * hit as f64 / ds.len() as f64
}

/// ShuffleNetV2 x0.5, the depthwise model, in both depthwise-input modes (200 real
/// calibration images, the first 500 test images, to keep CI short). On the full test set
/// per-tensor inputs drop 0.29 pp and per-channel ones 4.99 pp (README); on 500 images a
/// paired drop moves by about 1.3 pp (one standard deviation at ~8% discordant images), so
/// the bounds are those figures plus 2 pp.
#[test]
fn shufflenet_int8_in_both_depthwise_modes() {
    let Some(sh) = common::shared_models() else {
        return;
    };
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let dir = sh.join("data/cifar-10-batches-bin");
    let train = data::load_cifar10_bin(&dir, Split::Train).unwrap();
    let calib = data::balanced_subset(&train, 20, 0).unwrap();
    let test = first(&data::load_cifar10_bin(&dir, Split::Test).unwrap(), 500);
    let path = sh.join("models/chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt");
    let model = synthcal::models::load_model(&path, None).unwrap();
    let fp = top1(&Classifier::Fp32(model.clone()), &test);
    let mut runs = Vec::new();
    for (per_channel, bound) in [(false, 0.29 + 2.0), (true, 4.99 + 2.0)] {
        let opts = synthcal::quant::QuantOptions {
            depthwise_per_channel: per_channel,
            ..synthcal::quant::QuantOptions::pot()
        };
        let q = synthcal::quant::default_quantization(&gpu, &model, &calib, &opts).unwrap();
        let l = int8_logits(&q, &test);
        let int8 = top1_of(&l, &test);
        assert!(
            fp - int8 < bound,
            "per-channel depthwise inputs {per_channel}: FP32 {fp} vs INT8 {int8}"
        );
        runs.push(l);
    }
    assert_ne!(runs[0], runs[1], "the two modes gave identical logits");
}

/// `reproduce`'s report numbers (drop, agreement, logit RMSE) recomputed here from the
/// `eval` level: the same quantization saved to an INT8 file and loaded back, its logits and
/// the FP32 ones, and the statistics computed in this test, not by `eval::fidelity`. The
/// RMSE agrees to 1e-6 (fidelity subtracts the logits in f32, this test in f64).
#[test]
fn reproduce_numbers_match_an_independent_recomputation() {
    let Some(sh) = common::shared_models() else {
        return;
    };
    common::skip_without_gpu!();
    use synthcal::cli::calib_data::CalibSetArgs;
    use synthcal::cli::reproduce::{run, ReproduceArgs};
    let gpu = common::gpu();
    let dir = std::env::temp_dir().join(format!("synthcal-repro-check-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let path = sh.join("models/chenyaofo/cifar10_resnet20-4118986f.pt");
    let set = CalibSetArgs {
        data: Some(sh.join("data/cifar-10-batches-bin")),
        per_class: 3,
        seed: 0,
    };
    let args = ReproduceArgs {
        models: vec![path.display().to_string()],
        sources: vec!["noise".into()],
        algorithms: vec!["default".into()],
        bits: vec![synthcal::cli::reproduce::parse_bits("8").unwrap()],
        estimators: vec!["pot".into()],
        first_last_8bit: false,
        add_bits: None,
        iters: None,
        set: set.clone(),
        max_drop: 0.01,
        limit: Some(200),
        output: dir.join("report"),
        quiet: true,
    };
    run(&gpu, &args).unwrap();
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/report.json")).unwrap()).unwrap();
    let f = &j[0]["fidelity"];

    let model = synthcal::models::load_model(&path, None).unwrap();
    let calib = set
        .load(&gpu, "noise", Some(&model), &Default::default())
        .unwrap();
    // reproduce runs POT's recipe.
    let opts = synthcal::quant::QuantOptions::pot();
    let q = synthcal::quant::default_quantization(&gpu, &model, &calib, &opts).unwrap();
    let file = dir.join("r20.int8.safetensors");
    q.save(&file).unwrap();
    let q = synthcal::quant::QuantizedModel::load(&file).unwrap();
    let test = first(
        &data::load_cifar10_bin(sh.join("data/cifar-10-batches-bin"), Split::Test).unwrap(),
        200,
    );
    let fp = {
        let c = Classifier::Fp32(model);
        logits(
            &c.runner(&gpu, false).unwrap(),
            c.norm(),
            &test,
            250,
            &Default::default(),
        )
        .unwrap()
    };
    let int8 = int8_logits(&q, &test);
    let pred = |l: &[f32]| -> Vec<usize> {
        l.chunks(10)
            .map(|r| (0..10).fold(0, |b, i| if r[i] > r[b] { i } else { b }))
            .collect()
    };
    let (pf, pq) = (pred(&fp), pred(&int8));
    let n = test.len() as f64;
    let right = |p: &[usize]| {
        p.iter()
            .zip(test.labels())
            .filter(|(a, &l)| **a == l as usize)
            .count() as f64
    };
    let drop = 100.0 * (right(&pf) - right(&pq)) / n;
    let agree = 100.0 * pf.iter().zip(&pq).filter(|(a, b)| a == b).count() as f64 / n;
    let sq: f64 = fp
        .iter()
        .zip(&int8)
        .map(|(&a, &b)| (a as f64 - b as f64).powi(2))
        .sum();
    let rmse = (sq / fp.len() as f64).sqrt();
    let num = |k: &str| f[k].as_f64().unwrap_or_else(|| panic!("{k} in {f}"));
    assert!(
        (num("drop") - drop).abs() < 1e-9,
        "drop {} vs {drop}",
        num("drop")
    );
    assert!(
        (num("agreement") - agree).abs() < 1e-9,
        "agreement {} vs {agree}",
        num("agreement")
    );
    assert!(
        (num("logit_rmse") - rmse).abs() <= 1e-6 * rmse,
        "RMSE {} vs {rmse}",
        num("logit_rmse")
    );
    assert!(
        agree < 100.0 && rmse > 0.0,
        "INT8 identical to FP32: nothing was compared"
    );
    std::fs::remove_dir_all(&dir).ok();
}
