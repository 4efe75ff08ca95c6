//! The s2i build pipeline: config → source → scripts → engine → strategy → result.
//!
//! The binary turns flags into a [`BuildConfig`], connects an [`s2i_engine::Engine`] and calls
//! [`build`]. Nothing here prints: log lines go through `tracing`, container output through the
//! [`OutputFn`] the caller hands in.

pub mod archive_check;
pub mod callback;
pub mod config;
mod container_log;
pub use container_log::OutputFn;
pub mod create;
pub mod env;
pub mod error;
pub mod ignore;
pub use s2i_registry::image_ref;
mod images;
pub mod inject;
pub mod mapping;
pub mod labels;
pub mod scripts;
pub mod source;
pub mod rebuild;
mod run_image;
mod strategy;
pub mod tar_stream;
pub mod usage;
pub mod users;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

pub use config::{BuildConfig, BuildMethod, PullPolicy};
pub use run_image::run_image;
pub use error::{BuildError, Result};
use s2i_engine::Engine;
pub use source::WalkStats;

/// What a finished build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub image_id: String,
    pub tag: Option<String>,
    pub builder_image: String,
    pub labels: BTreeMap<String, String>,
    pub timings: Timings,
    pub source_stats: WalkStats,
}

impl BuildResult {
    pub(crate) fn new(cfg: &BuildConfig, image_id: String, labels: BTreeMap<String, String>, timings: Timings, source_stats: WalkStats) -> Self {
        BuildResult { image_id, tag: cfg.tag.clone(), builder_image: cfg.builder_image.clone(), labels, timings, source_stats }
    }
}

/// Wall time per phase, in the order the phases ran.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub phases: Vec<(&'static str, Duration)>,
}

impl Timings {
    pub(crate) fn record(&mut self, phase: &'static str, since: Instant) {
        let took = since.elapsed();
        tracing::debug!("phase {phase} took {:.3}s", took.as_secs_f64());
        self.phases.push((phase, took));
    }
}

/// Run one build. Every container it creates is removed before it returns, whatever happens.
///
/// Container output goes to `output` line by line.
pub async fn build(cfg: &BuildConfig, engine: &dyn Engine, output: OutputFn) -> Result<BuildResult> {
    match cfg.build_method {
        BuildMethod::Dockerfile => strategy::dockerfile::build(cfg, engine, output).await,
        BuildMethod::Standard if cfg.runtime_image.is_some() => strategy::runtime::build(cfg, engine, output).await,
        BuildMethod::Standard => strategy::standard::build(cfg, engine, output).await,
    }
}

/// `--as-dockerfile` and `s2i generate`: write a Dockerfile to `cfg.as_dockerfile` and its context
/// (`upload/`) beside it, without building. `builder` is the builder image as the local engine
/// knows it, if it does (its scripts label is used); `with_source` is false for `s2i generate`.
/// Returns the Dockerfile's path.
pub async fn write_dockerfile(cfg: &BuildConfig, builder: Option<&s2i_engine::ImageInfo>, with_source: bool) -> Result<std::path::PathBuf> {
    strategy::dockerfile::write(cfg, builder, with_source).await
}

pub use strategy::dockerfile::{quote as dockerfile_quote, DockerfileSpec, ScriptPlace};
