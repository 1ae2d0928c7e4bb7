//! INT8 quantization end to end with random weights: the GPU integer path agrees with the CPU
//! integer simulation, files round-trip, and bad input is refused.

mod common;

use synthcal::array::Array;
use synthcal::cli::calib_data::CalibSetArgs;
use synthcal::data::Dataset;
use synthcal::graph::profile::Method;
use synthcal::models::{arch, random_params, Model};
use synthcal::quant::{default_quantization, Int8Ops, QuantOptions, QuantizedModel};

fn noise_set(n: usize, seed: u64) -> Dataset {
    let px: Vec<u8> = Array::random(&[n * 3072], seed)
        .data
        .iter()
        .map(|v| ((v + 1.0) * 127.5) as u8)
        .collect();
    let names = synthcal::models::CIFAR10_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    Dataset::new(
        px,
        (0..n).map(|i| (i % 10) as u16).collect(),
        names,
        "noise",
    )
    .unwrap()
}

fn quantized(name: &str) -> (Model, QuantizedModel) {
    let gpu = common::gpu();
    let a = arch(name).unwrap();
    let p = random_params(&a, 3);
    let model = Model::new(a, p).unwrap();
    let opts = QuantOptions {
        bias_subset: 20,
        batch: 10,
        depthwise_per_channel: true,
        ..Default::default()
    };
    let q = default_quantization(&gpu, &model, &noise_set(40, 5), &opts).unwrap();
    (model, q)
}

fn gpu_logits(q: &QuantizedModel, x: &Array) -> Vec<f32> {
    let gpu = common::gpu();
    q.runner(&gpu)
        .unwrap()
        .logits(&x.data, x.shape[0], [32, 32])
        .unwrap()
}

fn quantized_with(name: &str, int8_ops: Int8Ops) -> QuantizedModel {
    let gpu = common::gpu();
    let a = arch(name).unwrap();
    let model = Model::new(a.clone(), random_params(&a, 3)).unwrap();
    let opts = QuantOptions {
        bias_subset: 20,
        batch: 10,
        depthwise_per_channel: true,
        int8_ops,
        ..Default::default()
    };
    default_quantization(&gpu, &model, &noise_set(40, 5), &opts).unwrap()
}

/// End to end (the default): every node but the input computes on int8 data (residual adds,
/// option-A shortcuts, max and global-average pooling, concat, slices, shuffles, flatten), and the
/// GPU's logits equal the CPU integer reference's bit for bit, since no f32 op is left to
/// round differently.
#[test]
fn gpu_int8_matches_cpu_simulation() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    for name in [
        "akamaster_resnet20",
        "resnet20",
        "shufflenetv2_x0_5",
        "mobilenetv2_x0_5",
        // Its Flatten (of a max pool's 1x1 map) feeds the classifier in int8.
        "vgg11_bn",
    ] {
        let q = quantized_with(name, Int8Ops::All);
        assert!(!q.layers.is_empty() && !q.values.is_empty());
        // Chaining is derived, not stored: ResNet blocks' conv1 -> conv2 requantize directly.
        let layers = q.layers.iter().map(|(k, v)| (*k, v.clone())).collect();
        let chained = q.graph.chain_quantized(&layers);
        let n = chained.values().filter(|l| l.output.is_some()).count();
        assert!(q.layers.values().all(|l| l.output.is_none()));
        if name == "akamaster_resnet20" {
            assert_eq!(n, 9, "{name}: one chained conv per residual block");
        }
        if name.starts_with("shufflenet") {
            // Depthwise inputs are quantized per channel (dequantized and requantized).
            assert!(q.layers.values().any(|l| l.input_channel_scales.is_some()));
        }
        let all: Vec<usize> = (1..q.graph.nodes.len()).collect();
        let runner = q.runner(&gpu).unwrap();
        assert_eq!(runner.int8_nodes(), all, "{name}");
        // Every int8 conv kernel (Winograd or direct) takes in the residual add it alone
        // feeds: all nine of ResNet-20's blocks (the two option-A or 1x1-conv shortcuts run
        // before their block's second conv), MobileNetV2's projections.
        let fused = all
            .iter()
            .filter(|&&i| runner.fused_add(i).is_some())
            .count();
        if name.ends_with("resnet20") {
            assert_eq!(fused, 9, "{name}: fused residual adds");
        }
        // 64 images: on CPU adapters every ResNet-20 map is large enough for the Winograd form
        // (4,096 output pixels per call); 3 images keep the direct kernels.
        let sizes: &[usize] = if name.ends_with("resnet20") {
            &[64, 3]
        } else {
            &[3]
        };
        for &n in sizes {
            let x = Array::random(&[n, 3, 32, 32], 11);
            let got = gpu_logits(&q, &x);
            let want = q.cpu_logits(&x).unwrap();
            assert!(
                got.iter()
                    .zip(&want.data)
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: GPU and CPU integer logits differ at batch {n}"
            );
        }
        let n = sizes[0];
        let x = Array::random(&[n, 3, 32, 32], 11);
        if fused > 0 && gpu.has_timestamps() {
            // The profile times each node as it ran: the shortcuts run before their conv.
            let p = runner
                .profile_with(&x.data, n, [32, 32], 1, Method::GpuTimestamps)
                .unwrap();
            let fused_rows = p.layers.iter().filter(|l| l.op == "conv+add int8");
            assert_eq!(fused_rows.count(), fused, "{name}");
            for l in p.layers.iter().filter(|l| l.name.ends_with("shortcut")) {
                assert!(l.ms > 0.0, "{name}: {} timed {} ms", l.name, l.ms);
            }
        }
    }
}

/// Conv and linear layers only: adds and pooling run in f32, which may round differently on
/// the GPU and move a later input by one quantization step: close, not bit-equal.
#[test]
fn int8_layers_only_stays_the_mixed_scheme() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let q = quantized_with("akamaster_resnet20", Int8Ops::Layers);
    assert!(q.values.is_empty());
    let runner = q.runner(&gpu).unwrap();
    let ran = runner.int8_nodes();
    assert!(ran.iter().all(|&i| q.layers.contains_key(&i)), "{ran:?}");
    let x = Array::random(&[3, 3, 32, 32], 11);
    let got = gpu_logits(&q, &x);
    let want = q.cpu_logits(&x).unwrap();
    let scale = want.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
    let err = got
        .iter()
        .zip(&want.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(err / scale < 2e-2, "max diff {err} (logit scale {scale})");
}

#[test]
fn int8_files_round_trip() {
    common::skip_without_gpu!();
    let (_, q) = quantized("resnet20");
    let dir = std::env::temp_dir().join(format!("synthcal-q-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    q.save(&path).unwrap();
    let back = QuantizedModel::load(&path).unwrap();
    assert_eq!(back.layers, q.layers);
    assert!(!q.values.is_empty());
    assert_eq!(back.values, q.values);
    let x = Array::random(&[2, 3, 32, 32], 4);
    assert_eq!(gpu_logits(&back, &x), gpu_logits(&q, &x));

    // A file whose metadata names a tensor that is not there is refused, naming it.
    let (tensors, mut meta) = synthcal::io::read_safetensors(&path).unwrap();
    let kept: Vec<_> = tensors
        .into_iter()
        .filter(|(n, _)| !n.ends_with("conv1.qweight"))
        .collect();
    meta.insert("note".into(), "tampered".into());
    let bad = dir.join("bad.safetensors");
    synthcal::io::write_tensor_data(&bad, &kept, &meta).unwrap();
    let e = QuantizedModel::load(&bad)
        .err()
        .expect("tampered file must not load")
        .to_string();
    assert!(e.contains("conv1.qweight"), "{e}");
    // So is a value format that cannot be stored.
    let (tensors, mut meta) = synthcal::io::read_safetensors(&path).unwrap();
    let vf = meta["value_formats"].replacen("\"scale\":", "\"scale\":-", 1);
    meta.insert("value_formats".into(), vf);
    synthcal::io::write_tensor_data(&bad, &tensors, &meta).unwrap();
    let e = QuantizedModel::load(&bad)
        .err()
        .expect("negative scale")
        .to_string();
    assert!(
        e.contains("value format of node") && e.contains("scale"),
        "{e}"
    );
    // Per-channel depthwise scales survive the file.
    let (_, qs) = quantized("shufflenetv2_x0_5");
    let p2 = dir.join("s.safetensors");
    qs.save(&p2).unwrap();
    assert_eq!(QuantizedModel::load(&p2).unwrap().layers, qs.layers);
    std::fs::remove_dir_all(&dir).ok();
}

/// W4A4 with the ends at 8 bits: the widths are as asked and reported, 4-bit weights are
/// stored two per byte and round-trip, the GPU agrees with the CPU integer reference, and a
/// file with a bad width or a short packed tensor is refused, naming the file and tensor.
#[test]
fn low_bit_models_are_packed_and_validated() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let a = arch("resnet20").unwrap();
    let model = Model::new(a.clone(), random_params(&a, 3)).unwrap();
    let opts = QuantOptions {
        bias_subset: 20,
        batch: 10,
        wbits: 4,
        abits: 4,
        ends_at_8bit: true,
        estimator: synthcal::quant::RangeEstimator::Mse,
        weight_range: synthcal::quant::WeightRange::Mse,
        ..Default::default()
    };
    let q = default_quantization(&gpu, &model, &noise_set(40, 5), &opts).unwrap();
    let bits = q.layer_bits();
    let n = bits.len();
    assert!(n > 2);
    for (k, b) in bits.iter().enumerate() {
        let want = if k == 0 || k + 1 == n { 8 } else { 4 };
        assert_eq!((b.weights, b.inputs), (want, want), "{}", b.name);
    }
    for l in q.layers.values().filter(|l| l.weights.bits == 4) {
        assert!(l.weights.q.iter().all(|v| v.abs() <= 7));
        assert_eq!(l.input.range().1 - l.input.range().0, 15);
    }
    let x = Array::random(&[2, 3, 32, 32], 11);
    let (got, want) = (gpu_logits(&q, &x), q.cpu_logits(&x).unwrap());
    assert!(
        got.iter()
            .zip(&want.data)
            .all(|(a, b)| a.to_bits() == b.to_bits()),
        "GPU and CPU integer logits differ"
    );

    let dir = std::env::temp_dir().join(format!("synthcal-q4-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("m.safetensors");
    q.save(&path).unwrap();
    let back = QuantizedModel::load(&path).unwrap();
    assert_eq!(back.layers, q.layers);
    assert_eq!(back.layer_bits(), bits);
    let (tensors, meta) = synthcal::io::read_safetensors(&path).unwrap();
    let name = &bits[1].name;
    let packed = format!("{name}.qweight_packed");
    let numel: usize = q.layers.values().nth(1).unwrap().weights.q.len();
    let t = &tensors
        .iter()
        .find(|(n, _)| *n == packed)
        .expect("packed")
        .1;
    assert_eq!(t.shape, [numel.div_ceil(2)]);
    assert!(!tensors.iter().any(|(n, _)| *n == format!("{name}.qweight")));
    assert!(tensors
        .iter()
        .any(|(n, _)| *n == format!("{}.qweight", bits[0].name)));

    // One byte short.
    let short: Vec<_> = tensors
        .iter()
        .cloned()
        .map(|(n, mut t)| {
            if n == packed {
                if let synthcal::io::TensorValues::I8(v) = &mut t.values {
                    v.pop();
                }
                t.shape[0] -= 1;
            }
            (n, t)
        })
        .collect();
    let bad = dir.join("short.safetensors");
    synthcal::io::write_tensor_data(&bad, &short, &meta).unwrap();
    let e = QuantizedModel::load(&bad).err().expect("short").to_string();
    assert!(
        e.contains("short.safetensors") && e.contains("qweight_packed"),
        "{e}"
    );
    // A width the kernels do not have.
    let mut m9 = meta.clone();
    let layers = m9["layers"].replacen("\"weight_bits\":4", "\"weight_bits\":9", 1);
    assert_ne!(layers, m9["layers"]);
    m9.insert("layers".into(), layers);
    let bad = dir.join("nine.safetensors");
    synthcal::io::write_tensor_data(&bad, &tensors, &m9).unwrap();
    let e = QuantizedModel::load(&bad)
        .err()
        .expect("9 bits")
        .to_string();
    assert!(
        e.contains("nine.safetensors") && e.contains("9 bits per weight"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// `add_bits`: at W4A4 every layer's weights and input stay 4-bit while the values that only
/// residual adds read (each block's last conv output) take 8 bits; the integer path stays
/// bit-exact against the CPU reference.
#[test]
fn add_inputs_take_their_own_width() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let a = arch("akamaster_resnet20").unwrap();
    let model = Model::new(a.clone(), random_params(&a, 3)).unwrap();
    let steps = |add_bits: Option<u32>| {
        let opts = QuantOptions {
            bias_subset: 20,
            batch: 10,
            wbits: 4,
            abits: 4,
            add_bits,
            ..Default::default()
        };
        let q = default_quantization(&gpu, &model, &noise_set(40, 5), &opts).unwrap();
        for l in q.layers.values() {
            assert_eq!(l.input.range().1 - l.input.range().0, 15);
        }
        let g = &q.graph;
        let conv_into_add: Vec<usize> = (0..g.nodes.len())
            .filter(|&i| matches!(g.nodes[i].op, synthcal::graph::Op::Add { .. }))
            .flat_map(|i| g.nodes[i].inputs.clone())
            .filter(|v| q.layers.contains_key(v))
            // The stem's output is also the first block's conv1 input, so at its width.
            .filter(|v| !q.layers.keys().any(|&l| g.nodes[l].inputs[0] == *v))
            .collect();
        assert_eq!(conv_into_add.len(), 9, "one per residual block");
        let x = Array::random(&[2, 3, 32, 32], 11);
        let (got, want) = (gpu_logits(&q, &x), q.cpu_logits(&x).unwrap());
        assert!(
            got.iter()
                .zip(&want.data)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "GPU and CPU integer logits differ"
        );
        conv_into_add
            .iter()
            .map(|v| q.values[v].range().1 - q.values[v].range().0)
            .collect::<Vec<_>>()
    };
    assert!(steps(None).iter().all(|&s| s == 15));
    assert!(steps(Some(8)).iter().all(|&s| s == 255));
}

/// W4A4 with every layer 4-bit: the GPU runner holds the weights as nibbles (half the bytes of
/// one per byte) and its logits equal, bit for bit, those of the same model on byte weights.
#[test]
fn low_bit_nibble_weights_match_byte_weights() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let a = arch("resnet20").unwrap();
    let model = Model::new(a.clone(), random_params(&a, 4)).unwrap();
    let opts = QuantOptions {
        bias_subset: 20,
        batch: 10,
        wbits: 4,
        abits: 4,
        ..Default::default()
    };
    let q = default_quantization(&gpu, &model, &noise_set(40, 6), &opts).unwrap();
    assert!(
        q.layer_bits().iter().all(|b| b.weights == 4),
        "{:?}",
        q.layer_bits()
    );
    let x = Array::random(&[8, 3, 32, 32], 12);
    let mut r = q.runner(&gpu).unwrap();
    let nibbles = r.logits(&x.data, 8, [32, 32]).unwrap();
    let nibble_bytes = r.int8_weight_bytes();
    r.use_byte_weights().unwrap();
    let bytes = r.logits(&x.data, 8, [32, 32]).unwrap();
    assert_eq!(nibble_bytes * 2, r.int8_weight_bytes());
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&nibbles), bits(&bytes));
    let top = |v: &[f32]| -> Vec<usize> {
        v.chunks(10)
            .map(|r| (0..10).max_by(|&i, &j| r[i].total_cmp(&r[j])).unwrap())
            .collect()
    };
    assert_eq!(top(&nibbles), top(&bytes));
}

#[test]
fn bad_calibration_sets_are_refused() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let a = arch("akamaster_resnet20").unwrap();
    let model = Model::new(a, random_params(&arch("akamaster_resnet20").unwrap(), 1)).unwrap();
    let empty = noise_set(10, 1).subset(&[]).unwrap();
    let e = default_quantization(&gpu, &model, &empty, &QuantOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("empty"), "{e}");
    let names: Vec<String> = (0..3).map(|i| format!("c{i}")).collect();
    let three = Dataset::new(vec![0; 3 * 3072], vec![0, 1, 2], names, "x").unwrap();
    let e = default_quantization(&gpu, &model, &three, &QuantOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("classes"), "{e}");
    // Images of another size than the model's input.
    let images = synthcal::Images::new(vec![0; 2 * 3 * 40 * 40], 40, 40).unwrap();
    let names = model.class_names.clone();
    let big = Dataset::from_images(images, vec![0, 1], names, "big").unwrap();
    let e = default_quantization(&gpu, &model, &big, &QuantOptions::default())
        .err()
        .unwrap();
    assert!(e.to_string().contains("40x40"), "{e}");
}

/// A three-layer net small enough to run AccuracyAware's search in a test.
fn tiny_model() -> Model {
    use synthcal::graph::Act;
    use synthcal::models::{cifar_norm, Arch, Builder, ConvSpec};
    let mut b = Builder::default();
    let x = b.input();
    let x = b.conv_bn("c1", "b1", x, &ConvSpec::same(3, 8, 3, 2), Act::Relu);
    let x = b.conv_bn("c2", "b2", x, &ConvSpec::same(8, 16, 3, 2), Act::Relu);
    let x = b.gap(x);
    b.linear("fc", x, 16, 10, Act::Identity);
    let a = Arch {
        name: "tiny".into(),
        graph: b.g,
        expected: b.shapes,
        norm: cifar_norm(),
        input_channels: 3,
        input_size: [32, 32],
    };
    let p = random_params(&a, 9);
    Model::new(a, p).unwrap()
}

#[test]
fn accuracy_aware_reverts_until_within_limit() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let model = tiny_model();
    let calib = noise_set(60, 2);
    let opts = QuantOptions {
        batch: 30,
        ..Default::default()
    };
    // A generous limit keeps the DefaultQuantization result.
    let (q, r) = synthcal::quant::accuracy_aware(&gpu, &model, &calib, &opts, 0.999).unwrap();
    assert!(r.reverted.is_empty() && q.layers.len() == 3);
    // A negative limit is refused (it once reverted every layer).
    assert!(synthcal::quant::accuracy_aware(&gpu, &model, &calib, &opts, -1.0).is_err());
    // No drop allowed: layers are reverted or refused until the FP32 accuracy is met or
    // every layer but the last INT8 one has been tried.
    let (q, r) = synthcal::quant::accuracy_aware(&gpu, &model, &calib, &opts, 0.0).unwrap();
    assert!(!q.layers.is_empty(), "{r:?}");
    assert_eq!(q.layers.len(), 3 - r.reverted.len());
    assert!(
        r.final_top1 >= r.fp32_top1 || r.reverted.len() + r.rejected.len() >= 2,
        "{r:?}"
    );
    assert!(r.final_top1 >= r.default_top1, "{r:?}");
    assert_eq!(q.fp32_layers().len(), r.reverted.len());
}

#[test]
fn diagnose_reports_every_quantized_layer() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let (model, q) = quantized("akamaster_resnet20");
    let ds = noise_set(30, 8);
    // As loaded from a file: without the FP32 weights of its INT8 layers.
    let p = std::env::temp_dir().join(format!("synthcal-diag-{}.safetensors", std::process::id()));
    q.save(&p).unwrap();
    let q = QuantizedModel::load(&p).unwrap();
    std::fs::remove_file(&p).ok();
    let d =
        synthcal::eval::diagnose::diagnose(&gpu, &model, &q, &ds, 20, &Default::default()).unwrap();
    assert_eq!(d.layers.len(), q.layers.len());
    assert_eq!(d.worst.len(), q.layers.len());
    for l in &d.layers {
        // 8-bit weights: ~40-50 dB; outputs carry accumulated error but stay positive.
        assert!(
            l.weight_sqnr_db > 30.0,
            "{} weights {}",
            l.name,
            l.weight_sqnr_db
        );
        assert!(
            l.output_sqnr_db > 0.0,
            "{} output {}",
            l.name,
            l.output_sqnr_db
        );
        assert!((0.0..=100.0).contains(&l.clipped_pct));
        assert!(l.observed[0] <= l.observed[1]);
    }
    // Reverting the most harmful layer lowers the logit RMSE below the all-INT8 model's.
    let best = d
        .layers
        .iter()
        .map(|l| l.revert_rmse)
        .fold(f64::INFINITY, f64::min);
    assert!(best < d.base_rmse, "{best} vs {}", d.base_rmse);
    // The plot is a PNG.
    let p = std::env::temp_dir().join(format!("synthcal-diag-{}.png", std::process::id()));
    synthcal::eval::diagnose::plot(&d, &p).unwrap();
    assert!(image::open(&p).is_ok());
    std::fs::remove_file(&p).ok();
    // A model the INT8 file was not made from is refused.
    let other = Model::new(
        arch("resnet56").unwrap(),
        random_params(&arch("resnet56").unwrap(), 1),
    )
    .unwrap();
    assert!(
        synthcal::eval::diagnose::diagnose(&gpu, &other, &q, &ds, 20, &Default::default()).is_err()
    );
    // At 4-bit activations the used range is the 4-bit one, and the inputs beyond it count as
    // clipped (an 8-bit range there hid all clipping).
    let opts = QuantOptions {
        wbits: 4,
        abits: 4,
        ..QuantOptions::default()
    };
    let q4 = synthcal::quant::default_quantization(&gpu, &model, &ds, &opts).unwrap();
    let d4 = synthcal::eval::diagnose::diagnose(&gpu, &model, &q4, &ds, 20, &Default::default())
        .unwrap();
    for (l, f) in d4.layers.iter().zip(q4.layers.values().map(|l| l.input)) {
        let steps = (l.range[1] - l.range[0]) / f.scale;
        assert!(
            (steps - 15.0).abs() < 1e-3,
            "{}: {:?} is {steps} steps",
            l.name,
            l.range
        );
    }
    assert!(
        d4.layers.iter().any(|l| l.clipped_pct > 0.0),
        "{:?}",
        d4.layers
    );
}

#[test]
fn noise_calibration_source_is_seeded() {
    let a = synthcal::calib::noise_images(20, 4).unwrap();
    let b = synthcal::calib::noise_images(20, 4).unwrap();
    let c = synthcal::calib::noise_images(20, 5).unwrap();
    assert_eq!(a.pixels(), b.pixels());
    assert_ne!(a.pixels(), c.pixels());
    assert_eq!(a.class_counts(), vec![2; 10]);
}

#[test]
fn fractal_source_is_seeded_balanced_and_written_by_calib_data() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let hooks = Default::default();
    let set = |seed| {
        let source = synthcal::calib::CalibSource::Fractal { per_class: 3, seed };
        source.load(&gpu, None, &hooks).unwrap()
    };
    let (a, b, c) = (set(1), set(1), set(2));
    assert_eq!(a.pixels(), b.pixels());
    assert_ne!(a.pixels(), c.pixels());
    assert_eq!(a.class_counts(), vec![3; 10]);
    // Not a flat colour: the fractal is drawn over the background.
    let img = a.image(0);
    let (lo, hi) = (img.iter().min().unwrap(), img.iter().max().unwrap());
    assert!(hi - lo > 40, "image 0 spans only {lo}..{hi}");
    let dir = std::env::temp_dir().join(format!("synthcal-calibdata-{}", std::process::id()));
    let args = synthcal::cli::calib_data::CalibDataArgs {
        source: "fractal".into(),
        output: dir.clone(),
        set: CalibSetArgs {
            data: None,
            per_class: 3,
            seed: 1,
        },
        model: None,
        grid: Some(dir.join("grid.png")),
        quiet: true,
    };
    synthcal::cli::calib_data::run(&gpu, &args).unwrap();
    let back =
        synthcal::data::load_image_folder(&dir, synthcal::data::ResizePolicy::Reject).unwrap();
    assert_eq!(back.pixels(), a.pixels());
    assert!(dir.join("grid.png").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn reproduce_writes_the_report_and_resumes() {
    common::skip_without_gpu!();
    use synthcal::cli::reproduce::{run, ReproduceArgs};
    let gpu = common::gpu();
    let dir = std::env::temp_dir().join(format!("synthcal-repro-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("cifar");
    std::fs::create_dir_all(&data).unwrap();
    // 40 test images in the official record format, padded to the official 10,000 records
    // (--limit keeps the 40).
    let ds = noise_set(40, 12);
    let mut bin = Vec::new();
    for i in 0..ds.len() {
        bin.push(ds.labels()[i] as u8);
        bin.extend_from_slice(ds.image(i));
    }
    bin.resize(10_000 * 3073, 0);
    std::fs::write(data.join("test_batch.bin"), &bin).unwrap();
    // A random-weight ResNet-20 as a weights file.
    let model = dir.join("r20.safetensors");
    common::write_random_model("akamaster_resnet20", 2, &model);
    let args = ReproduceArgs {
        models: vec![model.display().to_string()],
        sources: vec!["noise".into()],
        algorithms: vec!["default".into()],
        bits: vec![synthcal::cli::reproduce::parse_bits("8").unwrap()],
        estimators: vec!["pot".into()],
        first_last_8bit: false,
        add_bits: None,
        iters: None,
        set: CalibSetArgs {
            data: Some(data.clone()),
            per_class: 3,
            seed: 0,
        },
        max_drop: 0.01,
        limit: Some(40),
        output: dir.join("report"),
        quiet: true,
    };
    run(&gpu, &args).unwrap();
    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    assert!(md.contains("| noise | default |"), "{md}");
    assert!(md.contains("cls FID"), "{md}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/report.json")).unwrap()).unwrap();
    let q = &j[0]["quality"];
    assert!(q["classifier_fid"].as_f64().unwrap() >= 0.0, "{q}");
    let score = q["classifier_score"].as_f64().unwrap();
    assert!((1.0..=10.0 + 1e-9).contains(&score), "{q}");
    for f in [
        "report.json",
        "report.csv",
        "drops.png",
        "drops.svg",
        "samples_noise.png",
    ] {
        assert!(dir.join("report").join(f).exists(), "{f}");
    }
    // A finished cell is reused: mark it and run again.
    let cells = dir.join("report/cells");
    let cell = std::fs::read_dir(&cells)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(&cell).unwrap()).unwrap();
    c["seconds"] = serde_json::json!(-1.0);
    std::fs::write(&cell, serde_json::to_vec(&c).unwrap()).unwrap();
    run(&gpu, &args).unwrap();
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/report.json")).unwrap()).unwrap();
    assert_eq!(j[0]["seconds"], -1.0);
    // Missing data says what to download.
    let e = run(
        &gpu,
        &ReproduceArgs {
            set: CalibSetArgs {
                data: Some(dir.join("nowhere")),
                ..args.set.clone()
            },
            ..args.clone()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("fetch-data.sh"), "{e}");
    // Bit width and estimator are dimensions: a W4A8 min-max cell joins the reused study cell.
    let low = ReproduceArgs {
        bits: vec![synthcal::cli::reproduce::parse_bits("w4a8").unwrap()],
        estimators: vec!["min-max".into()],
        ..args.clone()
    };
    run(&gpu, &low).unwrap();
    let md = std::fs::read_to_string(dir.join("report/report.md")).unwrap();
    assert!(md.contains("| noise | default | w4a8 | min-max |"), "{md}");
    let j: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("report/report.json")).unwrap()).unwrap();
    assert_eq!(
        j.as_array().unwrap().len(),
        1,
        "only this run's cells are reported"
    );
    assert_eq!(std::fs::read_dir(&cells).unwrap().count(), 2);
    // With every cell finished, the report is rebuilt without loading the model.
    std::fs::write(&model, b"not a model").unwrap();
    run(&gpu, &low).unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// The library's one call: `quantize` with a calibration source records its provenance, and
/// the saved model keeps it, its classes and its input size; images of another size are
/// refused by name, and a file claiming a zero-sized input is refused.
#[test]
fn quantize_records_provenance_and_input_size() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let model = Model::random("resnet20", 3).unwrap();
    let source = synthcal::CalibSource::Noise {
        per_class: 2,
        seed: 7,
    };
    let opts = QuantOptions {
        keep_fp32: vec!["fc".into()],
        ..QuantOptions::default()
    };
    let q = synthcal::quantize(&gpu, &model, &source, &opts).unwrap();
    assert_eq!(q.fp32_layers(), ["fc"]);
    let p = q.provenance();
    assert_eq!(p.version.as_deref(), Some(env!("CARGO_PKG_VERSION")));
    let calib = p.calibration.unwrap();
    assert!(
        calib.contains("20 images") && calib.contains("seed 7"),
        "{calib}"
    );
    assert_eq!(p.algorithm.as_deref(), Some("default"));
    assert_eq!(p.bias_correction, Some(true));

    let dir = std::env::temp_dir().join(format!("synthcal-api-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("q.safetensors");
    q.save(&path).unwrap();
    let back = QuantizedModel::load(&path).unwrap();
    assert_eq!(back.provenance(), q.provenance());
    assert_eq!(
        (back.input_size, &back.class_names),
        ([32, 32], &q.class_names)
    );
    let images = synthcal::Images::new(vec![90; 2 * 3 * 32 * 32], 32, 32).unwrap();
    let (a, b) = (
        q.predict(&gpu, &images).unwrap(),
        back.predict(&gpu, &images).unwrap(),
    );
    assert_eq!(a, b);
    let wide = synthcal::Images::new(vec![90; 3 * 32 * 48], 32, 48).unwrap();
    let e = back.predict(&gpu, &wide).unwrap_err().to_string();
    assert!(e.contains("32x32") && e.contains("32x48"), "{e}");

    let (tensors, mut meta) = synthcal::io::read_safetensors(&path).unwrap();
    meta.insert("input_size".into(), "[0, 32]".into());
    let bad = dir.join("bad.safetensors");
    synthcal::io::write_tensor_data(&bad, &tensors, &meta).unwrap();
    let e = QuantizedModel::load(&bad)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        e.contains("bad.safetensors") && e.contains("input_size"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

/// Cancelling the hooks' token stops quantization with `Cancelled`, and progress is reported
/// through the caller's `Progress`.
#[test]
fn quantization_reports_progress_and_can_be_cancelled() {
    common::skip_without_gpu!();
    use std::sync::{Arc, Mutex};
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl synthcal::Progress for Seen {
        fn start(&self, name: &str, total: u64) {
            self.0.lock().unwrap().push(format!("{name} {total}"));
        }
    }
    let gpu = common::gpu();
    let model = Model::random("resnet20", 3).unwrap();
    let calib = noise_set(20, 1);
    let seen = Arc::new(Seen::default());
    let opts = QuantOptions {
        hooks: synthcal::Hooks::new(seen.clone()),
        ..QuantOptions::default()
    };
    default_quantization(&gpu, &model, &calib, &opts).unwrap();
    assert_eq!(*seen.0.lock().unwrap(), ["calibrate 20", "bias corr 20"]);
    let cancel = synthcal::Cancel::new();
    cancel.cancel();
    let opts = QuantOptions {
        hooks: synthcal::Hooks::default().with_cancel(cancel),
        ..QuantOptions::default()
    };
    let e = default_quantization(&gpu, &model, &calib, &opts)
        .err()
        .unwrap();
    assert!(matches!(e, synthcal::Error::Cancelled), "{e}");
}

/// AdaRound on a small random network: every layer's learned rounding reconstructs its FP32
/// output better than round-to-nearest, the result runs, and cancelling stops it.
#[test]
fn adaround_lowers_every_layers_reconstruction_error() {
    common::skip_without_gpu!();
    use synthcal::quant::{AdaRoundOptions, Algorithm, LayerReport};
    let gpu = common::gpu();
    let model = tiny_model();
    let calib = noise_set(64, 3);
    let opts = QuantOptions {
        algorithm: Algorithm::AdaRound,
        wbits: 4,
        batch: 32,
        adaround: AdaRoundOptions {
            iters: 400,
            lr: 1e-2,
            ..Default::default()
        },
        ..Default::default()
    };
    let q = synthcal::quant::quantize_with_set(&gpu, &model, &calib, &opts).unwrap();
    let r: serde_json::Value = serde_json::from_str(&q.meta["adaround"]).unwrap();
    let layers: Vec<LayerReport> = serde_json::from_value(r["layers"].clone()).unwrap();
    assert_eq!(layers.len(), 3);
    for l in &layers {
        eprintln!("{l:?}");
        assert!(l.mse < l.rtn_mse, "{l:?}");
        assert!(l.changed > 0, "{l:?}");
    }
    assert_eq!(q.meta["algorithm"], "adaround");
    assert_eq!(q.meta["bias_correction"], "false");
    let x = Array::random(&[4, 3, 32, 32], 8);
    assert!(gpu_logits(&q, &x).iter().all(|v| v.is_finite()));
    let cancel = synthcal::Cancel::new();
    cancel.cancel();
    let opts = QuantOptions {
        hooks: synthcal::Hooks::default().with_cancel(cancel),
        ..opts
    };
    let e = synthcal::quant::quantize_with_set(&gpu, &model, &calib, &opts)
        .err()
        .unwrap();
    assert!(matches!(e, synthcal::Error::Cancelled), "{e}");
}

/// What an embedding app can get wrong is refused with an error before any long work, never
/// a panic: a zero batch or bias-correction subset (the latter panicked after calibration),
/// an unknown layer to keep in FP32 (reported only after the whole quantization), NaN
/// rounding schedules, distillation learning rates, class counts, fractal point counts and
/// short logits to cross-check.
#[test]
fn bad_library_options_are_refused_up_front() {
    common::skip_without_gpu!();
    let gpu = common::gpu();
    let model = Model::random("resnet20", 3).unwrap();
    let source = synthcal::CalibSource::Noise {
        per_class: 1,
        seed: 0,
    };
    let refused = |opts: QuantOptions, want: &str| {
        let e = synthcal::quantize(&gpu, &model, &source, &opts)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
    };
    let base = QuantOptions::default;
    refused(QuantOptions { batch: 0, ..base() }, "batch");
    refused(
        QuantOptions {
            bias_subset: 0,
            ..base()
        },
        "subset",
    );
    refused(
        QuantOptions {
            keep_fp32: vec!["nope".into()],
            ..base()
        },
        "nope is no quantized layer's name",
    );
    let mut adaround = synthcal::quant::AdaRoundOptions::default();
    adaround.beta.0 = f32::NAN;
    refused(
        QuantOptions {
            algorithm: synthcal::Algorithm::AdaRound,
            adaround,
            ..base()
        },
        "beta",
    );
    assert!(synthcal::models::arch_with_classes("resnet20", 0).is_err());
    let hooks = synthcal::Hooks::default();
    for lr in [f32::NAN, 0.0, -1.0] {
        let opts = synthcal::calib::distill::DistillOptions {
            lr,
            ..synthcal::calib::distill::DistillOptions::zeroq(2, 0)
        };
        let r = synthcal::calib::distill::distill_images(&gpu, &model, &opts, &hooks);
        assert!(
            r.is_err_and(|e| e.to_string().contains("learning rate")),
            "lr {lr}"
        );
    }
    for points in [0, usize::MAX] {
        let r = synthcal::calib::fractal::fractal_images(&gpu, 1, 0, points, [32, 32], &hooks);
        assert!(r.is_err(), "{points} points");
    }
    let q = synthcal::quantize(&gpu, &model, &source, &base()).unwrap();
    let ds = noise_set(4, 1);
    let e = synthcal::eval::cross_check(&q, &ds, &[0.0; 10], &hooks)
        .unwrap_err()
        .to_string();
    assert!(e.contains("10 logits for 4 images"), "{e}");
}
