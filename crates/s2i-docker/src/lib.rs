//! The Docker Engine API backend of s2i ([`DockerEngine`]): Docker 20.10 to 28 and Podman's
//! compatible API, over bollard. It implements [`s2i_engine::Engine`] beside the daemonless
//! engines; strategies never know which one runs them.

mod connect;
mod docker;
mod error;
mod tls;

pub use connect::{ConnectOptions, TlsOptions};
pub use docker::DockerEngine;
