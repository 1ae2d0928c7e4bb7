//! The crate-wide error type: every failure a user can cause is a typed, printable error.

use std::path::PathBuf;

/// Everything that can go wrong, each naming what is wrong (file, tensor, shape, op).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter could be used.
    #[error("no usable GPU adapter: {reason}\nadapters found:\n{found}\n{hint}")]
    NoAdapter {
        /// Why.
        reason: String,
        /// The adapters that were found.
        found: String,
        /// What to install or ask for.
        hint: &'static str,
    },
    /// A tensor of the wrong shape for an op.
    #[error("{op}: {msg}")]
    Shape {
        /// The op.
        op: &'static str,
        /// What is wrong.
        msg: String,
    },
    /// A tensor larger than this adapter can bind.
    #[error("{op}: tensor of {bytes} bytes exceeds this adapter's max_storage_buffer_binding_size ({limit} bytes); use a smaller batch")]
    TooLarge {
        /// The op.
        op: &'static str,
        /// The tensor's size.
        bytes: u64,
        /// The adapter's limit.
        limit: u64,
    },
    /// The GPU driver reported an error.
    #[error("GPU error: {0}")]
    Gpu(String),
    /// A file that cannot be used.
    #[error("{path}: {msg}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        msg: String,
    },
    /// A value or combination of values that cannot work, described.
    #[error("{0}")]
    Invalid(String),
    /// The caller cancelled the work (see [`crate::Cancel`]).
    #[error("cancelled")]
    Cancelled,
    /// An I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// A weights file could not be read or written.
    #[error(transparent)]
    Weights(#[from] crate::io::Error),
    /// A dataset could not be read.
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Shorthand for the shape errors that every op raises.
pub fn shape_err<T>(op: &'static str, msg: impl Into<String>) -> Result<T> {
    Err(Error::Shape {
        op,
        msg: msg.into(),
    })
}
