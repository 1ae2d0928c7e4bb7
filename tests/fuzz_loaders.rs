//! Mutation tests of every loader: seeded truncations, byte flips and field edits of a small
//! valid file must each load or fail with an error naming the file, never panic. Plus the
//! targeted refusals of issue 15 points 4, 5 and 10 (non-finite weights, negative variances,
//! INT8 graph indices and scales). Seeds are fixed, so a failure names a reproducible mutant.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use synthcal::cpu::qconv::{QConv, QFormat, QWeights};
use synthcal::cpu::Array;
use synthcal::graph::{Act, Graph, Op, Params};
use synthcal::io::{read_safetensors, write_safetensors, write_tensor_data};
use synthcal::models::{self, read_params};
use synthcal::quant::QuantModel;

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("synthcal-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

thread_local! {
    /// Set while this thread loads mutants: its panics are recorded here, not printed.
    static PANIC_AT: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Installs (once) a hook that records where a mutant's panic happened instead of printing
/// thousands of them; other panics, such as a failed assertion, print as usual.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let quiet = PANIC_AT.with(|p| {
                let mut p = p.borrow_mut();
                let on = p.is_some();
                if on {
                    *p = Some(format!("{info}"));
                }
                on
            });
            if !quiet {
                default(info);
            }
        }));
    });
}

/// One mutant: what was done (for the report) and the bytes.
type Mutant = (String, Vec<u8>);

/// Writes each mutant to `path` and loads it: a panic, or an error whose message lacks
/// `must_name`, is a failure. Returns how many mutants loaded without error.
fn run(
    path: &Path,
    must_name: &str,
    mutants: impl Iterator<Item = Mutant>,
    load: impl Fn(&Path) -> Result<(), String>,
) -> usize {
    quiet_panics();
    let (mut ok, mut refused, mut failures) = (0, 0, Vec::new());
    for (what, bytes) in mutants {
        std::fs::write(path, &bytes).unwrap();
        PANIC_AT.with(|p| *p.borrow_mut() = Some(String::new()));
        let r = catch_unwind(AssertUnwindSafe(|| load(path)));
        let panic = PANIC_AT.with(|p| p.borrow_mut().take()).unwrap_or_default();
        match r {
            Ok(Ok(())) => ok += 1,
            Ok(Err(e)) if e.contains(must_name) => refused += 1,
            Ok(Err(e)) => failures.push(format!("{what}: error without the file name: {e}")),
            Err(_) => failures.push(format!("{what}: PANIC {panic}")),
        }
    }
    eprintln!(
        "{must_name}: {total} mutants, {ok} loaded",
        total = ok + refused + failures.len()
    );
    assert!(
        failures.is_empty(),
        "{} failures, first ones:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    ok
}

/// Values that break naive readers when written over a number or a 4-byte field.
const NUMBERS: [&str; 12] = [
    "0",
    "1",
    "-1",
    "2",
    "99",
    "500",
    "4294967296",
    "18446744073709551615",
    "1e30",
    "1e-45",
    "3.5",
    "-0.0",
];
const WORDS: [u32; 8] = [
    0,
    1,
    99,
    0x7fff_ffff,
    0xffff_ffff,
    0x7fc0_0000, // f32 NaN
    0x7f80_0000, // f32 +inf
    0xbf80_0000, // f32 -1
];

/// Truncations, byte flips and 4-byte field overwrites of `good`.
fn byte_mutants(good: &[u8], n: usize, seed: u64) -> impl Iterator<Item = Mutant> + '_ {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(move |i| {
        let mut b = good.to_vec();
        let what = match i % 3 {
            0 => {
                let len = rng.random_range(0..b.len());
                b.truncate(len);
                format!("seed {seed} #{i}: truncated to {len}")
            }
            1 => {
                let k = rng.random_range(1..=4);
                let mut at = Vec::new();
                for _ in 0..k {
                    let j = rng.random_range(0..b.len());
                    b[j] = rng.random();
                    at.push(j);
                }
                format!("seed {seed} #{i}: bytes {at:?} randomized")
            }
            _ => {
                let j = rng.random_range(0..b.len().saturating_sub(4).max(1));
                let w = WORDS[rng.random_range(0..WORDS.len())];
                let end = (j + 4).min(b.len());
                b[j..end].copy_from_slice(&w.to_le_bytes()[..end - j]);
                format!("seed {seed} #{i}: {w:#x} written at {j}")
            }
        };
        (what, b)
    })
}

/// safetensors files with one number of the JSON header (tensor offsets and shapes, and
/// numbers inside metadata values such as an INT8 graph) replaced; the length prefix is
/// rewritten so the edit reaches the parser.
fn header_mutants(good: &[u8], n: usize, seed: u64) -> impl Iterator<Item = Mutant> + '_ {
    let len = u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(good[8..8 + len].to_vec()).unwrap();
    let data = &good[8 + len..];
    // Start and end of every number token.
    let b = header.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() && (i == 0 || !b[i - 1].is_ascii_alphanumeric()) {
            let s = if i > 0 && b[i - 1] == b'-' { i - 1 } else { i };
            let mut e = i;
            while e < b.len() && (b[e].is_ascii_digit() || b".eE-+".contains(&b[e])) {
                e += 1;
            }
            tokens.push((s, e));
            i = e;
        } else {
            i += 1;
        }
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n).map(move |k| {
        let (s, e) = tokens[rng.random_range(0..tokens.len())];
        let v = NUMBERS[rng.random_range(0..NUMBERS.len())];
        let h = format!("{}{v}{}", &header[..s], &header[e..]);
        let mut out = (h.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        let what = format!(
            "seed {seed} #{k}: header `{}` -> `{v}` in ...{}...",
            &header[s..e],
            &header[s.saturating_sub(40)..(e + 20).min(header.len())]
        );
        (what, out)
    })
}

// ---------------------------------------------------------------- torch checkpoints

/// Minimal pickle writer (protocol 2 opcodes), enough for a state dict of tensors.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn s(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X');
        self.0.extend_from_slice(&(s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }
    fn int(&mut self, i: i32) -> &mut Self {
        self.0.push(b'J');
        self.op(&i.to_le_bytes())
    }
    fn global(&mut self, m: &str, n: &str) -> &mut Self {
        self.op(format!("c{m}\n{n}\n").as_bytes())
    }
    fn ints(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        for &i in v {
            self.int(i as i32);
        }
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(pid("storage", FloatStorage, key, "cpu", numel), 0, shape, stride, False, OrderedDict())`
    fn tensor(&mut self, storage: &str, key: &str, shape: &[usize]) -> &mut Self {
        let numel: usize = shape.iter().product();
        let mut stride = vec![1; shape.len()];
        for d in (0..shape.len().saturating_sub(1)).rev() {
            stride[d] = stride[d + 1] * shape[d + 1];
        }
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.s("storage").global("torch", storage).s(key).s("cpu");
        self.int(numel as i32)
            .op(b"tQ")
            .int(0)
            .ints(shape)
            .ints(&stride);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

/// A small state dict: name, shape, values (f32, except the int64 counter).
fn torch_tensors(poison: Option<(&str, f32)>) -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
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

fn state_dict_pickle(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
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

fn storage_bytes(name: &str, values: &[f32]) -> Vec<u8> {
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
fn legacy_th(tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
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

/// torch >= 1.6 format: a zip of `m/data.pkl`, `m/byteorder` and `m/data/<key>`.
fn zip_pt(pickle: &[u8], tensors: &[(&str, Vec<usize>, Vec<f32>)]) -> Vec<u8> {
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

fn load_params(p: &Path) -> Result<(), String> {
    read_params(p).map(|_| ()).map_err(|e| e.to_string())
}

#[test]
fn torch_legacy_mutants() {
    let path = tmp("fuzz-legacy.th");
    let good = legacy_th(&torch_tensors(None));
    std::fs::write(&path, &good).unwrap();
    assert_eq!(read_params(&path).unwrap().0.tensors.len(), 5);
    run(
        &path,
        "fuzz-legacy.th",
        byte_mutants(&good, 2000, 1),
        load_params,
    );
}

#[test]
fn torch_zip_mutants() {
    let path = tmp("fuzz-zip.pt");
    let tensors = torch_tensors(None);
    let pickle = state_dict_pickle(&tensors);
    let good = zip_pt(&pickle, &tensors);
    std::fs::write(&path, &good).unwrap();
    assert_eq!(read_params(&path).unwrap().0.tensors.len(), 5);
    run(
        &path,
        "fuzz-zip.pt",
        byte_mutants(&good, 1000, 2),
        load_params,
    );
    // The archive's checksums reject most raw edits; mutate the pickle inside a valid zip.
    let inner = byte_mutants(&pickle, 1500, 3).map(|(w, p)| (w, zip_pt(&p, &tensors)));
    run(&path, "fuzz-zip.pt", inner, load_params);
}

// ---------------------------------------------------------------- safetensors FP32

fn fp32_file(path: &Path, params: &Params, meta: &BTreeMap<String, String>) {
    let t: Vec<(&str, &[usize], &[f32])> = params
        .tensors
        .iter()
        .map(|(n, a)| (n.as_str(), a.shape.as_slice(), a.data.as_slice()))
        .collect();
    write_safetensors(path, &t, meta).unwrap();
}

#[test]
fn safetensors_fp32_mutants() {
    let path = tmp("fuzz-fp32.safetensors");
    let mut p = Params::default();
    for (name, shape, v) in torch_tensors(None).into_iter().take(5) {
        p.insert(name, Array::new(&shape, v));
    }
    let meta = BTreeMap::from([("arch".to_string(), "resnet20".to_string())]);
    fp32_file(&path, &p, &meta);
    let good = std::fs::read(&path).unwrap();
    let name = "fuzz-fp32.safetensors";
    run(&path, name, byte_mutants(&good, 1500, 4), load_params);
    run(&path, name, header_mutants(&good, 1000, 5), load_params);
}

/// Whole-model loads (architecture detection and shape checks) of a real-sized file.
#[test]
fn safetensors_model_mutants() {
    let path = tmp("fuzz-model.safetensors");
    let a = models::arch("resnet20").unwrap();
    fp32_file(&path, &models::random_params(&a, 7), &BTreeMap::new());
    let good = std::fs::read(&path).unwrap();
    let load = |p: &Path| {
        models::load_model(p, None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let ok = run(
        &path,
        "fuzz-model.safetensors",
        header_mutants(&good, 150, 6),
        load,
    );
    assert!(ok < 150, "no mutant was refused");
}

// ---------------------------------------------------------------- INT8 files

/// Input -> conv1 (int8, ReLU) -> conv2 (fp32) -> bn2 -> add(conv1, bn2) -> gap -> flatten
/// -> fc (int8).
fn tiny_int8() -> QuantModel {
    let mut g = Graph::default();
    let x = g.push("input", Op::Input, &[]);
    let conv = |w: &str, b: Option<&str>, pad, act| Op::Conv2d {
        weight: w.into(),
        bias: b.map(Into::into),
        stride: 1,
        pad,
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
        pad: if w.shape.len() == 4 { 1 } else { 0 },
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
    let mut q = QuantModel {
        arch: "tiny".into(),
        norm: models::CIFAR_NORM,
        class_names: Vec::new(),
        graph: g,
        params,
        layers,
        meta: BTreeMap::new(),
    };
    q.class_names = models::default_class_names(q.output_width().expect("a final layer"));
    q
}

/// Loads an INT8 file and, when it loads, runs it on the CPU reference: whatever the
/// validation lets through must run without a panic.
fn load_int8(p: &Path) -> Result<(), String> {
    let q = QuantModel::load(p).map_err(|e| e.to_string())?;
    q.cpu_logits(&Array::random(&[1, 3, 32, 32], 9))
        .map(|_| ())
        .map_err(|e| format!("{}: runs with {e}", p.display()))
}

#[test]
fn int8_mutants() {
    let path = tmp("fuzz-int8.safetensors");
    tiny_int8().save(&path).unwrap();
    load_int8(&path).unwrap();
    let good = std::fs::read(&path).unwrap();
    let name = "fuzz-int8.safetensors";
    run(&path, name, byte_mutants(&good, 1500, 7), load_int8);
    run(&path, name, header_mutants(&good, 2500, 8), load_int8);
}

// ---------------------------------------------------------------- datasets

#[test]
fn cifar_binary_mutants() {
    use synthcal::data::{load_cifar10_bin, Split};
    let path = tmp("fuzz_batch.bin");
    let mut rng = StdRng::seed_from_u64(10);
    let good: Vec<u8> = (0..20 * 3073)
        .map(|i| {
            if i % 3073 == 0 {
                (i / 3073 % 10) as u8
            } else {
                rng.random()
            }
        })
        .collect();
    std::fs::write(&path, &good).unwrap();
    assert_eq!(load_cifar10_bin(&path, Split::Test).unwrap().len(), 20);
    let load = |p: &Path| {
        load_cifar10_bin(p, Split::Test)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    run(&path, "fuzz_batch.bin", byte_mutants(&good, 1000, 11), load);
}

#[test]
fn image_folder_mutants() {
    use synthcal::data::{load_image_folder, ResizePolicy};
    let dir = tmp("fuzz-folder");
    let _ = std::fs::remove_dir_all(&dir);
    let mut rng = StdRng::seed_from_u64(12);
    for class in ["cat", "dog"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..2 {
            let img = image::RgbImage::from_fn(32, 32, |_, _| image::Rgb(rng.random()));
            img.save(dir.join(class).join(format!("img{i}.png")))
                .unwrap();
        }
    }
    let target = dir.join("dog").join("img1.png");
    let good = std::fs::read(&target).unwrap();
    assert_eq!(
        load_image_folder(&dir, ResizePolicy::Reject).unwrap().len(),
        4
    );
    let load = |_: &Path| {
        load_image_folder(&dir, ResizePolicy::Reject)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    run(&target, "img1.png", byte_mutants(&good, 1000, 13), load);
}

// ---------------------------------------------------------------- targeted refusals

#[test]
fn non_finite_weight_is_refused_naming_file_and_tensor() {
    let path = tmp("nan-weight.th");
    std::fs::write(
        &path,
        legacy_th(&torch_tensors(Some(("conv.weight", f32::NAN)))),
    )
    .unwrap();
    let e = read_params(&path).unwrap_err().to_string();
    assert!(
        e.contains("nan-weight.th") && e.contains("`conv.weight`") && e.contains("not finite"),
        "{e}"
    );
    let a = models::arch("resnet20").unwrap();
    let mut p = models::random_params(&a, 1);
    p.tensors.get_mut("layer3.2.bn2.bias").unwrap().data[5] = f32::INFINITY;
    let path = tmp("inf-weight.safetensors");
    fp32_file(&path, &p, &BTreeMap::new());
    let e = models::load_model(&path, None).err().unwrap().to_string();
    assert!(
        e.contains("inf-weight.safetensors") && e.contains("`layer3.2.bn2.bias`"),
        "{e}"
    );
}

#[test]
fn negative_running_var_is_refused() {
    let path = tmp("neg-var.pt");
    let t = torch_tensors(Some(("bn.running_var", -0.25)));
    std::fs::write(&path, zip_pt(&state_dict_pickle(&t), &t)).unwrap();
    let e = read_params(&path).unwrap_err().to_string();
    assert!(
        e.contains("neg-var.pt") && e.contains("`bn.running_var`") && e.contains("negative"),
        "{e}"
    );
}

/// Rewrites the INT8 file's metadata entry `key` (JSON) with `f`.
fn edit_int8(name: &str, key: &str, f: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let path = tmp(name);
    tiny_int8().save(&path).unwrap();
    let (t, mut meta) = read_safetensors(&path).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&meta[key]).unwrap();
    f(&mut v);
    meta.insert(key.into(), v.to_string());
    write_tensor_data(&path, &t, &meta).unwrap();
    path
}

#[test]
fn int8_graph_indices_are_checked() {
    let path = edit_int8("bad-input.safetensors", "graph", |g| {
        g["nodes"][4]["inputs"][1] = 99.into()
    });
    let e = QuantModel::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("bad-input.safetensors") && e.contains("node 4 `add`") && e.contains("99"),
        "{e}"
    );
    let path = edit_int8("bad-output.safetensors", "graph", |g| {
        g["output"] = 500.into()
    });
    let e = QuantModel::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("bad-output.safetensors") && e.contains("500"),
        "{e}"
    );
    let path = edit_int8("bad-layer.safetensors", "layers", |l| {
        l[0]["node"] = 3.into();
        l[0]["name"] = "bn2".into();
    });
    let e = QuantModel::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("bad-layer.safetensors") && e.contains("`bn2`: not a conv/linear"),
        "{e}"
    );
}

#[test]
fn int8_zero_scale_names_file_and_layer() {
    let path = tmp("zero-scale.safetensors");
    tiny_int8().save(&path).unwrap();
    let (mut t, meta) = read_safetensors(&path).unwrap();
    let s = &mut t.iter_mut().find(|(n, _)| n == "conv1.wscale").unwrap().1;
    if let synthcal::io::TensorValues::F32(v) = &mut s.values {
        v[2] = 0.0;
    }
    write_tensor_data(&path, &t, &meta).unwrap();
    let e = QuantModel::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("zero-scale.safetensors")
            && e.contains("`conv1`")
            && e.contains("scales must be positive and finite"),
        "{e}"
    );
    let path = edit_int8("zero-input-scale.safetensors", "layers", |l| {
        l[1]["input_scale"] = 1e-45.into()
    });
    let e = QuantModel::load(&path).err().unwrap().to_string();
    assert!(
        e.contains("zero-input-scale.safetensors") && e.contains("`fc`"),
        "{e}"
    );
}

/// The validation refuses nothing a published checkpoint holds (when shared data is present).
#[test]
fn published_checkpoints_pass_validation() {
    let dir = synthcal::data::shared_dir().join("models");
    let Ok(sub) = std::fs::read_dir(&dir) else {
        eprintln!("SKIPPED: no published checkpoints under {}", dir.display());
        return;
    };
    let mut n = 0;
    for d in sub.flatten() {
        for f in std::fs::read_dir(d.path()).into_iter().flatten().flatten() {
            let p = f.path();
            if matches!(p.extension().and_then(|e| e.to_str()), Some("th" | "pt")) {
                models::load_model(&p, None).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
    }
    assert!(n > 0, "no .th/.pt files under {}", dir.display());
}
