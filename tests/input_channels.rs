//! Models whose input is not a 3-channel image: a grayscale (1-channel) and a 5-band ONNX
//! model go through import (normalization of one value per channel), evaluation (RGB data
//! read as gray by the 1-channel model), quantization with the sources that fit each, INT8
//! inference checked against the CPU integer reference, and QDQ export, read back by synthcal
//! and, where `SYNTHCAL_ORT_PYTHON` names a Python with onnxruntime, run by ONNX Runtime.

mod common;

use common::cli::{ok, refused, temp_dir};
use common::ort;

use std::path::Path;
use synthcal::array::Array;
use synthcal::calib::distill::{distill_images, DistillOptions};
use synthcal::quant::default_quantization;
use synthcal::{Images, Model, QuantOptions, QuantizedModel};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Two conv-BN-ReLU layers, a global pool and a linear layer on `channels` x `side` x `side`
/// inputs, with random weights, written as ONNX.
fn write_onnx(path: &Path, channels: usize, side: usize, seed: u64) {
    use synthcal::graph::Act;
    use synthcal::models::{Arch, Builder, ConvSpec, Normalization};
    let mut b = Builder::default();
    let x = b.input();
    let x = b.conv_bn("c1", "b1", x, &ConvSpec::same(channels, 8, 3, 1), Act::Relu);
    let x = b.conv_bn("c2", "b2", x, &ConvSpec::same(8, 16, 3, 2), Act::Relu);
    let x = b.gap(x);
    b.linear("fc", x, 16, 10, Act::Identity);
    let a = Arch {
        name: format!("net{channels}"),
        graph: b.g,
        expected: b.shapes,
        norm: Normalization {
            mean: vec![0.5; channels],
            std: vec![0.25; channels],
        },
        input_channels: channels,
        input_size: [side, side],
    };
    let p = synthcal::models::random_params(&a, seed);
    synthcal::onnx::write(&Model::new(a, p).unwrap(), path).unwrap();
}

/// `n` images of `shape` with pseudo-random pixels.
fn images([c, h, w]: [usize; 3], n: usize, seed: u64) -> Images {
    let px = (0..n * c * h * w)
        .map(|k| ((k as u64 * 2654435761 + seed * 40503) >> 7) as u8)
        .collect();
    Images::with_channels(px, c, h, w).unwrap()
}

/// The FP32 model on the GPU gives the CPU reference's logits on its own channel count.
fn check_fp32(m: &Model, x: &Images) {
    let gpu = common::gpu();
    let got = m.predict(&gpu, x).unwrap();
    let [c, h, w] = m.input_shape();
    let input = x.to_f32_normalized(0..x.len(), &m.arch.norm.mean, &m.arch.norm.std);
    let want = synthcal::graph::cpu::forward(
        &m.arch.graph,
        &m.params,
        &Array::new(&[x.len(), c, h, w], input),
    )
    .unwrap();
    let worst = synthcal::array::worst(
        got.values()
            .iter()
            .zip(&want.data)
            .map(|(p, q)| (p - q).abs()),
    );
    assert!(worst < 1e-3, "FP32 GPU vs CPU: {worst}");
}

/// The INT8 model on the GPU gives the CPU integer reference's logits, and its QDQ export,
/// read back, predicts the same classes.
fn check_int8(q: &QuantizedModel, x: &Images, dir: &Path) -> Vec<f32> {
    let gpu = common::gpu();
    let got = q.predict(&gpu, x).unwrap();
    let [c, h, w] = q.input_shape();
    let input = x.to_f32_normalized(0..x.len(), &q.norm.mean, &q.norm.std);
    let want = q
        .cpu_logits(&Array::new(&[x.len(), c, h, w], input))
        .unwrap();
    let same = (got.values().iter().zip(&want.data)).all(|(p, q)| p.to_bits() == q.to_bits());
    assert!(same, "INT8 GPU and CPU integer logits differ");
    let wbits = q.layer_bits().iter().map(|b| b.weights).max().unwrap_or(8);
    let onnx = dir.join(format!("q{c}-w{wbits}.onnx"));
    synthcal::onnx::write_qdq(q, &onnx).unwrap();
    let back = QuantizedModel::load(&onnx).unwrap();
    assert_eq!(back.input_shape(), q.input_shape());
    assert_eq!(back.norm, q.norm);
    let again = back.predict(&gpu, x).unwrap();
    assert_eq!(again.values(), got.values(), "QDQ read back");
    ort_agrees(&onnx, x, q, got.values());
    got.values().to_vec()
}

/// ONNX Runtime on the exported QDQ file agrees with synthcal's INT8 logits, when
/// SYNTHCAL_ORT_PYTHON is set: computed as the file states it, up to rounding order; with its
/// fused integer kernels too where they cannot saturate (7-bit weights, or a CPU with VNNI).
fn ort_agrees(onnx: &Path, x: &Images, q: &QuantizedModel, ours: &[f32]) {
    let Some(py) = ort::python() else { return };
    let input = x.to_f32_normalized(0..x.len(), &q.norm.mean, &q.norm.std);
    let c = ort::compare(&py, onnx, &input, ours, 10);
    eprintln!("ORT vs synthcal INT8 ({}): {c:?}", onnx.display());
    let bound = 1e-3 * c.scale.max(1e-3);
    assert!(c.written <= bound, "as written: {c:?}");
    if q.layer_bits().iter().all(|b| b.weights <= 7) {
        assert!(c.fused <= bound, "fused, 7-bit weights: {c:?}");
    } else if ort::fused_may_saturate() {
        eprintln!("(8-bit weights on a CPU without VNNI: ONNX Runtime's fused run not compared)");
    } else {
        assert!(c.agree * 10 >= x.len() * 9, "{c:?}");
        assert!(c.fused <= 0.1 * c.scale.max(1e-3), "fused: {c:?}");
    }
}

#[test]
fn a_grayscale_onnx_model_imports_evaluates_and_quantizes() {
    common::skip_without_gpu!();
    let dir = temp_dir("gray");
    let p = |name: &str| dir.0.join(name);
    let (onnx, model, imgs, q) = (
        p("net1.onnx"),
        p("net1.safetensors"),
        p("imgs"),
        p("q1.safetensors"),
    );
    write_onnx(&onnx, 1, 32, 3);
    // RGB PNGs in CIFAR-10 class folders.
    let rgb = synthcal::calib::noise_images(20, 3).unwrap();
    synthcal::data::save_image_folder(&rgb, &imgs).unwrap();

    // Three means for a 1-channel model: refused, saying how many it takes.
    let e = refused(&["import", s(&onnx), "-o", s(&model), "--mean", "0.5,0.5,0.5"]);
    assert!(
        e.contains("--mean: 3 values") && e.contains("1 input channel"),
        "{e}"
    );
    assert!(!model.exists());
    let out = ok(&[
        "import",
        s(&onnx),
        "-o",
        s(&model),
        "--mean",
        "0.4",
        "--std",
        "0.3",
    ]);
    assert!(out.contains("input 1x32x32"), "{out}");
    let m = Model::load(&model).unwrap();
    assert_eq!(m.input_shape(), [1, 32, 32]);
    // RGB models' files stay as they were: no channel count in them.
    let zoo = p("zoo.safetensors");
    synthcal::models::arch("resnet20")
        .map(|a| Model::new(a.clone(), synthcal::models::random_params(&a, 1)).unwrap())
        .unwrap()
        .save(&zoo)
        .unwrap();
    let (_, meta) = synthcal::io::read_safetensors(&zoo).unwrap();
    assert!(!meta.contains_key("input_channels"));
    assert_eq!(Model::load(&zoo).unwrap().input_shape(), [3, 32, 32]);
    assert_eq!(
        (&m.arch.norm.mean[..], &m.arch.norm.std[..]),
        (&[0.4][..], &[0.3][..])
    );
    check_fp32(&m, &images([1, 32, 32], 4, 1));

    // RGB images are read as gray: the folder, and CIFAR-10 where it is there.
    let out = ok(&["eval", "--model", s(&model), "--data", s(&imgs)]);
    assert!(
        out.contains("(20 images)") && out.contains("as gray"),
        "{out}"
    );
    // An RGB image handed to the library as is: refused, pointing at the conversion.
    let e = m
        .predict(&common::gpu(), rgb.images())
        .unwrap_err()
        .to_string();
    assert!(e.contains("1-channel") && e.contains("to_channels"), "{e}");

    let mut calibs = vec!["fractal".to_string(), format!("folder:{}", imgs.display())];
    let shared = common::shared();
    if let Some(sh) = &shared {
        let data = sh.join("data/cifar-10-batches-bin");
        let out = ok(&[
            "eval",
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--limit",
            "30",
        ]);
        assert!(
            out.contains("(30 images)") && out.contains("as gray"),
            "{out}"
        );
        calibs.push(format!("real --data {}", data.display()));
    }
    for calib in &calibs {
        std::fs::remove_file(&q).ok();
        let mut args = vec![
            "quantize",
            "--model",
            s(&model),
            "--per-class",
            "1",
            "--quiet",
        ];
        let mut words = calib.split(' ');
        args.extend(["--calib", words.next().unwrap()]);
        args.extend(words);
        args.extend(["-o", s(&q)]);
        ok(&args);
        let qm = QuantizedModel::load(&q).unwrap();
        assert_eq!(qm.input_shape(), [1, 32, 32], "{calib}");
    }
    // The last one (real where CIFAR-10 is there): INT8 on the GPU, its QDQ export.
    let qm = QuantizedModel::load(&q).unwrap();
    check_int8(&qm, &images([1, 32, 32], 16, 2), &dir.0);
    // 7-bit weights, for ONNX Runtime's integer kernels on x86 CPUs without VNNI.
    let q7 = p("q7.safetensors");
    let args = [
        "--calib",
        "noise",
        "--per-class",
        "1",
        "--wbits",
        "7",
        "--quiet",
    ];
    ok(&[&["quantize", "--model", s(&model), "-o", s(&q7)][..], &args].concat());
    let qm7 = QuantizedModel::load(&q7).unwrap();
    assert!(qm7.layer_bits().iter().all(|b| b.weights == 7));
    check_int8(&qm7, &images([1, 32, 32], 16, 2), &dir.0);
    let out = ok(&[
        "eval",
        "--model",
        s(&q),
        "--data",
        s(&imgs),
        "--fp32",
        s(&model),
        "--cross-check",
    ]);
    assert!(
        out.contains("as gray") && out.contains("agreement"),
        "{out}"
    );
    // diagnose reads the RGB folder as gray too; calib-data writes gray PNGs that load back
    // to the same 1-channel images.
    let out = ok(&[
        "diagnose",
        "--model",
        s(&model),
        "--int8",
        s(&q),
        "--data",
        s(&imgs),
        "--limit",
        "20",
        "--rank-images",
        "4",
    ]);
    assert!(out.contains("20 images"), "{out}");
    let gen = p("gen");
    ok(&[
        "calib-data",
        "fractal",
        "--model",
        s(&model),
        "--per-class",
        "1",
        "--quiet",
        "-o",
        s(&gen),
    ]);
    let back = synthcal::data::load_image_folder_at(&gen, [32, 32], synthcal::ResizePolicy::Reject)
        .unwrap();
    let made = synthcal::CalibSource::Fractal {
        per_class: 1,
        seed: 0,
    }
    .load(&common::gpu(), Some(&m), &Default::default())
    .unwrap();
    assert_eq!(made.channels(), 1);
    assert_eq!(back.to_channels(1).unwrap().pixels(), made.pixels());
    if let Some(sh) = &shared {
        let data = sh.join("data/cifar-10-batches-bin");
        let out = ok(&[
            "score",
            s(&gen),
            "--model",
            s(&model),
            "--data",
            s(&data),
            "--json",
        ]);
        assert!(out.contains('{'), "{out}");
    }
    let qonnx = p("q1cli.onnx");
    ok(&["export", s(&q), "-o", s(&qonnx)]);
    let out = ok(&["eval", "--model", s(&qonnx), "--data", s(&imgs)]);
    assert!(out.contains("(20 images)"), "{out}");
}

#[test]
fn a_five_band_onnx_model_quantizes_from_noise_and_distillation() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let dir = temp_dir("bands");
    let p = |name: &str| dir.0.join(name);
    let (onnx, model, q) = (p("net5.onnx"), p("net5.safetensors"), p("q5.safetensors"));
    write_onnx(&onnx, 5, 16, 4);

    let e = refused(&["import", s(&onnx), "-o", s(&model), "--std", "1,1,1"]);
    assert!(
        e.contains("--std: 3 values") && e.contains("5 input channels"),
        "{e}"
    );
    let mean = "0.1,0.2,0.3,0.4,0.5";
    let out = ok(&["import", s(&onnx), "-o", s(&model), "--mean", mean]);
    assert!(out.contains("input 5x16x16"), "{out}");
    assert!(
        out.contains(
            "normalization: mean [0.1, 0.2, 0.3, 0.4, 0.5], std [0.25, 0.25, 0.25, 0.25, 0.25]"
        ),
        "{out}"
    );
    let m = Model::load(&model).unwrap();
    assert_eq!(m.input_shape(), [5, 16, 16]);
    assert_eq!(m.arch.norm.mean, [0.1, 0.2, 0.3, 0.4, 0.5]);
    // The file's own normalization (written by the export) is kept where no flag is given.
    assert_eq!(m.arch.norm.std, [0.25; 5]);
    let x = images([5, 16, 16], 8, 5);
    check_fp32(&m, &x);

    // RGB sources and RGB data cannot feed 5 bands: refused before anything is made.
    for calib in ["fractal", "real"] {
        let e = refused(&[
            "quantize",
            "--model",
            s(&model),
            "--calib",
            calib,
            "-o",
            s(&q),
        ]);
        assert!(
            e.contains(&format!("the {calib} calibration source makes RGB images"))
                && e.contains("5-channel")
                && e.contains("noise or distill"),
            "{e}"
        );
        assert!(!q.exists());
    }
    let folder = p("imgs");
    let rgb = synthcal::calib::noise_images(10, 1).unwrap();
    synthcal::data::save_image_folder(&rgb, &folder).unwrap();
    let e = refused(&["eval", "--model", s(&model), "--data", s(&folder)]);
    assert!(e.contains("5-channel"), "{e}");

    // Noise from the command line, made with the model's five channels.
    ok(&[
        "quantize",
        "--model",
        s(&model),
        "--calib",
        "noise",
        "--per-class",
        "2",
        "--quiet",
        "-o",
        s(&q),
    ]);
    let qm = QuantizedModel::load(&q).unwrap();
    assert_eq!((qm.input_channels, qm.input_size), (5, [16, 16]));
    let from_noise = check_int8(&qm, &x, &dir.0);

    // Distilled images (BatchNorm statistics) in five channels; fewer steps than the CLI's.
    let opts = DistillOptions {
        iterations: 20,
        ..DistillOptions::zeroq(8, 1)
    };
    let (ds, _) = distill_images(&gpu, &m, &opts, &Default::default()).unwrap();
    assert_eq!((ds.channels(), ds.height(), ds.len()), (5, 16, 8));
    let qd = default_quantization(&gpu, &m, &ds, &QuantOptions::default()).unwrap();
    assert_eq!(qd.input_shape(), [5, 16, 16]);
    let qd_path = p("qd.safetensors");
    qd.save(&qd_path).unwrap();
    let back = QuantizedModel::load(&qd_path).unwrap();
    assert_eq!(back.input_channels, 5);
    // The count is in the metadata; without it a file is RGB, as files from before were, and
    // this one's five means do not fit 3 channels.
    let (tensors, mut meta) = synthcal::io::read_safetensors(&qd_path).unwrap();
    assert_eq!(meta.remove("input_channels").as_deref(), Some("5"));
    let old = p("old.safetensors");
    synthcal::io::write_tensor_data(&old, &tensors, &meta).unwrap();
    let e = QuantizedModel::load(&old).err().unwrap().to_string();
    assert!(
        e.contains("old.safetensors") && e.contains("an input of 3 channels"),
        "{e}"
    );
    let (_, meta) = synthcal::io::read_safetensors(&model).unwrap();
    assert_eq!(meta.get("input_channels").map(String::as_str), Some("5"));
    let from_distill = check_int8(&back, &x, &dir.0);
    // Two calibration sets, two sets of ranges.
    assert_ne!(from_noise, from_distill);
    let seven = QuantOptions {
        wbits: 7,
        ..QuantOptions::default()
    };
    check_int8(
        &default_quantization(&gpu, &m, &ds, &seven).unwrap(),
        &x,
        &dir.0,
    );

    // The library's evaluation on 5-band labelled images.
    let labelled = synthcal::Dataset::from_images(
        x,
        (0..8).map(|i| i % 10).collect(),
        m.class_names.clone(),
        "bands",
    )
    .unwrap();
    let c = synthcal::eval::Classifier::Int8(back);
    let (r, _) =
        synthcal::eval::evaluate(&gpu, &c, &labelled, 4, false, "q", &Default::default()).unwrap();
    assert_eq!(r.images, 8);
}
