//! PyTorch checkpoints (`torch.save`) without PyTorch: the zip format of
//! torch >= 1.6 and the legacy pickle stream of older versions.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use super::pickle::{unpickle, PickleError, StorageRef, TensorRef, Value};
use super::tensor::{DType, NamedTensors, TensorData, TensorValues};
use super::{Error, Result};

/// `0x1950a86a20f9469cfc6c` as pickle's LONG1 stores it (little-endian).
pub(crate) const LEGACY_MAGIC: [u8; 10] =
    [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const LEGACY_PROTOCOL: i64 = 1001;
/// A data.pkl larger than this is not a weights file.
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Per-storage cap; CIFAR models are a few MB.
const MAX_STORAGE_BYTES: u64 = 4 << 30;

/// Loads the state dict of a torch checkpoint (zip or legacy format,
/// detected from the content). Tensors come back in file order, converted
/// to f32, with a leading `module.` (DataParallel) stripped from names.
pub fn load_torch_checkpoint(path: impl AsRef<Path>) -> Result<NamedTensors> {
    let path = path.as_ref();
    let mut head = [0u8; 4];
    let n = File::open(path)
        .and_then(|mut f| read_up_to(&mut f, &mut head))
        .map_err(|e| Error::io(path, e))?;
    if n == 0 {
        return Err(Error::format(path, "empty file (0 bytes)"));
    }
    if head[..n] == *b"PK\x03\x04" {
        load_zip(path)
    } else {
        let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        load_legacy(path, &buf)
    }
}

pub(crate) fn read_up_to(f: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

fn load_zip(path: &Path) -> Result<NamedTensors> {
    let zerr = |e| Error::Zip {
        path: path.into(),
        source: e,
    };
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let file_len = file.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut budget = Budget::new(file_len);
    let mut zip = zip::ZipArchive::new(BufReader::new(file)).map_err(zerr)?;
    // The archive's single top folder is named after the file at save time.
    let pkl = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || (n.ends_with("/data.pkl") && n.matches('/').count() == 1))
        .min()
        .map(str::to_string)
        .ok_or_else(|| Error::format(path, "zip archive has no <name>/data.pkl"))?;
    let prefix = &pkl[..pkl.len() - "data.pkl".len()];
    let big_endian = match read_entry(&mut zip, &format!("{prefix}byteorder"), 16).map_err(zerr)? {
        None => false,
        Some(b) if b.trim_ascii() == b"little" => false,
        Some(b) if b.trim_ascii() == b"big" => true,
        Some(b) => {
            let msg = format!("unknown byteorder {:?}", String::from_utf8_lossy(&b));
            return Err(Error::format(path, msg));
        }
    };
    let pickle = read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES)
        .map_err(zerr)?
        .ok_or_else(|| Error::format(path, "data.pkl vanished"))?;
    let (root, _) = unpickle(&pickle, 0).map_err(|e| Error::pickle(path, e))?;
    let tensors = state_dict(path, root)?;

    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let key = &t.storage.key;
        if !storages.contains_key(key) {
            let want = t.storage.numel.checked_mul(t.storage.dtype.size() as u64);
            let want = want.filter(|&w| w <= MAX_STORAGE_BYTES).ok_or_else(|| {
                Error::bad_tensor(
                    path,
                    &name,
                    format!("storage numel {} is too large", t.storage.numel),
                )
            })?;
            let entry = format!("{prefix}data/{key}");
            let bytes = read_entry(&mut zip, &entry, want)
                .map_err(zerr)?
                .ok_or_else(|| Error::MissingStorage {
                    path: path.into(),
                    key: key.clone(),
                })?;
            if (bytes.len() as u64) < want {
                return Err(Error::Truncated {
                    path: path.into(),
                    offset: bytes.len() as u64,
                    what: format!("storage {entry}: {} bytes, need {want}", bytes.len()),
                });
            }
            budget.storage(path, bytes.len() as u64)?;
            storages.insert(key.clone(), bytes);
        }
        let raw = &storages[key];
        let data = materialize(path, &name, &t, raw, t.storage.dtype, big_endian)?;
        budget.tensor(path, &data)?;
        out.push((name, data));
    }
    Ok(out)
}

/// Reads up to `max` bytes of a zip entry; `None` if it does not exist.
fn read_entry<R: Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    name: &str,
    max: u64,
) -> zip::result::ZipResult<Option<Vec<u8>>> {
    let f = match zip.by_name(name) {
        Ok(f) => f,
        Err(zip::result::ZipError::FileNotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    // Capacity from the (untrusted) header is capped by `max`.
    let mut buf = Vec::with_capacity(f.size().min(max) as usize);
    f.take(max).read_to_end(&mut buf)?;
    Ok(Some(buf))
}

/// One root storage of a legacy file: where its bytes are and how to read them.
struct LegacyStorage {
    start: usize,
    numel: u64,
    dtype: DType,
}

fn load_legacy(path: &Path, buf: &[u8]) -> Result<NamedTensors> {
    let pk =
        |r: std::result::Result<(Value, usize), PickleError>| r.map_err(|e| Error::pickle(path, e));
    let (magic, pos) = pk(unpickle(buf, 0))?;
    if magic != Value::BigInt(LEGACY_MAGIC.to_vec()) {
        return Err(Error::format(
            path,
            "not a torch checkpoint (bad legacy magic number)",
        ));
    }
    let (proto, pos) = pk(unpickle(buf, pos))?;
    if proto.as_int() != Some(LEGACY_PROTOCOL) {
        return Err(Error::format(
            path,
            format!("legacy protocol {proto:?}, expected 1001"),
        ));
    }
    let (sys_info, pos) = pk(unpickle(buf, pos))?;
    let big_endian = matches!(sys_info.get("little_endian"), Some(Value::Bool(false)));
    let long_size = sys_info
        .get("type_sizes")
        .and_then(|t| t.get("long"))
        .and_then(Value::as_int);
    let (root, pos) = pk(unpickle(buf, pos))?;
    let (keys, pos) = pk(unpickle(buf, pos))?;
    let keys: Vec<String> = match &keys {
        Value::List(k) | Value::Tuple(k) => k
            .iter()
            .map(|k| {
                k.as_str()
                    .map(str::to_string)
                    .or_else(|| k.as_int().map(|i| i.to_string()))
            })
            .collect::<Option<_>>()
            .ok_or_else(|| Error::format(path, "storage key list holds a non-string"))?,
        v => {
            return Err(Error::format(
                path,
                format!("storage key list is a {}", v.kind()),
            ))
        }
    };

    // Every stored storage must be typed by some persistent id to know its size.
    let mut dtypes: HashMap<String, DType> = HashMap::new();
    root.for_each_storage(&mut |s: &StorageRef| {
        dtypes.entry(s.key.clone()).or_insert(s.dtype);
    });
    // torch writes int64 (8 bytes) for LongStorage whatever sys_info says
    // (its type_sizes.long is struct's standard size, 4). Only if 8 does not
    // fit the file do we try the recorded size.
    let has_long = keys.iter().any(|k| dtypes.get(k) == Some(&DType::I64));
    let mut layout = walk_storages(path, buf, pos, &keys, &dtypes, 8, big_endian);
    if has_long && !matches!(&layout, Ok((_, end)) if *end == buf.len()) {
        if let Some(4) = long_size {
            if let Ok(alt) = walk_storages(path, buf, pos, &keys, &dtypes, 4, big_endian) {
                if alt.1 == buf.len() {
                    log::warn!(
                        "{}: reading LongStorage as 4-byte ints (type_sizes)",
                        path.display()
                    );
                    layout = Ok(alt);
                }
            }
        }
    }
    let (storages, end) = layout?;
    if end != buf.len() {
        log::warn!(
            "{}: {} trailing bytes after the last storage",
            path.display(),
            buf.len() - end
        );
    }

    let tensors = state_dict(path, root)?;
    let mut budget = Budget::new(buf.len() as u64);
    let mut out = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let s = storages
            .get(&t.storage.key)
            .ok_or_else(|| Error::MissingStorage {
                path: path.into(),
                key: t.storage.key.clone(),
            })?;
        let elem = s.dtype.size() as u64;
        let (first, count) = match &t.storage.view {
            None => (0, s.numel),
            Some(v) if v.offset.checked_add(v.numel).is_some_and(|e| e <= s.numel) => {
                (v.offset, v.numel)
            }
            Some(v) => {
                let msg = format!(
                    "view {}+{} outside storage of {}",
                    v.offset, v.numel, s.numel
                );
                return Err(Error::bad_tensor(path, &name, msg));
            }
        };
        // In bounds: walk_storages checked start + numel * elem <= buf.len().
        let lo = s.start + (first * elem) as usize;
        let raw = &buf[lo..lo + (count * elem) as usize];
        let mut data = materialize(path, &name, &t, raw, s.dtype, big_endian)?;
        budget.tensor(path, &data)?;
        data.dtype_orig = t.storage.dtype;
        out.push((name, data));
    }
    Ok(out)
}

type Layout = (HashMap<String, LegacyStorage>, usize);

/// Legacy storages follow the pickles in key order, each as an 8-byte
/// element count and the raw elements.
fn walk_storages(
    path: &Path,
    buf: &[u8],
    mut pos: usize,
    keys: &[String],
    dtypes: &HashMap<String, DType>,
    long_size: usize,
    big_endian: bool,
) -> Result<Layout> {
    let mut map = HashMap::new();
    for key in keys {
        let dtype = *dtypes.get(key).ok_or_else(|| Error::MissingStorage {
            path: path.into(),
            key: key.clone(),
        })?;
        let dtype = if dtype == DType::I64 && long_size == 4 {
            DType::I32
        } else {
            dtype
        };
        let truncated = |what: String| Error::Truncated {
            path: path.into(),
            offset: pos as u64,
            what,
        };
        let head: [u8; 8] = buf
            .get(pos..pos + 8)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| truncated(format!("size of storage '{key}'")))?;
        let numel = if big_endian {
            u64::from_be_bytes(head)
        } else {
            u64::from_le_bytes(head)
        };
        let nbytes = numel.checked_mul(dtype.size() as u64);
        let start = pos + 8;
        let end = nbytes
            .and_then(|n| (start as u64).checked_add(n))
            .filter(|&e| e <= buf.len() as u64);
        let Some(end) = end else {
            return Err(truncated(format!(
                "storage '{key}' of {numel} x {} bytes",
                dtype.size()
            )));
        };
        map.insert(
            key.clone(),
            LegacyStorage {
                start,
                numel,
                dtype,
            },
        );
        pos = end as usize;
    }
    Ok((map, pos))
}

/// Picks the tensors of the state dict out of the unpickled root object.
fn state_dict(path: &Path, root: Value) -> Result<Vec<(String, TensorRef)>> {
    let Value::Dict(mut items) = root else {
        return Err(Error::format(
            path,
            format!("checkpoint holds a {}, not a dict", root.kind()),
        ));
    };
    // Training checkpoints wrap the weights, e.g. {'state_dict': ..., 'best_prec1': ...}.
    for wrapper in ["state_dict", "model_state_dict", "model", "net"] {
        let at = items
            .iter()
            .rposition(|(k, v)| k.as_str() == Some(wrapper) && matches!(v, Value::Dict(_)));
        if let Some(i) = at {
            if let (_, Value::Dict(inner)) = items.swap_remove(i) {
                items = inner;
                break;
            }
        }
    }
    let mut out: Vec<(String, TensorRef)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut skipped = Vec::new();
    for (k, v) in items {
        let (Some(name), Value::Tensor(t)) = (k.as_str(), v) else {
            skipped.push(k.as_str().unwrap_or("?").to_string());
            continue;
        };
        let name = name.strip_prefix("module.").unwrap_or(name).to_string();
        match index.get(&name) {
            Some(&i) => out[i].1 = t, // Python dict semantics: last value wins
            None => {
                index.insert(name.clone(), out.len());
                out.push((name, t));
            }
        }
    }
    if out.is_empty() {
        return Err(Error::format(
            path,
            format!("no tensors found (keys: {skipped:?})"),
        ));
    }
    if !skipped.is_empty() {
        log::debug!(
            "{}: ignoring non-tensor entries {skipped:?}",
            path.display()
        );
    }
    Ok(out)
}

/// What a checkpoint may expand to: its decompressed storages, and the elements of its tensors
/// (broadcast views repeat storage, and many tensors may view one storage), each at most 64
/// times the file's size plus 64 Mi, so that a small file cannot ask for unbounded memory.
struct Budget {
    limit: u64,
    storage_bytes: u64,
    elements: u64,
}

impl Budget {
    fn new(file_len: u64) -> Budget {
        Budget {
            limit: file_len.saturating_mul(64).saturating_add(64 << 20),
            storage_bytes: 0,
            elements: 0,
        }
    }

    fn storage(&mut self, path: &Path, bytes: u64) -> Result<()> {
        let limit = self.limit;
        spend(&mut self.storage_bytes, limit, bytes, path, "storage bytes")
    }

    fn tensor(&mut self, path: &Path, t: &TensorData) -> Result<()> {
        let limit = self.limit;
        let n = t.shape.iter().product::<usize>() as u64;
        spend(&mut self.elements, limit, n, path, "tensor elements")
    }
}

/// Adds `n` to `used`, refusing the file once it passes `limit`.
fn spend(used: &mut u64, limit: u64, n: u64, path: &Path, what: &str) -> Result<()> {
    *used = used.saturating_add(n);
    if *used > limit {
        let msg = format!("its {what} add up to more than {limit} (64 times its size plus 64 Mi)");
        return Err(Error::format(path, msg));
    }
    Ok(())
}

/// Copies a (possibly strided, offset) view of `raw` into a contiguous f32 tensor.
fn materialize(
    path: &Path,
    name: &str,
    t: &TensorRef,
    raw: &[u8],
    dtype: DType,
    big_endian: bool,
) -> Result<TensorData> {
    let bad = |msg: String| Error::bad_tensor(path, name, msg);
    let elem = dtype.size();
    let avail = raw.len() / elem;
    let numel = t.shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    let numel = numel.ok_or_else(|| bad(format!("shape {:?} overflows", t.shape)))?;
    // Only broadcast (stride-0) tensors may exceed their storage; cap them.
    if numel > avail.saturating_mul(16).max(1 << 20) {
        return Err(bad(format!(
            "shape {:?} is far larger than its storage ({avail})",
            t.shape
        )));
    }
    let mut values = Vec::with_capacity(numel);
    if numel > 0 {
        let last = t
            .shape
            .iter()
            .zip(&t.stride)
            .try_fold(t.offset, |acc, (&d, &s)| {
                (d - 1).checked_mul(s).and_then(|x| acc.checked_add(x))
            });
        match last {
            Some(l) if l < avail => {}
            _ => {
                let msg = format!(
                    "offset {} size {:?} stride {:?} exceed storage of {avail} elements",
                    t.offset, t.shape, t.stride
                );
                return Err(bad(msg));
            }
        }
        let at = |i: usize| dtype.decode_f32(&raw[i * elem..(i + 1) * elem], big_endian);
        // Odometer over the index space; `off` stays within [offset, last].
        let mut idx = vec![0usize; t.shape.len()];
        let mut off = t.offset;
        for _ in 0..numel {
            values.push(at(off));
            for d in (0..idx.len()).rev() {
                idx[d] += 1;
                off = off.wrapping_add(t.stride[d]);
                if idx[d] < t.shape[d] {
                    break;
                }
                off = off.wrapping_sub(t.stride[d].wrapping_mul(t.shape[d]));
                idx[d] = 0;
            }
        }
    }
    Ok(TensorData {
        shape: t.shape.clone(),
        values: TensorValues::F32(values),
        dtype_orig: dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::super::pickle::tests::P;
    use super::*;
    use std::io::Write;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("synthcal-io-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    fn f32_bytes(v: impl IntoIterator<Item = f32>) -> Vec<u8> {
        v.into_iter().flat_map(f32::to_le_bytes).collect()
    }

    /// Pushes an OrderedDict with a strided tensor, a plain (or, legacy,
    /// view) tensor, an int64 counter and a float, plus torch's `_metadata` BUILD.
    fn state_dict_body(p: &mut P, view: bool) {
        p.global("collections", "OrderedDict").op(b")Rq\x00(");
        // 2x3 transpose of a 3x2 block starting at element 1 of storage "0".
        p.s("module.w")
            .tensor("FloatStorage", "0", 8, None, 1, &[2, 3], &[1, 2]);
        let v = view.then_some(("9", 2, 4));
        p.s("b").tensor("FloatStorage", "1", 6, v, 1, &[3], &[1]);
        p.s("num_batches_tracked")
            .tensor("LongStorage", "2", 1, None, 0, &[], &[]);
        p.s("best_prec1").op(b"G\x40\x59\x00\x00\x00\x00\x00\x00");
        p.op(b"u}").s("version").op(b"K\x01sb");
    }

    fn state_dict_pickle() -> Vec<u8> {
        let mut p = P::default();
        p.op(b"\x80\x02");
        state_dict_body(&mut p, false);
        p.op(b".");
        p.0
    }

    #[test]
    fn zip_checkpoint_with_strided_tensor() {
        let path = tmp("tiny.pt");
        let mut z = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        let deflated = opts.compression_method(zip::CompressionMethod::Deflated);
        z.start_file("tiny/data.pkl", opts).unwrap();
        z.write_all(&state_dict_pickle()).unwrap();
        z.start_file("tiny/byteorder", opts).unwrap();
        z.write_all(b"little").unwrap();
        z.start_file("tiny/data/0", deflated).unwrap();
        z.write_all(&f32_bytes((0..8).map(|i| i as f32))).unwrap();
        z.start_file("tiny/data/1", opts).unwrap();
        z.write_all(&f32_bytes([10.0, 11.0, 12.0, 13.0, 14.0, 15.0]))
            .unwrap();
        z.start_file("tiny/data/2", opts).unwrap();
        z.write_all(&7i64.to_le_bytes()).unwrap();
        z.finish().unwrap();

        let t = load_torch_checkpoint(&path).unwrap();
        let names: Vec<_> = t.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["w", "b", "num_batches_tracked"]);
        assert_eq!(t[0].1.shape, [2, 3]);
        assert_eq!(t[0].1.as_f32().unwrap(), [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
        assert_eq!(t[1].1.as_f32().unwrap(), [11.0, 12.0, 13.0]);
        assert_eq!(
            (t[2].1.dtype_orig, t[2].1.as_f32().unwrap()),
            (DType::I64, &[7.0][..])
        );
        assert!(t[0].1.is_float() && !t[2].1.is_float());
    }

    #[test]
    fn zip_missing_storage_and_out_of_bounds() {
        let path = tmp("bad.pt");
        let mut z = zip::ZipWriter::new(File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("a/data.pkl", opts).unwrap();
        z.write_all(&state_dict_pickle()).unwrap();
        z.start_file("a/data/0", opts).unwrap();
        z.write_all(&f32_bytes((0..8).map(|i| i as f32))).unwrap();
        z.finish().unwrap();
        let e = load_torch_checkpoint(&path).unwrap_err();
        assert!(
            matches!(&e, Error::MissingStorage { key, .. } if key == "1"),
            "{e}"
        );

        let mut p = P::default();
        p.op(b"\x80\x02}")
            .s("w")
            .tensor("FloatStorage", "0", 4, None, 2, &[2, 2], &[1, 1])
            .op(b"s.");
        let mut z = zip::ZipWriter::new(File::create(&path).unwrap());
        z.start_file("a/data.pkl", opts).unwrap();
        z.write_all(&p.0).unwrap();
        z.start_file("a/data/0", opts).unwrap();
        z.write_all(&f32_bytes([0.0; 4])).unwrap();
        z.finish().unwrap();
        let e = load_torch_checkpoint(&path).unwrap_err();
        assert!(
            matches!(&e, Error::BadTensor { name, .. } if name == "w"),
            "{e}"
        );
    }

    fn legacy_file(long_size: u64) -> Vec<u8> {
        let mut f = Vec::new();
        f.extend_from_slice(b"\x80\x02\x8a\x0a");
        f.extend_from_slice(&LEGACY_MAGIC);
        f.extend_from_slice(b".\x80\x02M\xe9\x03.");
        let mut p = P::default();
        p.op(b"\x80\x02}(")
            .s("little_endian")
            .op(b"\x88")
            .s("type_sizes");
        p.op(b"}(")
            .s("int")
            .op(b"K\x04")
            .s("long")
            .op(b"K\x04")
            .s("short")
            .op(b"K\x02u");
        p.op(b"u.");
        f.extend(p.0);
        let mut p = P::default();
        p.op(b"\x80\x02}(")
            .s("best_prec1")
            .op(b"G\x40\x59\x00\x00\x00\x00\x00\x00");
        p.s("state_dict");
        state_dict_body(&mut p, true);
        p.op(b"u.");
        f.extend(p.0);
        let mut p = P::default();
        p.op(b"\x80\x02(").s("0").s("1").s("2").op(b"l.");
        f.extend(p.0);
        f.extend(8u64.to_le_bytes());
        f.extend(f32_bytes((0..8).map(|i| i as f32)));
        f.extend(6u64.to_le_bytes());
        f.extend(f32_bytes([10.0, 11.0, 12.0, 13.0, 14.0, 15.0]));
        f.extend(1u64.to_le_bytes());
        f.extend(&(-3i64).to_le_bytes()[..long_size as usize]);
        f
    }

    #[test]
    fn legacy_checkpoint() {
        let path = tmp("tiny.th");
        for long_size in [8, 4] {
            std::fs::write(&path, legacy_file(long_size)).unwrap();
            let t = load_torch_checkpoint(&path).unwrap();
            let names: Vec<_> = t.iter().map(|(n, _)| n.as_str()).collect();
            assert_eq!(names, ["w", "b", "num_batches_tracked"]);
            assert_eq!(t[0].1.as_f32().unwrap(), [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]);
            // view = elements 2..6 of storage "1"; the tensor starts at 1 within it
            assert_eq!(t[1].1.as_f32().unwrap(), [13.0, 14.0, 15.0]);
            assert_eq!(t[2].1.as_f32().unwrap(), [-3.0]);
        }
        let mut f = legacy_file(8);
        f.truncate(f.len() - 3);
        std::fs::write(&path, f).unwrap();
        let e = load_torch_checkpoint(&path).unwrap_err();
        assert!(matches!(e, Error::Truncated { .. }), "{e}");
    }
}
