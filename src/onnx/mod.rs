//! ONNX in and out: FP32 models exported as standard ONNX (opset 13), INT8 models in the QDQ
//! format, and ONNX classifiers imported onto synthcal's graph ops. The protobuf messages are written by hand for prost
//! ([`proto`]), so building needs no `protoc`.

mod export;
mod fold;
mod import;
pub mod proto;
mod qdq;
mod qdq_import;
mod tensor;

pub use export::export;
pub use import::{import, OPSETS, SUPPORTED_OPS};
pub use qdq::export_qdq;
pub use qdq_import::import_qdq;

use crate::error::{Error, Result};
use crate::models::Model;
use std::path::Path;

/// The opset [`export`] writes.
pub const OPSET: i64 = 13;
/// Metadata key of the input normalization's mean (a JSON list, one number per input channel).
pub const META_MEAN: &str = "synthcal.norm_mean";
/// Metadata key of the input normalization's standard deviation.
pub const META_STD: &str = "synthcal.norm_std";
/// Metadata key of the class names (a JSON list of strings).
pub const META_CLASSES: &str = "synthcal.class_names";

/// Largest .onnx file read: far above any CIFAR or ImageNet CNN's weights.
const MAX_FILE_BYTES: u64 = 4 << 30;

/// Whether `path` names an ONNX file (by extension: protobuf has no magic number).
pub fn is_onnx_path(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("onnx"))
}

/// Reads an ONNX classifier from a file (see [`import`]); errors name the file.
pub fn load(path: &Path) -> Result<Model> {
    let (bytes, stem) = read(path)?;
    import(&bytes, &stem).map_err(in_file(path))
}

/// Restates an error of reading `path`'s contents as an error naming the file.
fn in_file(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// The file's bytes (size checked) and stem.
fn read(path: &Path) -> Result<(Vec<u8>, String)> {
    let in_file = |msg: String| Error::File {
        path: path.to_path_buf(),
        msg,
    };
    let len = std::fs::metadata(path)
        .map_err(|e| in_file(e.to_string()))?
        .len();
    if len > MAX_FILE_BYTES {
        return Err(in_file(format!(
            "{len} bytes is more than the {MAX_FILE_BYTES} an ONNX file may have"
        )));
    }
    let bytes = std::fs::read(path).map_err(|e| in_file(e.to_string()))?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok((bytes, stem))
}

/// Reads a QDQ ONNX model from a file as an INT8 model (see [`import_qdq`]).
pub fn load_qdq(path: &Path) -> Result<crate::quant::QuantizedModel> {
    let (bytes, stem) = read(path)?;
    import_qdq(&bytes, &stem).map_err(in_file(path))
}

/// Whether the ONNX file at `path` holds a QDQ (quantized) model.
pub fn is_qdq_file(path: &Path) -> Result<bool> {
    let (bytes, stem) = read(path)?;
    let p = import::parse(&bytes, &stem).map_err(in_file(path))?;
    Ok(import::has_qdq(&p.graph().map_err(in_file(path))?.node))
}

/// Writes [`export`]'s bytes to `path` atomically.
pub fn write(model: &Model, path: &Path) -> Result<()> {
    let bytes = export(model)?;
    crate::io::write_atomic(path, &bytes).map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}

/// Writes [`export_qdq`]'s bytes to `path` atomically.
pub fn write_qdq(model: &crate::quant::QuantizedModel, path: &Path) -> Result<()> {
    let bytes = export_qdq(model)?;
    crate::io::write_atomic(path, &bytes).map_err(|e| Error::File {
        path: path.to_path_buf(),
        msg: e.to_string(),
    })
}
