//! Classes between models and datasets, through the `synthcal` binary: image folders are
//! relabelled onto the model's classes by name (or refused), the logits are read with the
//! model's width, official CIFAR files must be whole, tiny calibration sets warn.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;

const RESNET20: &str = "models/chenyaofo/cifar10_resnet20-4118986f.pt";
const CIFAR: [&str; 10] = synthcal::data::CIFAR10_CLASSES;

/// A fresh scratch folder for one test.
fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "synthcal-cli-classes-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn synthcal(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `synthcal eval ... --json`, which must succeed; returns the report of `--model`.
fn eval_json(model: &Path, data: &Path, dir: &Path) -> serde_json::Value {
    let json = dir.join("eval.json");
    let o = synthcal(&[
        &"eval", &"--model", &model, &"--data", &data, &"--json", &json, &"--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    v["model"].clone()
}

/// Writes `dir/<folder>/<k>.png` for each (folder, images).
fn write_folder(dir: &Path, classes: &[(&str, Vec<image::RgbImage>)]) {
    for (folder, images) in classes {
        std::fs::create_dir_all(dir.join(folder)).unwrap();
        for (k, img) in images.iter().enumerate() {
            img.save(dir.join(folder).join(format!("{k:03}.png")))
                .unwrap();
        }
    }
}

/// One black image per CIFAR-10 class, in folders named by `names` (CIFAR order).
fn flat_folder(dir: &Path, names: &[&str]) {
    let black = image::RgbImage::new(32, 32);
    let v: Vec<(&str, Vec<image::RgbImage>)> =
        names.iter().map(|n| (*n, vec![black.clone()])).collect();
    write_folder(dir, &v);
}

/// A random-weight ResNet-20 weights file with these metadata entries.
fn random_model(path: &Path, meta: &[(&str, &str)]) {
    common::write_random_model_with_meta("resnet20", 7, path, meta);
}

fn per_class(report: &serde_json::Value) -> Vec<(String, u64, f64)> {
    report["per_class"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["class"].as_str().unwrap().to_string(),
                c["images"].as_u64().unwrap(),
                c["top1"].as_f64().unwrap(),
            )
        })
        .collect()
}

/// Five of the ten classes, listed in classes.txt in their own order (so their labels are
/// 0..4 in the folder), score exactly as the same images do within the full set.
#[test]
fn subset_folder_evaluates_like_the_full_set() {
    let Some(shared) = common::shared_with(&[RESNET20]) else {
        return;
    };
    let test = synthcal::data::load_cifar10_bin(
        shared.join("data/cifar-10-batches-bin"),
        synthcal::data::Split::Test,
    )
    .unwrap();
    let images = |c: usize| -> Vec<image::RgbImage> {
        (0..test.len())
            .filter(|&i| test.labels()[i] as usize == c)
            .take(6)
            .map(|i| test.rgb_image(i))
            .collect()
    };
    let dir = scratch("subset");
    let all: Vec<(&str, Vec<image::RgbImage>)> = (0..10).map(|c| (CIFAR[c], images(c))).collect();
    write_folder(&dir.join("full"), &all);
    let half = ["cat", "ship", "airplane", "frog", "truck"];
    let some: Vec<_> = all
        .iter()
        .filter(|(n, _)| half.contains(n))
        .cloned()
        .collect();
    write_folder(&dir.join("half"), &some);
    std::fs::write(dir.join("half/classes.txt"), half.join("\n")).unwrap();

    let model = shared.join(RESNET20);
    let full = eval_json(&model, &dir.join("full"), &dir);
    let part = eval_json(&model, &dir.join("half"), &dir);
    assert!(full["top1"].as_f64().unwrap() > 60.0, "{full}");
    let full_classes = per_class(&full);
    let mut correct = 0.0;
    for (name, n, top1) in per_class(&part) {
        let want = full_classes.iter().find(|c| c.0 == name).unwrap();
        if half.contains(&name.as_str()) {
            assert_eq!((n, top1), (want.1, want.2), "{name}: {part}");
            correct += top1 * n as f64 / 100.0;
        } else {
            assert_eq!(n, 0, "{name}");
        }
    }
    assert_eq!(part["images"], 30);
    assert_eq!(part["correct"].as_f64().unwrap(), correct.round(), "{part}");
    std::fs::remove_dir_all(&dir).ok();
}

/// `plane` for `airplane` used to shift every label silently.
#[test]
fn unknown_class_folder_is_refused_listing_the_model_classes() {
    let dir = scratch("plane");
    let mut names = CIFAR;
    names[0] = "plane";
    flat_folder(&dir.join("data"), &names);
    let model = dir.join("m.safetensors");
    random_model(&model, &[]);
    let o = synthcal(&[
        &"eval",
        &"--model",
        &model,
        &"--data",
        &dir.join("data"),
        &"--quiet",
    ]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(e.contains("class `plane`"), "{e}");
    assert!(e.contains(&CIFAR.join(", ")), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// An 11th classes.txt line used to widen the logit rows read to 11.
#[test]
fn extra_classes_txt_line_is_refused() {
    let dir = scratch("eleven");
    flat_folder(&dir.join("data"), &CIFAR);
    std::fs::write(
        dir.join("data/classes.txt"),
        CIFAR.join("\n") + "\nunicorn\n",
    )
    .unwrap();
    let model = dir.join("m.safetensors");
    random_model(&model, &[]);
    let o = synthcal(&[
        &"eval",
        &"--model",
        &model,
        &"--data",
        &dir.join("data"),
        &"--quiet",
    ]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("class `unicorn`") && e.contains(&CIFAR.join(", ")),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// A test_batch.bin cut at a record boundary (5,000 of 10,000 records).
#[test]
fn short_official_cifar_file_is_refused() {
    let dir = scratch("short");
    std::fs::write(dir.join("test_batch.bin"), vec![0u8; 5_000 * 3073]).unwrap();
    let model = dir.join("m.safetensors");
    random_model(&model, &[]);
    let o = synthcal(&[&"eval", &"--model", &model, &"--data", &dir, &"--quiet"]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("test_batch.bin") && e.contains("5000 records"),
        "{e}"
    );
    assert!(e.contains("10000 records (30730000 bytes)"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A model's own class names (metadata) label a folder by name, survive quantization into
/// the INT8 file, and a one-image calibration set draws a warning.
#[test]
fn model_class_names_label_folders_and_tiny_calibration_warns() {
    let dir = scratch("names");
    let names: Vec<String> = (0..10).map(|i| format!("kind{i}")).collect();
    let json = serde_json::to_string(&names).unwrap();
    let model = dir.join("m.safetensors");
    random_model(
        &model,
        &[("class_names", &json), ("norm_std", "[0.25, 0.25, 0.25]")],
    );
    let img = image::RgbImage::from_pixel(32, 32, image::Rgb([90, 140, 200]));
    write_folder(&dir.join("one"), &[("KIND3", vec![img])]);

    let int8 = dir.join("q.safetensors");
    let calib = format!("folder:{}", dir.join("one").display());
    let o = synthcal(&[
        &"quantize",
        &"--model",
        &model,
        &"--calib",
        &calib,
        &"-o",
        &int8,
        &"--quiet",
    ]);
    let e = stderr(&o);
    assert!(o.status.success(), "{e}");
    assert!(e.contains("only 1 image"), "{e}");
    let (_, meta) = synthcal::io::read_safetensors(&int8).unwrap();
    assert_eq!(meta["class_names"], json);

    for m in [&model, &int8] {
        let r = eval_json(m, &dir.join("one"), &dir);
        let pc = per_class(&r);
        assert_eq!(pc.len(), 10, "{r}");
        assert_eq!((pc[3].0.as_str(), pc[3].1), ("kind3", 1), "{r}");
    }
    // Noise carries no class, so it calibrates a model of any class names.
    let noisy = dir.join("noise.safetensors");
    let o = synthcal(&[
        &"quantize",
        &"--model",
        &model,
        &"--calib",
        &"noise",
        &"--per-class",
        &"1",
        &"-o",
        &noisy,
        &"--quiet",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A CIFAR-named folder is not this model's.
    flat_folder(&dir.join("cifar"), &CIFAR[..2]);
    let o = synthcal(&[
        &"eval",
        &"--model",
        &int8,
        &"--data",
        &dir.join("cifar"),
        &"--quiet",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("kind0, kind1"),
        "{}",
        stderr(&o)
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Metadata that cannot be the model's is an error naming the file.
#[test]
fn bad_normalization_metadata_is_refused() {
    let dir = scratch("badnorm");
    flat_folder(&dir.join("data"), &CIFAR);
    let model = dir.join("bad-norm.safetensors");
    random_model(&model, &[("norm_std", "[0.2, 0.0, 0.2]")]);
    let o = synthcal(&[
        &"eval",
        &"--model",
        &model,
        &"--data",
        &dir.join("data"),
        &"--quiet",
    ]);
    let e = stderr(&o);
    assert!(!o.status.success());
    assert!(
        e.contains("bad-norm.safetensors") && e.contains("norm_std"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `import --mean --std --classes` stores the normalization and class names in the output,
/// which later commands read; wrong counts are refused naming the flag or the file.
#[test]
fn import_stores_normalization_and_class_names_from_flags() {
    let dir = scratch("import-flags");
    let (src, out, names) = (
        dir.join("m.safetensors"),
        dir.join("out.safetensors"),
        dir.join("classes.txt"),
    );
    common::write_random_model("resnet20", 4, &src);
    let ten: Vec<String> = (0..10).map(|i| format!("kind {i}")).collect();
    std::fs::write(&names, format!("{}\n\n", ten.join("\n"))).unwrap();
    let o = synthcal(&[
        &"import",
        &src,
        &"-o",
        &out,
        &"--mean",
        &"0.5,0.25,0.125",
        &"--std",
        &"0.2,0.3,0.4",
        &"--classes",
        &names,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = synthcal::Model::load(&out).unwrap();
    assert_eq!(m.arch.norm.mean, [0.5, 0.25, 0.125]);
    assert_eq!(m.arch.norm.std, [0.2, 0.3, 0.4]);
    assert_eq!(m.class_names, ten);

    let o = synthcal(&[
        &"import",
        &src,
        &"-o",
        &dir.join("b.st"),
        &"--mean",
        &"0.5,0.5",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("--mean: 2 values"),
        "{}",
        stderr(&o)
    );
    let o = synthcal(&[
        &"import",
        &src,
        &"-o",
        &dir.join("b.st"),
        &"--std",
        &"1,0,1",
    ]);
    assert!(
        !o.status.success() && stderr(&o).contains("std"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&names, "a\nb\n").unwrap();
    let o = synthcal(&[
        &"import",
        &src,
        &"-o",
        &dir.join("b.st"),
        &"--classes",
        &names,
    ]);
    let e = stderr(&o);
    assert!(
        !o.status.success() && e.contains("2 class names") && e.contains("10 outputs"),
        "{e}"
    );
    assert!(!dir.join("b.st").exists());
    std::fs::remove_dir_all(&dir).ok();
}
