//! The integration tests: the real `s2i` binary driven against real parts (the Docker daemon,
//! git, an HTTP server), one module per area. One binary, so fixtures made once (images, a
//! registry, an engine service) serve every test of a run.
//!
//! `S2I_TEST_ENGINE=podman` runs them all against a Podman service that the test kit starts
//! (`scripts/test.sh` runs both); `engines` holds what differs between the engines.
//!
//! The Python builder's tests take minutes (a debootstrapped base image); they run by default and
//! can be left out with `--no-default-features` on the `s2i` crate.

mod annotations;
mod apps;
mod build;
mod commands;
mod engines;
mod flows;
mod inplace;
mod oci;
mod pods;
#[cfg(feature = "python-tests")]
mod python;
mod registry;
mod secrets;
mod security;
mod sources;
mod static_binary;
mod ui;
mod verify;
