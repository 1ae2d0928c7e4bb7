//! ONNX export and import: zoo round trips on the GPU, real checkpoints, malformed files, and
//! ONNX Runtime on the exported file when `SYNTHCAL_ORT_PYTHON` names a Python with it.

mod common;

use prost::Message;
use synthcal::graph::Op;
use synthcal::onnx::{self, proto};
use synthcal::Model;

use common::random_images as images;

/// Export then import: the same logits bit for bit, the same ops (a standalone activation
/// after a layer is fused into it on import), the same normalization and class names.
fn round_trip(m: &Model) {
    let gpu = common::gpu();
    let bytes = onnx::export(m).unwrap();
    let back = onnx::import(&bytes, "x").unwrap();
    let name = &m.arch.name;
    assert_eq!(back.arch.name, *name);
    let fused = m
        .arch
        .graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Act(_)))
        .count();
    assert_eq!(
        back.arch.graph.nodes.len(),
        m.arch.graph.nodes.len() - fused,
        "{name}"
    );
    assert_eq!(back.arch.norm, m.arch.norm, "{name}");
    assert_eq!(back.class_names, m.class_names, "{name}");
    assert_eq!(back.arch.input_size, m.arch.input_size, "{name}");
    let x = images(2, 7);
    let (a, b) = (
        m.predict(&gpu, &x).unwrap(),
        back.predict(&gpu, &x).unwrap(),
    );
    assert_eq!(a.values(), b.values(), "{name}");
    // Exporting the import again writes the same nodes.
    let again = proto::ModelProto::decode(&onnx::export(&back).unwrap()[..]).unwrap();
    let first = proto::ModelProto::decode(&bytes[..]).unwrap();
    let ops = |p: &proto::ModelProto| -> Vec<String> {
        p.graph
            .as_ref()
            .unwrap()
            .node
            .iter()
            .map(|n| n.op_type.clone().unwrap())
            .collect()
    };
    assert_eq!(ops(&again), ops(&first), "{name}");
}

#[test]
fn every_zoo_family_round_trips() {
    common::skip_without_gpu!();
    for arch in [
        "resnet20",
        "akamaster_resnet20",
        "vgg11_bn",
        "mobilenetv2_x0_5",
        "shufflenetv2_x0_5",
        "repvgg_a0",
        "repvgg_a0_deploy",
    ] {
        let mut m = Model::random(arch, 5).unwrap();
        m.class_names = (0..10).map(|i| format!("c{i}")).collect();
        m.arch.norm.mean = vec![0.5, 0.4, 0.3];
        round_trip(&m);
    }
}

/// The published ResNet-20 and ShuffleNetV2 through ONNX give their own logits back, and
/// `load_model` reads the written .onnx file.
#[test]
fn shared_checkpoints_round_trip() {
    common::skip_without_gpu!();
    let Some(sh) = common::shared_models() else {
        return;
    };
    for f in [
        "models/chenyaofo/cifar10_resnet20-4118986f.pt",
        "models/chenyaofo/cifar10_shufflenetv2_x0_5-1308b4e9.pt",
        "models/akamaster/resnet20-12fca82f.th",
    ] {
        let m = Model::load(sh.join(f)).unwrap();
        round_trip(&m);
        let p = std::env::temp_dir().join(format!("synthcal-onnx-{}.onnx", std::process::id()));
        onnx::write(&m, &p).unwrap();
        let back = Model::load(&p).unwrap();
        let x = images(4, 3);
        let gpu = common::gpu();
        assert_eq!(
            m.predict(&gpu, &x).unwrap().values(),
            back.predict(&gpu, &x).unwrap().values()
        );
        std::fs::remove_file(&p).ok();
    }
}

fn resnet_proto() -> proto::ModelProto {
    let bytes = onnx::export(&Model::random("resnet20", 1).unwrap()).unwrap();
    proto::ModelProto::decode(&bytes[..]).unwrap()
}

fn import_err(p: &proto::ModelProto) -> String {
    onnx::import(&p.encode_to_vec(), "bad")
        .err()
        .expect("import should fail")
        .to_string()
}

fn first_weight(p: &mut proto::ModelProto) -> &mut proto::TensorProto {
    let g = p.graph.as_mut().unwrap();
    g.initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some("conv1.weight"))
        .unwrap()
}

#[test]
fn truncated_files_are_refused() {
    let bytes = resnet_proto().encode_to_vec();
    for cut in [1, 7, bytes.len() / 3, bytes.len() - 1] {
        let e = onnx::import(&bytes[..cut], "cut")
            .err()
            .expect("truncated")
            .to_string();
        assert!(
            e.contains("`cut`") && (e.contains("truncated or corrupt") || e.contains("graph")),
            "{cut}: {e}"
        );
    }
}

/// Loading by path (as every command does, through `Classifier::load`) names the file.
#[test]
fn a_corrupt_file_is_named_in_the_error() {
    let dir = std::env::temp_dir().join(format!("synthcal-onnx-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = resnet_proto().encode_to_vec();
    for (name, data) in [
        ("cut.onnx", &bytes[..bytes.len() / 3]),
        ("junk.onnx", b"hi\n"),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, data).unwrap();
        let e = synthcal::eval::Classifier::load(&path, None)
            .err()
            .expect("corrupt")
            .to_string();
        assert!(e.contains(&*path.to_string_lossy()), "{name}: {e}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn initializer_size_mismatch_is_refused() {
    let mut p = resnet_proto();
    let t = first_weight(&mut p);
    t.raw_data.as_mut().unwrap().truncate(100);
    let e = import_err(&p);
    assert!(
        e.contains("conv1.weight") && e.contains("1728 bytes") && e.contains("holds 100"),
        "{e}"
    );
}

#[test]
fn a_huge_shape_claim_is_refused_without_allocating() {
    let mut p = resnet_proto();
    first_weight(&mut p).dims = vec![1 << 20, 1 << 20];
    let e = import_err(&p);
    assert!(
        e.contains("conv1.weight") && e.contains("1099511627776 elements"),
        "{e}"
    );
    // Overflowing products saturate instead of wrapping to a small number.
    first_weight(&mut p).dims = vec![1 << 40, 1 << 40, 0];
    let e = import_err(&p);
    assert!(e.contains("conv1.weight"), "{e}");
}

#[test]
fn external_data_is_refused_by_name() {
    let mut p = resnet_proto();
    let t = first_weight(&mut p);
    t.raw_data = None;
    t.data_location = Some(1);
    t.external_data = vec![proto::StringStringEntryProto {
        key: Some("location".into()),
        value: Some("weights.bin".into()),
    }];
    let e = import_err(&p);
    assert!(
        e.contains("conv1.weight") && e.contains("external file (`weights.bin`)"),
        "{e}"
    );
}

#[test]
fn every_unsupported_op_is_listed_at_once() {
    let mut p = resnet_proto();
    let g = p.graph.as_mut().unwrap();
    g.node[3].op_type = Some("Softsign".into());
    g.node[9].op_type = Some("Erf".into());
    g.node[12].domain = Some("com.microsoft".into());
    let names: Vec<String> = [3, 9, 12]
        .iter()
        .map(|&i| g.node[i].name.clone().unwrap())
        .collect();
    let e = import_err(&p);
    assert!(e.contains("3 node(s)") && e.contains("opset 13"), "{e}");
    assert!(
        e.contains(&format!("`Softsign` (node `{}`)", names[0])),
        "{e}"
    );
    assert!(e.contains(&format!("`Erf` (node `{}`)", names[1])), "{e}");
    assert!(
        e.contains(&format!("(node `{}`)", names[2])) && e.contains("com.microsoft."),
        "{e}"
    );
}

/// Exported FP32 models run by ONNX Runtime give synthcal's logits: the published
/// ResNet-20 (where ../shared has it) within 1e-4, and random-weight models of the families
/// whose export uses Slice, Pad, Reshape/Transpose, Clip and MaxPool within 1e-4 of their
/// largest logit.
#[test]
fn onnx_runtime_agrees_with_synthcal() {
    common::skip_without_gpu!();
    let Some(python) = common::ort::python() else {
        return;
    };
    let shared = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../shared/models/chenyaofo/cifar10_resnet20-4118986f.pt"
    ));
    let resnet = if shared.exists() {
        Model::load(&shared).unwrap()
    } else {
        Model::random("resnet20", 2).unwrap()
    };
    let mut models = vec![resnet];
    for arch in [
        "akamaster_resnet20",
        "shufflenetv2_x0_5",
        "mobilenetv2_x0_5",
        "vgg11_bn",
    ] {
        models.push(Model::random(arch, 4).unwrap());
    }
    let dir = std::env::temp_dir().join(format!("synthcal-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, m) in models.iter().enumerate() {
        let (worst, scale) = ort_difference(&python, m, &dir);
        eprintln!(
            "ONNX Runtime vs synthcal, {}: max |logit difference| {worst:e} (largest |logit| {scale})",
            m.arch.name
        );
        // The trained ResNet-20 (first) to 1e-4; random weights give logits of any size.
        let bound = if i == 0 { 1e-4 } else { 1e-4 * scale.max(1.0) };
        assert!(worst <= bound, "{}: max |difference| {worst}", m.arch.name);
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The largest |difference| between ONNX Runtime's and synthcal's logits on 8 images, and
/// the largest |logit|.
fn ort_difference(python: &std::ffi::OsString, m: &Model, dir: &std::path::Path) -> (f32, f32) {
    let model = dir.join("m.onnx");
    onnx::write(m, &model).unwrap();
    let x = images(8, 11);
    // The ONNX graph takes normalized images, as synthcal's runner does.
    let norm = &m.arch.norm;
    let input = x.to_f32_normalized(0..x.len(), &norm.mean, &norm.std);
    let ort = common::ort::logits(python, &model, &input, common::ort::Run::Fused);
    let ours = m.predict(&common::gpu(), &x).unwrap();
    common::ort::difference(&ort, ours.values())
}

fn synthcal(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_synthcal"))
        .args(args)
        .env("WGPU_BACKEND", "vulkan")
        .output()
        .unwrap()
}

/// `synthcal export` writes a file `synthcal import` turns back into the same weights;
/// an INT8 model exports as QDQ, which loads back as the same INT8 model.
#[test]
fn cli_export_import_and_int8_qdq() {
    common::skip_without_gpu!();
    let dir = std::env::temp_dir().join(format!("synthcal-onnx-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (src, out, back, q) = (
        dir.join("m.safetensors"),
        dir.join("m.onnx"),
        dir.join("back.safetensors"),
        dir.join("q.safetensors"),
    );
    let m = Model::random("resnet20", 9).unwrap();
    m.save(&src).unwrap();
    let r = synthcal(&[
        "export".as_ref(),
        src.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let r = synthcal(&[
        "import".as_ref(),
        out.as_os_str(),
        "-o".as_ref(),
        back.as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let b = Model::load(&back).unwrap();
    assert_eq!(b.params.tensors, m.params.tensors);
    assert_eq!(b.arch.name, "resnet20");

    let source = synthcal::CalibSource::Noise {
        per_class: 1,
        seed: 0,
    };
    let int8 = synthcal::quantize(&common::gpu(), &m, &source, &Default::default()).unwrap();
    int8.save(&q).unwrap();
    let r = synthcal(&[
        "export".as_ref(),
        q.as_os_str(),
        "-o".as_ref(),
        dir.join("q.onnx").as_os_str(),
    ]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(
        said.contains("INT8 as QDQ") && said.contains("--wbits 7"),
        "{said}"
    );
    let back = synthcal::QuantizedModel::load(dir.join("q.onnx")).unwrap();
    let x = images(2, 4);
    let gpu = common::gpu();
    assert_eq!(
        int8.predict(&gpu, &x).unwrap().values(),
        back.predict(&gpu, &x).unwrap().values()
    );
    // 7-bit weights: no note about ONNX Runtime's 16-bit sums.
    let seven = synthcal::QuantOptions {
        wbits: 7,
        ..Default::default()
    };
    synthcal::quantize(&gpu, &m, &source, &seven)
        .unwrap()
        .save(&q)
        .unwrap();
    let q7 = dir.join("q7.onnx");
    let r = synthcal(&[
        "export".as_ref(),
        q.as_os_str(),
        "-o".as_ref(),
        q7.as_os_str(),
    ]);
    let said = String::from_utf8_lossy(&r.stdout);
    assert!(r.status.success() && !said.contains("--wbits 7"), "{said}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A graph that is not the zoo's, read from ONNX, goes through AccuracyAware and `reproduce`
/// as a zoo model does.
#[test]
fn an_imported_graph_runs_accuracy_aware_and_reproduce() {
    common::skip_without_gpu!();
    let Some(shared) = common::shared() else {
        return;
    };
    let dir = common::cli::temp_dir("onnx-aa-reproduce");
    let path = |name: &str| dir.0.join(name).to_str().unwrap().to_string();
    let (net, q, rep) = (path("net.onnx"), path("q.safetensors"), path("rep"));
    let mut arch = synthcal::models::arch("resnet20").unwrap();
    arch.name = "net".into();
    let params = synthcal::models::random_params(&arch, 7);
    onnx::write(&Model::new(arch, params).unwrap(), net.as_ref()).unwrap();
    assert_eq!(
        Model::load(&net).unwrap().arch.name,
        "net",
        "not read as the zoo's"
    );
    let out = common::cli::ok(&[
        "quantize",
        "--model",
        &net,
        "--calib",
        "noise",
        "--per-class",
        "2",
        "--algorithm",
        "accuracy-aware",
        "--max-drop",
        "0.05",
        "--quiet",
        "-o",
        &q,
    ]);
    assert!(out.contains("accuracy-aware: calibration top-1"), "{out}");
    synthcal::QuantizedModel::load(&q).unwrap();
    let data = shared.join("data/cifar-10-batches-bin");
    common::cli::ok(&[
        "reproduce",
        "--models",
        &net,
        "--sources",
        "noise",
        "--per-class",
        "1",
        "--limit",
        "16",
        "--data",
        data.to_str().unwrap(),
        "--quiet",
        "-o",
        &rep,
    ]);
    let md = std::fs::read_to_string(dir.0.join("rep/report.md")).unwrap();
    assert!(md.contains("net.onnx | noise | default | w8a8 |"), "{md}");
}
