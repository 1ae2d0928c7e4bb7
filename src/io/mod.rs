//! Model file I/O: PyTorch checkpoints (read, without Python) and
//! safetensors (read and atomic write).

pub mod atomic;
pub mod lock;
pub mod output;
pub mod pickle;
pub mod safetensors_io;
pub mod tensor;
pub mod torch;

use std::fs::File;
use std::path::{Path, PathBuf};

pub use atomic::{write_atomic, write_atomic_with};
pub use lock::DirLock;
pub use output::{check_output_dir, check_output_file};
pub use pickle::PickleError;
pub use safetensors_io::{
    read_safetensors, write_safetensors, write_safetensors_typed, write_tensor_data,
};
pub use tensor::{DType, NamedTensors, TensorData, TensorSlice, TensorValues};
pub use torch::load_torch_checkpoint;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {source}", path.display())]
    Pickle { path: PathBuf, source: PickleError },
    #[error("{}: zip archive: {source}", path.display())]
    Zip {
        path: PathBuf,
        source: zip::result::ZipError,
    },
    #[error("{}: safetensors: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        source: safetensors::SafeTensorError,
    },
    #[error("{}: truncated at offset {offset}: {what}", path.display())]
    Truncated {
        path: PathBuf,
        offset: u64,
        what: String,
    },
    #[error("{}: storage '{key}' is missing", path.display())]
    MissingStorage { path: PathBuf, key: String },
    #[error("{}: tensor '{name}': {msg}", path.display())]
    BadTensor {
        path: PathBuf,
        name: String,
        msg: String,
    },
    #[error("{}: {msg}", path.display())]
    Format { path: PathBuf, msg: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn pickle(path: &Path, source: PickleError) -> Self {
        Error::Pickle {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn format(path: &Path, msg: impl Into<String>) -> Self {
        Error::Format {
            path: path.into(),
            msg: msg.into(),
        }
    }

    pub(crate) fn bad_tensor(path: &Path, name: &str, msg: String) -> Self {
        Error::BadTensor {
            path: path.into(),
            name: name.into(),
            msg,
        }
    }
}

/// What a weights file is, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    TorchZip,
    TorchLegacy,
    Safetensors,
}

/// Identifies a file by content (the extension is not trusted).
pub fn detect_format(path: impl AsRef<Path>) -> Result<Format> {
    let path = path.as_ref();
    let mut head = [0u8; 32];
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let n = torch::read_up_to(&mut f, &mut head).map_err(|e| Error::io(path, e))?;
    if n == 0 {
        return Err(Error::format(path, "empty file (0 bytes)"));
    }
    sniff(&head[..n]).ok_or_else(|| {
        Error::format(
            path,
            "unknown file type (not torch zip/legacy, not safetensors)",
        )
    })
}

/// The format the first bytes of a file show, if any.
fn sniff(head: &[u8]) -> Option<Format> {
    if head.starts_with(b"PK\x03\x04") {
        return Some(Format::TorchZip);
    }
    // PROTO then LONG1 10 <magic>: the first pickle of a legacy checkpoint.
    let h = &head[..head.len().min(32)];
    if h.first() == Some(&0x80) && h.windows(10).any(|w| w == torch::LEGACY_MAGIC) {
        return Some(Format::TorchLegacy);
    }
    // safetensors: u64 header length, then a JSON object.
    (head.len() > 8 && head[8] == b'{').then_some(Format::Safetensors)
}

/// An error if `buf`, read where a safetensors file was expected, is a PyTorch checkpoint.
pub(crate) fn not_torch(path: &Path, buf: &[u8]) -> Result<()> {
    match sniff(buf) {
        Some(Format::TorchZip | Format::TorchLegacy) => Err(Error::format(
            path,
            "a PyTorch checkpoint, where a safetensors file written by synthcal is expected",
        )),
        _ => Ok(()),
    }
}

/// Loads all tensors of a torch checkpoint or safetensors file.
pub fn load_tensors(path: impl AsRef<Path>) -> Result<NamedTensors> {
    let path = path.as_ref();
    match detect_format(path)? {
        Format::TorchZip | Format::TorchLegacy => load_torch_checkpoint(path),
        Format::Safetensors => Ok(read_safetensors(path)?.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn dispatches_on_content() {
        let dir = std::env::temp_dir().join(format!("synthcal-mod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // A safetensors file with a misleading extension.
        let p = dir.join("weights.pt");
        write_safetensors(&p, &[("a", &[1][..], &[2.0f32][..])], &BTreeMap::new()).unwrap();
        assert_eq!(detect_format(&p).unwrap(), Format::Safetensors);
        assert_eq!(load_tensors(&p).unwrap()[0].1.to_f32(), [2.0]);
        let junk = dir.join("junk.th");
        std::fs::write(&junk, b"hello world, not a model").unwrap();
        let e = load_tensors(&junk).unwrap_err();
        assert!(e.to_string().contains("junk.th"), "{e}");
        let empty = dir.join("empty.pt");
        std::fs::write(&empty, b"").unwrap();
        for e in [
            load_tensors(&empty).unwrap_err(),
            load_torch_checkpoint(&empty).unwrap_err(),
            read_safetensors(&empty).unwrap_err(),
        ] {
            let e = e.to_string();
            assert!(e.contains("empty.pt: empty file"), "{e}");
        }
    }
}
