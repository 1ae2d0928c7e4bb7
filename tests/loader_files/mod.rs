//! Small valid model files for the loader tests: torch checkpoints written by hand (legacy
//! `.th` and zip `.pt`), FP32 safetensors and a tiny INT8 model.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use synthcal::array::Array;
use synthcal::graph::{Act, Graph, Op, Pads, Params};
use synthcal::io::write_safetensors;
use synthcal::models;
use synthcal::quant::int8::{QConv, QFormat, QWeights};
use synthcal::quant::QuantizedModel;

pub fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synthcal-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// Minimal pickle writer (protocol 2 opcodes), enough for a state dict of tensors.
#[derive(Default)]
pub struct Pickle(Vec<u8>);

impl Pickle {
    pub fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }
    pub fn int(&mut self, i: i32) -> &mut Self {
        self.0.push(b'J');
        self.op(&i.to_le_bytes())
    }
    pub fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.op(format!("c{m}\n{n}\n").as_bytes())
    }
    pub fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        for &i in v {
            self.int(i as i32);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(pid("storage", FloatStorage, key, "cpu", numel), 0, shape, stride, False, OrderedDict())`
    pub fn tensor(&mut self, storage: &str, key: &str, shape: &[usize]) -> &mut Self {
        let numel: usize = shape.iter().product();
        let mut stride = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        self.view(storage, key, numel, shape, &stride)
    }
    /// The same as a view of `shape` and `stride` over a storage of `numel` elements.
    pub fn view(
        &mut self,
        storage: &str,
        key: &str,
        numel: usize,
        shape: &[usize],
        stride: &[usize],
    ) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.s("storage").global("torch", storage).s(key).s("cpu");
        self.int(numel as i32)
            .op(b"tQ")
            .int(0)
            .ints(shape)
            .ints(stride);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

/// A small state dict: name, shape, values (f32, except the int64 counter).
pub fn torch_tensors(poison: Option<(&str, f32)>) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
    let mut t = vec![
        (
            "conv.weight",
            vec![4, 3, 3, 3],
            (0..108).map(|i| i as f32 * 0.01).collect(),
        ),
        ("bn.weight", vec![4], vec![1.0; 4]),
        ("bn.bias", vec![4], vec![0.0; 4]),
        ("bn.running_mean", vec![4], vec![0.1; 4]),
        ("bn.running_var", vec![4], vec![0.5; 4]),
        ("bn.num_batches_tracked", vec![], vec![7.0]),
    ];
    if let Some((name, v)) = poison {
        let e = t.iter_mut().find(|e| e.0 == name).unwrap();
        e.2[1] = v;
    }
    t
}

pub fn state_dict_pickle(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(");
    for (k, (name, shape, _)) in tensors.iter().enumerate() {
        let storage = if name.ends_with("tracked") {
            "LongStorage"
        } else {
            "FloatStorage"
        };
        p.s(name).tensor(storage, &k.to_string(), shape);
    }
    p.op(b"u.");
    p.0
}

pub fn storage_bytes(name: &str, values: &[f32]) -> Vec<u8> {
    if name.ends_with("tracked") {
        values
            .iter()
            .flat_map(|&v| (v as i64).to_le_bytes())
            .collect()
    } else {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }
}

/// torch < 1.6 format: magic, protocol, sys_info, the state dict, storage keys, storages.
pub fn legacy_th(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut f = legacy_header();
    f.extend(state_dict_pickle(tensors));
    let mut p = Pickle::default();
    p.op(b"\x80\x02(");
    for k in 0..tensors.len() {
        p.s(&k.to_string());
    }
    f.extend(p.op(b"l.").0.iter());
    for (name, _, v) in tensors {
        f.extend((v.len() as u64).to_le_bytes());
        f.extend(storage_bytes(name, v));
    }
    f
}

/// A legacy checkpoint's magic number, protocol and sys_info pickles.
fn legacy_header() -> Vec<u8> {
    let mut f = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.".to_vec();
    f.extend_from_slice(b"\x80\x02M\xe9\x03.");
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(").s("little_endian").op(b"\x88");
    p.s("type_sizes")
        .op(b"}(")
        .s("long")
        .op(b"K\x04")
        .op(b"uu.");
    f.extend(p.0);
    f
}

/// A legacy checkpoint of `copies` tensors of 2^20 elements, all broadcast (stride 0) from one
/// stored float: a small file that expands to `copies` x 4 MB.
pub fn broadcast_th(copies: usize) -> Vec<u8> {
    let mut f = legacy_header();
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(");
    for i in 0..copies {
        p.s(&format!("t{i}"))
            .view("FloatStorage", "0", 1, &[1 << 20], &[0]);
    }
    f.extend(p.op(b"u.").0.iter());
    let mut p = Pickle::default();
    f.extend(p.op(b"\x80\x02(").s("0").op(b"l.").0.iter());
    f.extend(1u64.to_le_bytes());
    f.extend(0.5f32.to_le_bytes());
    f
}

/// torch >= 1.6 format: a zip of `m/data.pkl`, `m/byteorder` and `m/data/<key>`.
pub fn zip_pt(pickle: &[u8], tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("m/data.pkl", opts).unwrap();
    z.write_all(pickle).unwrap();
    z.start_file("m/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for (k, (name, _, v)) in tensors.iter().enumerate() {
        z.start_file(format!("m/data/{k}"), opts).unwrap();
        z.write_all(&storage_bytes(name, v)).unwrap();
    }
    z.finish().unwrap().into_inner()
}

pub fn fp32_file(path: &Path, params: &Params, meta: &BTreeMap<String, String>) {
    let t: Vec<(&str, &[usize], &[f32])> = params
        .tensors
        .iter()
        .map(|(n, a)| (n.as_str(), a.shape.as_slice(), a.data.as_slice()))
        .collect();
    write_safetensors(path, &t, meta).unwrap();
}

/// Input -> conv1 (int8, ReLU) -> conv2 (fp32) -> bn2 -> add(conv1, bn2) -> gap -> flatten
/// -> fc (int8).
pub fn tiny_int8() -> QuantizedModel {
    let mut g = Graph::default();
    let x = g.push("input", Op::Input, &[]);
    let conv = |w: &str, b: Option<&str>, pad, act| Op::Conv2d {
        weight: w.into(),
        bias: b.map(Into::into),
        stride: 1,
        pad: Pads::same(pad),
        dilation: [1, 1],
        groups: 1,
        act,
    };
    let c1 = g.push(
        "conv1",
        conv("conv1.weight", Some("conv1.bias"), 1, Act::Relu),
        &[x],
    );
    let c2 = g.push("conv2", conv("conv2.weight", None, 0, Act::Identity), &[c1]);
    let bn = g.push(
        "bn2",
        Op::BatchNorm {
            prefix: "bn2".into(),
            eps: 1e-5,
            act: Act::Identity,
        },
        &[c2],
    );
    let add = g.push("add", Op::Add { act: Act::Relu }, &[c1, bn]);
    let gap = g.push("gap", Op::GlobalAvgPool, &[add]);
    let flat = g.push("flatten", Op::Flatten, &[gap]);
    let fc = g.push(
        "fc",
        Op::Linear {
            weight: "fc.weight".into(),
            bias: Some("fc.bias".into()),
            act: Act::Identity,
        },
        &[flat],
    );
    let mut params = Params::default();
    params.insert("conv2.weight", Array::random(&[4, 4, 1, 1], 1));
    for (i, s) in ["weight", "bias", "running_mean", "running_var"]
        .iter()
        .enumerate()
    {
        let v = Array::random(&[4], 10 + i as u64).map(|v| v.abs() + 0.1);
        params.insert(format!("bn2.{s}"), v);
    }
    let layer = |w: Array, seed, input, act| QConv {
        weights: QWeights::quantize(&w).unwrap(),
        bias: Some(Array::random(&[w.shape[0]], seed).data),
        stride: 1,
        pad: Pads::same(if w.shape.len() == 4 { 1 } else { 0 }),
        dilation: [1, 1],
        groups: 1,
        input,
        input_channel_scales: None,
        act,
        output: None,
    };
    let layers = BTreeMap::from([
        (
            c1,
            layer(
                Array::random(&[4, 3, 3, 3], 2),
                3,
                QFormat::signed(0.02),
                Act::Relu,
            ),
        ),
        (
            fc,
            layer(
                Array::random(&[10, 4], 4),
                5,
                QFormat::unsigned(0.01),
                Act::Identity,
            ),
        ),
    ]);
    let mut q = QuantizedModel {
        arch: "tiny".into(),
        norm: models::cifar_norm(),
        input_channels: 3,
        input_size: [32, 32],
        class_names: Vec::new(),
        graph: g,
        params,
        layers,
        values: BTreeMap::new(),
        meta: BTreeMap::new(),
    };
    q.class_names = models::default_class_names(q.output_width().expect("a final layer"));
    q
}
