//! The standard ("sti") flow: assemble in a container of the builder image, commit the stopped
//! container with the run script as its command; with `--incremental`, the previous image's
//! artifacts come along.

use s2i_engine::Engine;

use super::assemble;
use crate::container;
use crate::error::Result;
use crate::plan::Plan;
use crate::result::{BuildResult, Phases};
use crate::scripts;

pub async fn build(plan: &Plan<'_>, engine: &dyn Engine, mut phases: Phases) -> Result<BuildResult> {
    let cfg = plan.cfg;
    let assembled = assemble::assemble_with_fallback(plan, engine, &mut phases).await?;
    let run = plan.command(scripts::RUN)?;
    let committed = assemble::commit(plan, engine, &assembled.container, &plan.builder, run, cfg.tag.as_ref(), &mut phases).await;
    container::remove(engine, &assembled.container).await;
    let (image_id, labels) = committed?;
    if cfg.remove_previous {
        assemble::remove_previous(plan, engine, &image_id).await;
    }
    Ok(super::result_of_build(plan, image_id, labels, phases, assembled.stats))
}
