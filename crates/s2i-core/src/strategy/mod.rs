//! The ways a build can go, each holding only its own flow: the standard one, with a runtime
//! image, FROM an ONBUILD builder, and through a generated Dockerfile. [`build`] picks one, and
//! pushes what it made when asked (`--push`).

mod assemble;
pub mod dockerfile;
mod onbuild;
mod runtime;
mod standard;

use crate::config::{BuildConfig, BuildMethod};
use crate::error::Result;
use crate::image_ref::ImageRef;
use crate::plan::{Flow, Plan};
use crate::registry::{self, RegistryFailure};
use crate::report::Phase;
use crate::result::{BuildResult, Phases};
use crate::services::Services;

/// Run one build, then push it if asked. Every container it creates is removed before it
/// returns, whatever happens.
pub async fn build(cfg: &BuildConfig, services: &Services<'_>) -> Result<BuildResult> {
    let push_to = match cfg.push {
        // The CLI checked this already; a library caller may not have.
        true => Some(crate::config::push_target(cfg.tag.as_ref())?),
        false => None,
    };
    let (mut result, cached) = run_flow(cfg, services).await?;
    if let Some(tag) = push_to {
        push(services, tag, &mut result).await?;
    }
    // Only now: an interrupted or failed build, or push, leaves the cache as it was.
    if let Some(cached) = cached {
        cached.keep()?;
    }
    Ok(result)
}

async fn run_flow(cfg: &BuildConfig, services: &Services<'_>) -> Result<(BuildResult, Option<crate::cache::Pending>)> {
    let engine = services.engine;
    let mut phases = Phases::new(services.reporter.clone());
    if cfg.build_method == BuildMethod::Dockerfile {
        return Ok((dockerfile::build(cfg, services, phases).await?, None));
    }
    let plan = Plan::prepare(cfg, services, &mut phases).await?;
    match &plan.flow {
        Flow::Standard => standard::build(&plan, engine, phases).await,
        Flow::Runtime(runtime) => Ok((runtime::build(&plan, runtime, engine, phases).await?, None)),
        Flow::Onbuild => Ok((onbuild::build(&plan, engine, phases).await?, None)),
    }
}

/// `--push`: the tag, then the builder stage an incremental runtime build kept (the next run on
/// an empty cache pulls it for its artifacts). A failure leaves the built image in the engine.
async fn push(services: &Services<'_>, tag: &ImageRef, result: &mut BuildResult) -> Result<()> {
    let mut phases = Phases::new(services.reporter.clone());
    let running = phases.start(Phase::Push);
    for image in std::iter::once(tag).chain(result.builder_stage.as_ref()) {
        match registry::push(services.engine, &services.registries, image, &services.reporter).await {
            Ok(pushed) => result.pushed.push(pushed),
            Err(cause) => {
                return Err(RegistryFailure::PushFailed {
                    image: registry::push_name(image),
                    image_id: result.image_id.clone(),
                    pushed: std::mem::take(&mut result.pushed),
                    cause: Box::new(cause),
                }
                .into())
            }
        }
    }
    phases.end(running);
    result.timings.phases.extend(phases.into_timings().phases);
    Ok(())
}

/// What every flow hands back.
fn result_of_build(plan: &Plan<'_>, image_id: String, labels: std::collections::BTreeMap<String, String>, phases: Phases, stats: crate::tar_stream::WalkStats) -> BuildResult {
    BuildResult {
        image_id,
        tag: plan.cfg.tag_name(),
        builder_image: plan.cfg.builder_image.clone(),
        labels,
        timings: phases.into_timings(),
        source_stats: stats,
        size: None,
        builder_stage: None,
        pushed: Vec::new(),
        scripts_fetched: plan.scripts.fetched.clone(),
    }
}
