//! Typed errors: a malformed or cut archive, a limit, a refused entry, and I/O on either side, so
//! a caller can tell "hostile or broken input" from "our own pipe broke".

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

/// One of the caps in [`Limits`](crate::Limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::max_name`](crate::Limits::max_name): one path or link target.
    Name,
    /// [`Limits::max_pax`](crate::Limits::max_pax): the PAX records of one entry, or one global record.
    PaxRecords,
    /// [`Limits::max_paths`](crate::Limits::max_paths): the distinct paths the guard remembers.
    Paths,
}

impl Limit {
    /// The field of [`Limits`](crate::Limits) that raises this cap.
    pub fn field(self) -> &'static str {
        match self {
            Limit::Name => "max_name",
            Limit::PaxRecords => "max_pax",
            Limit::Paths => "max_paths",
        }
    }
}

/// A record or a count over one of the caps. Nothing beyond the cap was read into memory.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub struct LimitExceeded {
    pub limit: Limit,
    /// The entry it happened in or before, when its name is known.
    pub entry: Option<String>,
    /// What the archive asked for (bytes, or paths).
    pub actual: u64,
    pub max: u64,
}

impl fmt::Display for LimitExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { limit, actual, max, .. } = self;
        if let Some(entry) = &self.entry {
            write!(f, "entry {entry:?}: ")?;
        }
        match limit {
            Limit::Name => write!(f, "a path or link target of {actual} bytes is over the limit of {max} bytes")?,
            Limit::PaxRecords => write!(f, "PAX extended records of {actual} bytes are over the limit of {max} bytes")?,
            Limit::Paths => write!(f, "the archive has more than {max} distinct paths")?,
        }
        write!(f, "; raise s2i_tar::Limits::{} to accept it", limit.field())
    }
}

/// The archive itself cannot be read: cut short, malformed, unsupported, over a limit, or the
/// reading failed.
#[derive(Debug, Error)]
pub enum TarError {
    /// Reading the underlying stream failed.
    #[error("reading the archive failed: {0}")]
    Io(#[source] io::Error),

    /// Not a single byte: no archive at all.
    #[error("the stream is empty: it holds no tar archive, not even an end-of-archive marker")]
    Empty,

    /// The stream ended before the end-of-archive marker (two zero blocks).
    #[error("the archive is cut short at byte {offset}{}", in_entry(.entry, "before its end-of-archive marker"))]
    Truncated { offset: u64, entry: Option<String> },

    #[error("the archive is malformed at byte {offset}{}: {reason}", in_entry(.entry, ""))]
    Malformed { offset: u64, entry: Option<String>, reason: String },

    /// A valid tar feature that s2i does not pass on.
    #[error("the archive holds {what} at byte {offset}{}, which s2i does not support", in_entry(.entry, ""))]
    Unsupported { offset: u64, entry: Option<String>, what: &'static str },

    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

fn in_entry(entry: &Option<String>, otherwise: &str) -> String {
    match entry {
        Some(e) => format!(" (entry {e:?})"),
        None if otherwise.is_empty() => String::new(),
        None => format!(" ({otherwise})"),
    }
}

/// What kind of thing a path already is, in messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathKind {
    Directory,
    File,
    Symlink,
}

impl fmt::Display for PathKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathKind::Directory => "directory",
            PathKind::File => "file",
            PathKind::Symlink => "symlink",
        })
    }
}

/// Why the guard refused an entry. Paths and targets are shown as the archive spells them
/// (lossy UTF-8), quoted so that control characters cannot reach a terminal.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RefusalReason {
    #[error("its path is absolute")]
    AbsolutePath,
    #[error("its path climbs out with '..'")]
    ParentDir,
    #[error("its path contains a NUL byte")]
    NulInPath,
    #[error("it would replace the root of the tree with a {0}")]
    ReplacesRoot(PathKind),
    #[error("its path goes through the symlink {0:?}")]
    ThroughSymlink(String),
    #[error("its path goes through {path:?}, which is a {kind}, not a directory")]
    ThroughNonDirectory { path: String, kind: PathKind },
    #[error("it would replace the directory {0:?} (entries are in it, or it was given as a directory)")]
    ReplacesDirectory(String),
    #[error("it would turn the {was} {path:?} into a directory")]
    BecomesDirectory { path: String, was: PathKind },
    #[error("it would replace the symlink {0:?} with a file")]
    ReplacesSymlink(String),
    #[error("it is a link without a target")]
    MissingTarget,
    #[error("its link target contains a NUL byte")]
    NulInTarget,
    #[error("it is a symlink to the absolute path {0:?}")]
    SymlinkAbsolute(String),
    #[error("it is a symlink with an empty target {0:?}")]
    SymlinkEmpty(String),
    #[error("it is a symlink to {0:?}, which has '..' after a name (only a leading run of '..' is allowed)")]
    SymlinkInnerParent(String),
    #[error("it is a symlink to {target:?}, which climbs {ups} levels from a directory {depth} deep, out of the tree")]
    SymlinkClimbsOut { target: String, ups: usize, depth: usize },
    #[error("it is a hard link to {0:?}, outside the tree")]
    HardLinkOutside(String),
    #[error("it is a hard link to {0:?}, which is not a file earlier in the archive")]
    HardLinkUnknown(String),
    #[error("it is a hard link to {target:?}, which is a {kind}; only files can be hard-linked")]
    HardLinkNotFile { target: String, kind: PathKind },
    #[error("it is a hard link to itself")]
    HardLinkSelf,
}

/// An entry the guard will not pass on, and why.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("refusing entry {entry:?}: {reason}")]
pub struct Refusal {
    /// The entry's path as the archive spells it (lossy UTF-8).
    pub entry: String,
    pub reason: RefusalReason,
}

/// What [`Guard::check`](crate::Guard::check) can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum GuardError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error(transparent)]
    Limit(#[from] LimitExceeded),
}

/// What [`copy_guarded`](crate::copy_guarded) can fail with.
#[derive(Debug, Error)]
pub enum CopyError {
    /// An entry broke the guard's rules: hostile or broken input.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The archive went over a cap: hostile input, or one that needs a raised limit.
    #[error(transparent)]
    Limit(LimitExceeded),
    /// The archive is malformed, cut short, empty or uses an unsupported feature.
    #[error(transparent)]
    Archive(TarError),
    /// Reading the input stream failed (not the archive's content).
    #[error("reading the archive failed: {0}")]
    Input(#[source] io::Error),
    /// Writing the output failed: our side of the pipe.
    #[error("writing the checked copy failed: {0}")]
    Output(#[source] io::Error),
    /// The caller's prefix is not a clean relative path.
    #[error("the prefix {0:?} must be a relative path without '..'")]
    Prefix(PathBuf),
}

impl CopyError {
    /// True when the input is to blame (refused, over a limit, malformed), not an I/O failure.
    pub fn is_untrusted_input(&self) -> bool {
        matches!(self, CopyError::Refused(_) | CopyError::Limit(_) | CopyError::Archive(_))
    }
}

impl From<TarError> for CopyError {
    fn from(e: TarError) -> Self {
        match e {
            TarError::Io(e) => CopyError::Input(e),
            TarError::Limit(l) => CopyError::Limit(l),
            other => CopyError::Archive(other),
        }
    }
}

impl From<GuardError> for CopyError {
    fn from(e: GuardError) -> Self {
        match e {
            GuardError::Refused(r) => CopyError::Refused(r),
            GuardError::Limit(l) => CopyError::Limit(l),
        }
    }
}

/// A path from an archive, for messages.
pub(crate) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
