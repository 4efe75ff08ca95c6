//! The s2i build pipeline, one stage per module, arrows pointing one way:
//!
//! ```text
//! config → source → scripts → plan → strategy → container → engine → result
//! ```
//!
//! The binary turns flags into a [`BuildConfig`] (plain values, typed and validated once),
//! connects an [`s2i_engine::Engine`] and calls [`build`] with the config and the [`Services`]
//! beside it. Nothing here writes to the terminal: log lines go through `tracing`, everything else
//! (scripts' output, phases, progress) through the [`Reporter`] the caller hands in.
//! docs/architecture.md walks through the stages.

pub mod artifacts;
pub mod cache;
pub mod callback;
pub mod config;
pub mod container;
pub mod create;
pub mod env;
pub mod error;
pub mod fsutil;
pub mod http;
pub mod ignore;
pub use s2i_registry::image_ref;
pub mod images;
pub mod inject;
pub mod labels;
pub mod limits;
pub mod mapping;
pub mod plan;
pub mod rebuild;
pub mod redact;
pub mod registry;
pub mod report;
pub mod result;
mod run_image;
pub mod scripts;
pub mod services;
pub mod source;
mod strategy;
pub mod tar_stream;
pub mod usage;
pub mod users;
pub mod verify;

pub use config::{BuildConfig, BuildMethod, PullPolicy};
pub use error::{BuildError, Result};
pub use report::{Reporter, Silent};
pub use result::{BuildResult, Timings};
pub use run_image::run_image;
pub use services::Services;
pub use strategy::dockerfile::{quote as dockerfile_quote, DockerfileSpec, ScriptPlace};
pub use tar_stream::WalkStats;

/// Run one build. Every container it creates is removed before it returns, whatever happens.
pub async fn build(cfg: &BuildConfig, services: &Services<'_>) -> Result<BuildResult> {
    let mut result = strategy::build(cfg, services).await?;
    result.size = services.engine.inspect_image(&result.image_id).await.ok().flatten().and_then(|i| i.size);
    Ok(result)
}

/// `--as-dockerfile` and `s2i generate`: write a Dockerfile to `cfg.as_dockerfile` and its context
/// (`upload/`) beside it, without building. `builder` is the builder image as the local engine
/// knows it, if it does (its scripts label is used); `with_source` is false for `s2i generate`.
/// Returns the Dockerfile's path.
pub async fn write_dockerfile(cfg: &BuildConfig, builder: Option<&s2i_engine::ImageInfo>, with_source: bool) -> Result<std::path::PathBuf> {
    strategy::dockerfile::write(cfg, builder, with_source).await
}
