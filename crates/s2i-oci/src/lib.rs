//! The daemonless engine (`--engine oci`): images in a local OCI image layout ([`image`]), build
//! containers run by an OCI runtime over an overlay of their layers ([`run`]), both behind the
//! same [`s2i_engine::Engine`] trait as the Docker API engine.

pub mod cancel;
mod fsroot;
pub mod image;
pub mod run;
pub mod engine;
pub use engine::{OciEngine, OciEngineOptions};
