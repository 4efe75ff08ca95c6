//! The standard ("sti") flow: assemble in a container of the builder image, commit the stopped
//! container with the run script as its command; with `--incremental`, the previous image's
//! artifacts come along.

use s2i_engine::Engine;

use super::assemble;
use crate::cache;
use crate::container;
use crate::error::Result;
use crate::plan::Plan;
use crate::result::{BuildResult, Phases};
use crate::scripts;

/// The build, and the artifacts it saved for the next one (`--cache-dir`), to keep once pushed.
pub async fn build(plan: &Plan<'_>, engine: &dyn Engine, mut phases: Phases) -> Result<(BuildResult, Option<cache::Pending>)> {
    let cfg = plan.cfg;
    let assembled = assemble::assemble_with_fallback(plan, engine, &mut phases).await?;
    let run = plan.command(scripts::RUN)?;
    let committed = assemble::commit(plan, engine, &assembled.container, &plan.builder, run, cfg.tag.as_ref(), &mut phases).await;
    container::remove(engine, &assembled.container).await;
    let (image_id, labels) = committed?;
    if cfg.remove_previous {
        assemble::remove_previous(plan, engine, &image_id).await;
    }
    let pending = match (cfg.incremental, &cfg.cache_dir) {
        (true, Some(dir)) => save_artifacts(plan, engine, &image_id, dir).await?,
        _ => None,
    };
    Ok((super::result_of_build(plan, image_id, labels, phases, assembled.stats), pending))
}

/// `--cache-dir`: save-artifacts in a container of the image just committed, its tar to the
/// cache's sidecar (kept once the build and its push succeeded).
async fn save_artifacts(plan: &Plan<'_>, engine: &dyn Engine, image: &str, dir: &std::path::Path) -> Result<Option<cache::Pending>> {
    let cfg = plan.cfg;
    let Some(command) = plan.scripts.command_path(scripts::SAVE_ARTIFACTS, &plan.destination) else {
        tracing::info!("No artifacts are cached: there is no save-artifacts script");
        return Ok(None);
    };
    let entry = cache::entry(dir, &plan.builder.id, &cfg.tag_name().unwrap_or_default());
    let (spec, input) = assemble::cache_save_artifacts(plan, image, command)?;
    cache::save(engine, &spec, input, plan.reporter.clone(), &cfg.limits, entry).await
}
