//! The container side: runtime bundles, their root filesystems, and runc.

pub mod bundle;
mod error;
pub(crate) mod fsroot;
pub mod user;

pub use error::{Result, RunError};
pub(crate) mod netns;
pub mod runc;
