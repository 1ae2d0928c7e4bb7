//! INT8 models as QDQ ONNX and back: exact round trips, ONNX Runtime on the exported file,
//! malformed QDQ files, and a model from ONNX Runtime's `quantize_static` (when
//! `SYNTHCAL_ORT_PYTHON` names a Python with onnxruntime).

mod common;

use prost::Message;
use synthcal::onnx::{self, proto};
use synthcal::quant::QuantizedModel;
use synthcal::{Model, QuantOptions};

use common::ort;
use common::random_images as images;

fn quantized(arch: &str, opts: &QuantOptions) -> QuantizedModel {
    let m = Model::random(arch, 3).unwrap();
    let source = synthcal::CalibSource::Noise {
        per_class: 1,
        seed: 0,
    };
    synthcal::quantize(&common::gpu(), &m, &source, opts).unwrap()
}

/// INT8 -> QDQ -> import: the same layers (weights, scales, zero points, the same int32
/// biases after requantization), the same graph, and bit-identical logits.
#[test]
fn int8_models_round_trip_through_qdq_exactly() {
    common::skip_without_gpu!();
    let per_channel = QuantOptions {
        depthwise_per_channel: true,
        ..Default::default()
    };
    let cases = [
        ("resnet20", QuantOptions::default()),
        ("akamaster_resnet20", QuantOptions::default()),
        ("mobilenetv2_x0_5", per_channel),
        ("shufflenetv2_x0_5", QuantOptions::default()),
    ];
    let gpu = common::gpu();
    for (arch, opts) in cases {
        let mut qm = quantized(arch, &opts);
        // A layer kept in FP32 stays float, and a nonzero zero point travels.
        let fp32 = *qm.layers.keys().nth(1).unwrap();
        qm = qm.clone_without(fp32);
        let first = *qm.layers.keys().next().unwrap();
        let l = qm.layers.get_mut(&first).unwrap();
        l.input = l
            .input
            .with_zero_point(if l.input.unsigned { 7 } else { -5 });
        let back = onnx::import_qdq(&onnx::export_qdq(&qm).unwrap(), "x").unwrap();
        assert_eq!(back.graph.nodes.len(), qm.graph.nodes.len(), "{arch}");
        assert_eq!(
            back.layers.keys().collect::<Vec<_>>(),
            qm.layers.keys().collect::<Vec<_>>(),
            "{arch}"
        );
        assert!(!back.layers.contains_key(&fp32), "{arch}");
        for (k, a) in &qm.layers {
            let b = &back.layers[k];
            assert_eq!(a.weights, b.weights, "{arch} layer {k}");
            assert_eq!(a.input, b.input, "{arch} layer {k}");
            assert_eq!(a.input_channel_scales, b.input_channel_scales, "{arch} {k}");
            assert_eq!(
                (a.act, a.stride, a.pad, a.groups),
                (b.act, b.stride, b.pad, b.groups)
            );
            assert_eq!(
                a.requant().unwrap(),
                b.requant().unwrap(),
                "{arch} layer {k}"
            );
        }
        if arch == "mobilenetv2_x0_5" {
            assert!(back
                .layers
                .values()
                .any(|l| l.input_channel_scales.is_some()));
        }
        let x = images(3, 5);
        let (p, q) = (
            qm.predict(&gpu, &x).unwrap(),
            back.predict(&gpu, &x).unwrap(),
        );
        assert_eq!(p.values(), q.values(), "{arch}");
        // The int8 values (adds, pools, ...) travel as Q/DQ pairs and run in int8 again.
        let ran = |m: &QuantizedModel| m.runner(&gpu).unwrap().int8_nodes();
        assert!(!back.values.is_empty(), "{arch}");
        assert_eq!(ran(&back), ran(&qm), "{arch}");
        assert_eq!(back.norm, qm.norm);
        assert_eq!(back.class_names, qm.class_names);
    }
}

fn qdq_proto() -> proto::ModelProto {
    let qm = quantized("resnet20", &QuantOptions::default());
    proto::ModelProto::decode(&onnx::export_qdq(&qm).unwrap()[..]).unwrap()
}

fn init<'a>(p: &'a mut proto::ModelProto, name: &str) -> &'a mut proto::TensorProto {
    p.graph
        .as_mut()
        .unwrap()
        .initializer
        .iter_mut()
        .find(|t| t.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no initializer {name}"))
}

fn qdq_err(p: &proto::ModelProto) -> String {
    onnx::import_qdq(&p.encode_to_vec(), "bad")
        .err()
        .expect("import should fail")
        .to_string()
}

#[test]
fn malformed_qdq_files_are_refused_by_name() {
    // A zero point outside uint8.
    let mut p = qdq_proto();
    let z = init(&mut p, "layer1.0.conv1:x_zero_point");
    z.raw_data = None;
    z.int32_data = vec![300];
    let e = qdq_err(&p);
    assert!(
        e.contains("layer1.0.conv1:x_zero_point") && e.contains("300"),
        "{e}"
    );
    // A scale of 0.
    let mut p = qdq_proto();
    init(&mut p, "layer1.0.conv1:x_scale").raw_data = Some(0f32.to_le_bytes().to_vec());
    let e = qdq_err(&p);
    assert!(
        e.contains("layer1.0.conv1:dequantize") && e.contains("scale 0 "),
        "{e}"
    );
    // An empty scale (and zero point) indexed nothing before it panicked.
    let mut p = qdq_proto();
    for name in ["layer1.0.conv1:x_scale", "layer1.0.conv1:x_zero_point"] {
        let t = init(&mut p, name);
        (t.dims, t.raw_data, t.int32_data) = (vec![0], Some(vec![]), vec![]);
    }
    let e = qdq_err(&p);
    assert!(
        e.contains("layer1.0.conv1:x_scale") && e.contains("empty"),
        "{e}"
    );
    // Weights that are not int8.
    let mut p = qdq_proto();
    let w = init(&mut p, "layer1.0.conv1.qweight");
    w.data_type = Some(2);
    let z = init(&mut p, "layer1.0.conv1.weight:zero_point");
    z.data_type = Some(2);
    let e = qdq_err(&p);
    assert!(
        e.contains("layer1.0.conv1") && e.contains("is not int8"),
        "{e}"
    );
    // An FP32 file is not an INT8 model, and a QDQ file is not an FP32 one.
    let fp32 = onnx::export(&Model::random("resnet20", 1).unwrap()).unwrap();
    let e = onnx::import_qdq(&fp32, "f").err().unwrap().to_string();
    assert!(e.contains("an FP32 model"), "{e}");
    let e = onnx::import(&qdq_proto().encode_to_vec(), "q")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("QDQ") && e.contains("INT8"), "{e}");
}

/// A depthwise input's per-channel scales must be one per channel: with fewer, the bias's
/// exact conversion indexed past them (a panic) before their count was checked.
#[test]
fn per_channel_input_scales_are_counted_before_use() {
    common::skip_without_gpu!();
    let opts = QuantOptions {
        depthwise_per_channel: true,
        ..QuantOptions::default()
    };
    let qm = quantized("mobilenetv2_x0_5", &opts);
    let mut p = proto::ModelProto::decode(&onnx::export_qdq(&qm).unwrap()[..]).unwrap();
    let graph = p.graph.as_mut().unwrap();
    let scale = (graph.initializer.iter_mut())
        .find(|t| t.name.as_deref().is_some_and(|n| n.ends_with(":x_scale")) && t.dims.len() == 1)
        .expect("a per-channel input scale");
    let name = scale.name.clone().unwrap();
    scale.dims = vec![2];
    scale.raw_data.as_mut().unwrap().truncate(8);
    let zp = name.replace(":x_scale", ":x_zero_point");
    let zp = (graph.initializer.iter_mut())
        .find(|t| t.name.as_deref() == Some(zp.as_str()))
        .expect("its zero point");
    zp.dims = vec![2];
    zp.raw_data.as_mut().unwrap().truncate(2);
    let e = qdq_err(&p);
    assert!(e.contains("2 per-channel input scales"), "{e}");
}

/// ONNX Runtime on `file` against `qm` on 32 seeded images; the as-written run agrees
/// within 2% of the largest logit (rounding-order flips carried through 20 layers).
fn ort_vs_synthcal(
    py: &std::ffi::OsString,
    qm: &QuantizedModel,
    file: &std::path::Path,
    seed: u64,
) -> ort::Comparison {
    let x = images(32, seed);
    let input = x.to_f32_normalized(0..x.len(), &qm.norm.mean, &qm.norm.std);
    let ours = qm.predict(&common::gpu(), &x).unwrap();
    let c = ort::compare(py, file, &input, ours.values(), 10);
    eprintln!("ORT vs synthcal on {}: {c:?}", file.display());
    assert!(c.written <= 0.02 * c.scale, "as written: {c:?}");
    c
}

/// ONNX Runtime runs the exported QDQ file like synthcal's INT8 kernels: as the file states
/// it, up to rounding order (a value on a rounding boundary lands on either side, and 20
/// layers carry it on); with its fused integer kernels, in top-1, and in the logits where
/// they cannot saturate (7-bit weights, or a CPU with VNNI).
#[test]
fn onnx_runtime_runs_exported_qdq_like_synthcal() {
    common::skip_without_gpu!();
    let Some(py) = ort::python() else { return };
    let dir = std::env::temp_dir().join(format!("synthcal-qdq-ort-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for wbits in [8, 7] {
        let qm = quantized(
            "resnet20",
            &QuantOptions {
                wbits,
                ..QuantOptions::default()
            },
        );
        let model = dir.join(format!("q{wbits}.onnx"));
        onnx::write_qdq(&qm, &model).unwrap();
        let c = ort_vs_synthcal(&py, &qm, &model, 9);
        assert!(c.agree >= 29, "W{wbits}A8: {c:?}");
        if wbits == 7 || !ort::fused_may_saturate() {
            assert!(c.fused <= 0.05 * c.scale, "fused: {c:?}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A ResNet-20 quantized by ONNX Runtime's `quantize_static` (per channel, MinMax, a few
/// random calibration images) loads as an INT8 model and agrees with ONNX Runtime.
#[test]
fn onnx_runtime_quantize_static_models_import() {
    common::skip_without_gpu!();
    let Some(py) = ort::python() else { return };
    let has_quant = std::process::Command::new(&py)
        .args(["-c", "import onnxruntime.quantization, onnx"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_quant {
        common::skip("the test Python lacks onnxruntime.quantization or onnx");
        return;
    }
    let dir = std::env::temp_dir().join(format!("synthcal-qdq-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let m = Model::random("akamaster_resnet20", 4).unwrap();
    let (fp32, q) = (dir.join("m.onnx"), dir.join("q.onnx"));
    onnx::write(&m, &fp32).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tools/ort-quantize.py");
    let st = std::process::Command::new(&py)
        .args([script.as_ref(), fp32.as_os_str(), q.as_os_str()])
        .args(["--random", "16"])
        .status()
        .unwrap();
    assert!(st.success(), "{st}");
    let qm = QuantizedModel::load(&q).unwrap();
    assert!(qm.layers.len() >= 19, "{} INT8 layers", qm.layers.len());
    // The file rounds residual adds, the pooled features and the logits: so does synthcal.
    let ran = qm.runner(&common::gpu()).unwrap().int8_nodes();
    let g = &qm.graph;
    let adds: Vec<usize> = (0..g.nodes.len())
        .filter(|&i| matches!(g.nodes[i].op, synthcal::graph::Op::Add { .. }))
        .collect();
    assert_eq!(adds.len(), 9);
    assert!(adds.iter().all(|a| ran.contains(a)), "{ran:?}");
    assert!(qm.values.contains_key(&g.output));
    let c = ort_vs_synthcal(&py, &qm, &q, 21);
    assert!(c.agree >= 28, "{c:?}");
    std::fs::remove_dir_all(&dir).ok();
}
