//! Loads the published checkpoints from the shared folder (skipped if absent).
//! Set SYNTHCAL_TENSOR_LISTING=<file> to also save the name/shape listing.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use synthcal::io::{load_tensors, TensorData};

mod common;

fn files(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.extension().is_some_and(|e| e == ext));
    v.sort();
    v
}

/// Learnable parameters: everything but BN running stats and counters.
fn param_count(t: &[(String, TensorData)]) -> usize {
    t.iter()
        .filter(|(n, d)| {
            d.is_float() && !n.ends_with("running_mean") && !n.ends_with("running_var")
        })
        .map(|(_, d)| d.numel())
        .sum()
}

fn shape<'a>(t: &'a [(String, TensorData)], name: &str) -> &'a [usize] {
    let found = t.iter().find(|(n, _)| n == name);
    &found.unwrap_or_else(|| panic!("no tensor {name}")).1.shape
}

#[test]
fn loads_published_checkpoints() {
    let Some(shared) = common::shared_models() else {
        return;
    };
    let models = shared.join("models");
    let mut all = files(&models.join("akamaster"), "th");
    all.extend(files(&models.join("chenyaofo"), "pt"));
    assert!(!all.is_empty(), "no checkpoints under {}", models.display());

    let mut listing = String::new();
    for path in &all {
        let t = load_tensors(path).unwrap_or_else(|e| panic!("{e}"));
        let file = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned();
        let params = param_count(&t);
        let _ = writeln!(
            listing,
            "== {file}: {} tensors, {params} parameters",
            t.len()
        );
        for (name, d) in &t {
            let _ = writeln!(listing, "{name} {:?} {:?}", d.shape, d.dtype_orig);
            assert!(
                d.to_f32().iter().all(|x| x.is_finite()),
                "{file} {name} not finite"
            );
        }
        let close = |want: f64, tol: f64| (params as f64 - want).abs() <= tol;
        if file.starts_with("resnet20") {
            assert_eq!(shape(&t, "conv1.weight"), [16, 3, 3, 3]);
            assert_eq!(shape(&t, "linear.weight"), [10, 64]);
            assert!(close(0.27e6, 0.005e6), "{file}: {params}");
        } else if file.starts_with("cifar10_resnet20") {
            assert_eq!(shape(&t, "conv1.weight"), [16, 3, 3, 3]);
            assert_eq!(shape(&t, "fc.weight"), [10, 64]);
            assert!(close(0.27e6, 0.005e6), "{file}: {params}");
        } else if file.starts_with("cifar10_shufflenetv2_x0_5") {
            assert!(close(0.35e6, 0.01e6), "{file}: {params}");
        }
    }
    print!("{listing}");
    if let Some(out) = std::env::var_os("SYNTHCAL_TENSOR_LISTING") {
        std::fs::write(&out, &listing).expect("write listing");
    }
}

/// Corrupted copies (truncated, bytes overwritten) must give errors, not panics.
#[test]
fn corrupted_checkpoints_fail_cleanly() {
    let Some(shared) = common::shared_models() else {
        return;
    };
    let models = shared.join("models");
    let sources = [
        models.join("akamaster/resnet20-12fca82f.th"),
        models.join("chenyaofo/cifar10_resnet20-4118986f.pt"),
    ];
    if !sources.iter().all(|p| p.is_file()) {
        common::skip(&format!("checkpoints under {} not found", models.display()));
        return;
    }
    let dir = std::env::temp_dir().join(format!("synthcal-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed as usize
    };
    for src in &sources {
        let orig = std::fs::read(src).expect("read checkpoint");
        for i in 0..150 {
            let mut b = orig.clone();
            if i % 2 == 0 {
                b.truncate(rnd() % b.len());
            } else {
                // Mostly hit the pickles, which sit near the start.
                for _ in 0..1 + rnd() % 4 {
                    let at = rnd() % b.len().min(20_000);
                    b[at] = rnd() as u8;
                }
            }
            let p = dir.join("corrupt");
            std::fs::write(&p, &b).expect("write");
            let r = std::panic::catch_unwind(|| load_tensors(&p));
            assert!(r.is_ok(), "panic on corruption {i} of {}", src.display());
        }
    }
}

// Hand-built checkpoints: the two torch formats written byte by byte in the test (no Python),
// holding non-square, non-contiguous 4-D tensors whose every value is known.

/// A minimal pickle (protocol 2) writer with the opcodes torch checkpoints use.
#[derive(Default)]
struct Pickle(Vec<u8>);

impl Pickle {
    fn op(&mut self, b: &[u8]) -> &mut Self {
        self.0.extend_from_slice(b);
        self
    }
    fn str(&mut self, s: &str) -> &mut Self {
        self.0.push(b'X'); // BINUNICODE
        self.0.extend((s.len() as u32).to_le_bytes());
        self.op(s.as_bytes())
    }
    fn int(&mut self, i: usize) -> &mut Self {
        self.0.push(b'J'); // BININT
        self.op(&(i as i32).to_le_bytes())
    }
    fn global(&mut self, module: &str, name: &str) -> &mut Self {
        self.op(format!("c{module}\n{name}\n").as_bytes())
    }
    fn tuple(&mut self, v: &[usize]) -> &mut Self {
        self.op(b"(");
        v.iter().for_each(|&i| {
            self.int(i);
        });
        self.op(b"t")
    }
    /// `_rebuild_tensor_v2(persistent_id, offset, shape, stride, False, OrderedDict())`; the
    /// legacy format's persistent id has a sixth element (the view, None here).
    fn tensor(&mut self, t: &Stored, legacy: bool) -> &mut Self {
        self.global("torch._utils", "_rebuild_tensor_v2").op(b"((");
        self.str("storage").global("torch", "FloatStorage");
        self.str(&t.key).str("cpu").int(t.storage.len());
        if legacy {
            self.op(b"N");
        }
        self.op(b"tQ")
            .int(t.offset)
            .tuple(&t.shape)
            .tuple(&t.stride);
        self.op(b"\x89")
            .global("collections", "OrderedDict")
            .op(b")Rt")
            .op(b"R")
    }
}

/// A tensor as torch stores it: a storage, an offset and strides.
struct Stored {
    name: String,
    key: String,
    storage: Vec<f32>,
    offset: usize,
    shape: Vec<usize>,
    stride: Vec<usize>,
}

impl Stored {
    /// The logical values in row-major order, read from the storage by the strides.
    fn values(&self) -> Vec<f32> {
        let n: usize = self.shape.iter().product();
        (0..n)
            .map(|mut i| {
                let mut off = self.offset;
                for d in (0..self.shape.len()).rev() {
                    off += i % self.shape[d] * self.stride[d];
                    i /= self.shape[d];
                }
                self.storage[off]
            })
            .collect()
    }
}

/// `state_dict` pickle: `{name: tensor, ...}` under an OrderedDict.
fn state_dict(ts: &[Stored], legacy: bool) -> Pickle {
    let mut p = Pickle::default();
    p.op(b"\x80\x02");
    if legacy {
        p.op(b"}").str("state_dict"); // {'state_dict': ...} as akamaster's files
    }
    p.global("collections", "OrderedDict").op(b")R(");
    for t in ts {
        p.str(&t.name).tensor(t, legacy);
    }
    p.op(b"u");
    if legacy {
        p.op(b"s");
    }
    p.op(b".");
    p
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// torch >= 1.6: a zip of `archive/data.pkl` and one file per storage.
fn write_zip(path: &Path, ts: &[Stored]) {
    use std::io::Write;
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    let opts = zip::write::SimpleFileOptions::default();
    z.start_file("archive/data.pkl", opts).unwrap();
    z.write_all(&state_dict(ts, false).0).unwrap();
    z.start_file("archive/byteorder", opts).unwrap();
    z.write_all(b"little").unwrap();
    for t in ts {
        z.start_file(format!("archive/data/{}", t.key), opts)
            .unwrap();
        z.write_all(&f32_bytes(&t.storage)).unwrap();
    }
    z.finish().unwrap();
}

/// torch < 1.6: magic number, protocol, sys_info, the object, the storage keys, then each
/// storage as a little-endian u64 element count and its bytes.
fn write_legacy(path: &Path, ts: &[Stored]) {
    let mut f = Vec::new();
    f.extend(b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19.");
    f.extend(b"\x80\x02M\xe9\x03.");
    let mut p = Pickle::default();
    p.op(b"\x80\x02}(").str("little_endian").op(b"\x88");
    p.str("type_sizes").op(b"}(").str("int").op(b"K\x04");
    p.str("long").op(b"K\x04").str("short").op(b"K\x02uu.");
    f.extend(p.0);
    f.extend(state_dict(ts, true).0);
    let mut p = Pickle::default();
    p.op(b"\x80\x02(");
    ts.iter().for_each(|t| {
        p.str(&t.key);
    });
    f.extend(p.op(b"l.").0.iter());
    for t in ts {
        f.extend((t.storage.len() as u64).to_le_bytes());
        f.extend(f32_bytes(&t.storage));
    }
    std::fs::write(path, f).unwrap();
}

/// Non-square kernels in three layouts: channels-last storage (a permutation), a strided
/// window of a larger storage at an offset, and plain contiguous; plus a 1-D bias.
fn odd_tensors() -> Vec<Stored> {
    // [co 2, ci 3, kh 4, kw 5] stored as [kh][kw][co][ci].
    let perm = Stored {
        name: "a.weight".into(),
        key: "0".into(),
        storage: (0..120).map(|i| i as f32 * 0.5 - 7.0).collect(),
        offset: 0,
        shape: vec![2, 3, 4, 5],
        stride: vec![3, 1, 30, 6],
    };
    // [:, 1:3, 1:3, 2:5] of a contiguous [2, 3, 4, 5]: shape [2, 2, 2, 3].
    let window = Stored {
        name: "b.weight".into(),
        key: "1".into(),
        storage: (0..120).map(|i| 100.0 + i as f32).collect(),
        offset: 20 + 5 + 2,
        shape: vec![2, 2, 2, 3],
        stride: vec![60, 20, 5, 1],
    };
    let plain = Stored {
        name: "c.weight".into(),
        key: "2".into(),
        storage: (0..24).map(|i| -(i as f32)).collect(),
        offset: 0,
        shape: vec![3, 1, 2, 4],
        stride: vec![8, 8, 4, 1],
    };
    let bias = Stored {
        name: "c.bias".into(),
        key: "3".into(),
        storage: vec![9.0, 8.0, 7.0, 6.0],
        offset: 1,
        shape: vec![3],
        stride: vec![1],
    };
    vec![perm, window, plain, bias]
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("synthcal-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Both formats: every value of every tensor, with its shape (kernel height before width).
#[test]
fn hand_built_checkpoints_load_every_value() {
    let dir = tmp_dir("handmade");
    let ts = odd_tensors();
    for (file, legacy) in [("odd.pt", false), ("odd.th", true)] {
        let path = dir.join(file);
        if legacy {
            write_legacy(&path, &ts);
        } else {
            write_zip(&path, &ts);
        }
        let (params, _) =
            synthcal::models::read_params(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(params.tensors.len(), ts.len(), "{file}");
        for t in &ts {
            let got = &params.tensors[&t.name];
            assert_eq!(got.shape, t.shape, "{file} {}", t.name);
            assert_eq!(got.data, t.values(), "{file} {}", t.name);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// `synthcal import` of a hand-built ResNet-20 checkpoint whose 4-D weights are stored
/// channels-last (a permutation, as `torch.save` of a `channels_last` model writes them): the
/// safetensors file holds the original values, not just what the loader read.
#[test]
fn import_keeps_the_original_values() {
    let arch = synthcal::models::arch("resnet20").unwrap();
    let orig = synthcal::models::random_params(&arch, 3);
    let ts: Vec<Stored> = orig
        .tensors
        .iter()
        .enumerate()
        .map(|(k, (name, a))| {
            let shape = a.shape.clone();
            let (storage, stride) = if let [_, ci, kh, kw] = shape[..] {
                // Physical order [co][kh][kw][ci].
                let mut s = vec![0.0; a.data.len()];
                for (i, &v) in a.data.iter().enumerate() {
                    let (o, c, y, x) =
                        (i / (ci * kh * kw), i / (kh * kw) % ci, i / kw % kh, i % kw);
                    s[((o * kh + y) * kw + x) * ci + c] = v;
                }
                (s, vec![kh * kw * ci, 1, kw * ci, ci])
            } else {
                let mut stride = vec![1; shape.len()];
                for d in (0..shape.len().saturating_sub(1)).rev() {
                    stride[d] = stride[d + 1] * shape[d + 1];
                }
                (a.data.clone(), stride)
            };
            Stored {
                name: name.clone(),
                key: k.to_string(),
                storage,
                offset: 0,
                shape,
                stride,
            }
        })
        .collect();
    let dir = tmp_dir("import-values");
    let (ckpt, out) = (dir.join("r20.pt"), dir.join("r20.safetensors"));
    write_zip(&ckpt, &ts);
    synthcal::models::import(&ckpt, &out, None, &Default::default()).unwrap();
    let (back, meta) = synthcal::models::read_params(&out).unwrap();
    assert_eq!(meta.get("arch").map(String::as_str), Some("resnet20"));
    assert_eq!(back.tensors.len(), orig.tensors.len());
    for (name, a) in &orig.tensors {
        let b = &back.tensors[name];
        assert!(b.shape == a.shape && b.data == a.data, "{name} differs");
    }
    std::fs::remove_dir_all(&dir).ok();
}
