use std::path::PathBuf;

use s2i_registry::error_chain;
use thiserror::Error;

pub type Result<T, E = ImageError> = std::result::Result<T, E>;

/// What went wrong in the image store, an archive or a layer. Each variant names the thing a user
/// can act on: the file, the image, the layer and its entry, the limit.
#[derive(Debug, Error)]
pub enum ImageError {
    /// A file system operation of the store (or on a path the user named) failed.
    #[error("{op} {}: {source}", path.display())]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },

    /// Reading or writing a stream (an archive, a layer) failed.
    #[error("{what}: {source}")]
    Stream { what: String, source: std::io::Error },

    /// A layer or archive that is not a well-formed tar (cut short, a record over a limit, sparse…).
    #[error("{what}: {source}")]
    Tar { what: String, source: s2i_tar::TarError },

    #[error("image {0:?} not found in the OCI store")]
    NotFound(String),

    #[error("invalid image reference {reference:?}: {reason}")]
    Reference { reference: String, reason: String },

    /// An image archive or layout is malformed (missing file, bad JSON, a blob that is not there).
    #[error("{source_name}: {reason}")]
    Archive { source_name: String, reason: String },

    /// Content does not match the digest that names it.
    #[error("{what}: digest mismatch: expected {expected}, got {actual}")]
    DigestMismatch { what: String, expected: String, actual: String },

    /// A layer entry that s2i refuses to apply (it would leave the root filesystem, say).
    #[error("layer {layer}: entry {entry:?}: {reason}")]
    Layer { layer: String, entry: String, reason: String },

    /// Applying a layer entry failed on the host (a file system that refuses overlay's xattrs,
    /// say): the entry itself may be fine.
    #[error("layer {layer}: entry {entry:?}: {what}: {source}")]
    Apply { layer: String, entry: String, what: String, source: std::io::Error },

    /// A size limit was hit; `hint` says how to raise it.
    #[error("{what} exceeds the limit of {limit} bytes ({hint})")]
    Limit { what: String, limit: u64, hint: String },

    /// Something the store does not handle (zstd layers, a foreign platform…).
    #[error("{0}")]
    Unsupported(String),

    /// A container diff that cannot be turned into a layer (an overlay mounted with metacopy…).
    #[error("{0}")]
    Diff(String),

    /// The store belongs to another user, who could open it to everyone again or change what
    /// the engine reads and writes in it.
    #[error("the OCI store {} belongs to uid {owner}, not to uid {user} who runs s2i; the store must be private to the user s2i runs as (chown it, or name another with --oci-store)", path.display())]
    StoreNotOwned { path: PathBuf, owner: u32, user: u32 },

    /// The engine was told to remove what it made while this ran (an interruption).
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),

    /// Unpacking layers needs root (owners, device nodes, trusted xattrs).
    #[error("{0} needs root: run s2i as root for --engine oci")]
    NotRoot(&'static str),
}

impl ImageError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ImageError::Io { op, path: path.into(), source }
    }

    pub(crate) fn archive(source_name: impl std::fmt::Display, reason: impl Into<String>) -> Self {
        ImageError::Archive { source_name: source_name.to_string(), reason: reason.into() }
    }

    pub(crate) fn layer(layer: impl std::fmt::Display, entry: impl Into<String>, reason: impl Into<String>) -> Self {
        ImageError::Layer { layer: layer.to_string(), entry: entry.into(), reason: reason.into() }
    }

    /// The image itself is at fault (a refused entry, a malformed layer, a digest that does not
    /// match): any other way of putting its root filesystem together would fail the same way.
    pub fn faults_the_image(&self) -> bool {
        matches!(self, ImageError::Layer { .. } | ImageError::Tar { .. } | ImageError::DigestMismatch { .. })
    }
}

impl From<ImageError> for s2i_engine::EngineError {
    fn from(e: ImageError) -> Self {
        use s2i_engine::{EngineError, EngineKind};
        match e {
            ImageError::NotFound(name) => EngineError::ImageNotFound(name),
            ImageError::Unsupported(what) => EngineError::NotSupported { engine: EngineKind::Oci, what },
            other => EngineError::Api { op: "the OCI image store".into(), message: error_chain(&other), status: None },
        }
    }
}
