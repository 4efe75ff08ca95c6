//! Untrusted tar streams: a streaming reader whose every record is bounded, and the one guard
//! that every stream s2i passes on goes through (source archives, save-artifacts output, runtime
//! artifacts).
//!
//! - [`TarReader`] reads ustar, GNU and old headers (checksums checked, base-256 numbers), PAX
//!   `x`/`g` and GNU `L`/`K` records within [`Limits`], and refuses sparse and multi-volume
//!   entries. An archive without its end-of-archive marker is an error.
//! - [`Guard`] decides, for each parsed header in stream order, whether it may pass and what
//!   clean header to write for it; its rules and the proof that they keep every path and link
//!   inside the root whatever the order are in the [`guard`] module.
//! - [`copy_guarded`] puts the two together and writes rebuilt headers through `tar::Builder`.
//!
//! ```
//! use std::path::Path;
//! use s2i_tar::{copy_guarded, Guard, GuardOptions, Limits};
//!
//! let mut input = tar::Builder::new(Vec::new());
//! let mut h = tar::Header::new_gnu();
//! h.set_size(2);
//! input.append_data(&mut h, "cache/x", &b"hi"[..]).unwrap();
//! let input = input.into_inner().unwrap();
//!
//! let limits = Limits::default();
//! let mut guard = Guard::new(GuardOptions::default(), &limits);
//! let mut out = tar::Builder::new(Vec::new());
//! let stats = copy_guarded(&input[..], &mut out, Path::new("artifacts"), &mut guard, &limits).unwrap();
//! assert_eq!((stats.files, stats.bytes), (1, 2));
//! ```

mod copy;
mod error;
pub mod guard;
pub mod header;
mod reader;

pub use copy::{copy_guarded, SkipCounts, Stats};
pub use error::{CopyError, GuardError, Limit, LimitExceeded, PathKind, Refusal, RefusalReason, TarError};
pub use guard::{CleanEntry, CleanKind, Guard, GuardOptions, Owner, Skipped, Verdict};
pub use reader::{Drained, Entry, EntryHeader, EntryKind, EntryMeta, Limits, TarReader};
