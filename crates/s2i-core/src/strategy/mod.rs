//! The ways a build can go, each holding only its own flow: the standard one, with a runtime
//! image, FROM an ONBUILD builder, and through a generated Dockerfile. [`build`] picks one.

mod assemble;
pub mod dockerfile;
mod onbuild;
mod runtime;
mod standard;

use std::sync::Arc;

use s2i_engine::Engine;

use crate::config::{BuildConfig, BuildMethod};
use crate::error::Result;
use crate::plan::{Plan, ScriptNeeds};
use crate::report::Reporter;
use crate::result::{BuildResult, Phases};

/// Run one build. Every container it creates is removed before it returns, whatever happens.
pub async fn build(cfg: &BuildConfig, engine: &dyn Engine, reporter: Arc<dyn Reporter>) -> Result<BuildResult> {
    let mut phases = Phases::new(reporter.clone());
    if cfg.build_method == BuildMethod::Dockerfile {
        return dockerfile::build(cfg, engine, reporter, phases).await;
    }
    let plan = Plan::prepare(cfg, engine, reporter, &mut phases, ScriptNeeds::Build).await?;
    if !plan.builder.on_build.is_empty() {
        return onbuild::build(plan, engine, phases).await;
    }
    match &cfg.runtime {
        Some(runtime) => runtime::build(plan, engine, phases, runtime).await,
        None => standard::build(plan, engine, phases).await,
    }
}

/// What every flow hands back.
fn result(plan: &Plan<'_>, image_id: String, labels: std::collections::BTreeMap<String, String>, phases: Phases, stats: crate::tar_stream::WalkStats) -> BuildResult {
    BuildResult {
        image_id,
        tag: plan.cfg.tag_name(),
        builder_image: plan.cfg.builder_image.clone(),
        labels,
        timings: phases.into_timings(),
        source_stats: stats,
        size: None,
    }
}
