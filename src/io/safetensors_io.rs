//! safetensors files: atomic writer and a reader that converts to [`TensorData`].

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::atomic::write_atomic;
use super::tensor::{DType, NamedTensors, TensorData, TensorSlice, TensorValues};
use super::{Error, Result};

/// Writes f32 tensors (name, shape, values) plus string metadata, atomically.
pub fn write_safetensors<S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: &[(S, &[usize], &[f32])],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let typed: Vec<_> = tensors
        .iter()
        .map(|(n, s, v)| (n.as_ref(), *s, TensorSlice::F32(v)))
        .collect();
    write_safetensors_typed(path, &typed, metadata)
}

/// Writes f32 / i32 / i8 tensors, e.g. a quantized model's weights, scales
/// and biases, atomically.
pub fn write_safetensors_typed<S: AsRef<str>>(
    path: impl AsRef<Path>,
    tensors: &[(S, &[usize], TensorSlice<'_>)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let path = path.as_ref();
    let mut seen = HashSet::new();
    let mut bytes = Vec::with_capacity(tensors.len());
    for (name, shape, values) in tensors {
        let name = name.as_ref();
        if !seen.insert(name) || name == "__metadata__" {
            let msg = if name == "__metadata__" {
                "reserved tensor name"
            } else {
                "duplicate tensor name"
            };
            return Err(Error::bad_tensor(path, name, msg.into()));
        }
        let numel = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel != Some(values.len()) {
            let msg = format!("shape {shape:?} does not match {} values", values.len());
            return Err(Error::bad_tensor(path, name, msg));
        }
        bytes.push(le_bytes(*values));
    }
    let file = serialize(tensors, &bytes, metadata);
    write_atomic(path, &file).map_err(|e| Error::io(path, e))
}

/// The safetensors bytes, header written here rather than by the `safetensors` crate, whose
/// metadata is a `HashMap` and comes out in a random order: the same tensors and metadata
/// always give the same bytes, so a model can be verified by its hash. The layout is the
/// crate's: tensors by descending alignment then name, `__metadata__` first (keys sorted),
/// the header padded with spaces to a multiple of 8 bytes.
fn serialize<S: AsRef<str>>(
    tensors: &[(S, &[usize], TensorSlice<'_>)],
    bytes: &[Vec<u8>],
    metadata: &BTreeMap<String, String>,
) -> Vec<u8> {
    let dtype = |v: &TensorSlice<'_>| match v {
        TensorSlice::F32(_) => ("F32", 0),
        TensorSlice::I32(_) => ("I32", 1),
        TensorSlice::I8(_) => ("I8", 2),
    };
    let mut order: Vec<usize> = (0..tensors.len()).collect();
    order.sort_by(|&a, &b| {
        let key = |i: usize| (dtype(&tensors[i].2).1, tensors[i].0.as_ref());
        key(a).cmp(&key(b))
    });
    let quote = |s: &str| serde_json::Value::from(s).to_string();
    let mut entries = Vec::with_capacity(tensors.len() + 1);
    if !metadata.is_empty() {
        let kv: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("{}:{}", quote(k), quote(v)))
            .collect();
        entries.push(format!("\"__metadata__\":{{{}}}", kv.join(",")));
    }
    let mut offset = 0;
    for &i in &order {
        let (name, shape, values) = &tensors[i];
        let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
        let end = offset + bytes[i].len();
        entries.push(format!(
            "{}:{{\"dtype\":\"{}\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}",
            quote(name.as_ref()),
            dtype(values).0,
            shape.join(",")
        ));
        offset = end;
    }
    let mut header = format!("{{{}}}", entries.join(",")).into_bytes();
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut file = Vec::with_capacity(8 + header.len() + offset);
    file.extend_from_slice(&(header.len() as u64).to_le_bytes());
    file.extend_from_slice(&header);
    for &i in &order {
        file.extend_from_slice(&bytes[i]);
    }
    file
}

/// Convenience: writes loaded tensors back out unchanged.
pub fn write_tensor_data(
    path: impl AsRef<Path>,
    tensors: &[(String, TensorData)],
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    let typed: Vec<_> = tensors
        .iter()
        .map(|(n, t)| (n.as_str(), t.shape.as_slice(), t.as_slice()))
        .collect();
    write_safetensors_typed(path, &typed, metadata)
}

fn le_bytes(values: TensorSlice<'_>) -> Vec<u8> {
    match values {
        TensorSlice::F32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorSlice::I32(v) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        TensorSlice::I8(v) => v.iter().map(|&x| x as u8).collect(),
    }
}

/// Reads all tensors (in file order) and the `__metadata__` map. F32, I32 and
/// I8 stay as they are; other numeric types are converted to f32.
pub fn read_safetensors(
    path: impl AsRef<Path>,
) -> Result<(NamedTensors, BTreeMap<String, String>)> {
    let path = path.as_ref();
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let st_err = |e| Error::Safetensors {
        path: path.into(),
        source: e,
    };
    if buf.is_empty() {
        return Err(Error::format(path, "empty file (0 bytes)"));
    }
    super::not_torch(path, &buf)?;
    // safetensors' offset and shape errors often do not say which tensor is at fault.
    let explained = |e| match explain_header(&buf) {
        Some((name, msg)) => Error::bad_tensor(path, &name, format!("{msg} ({e})")),
        None => st_err(e),
    };
    let (_, meta) = SafeTensors::read_metadata(&buf).map_err(explained)?;
    let st = SafeTensors::deserialize(&buf).map_err(explained)?;
    let mut out = Vec::new();
    for name in meta.offset_keys() {
        let view = st.tensor(&name).map_err(st_err)?;
        let data = convert(path, &name, &view)?;
        out.push((name, data));
    }
    let metadata = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((out, metadata))
}

/// The first tensor (in data order) whose header entry is inconsistent, and why; `None`
/// when the header cannot be read that far or every entry fits.
fn explain_header(buf: &[u8]) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Entry {
        dtype: String,
        shape: Vec<u64>,
        data_offsets: (u64, u64),
    }
    let n = u64::from_le_bytes(buf.get(..8)?.try_into().ok()?);
    let end = usize::try_from(n).ok()?.checked_add(8)?;
    let header: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(buf.get(8..end)?).ok()?;
    let data_len = (buf.len() - end) as u64;
    let mut entries = Vec::new();
    for (name, v) in header {
        if name == "__metadata__" {
            continue;
        }
        match serde_json::from_value::<Entry>(v) {
            Ok(e) => entries.push((name, e)),
            Err(e) => return Some((name, format!("bad header entry: {e}"))),
        }
    }
    entries.sort_by_key(|(_, e)| e.data_offsets);
    let mut at = 0u64;
    for (name, e) in entries {
        let size = match e.dtype.as_str() {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
            "I16" | "U16" | "F16" | "BF16" => 2,
            "I32" | "U32" | "F32" => 4,
            "I64" | "U64" | "F64" => 8,
            other => return Some((name, format!("unsupported dtype {other}"))),
        };
        let bytes = e
            .shape
            .iter()
            .try_fold(size as u64, |a, &d| a.checked_mul(d));
        let (b, en) = e.data_offsets;
        let msg = match bytes {
            None => format!("shape {:?} overflows", e.shape),
            Some(_) if b != at => format!("data starts at byte {b}, expected {at}"),
            Some(x) if en < b || en - b != x => format!(
                "data_offsets [{b}, {en}] do not hold shape {:?} of {} ({x} bytes)",
                e.shape, e.dtype
            ),
            Some(_) if en > data_len => {
                format!("data ends at byte {en}, past the {data_len} bytes of tensor data")
            }
            Some(_) => {
                at = en;
                continue;
            }
        };
        return Some((name, msg));
    }
    None
}

fn convert(path: &Path, name: &str, view: &TensorView<'_>) -> Result<TensorData> {
    let raw = view.data();
    let dtype = match view.dtype() {
        Dtype::BOOL => DType::Bool,
        Dtype::U8 => DType::U8,
        Dtype::I8 => DType::I8,
        Dtype::I16 => DType::I16,
        Dtype::U16 => DType::U16,
        Dtype::I32 => DType::I32,
        Dtype::U32 => DType::U32,
        Dtype::I64 => DType::I64,
        Dtype::U64 => DType::U64,
        Dtype::F16 => DType::F16,
        Dtype::BF16 => DType::BF16,
        Dtype::F32 => DType::F32,
        Dtype::F64 => DType::F64,
        other => {
            return Err(Error::bad_tensor(
                path,
                name,
                format!("unsupported dtype {other:?}"),
            ))
        }
    };
    let chunks = raw.chunks_exact(dtype.size());
    let values = match dtype {
        DType::I32 => TensorValues::I32(
            chunks
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        DType::I8 => TensorValues::I8(raw.iter().map(|&b| b as i8).collect()),
        _ => TensorValues::F32(chunks.map(|c| dtype.decode_f32(c, false)).collect()),
    };
    Ok(TensorData {
        shape: view.shape().to_vec(),
        values,
        dtype_orig: dtype,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("synthcal-st-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn roundtrip_f32_i32_i8_with_metadata() {
        let path = tmp("m.safetensors");
        let meta = BTreeMap::from([("format".to_string(), "synthcal-int8".to_string())]);
        let w = [1.5f32, -2.0, 3.25, 0.0, 1e-7, -0.0];
        write_safetensors(&path, &[("w".to_string(), &[2, 3][..], &w[..])], &meta).unwrap();
        let (t, m) = read_safetensors(&path).unwrap();
        assert_eq!(m, meta);
        assert_eq!((t[0].0.as_str(), &t[0].1.shape[..]), ("w", &[2, 3][..]));
        assert_eq!(t[0].1.as_f32().unwrap(), w);

        let q = [-128i8, 0, 127];
        let b = [i32::MIN, 7];
        let typed = [
            ("q", &[3][..], TensorSlice::I8(&q)),
            ("b", &[2][..], TensorSlice::I32(&b)),
            ("s", &[][..], TensorSlice::F32(&[0.5])),
        ];
        write_safetensors_typed(&path, &typed, &BTreeMap::new()).unwrap();
        let (t, m) = read_safetensors(&path).unwrap();
        assert!(m.is_empty());
        let get = |n: &str| &t.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(get("q").values, TensorValues::I8(q.to_vec()));
        assert_eq!(get("b").values, TensorValues::I32(b.to_vec()));
        assert_eq!((get("s").shape.len(), get("s").to_f32()), (0, vec![0.5]));
        write_tensor_data(&path, &t, &meta).unwrap();
        assert_eq!(read_safetensors(&path).unwrap().0, t);
    }

    #[test]
    fn same_content_same_bytes() {
        // Many metadata keys: a HashMap-ordered header would differ between two writes.
        let meta: BTreeMap<String, String> = (0..40)
            .map(|i| (format!("key{i}"), format!("value \"{i}\"\n")))
            .collect();
        let w = [1.0f32, 2.0];
        let q = [-3i8, 4, 5];
        let typed = [
            ("z.q", &[3][..], TensorSlice::I8(&q)),
            ("a.w", &[2][..], TensorSlice::F32(&w)),
            ("b", &[1][..], TensorSlice::I32(&[9])),
        ];
        let (p1, p2) = (tmp("same1.safetensors"), tmp("same2.safetensors"));
        write_safetensors_typed(&p1, &typed, &meta).unwrap();
        write_safetensors_typed(&p2, &typed, &meta).unwrap();
        let bytes = std::fs::read(&p1).unwrap();
        assert_eq!(bytes, std::fs::read(&p2).unwrap());
        let (t, m) = read_safetensors(&p1).unwrap();
        assert_eq!(m, meta);
        assert_eq!(t.len(), 3);
        // The layout is the safetensors crate's: without metadata, the very same bytes.
        write_safetensors_typed(&p1, &typed, &BTreeMap::new()).unwrap();
        let views: Vec<_> = typed
            .iter()
            .map(|(n, s, v)| {
                let d = match v {
                    TensorSlice::F32(_) => Dtype::F32,
                    TensorSlice::I32(_) => Dtype::I32,
                    TensorSlice::I8(_) => Dtype::I8,
                };
                (n.to_string(), d, s.to_vec(), le_bytes(*v))
            })
            .collect();
        let views = views
            .iter()
            .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
        let crate_bytes = safetensors::serialize(views, None).unwrap();
        assert_eq!(std::fs::read(&p1).unwrap(), crate_bytes);
    }

    #[test]
    fn converts_other_dtypes() {
        let path = tmp("h.safetensors");
        let half = [0x00u8, 0x3c, 0x00, 0xc0]; // f16 1.0, -2.0
        let long: Vec<u8> = [5i64, -1].iter().flat_map(|x| x.to_le_bytes()).collect();
        let views = [
            ("h", TensorView::new(Dtype::F16, vec![2], &half).unwrap()),
            ("n", TensorView::new(Dtype::I64, vec![2], &long).unwrap()),
        ];
        std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
        let (t, _) = read_safetensors(&path).unwrap();
        let get = |n: &str| &t.iter().find(|(k, _)| k == n).unwrap().1;
        assert_eq!(
            (get("h").dtype_orig, get("h").to_f32()),
            (DType::F16, vec![1.0, -2.0])
        );
        assert_eq!(
            (get("n").dtype_orig, get("n").to_f32()),
            (DType::I64, vec![5.0, -1.0])
        );
    }

    #[test]
    fn errors_on_bad_input() {
        let e = read_safetensors(tmp("does-not-exist.safetensors")).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        let path = tmp("bad.safetensors");
        std::fs::write(&path, b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": garbage}").unwrap();
        assert!(matches!(
            read_safetensors(&path),
            Err(Error::Safetensors { .. })
        ));
        // Offset and shape errors name the tensor.
        let two = [
            ("a", &[2][..], &[1.0f32, 2.0][..]),
            ("b", &[1][..], &[3.0f32][..]),
        ];
        write_safetensors(&path, &two, &BTreeMap::new()).unwrap();
        let good = std::fs::read(&path).unwrap();
        for (from, to) in [
            (&b"[8,12]"[..], &b"[8,16]"[..]),
            (b"\"shape\":[1]", b"\"shape\":[2]"),
        ] {
            let at = good.windows(from.len()).position(|w| w == from).unwrap();
            let mut bytes = good.clone();
            bytes[at..at + to.len()].copy_from_slice(to);
            std::fs::write(&path, bytes).unwrap();
            let e = read_safetensors(&path).unwrap_err();
            assert!(
                matches!(&e, Error::BadTensor { name, .. } if name == "b"),
                "{e}"
            );
            assert!(e.to_string().contains("bad.safetensors: tensor 'b'"), "{e}");
        }
        let e = write_safetensors(&path, &[("x", &[4][..], &[1.0f32][..])], &BTreeMap::new());
        assert!(matches!(e, Err(Error::BadTensor { .. })));
        let dup = [
            ("x", &[1][..], &[1.0f32][..]),
            ("x", &[1][..], &[2.0f32][..]),
        ];
        assert!(write_safetensors(&path, &dup, &BTreeMap::new()).is_err());
    }
}
