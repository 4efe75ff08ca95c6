//! What a build works with besides its settings: the engine that runs it, the registries it
//! pulls from and pushes to, and where its progress goes. These are services, with state and
//! locks of their own, so they travel beside the plain `BuildConfig` instead of inside it.

use std::sync::Arc;

use s2i_engine::Engine;

use crate::registry::Registries;
use crate::report::Reporter;

/// The services of one run, handed to `build` and the other entry points.
#[derive(Clone)]
pub struct Services<'a> {
    pub engine: &'a dyn Engine,
    /// Registry credentials, looked up once per registry per run and shared by every pull and
    /// push (made from the config's `dockercfg_path` and limits).
    pub registries: Registries,
    pub reporter: Arc<dyn Reporter>,
}
