//! The container side: runtime bundles, their root filesystems, and runc.

pub(crate) mod archive;
pub mod bundle;
pub mod container;
pub mod cgroup;
pub(crate) mod error;
pub(crate) mod netns;
pub mod rootfs;
pub mod runc;
pub mod seccomp;
pub mod user;

pub use archive::{archive_under, exists_under};
pub use error::{Result, RunError};
