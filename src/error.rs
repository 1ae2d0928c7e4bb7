//! The crate-wide error type: every failure a user can cause is a typed, printable error.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no usable GPU adapter: {reason}\nadapters found:\n{found}\n{hint}")]
    NoAdapter {
        reason: String,
        found: String,
        hint: &'static str,
    },
    #[error("{op}: {msg}")]
    Shape { op: &'static str, msg: String },
    #[error("{op}: tensor of {bytes} bytes exceeds this adapter's max_storage_buffer_binding_size ({limit} bytes); use a smaller batch")]
    TooLarge {
        op: &'static str,
        bytes: u64,
        limit: u64,
    },
    #[error("GPU error: {0}")]
    Gpu(String),
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Invalid(String),
    #[error("cancelled")]
    Cancelled,
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Weights(#[from] crate::io::Error),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for the shape errors that every op raises.
pub fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}
