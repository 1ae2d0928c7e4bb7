//! Models whose input is not CIFAR's 32x32: an ONNX model with a 64x64 input goes through
//! import, evaluation on a folder of 32x32 images stretched to its input, quantization with
//! generated calibration sources made at its size, and INT8 evaluation, all from the
//! command line.

mod common;

use common::cli::{ok, refused, TempDir};

use std::path::{Path, PathBuf};
use synthcal::data::{load_image_folder_at, ResizePolicy};
use synthcal::{Model, QuantizedModel};

/// A ResNet-20 graph (convolutions up to a global pool, so any input size fits) at 64x64
/// with random weights, written as ONNX.
fn write_onnx_64(path: &Path) {
    let mut arch = synthcal::models::arch("resnet20").unwrap();
    arch.name = "net64".into();
    arch.input_size = [64, 64];
    let params = synthcal::models::random_params(&arch, 5);
    let m = Model::new(arch, params).unwrap();
    synthcal::onnx::write(&m, path).unwrap();
}

/// A folder of 20 32x32 images in CIFAR-10 class folders.
fn write_folder_32(dir: &Path) {
    let ds = synthcal::calib::noise_images(20, 3).unwrap();
    synthcal::data::save_image_folder(&ds, dir).unwrap();
}

#[test]
fn a_64x64_onnx_model_imports_evaluates_and_quantizes() {
    common::skip_without_gpu!();
    let dir =
        TempDir(std::env::temp_dir().join(format!("synthcal-any-size-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let p = |name: &str| dir.0.join(name);
    let (onnx, model, imgs, q, qdata) = (
        p("net64.onnx"),
        p("net64.safetensors"),
        p("imgs"),
        p("q.safetensors"),
        p("calib64"),
    );
    write_onnx_64(&onnx);
    write_folder_32(&imgs);

    ok(&[
        "import".as_ref(),
        onnx.as_os_str(),
        "-o".as_ref(),
        model.as_os_str(),
    ]);
    assert_eq!(Model::load(&model).unwrap().input_size(), [64, 64]);

    // 32x32 images for a 64x64 model: refused, naming both sizes and the way out.
    let eval = ["eval".as_ref(), "--model".as_ref(), model.as_os_str()];
    let data = ["--data".as_ref(), imgs.as_os_str()];
    let e = refused(&[&eval[..], &data[..]].concat());
    assert!(
        e.contains("32x32") && e.contains("expected 64x64") && e.contains("--resize"),
        "{e}"
    );
    let out = ok(&[&eval[..], &data[..], &["--resize".as_ref()]].concat());
    assert!(
        out.contains("(20 images)") && out.contains("resized to 64x64"),
        "{out}"
    );

    // Generated sources are made at 64x64; the image folder is stretched to it.
    for calib in ["fractal", "noise", &format!("folder:{}", imgs.display())] {
        std::fs::remove_file(&q).ok();
        ok(&[
            "quantize".as_ref(),
            "--model".as_ref(),
            model.as_os_str(),
            "--calib".as_ref(),
            calib.as_ref(),
            "--per-class".as_ref(),
            "1".as_ref(),
            "--quiet".as_ref(),
            "-o".as_ref(),
            q.as_os_str(),
        ]);
        assert_eq!(QuantizedModel::load(&q).unwrap().input_size, [64, 64]);
    }
    let out = ok(&[
        &eval[..2],
        &[q.as_os_str(), "--fp32".as_ref(), model.as_os_str()],
        &data[..],
        &["--resize".as_ref()],
    ]
    .concat());
    assert!(
        out.contains("INT8 top-1") && out.contains("agreement"),
        "{out}"
    );

    // calib-data with the model writes its images at the model's size.
    ok(&[
        "calib-data".as_ref(),
        "fractal".as_ref(),
        "--model".as_ref(),
        model.as_os_str(),
        "--per-class".as_ref(),
        "1".as_ref(),
        "--quiet".as_ref(),
        "-o".as_ref(),
        qdata.as_os_str(),
    ]);
    let back = load_image_folder_at(&qdata, [64, 64], ResizePolicy::Reject).unwrap();
    assert_eq!(back.len(), 10);
}

/// With the shared CIFAR-10 training set: the `real` source calibrates the 64x64 model with
/// training images stretched to its input.
#[test]
fn real_images_calibrate_a_64x64_model() {
    common::skip_without_gpu!();
    let Some(shared) = common::shared_with(&["data/cifar-10-batches-bin/data_batch_1.bin"]) else {
        return;
    };
    let dir = TempDir(
        std::env::temp_dir().join(format!("synthcal-any-size-real-{}", std::process::id())),
    );
    std::fs::create_dir_all(&dir.0).unwrap();
    let (onnx, q) = (dir.0.join("net64.onnx"), dir.0.join("q.safetensors"));
    write_onnx_64(&onnx);
    let data = shared.join("data/cifar-10-batches-bin");
    ok(&[
        "quantize".as_ref(),
        "--model".as_ref(),
        onnx.as_os_str(),
        "--calib".as_ref(),
        "real".as_ref(),
        "--data".as_ref(),
        data.as_os_str(),
        "--per-class".as_ref(),
        "1".as_ref(),
        "--quiet".as_ref(),
        "-o".as_ref(),
        q.as_os_str(),
    ]);
    assert_eq!(QuantizedModel::load(&q).unwrap().input_size, [64, 64]);
    // The CIFAR-10 test split, stretched, evaluates the INT8 model; unstretched it is refused.
    let eval = [
        "eval".as_ref(),
        "--model".as_ref(),
        q.as_os_str(),
        "--data".as_ref(),
        data.as_os_str(),
        "--limit".as_ref(),
        "8".as_ref(),
    ];
    let e = refused(&eval);
    assert!(
        e.contains("expected 64x64") && e.contains("--resize"),
        "{e}"
    );
    let out = ok(&[&eval[..], &["--resize".as_ref(), "--quiet".as_ref()]].concat());
    assert!(out.contains("(8 images)"), "{out}");
}

/// tools/resnet18-onnx.py's network (at 64x64 and 10 classes here, to stay quick) gives ONNX
/// Runtime's logits in synthcal: an input size other than 32x32 imports and runs exactly.
#[test]
fn resnet18_shaped_onnx_agrees_with_onnx_runtime() {
    common::skip_without_gpu!();
    let Some(python) = common::ort::python() else {
        return;
    };
    let dir =
        TempDir(std::env::temp_dir().join(format!("synthcal-any-size-ort-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let onnx = dir.0.join("r18.onnx");
    let tool = |name: &str| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tools")).join(name);
    let st = std::process::Command::new(&python)
        .arg(tool("resnet18-onnx.py"))
        .arg(&onnx)
        .args(["--size", "64", "--classes", "10"])
        .status()
        .unwrap();
    assert!(st.success(), "resnet18-onnx.py: {st}");
    let m = Model::load(&onnx).unwrap();
    assert_eq!(m.input_size(), [64, 64]);
    assert_eq!(m.arch.norm.mean, [0.485, 0.456, 0.406]);
    // Four 32x32 images stretched to 64x64, normalized as synthcal does, for ONNX Runtime.
    let images = common::random_images(4, 7);
    let images = synthcal::data::Dataset::from_images(images, vec![0; 4], vec!["a".into()], "r")
        .unwrap()
        .resized([64, 64])
        .unwrap();
    let norm = &m.arch.norm;
    let input = images
        .images()
        .to_f32_normalized(0..4, &norm.mean, &norm.std);
    let ort = common::ort::logits(&python, &onnx, &input, common::ort::Run::Fused);
    let ours = m.predict(&common::gpu(), images.images()).unwrap();
    let (worst, scale) = common::ort::difference(&ort, ours.values());
    eprintln!(
        "ResNet-18 shape at 64x64: max |logit difference| {worst:e}, largest |logit| {scale}"
    );
    assert!(worst <= 1e-4 * scale.max(1.0), "max |difference| {worst}");
}
