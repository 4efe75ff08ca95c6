//! Builds with `--runtime-image`: assemble runs on the (fat) builder image, then the chosen
//! artifacts go from the stopped builder container straight into a container of the (slim) runtime
//! image as one archive stream, `assemble-runtime` runs there, and that container is committed.
//!
//! With `--incremental` too, the builder stage is kept as `<tag>-build`, and the next incremental
//! build takes its artifacts from there (the reference refuses this combination).

use std::collections::BTreeMap;
use std::path::PathBuf;

use s2i_engine::{ContainerSpec, Engine};
use tokio_util::io::StreamReader;
use tracing::{debug, info, warn};

use super::assemble;
use crate::artifacts::CopiedPart;
use crate::config::EnvVar;
use crate::container;
use crate::error::{BuildError, Result};
use crate::plan::{Plan, RuntimePlan, ASSEMBLE_RUNTIME};
use crate::report::{ContainerLog, Phase};
use crate::result::{BuildResult, Phases};
use crate::scripts;
use crate::tar_stream::{self, StreamOptions, TarPart};

pub async fn build(plan: &Plan<'_>, runtime: &RuntimePlan, engine: &dyn Engine, mut phases: Phases) -> Result<BuildResult> {
    let cfg = plan.cfg;
    let assembled = assemble::assemble_with_fallback(plan, engine, &mut phases).await?;
    let outcome = async {
        let shipped = ship(plan, runtime, engine, &assembled.container, &mut phases).await?;
        // Kept for the next incremental build, which runs its save-artifacts; only once the image
        // itself is made, so that a failed build moves no tag. A stage that cannot be kept costs
        // the next build its artifacts, not this build its result.
        let mut kept = None;
        if let Some(stage) = &runtime.stage_tag {
            let run = plan.command(scripts::RUN)?;
            match assemble::commit(plan, engine, &assembled.container, &plan.builder, run, Some(stage), &mut phases).await {
                Ok((id, _)) => {
                    info!("Builder stage kept as {} ({id}) for the next incremental build", stage.normalized());
                    kept = Some(stage.clone());
                }
                Err(e) => warn!("The builder stage could not be kept as {} ({e}): the next incremental build will be clean", stage.normalized()),
            }
        }
        Ok::<_, BuildError>((shipped, kept))
    }
    .await;
    container::remove(engine, &assembled.container).await;
    let ((image_id, labels), kept) = outcome?;
    if cfg.remove_previous {
        assemble::remove_previous(plan, engine, &image_id).await;
    }
    let mut result = super::result_of_build(plan, image_id, labels, phases, assembled.stats);
    // --push pushes the stage only when this build made it: an older one is no artifact of this one.
    result.builder_stage = kept;
    Ok(result)
}

/// Copy the artifacts into a runtime container, run assemble-runtime there and commit it.
async fn ship(plan: &Plan<'_>, runtime: &RuntimePlan, engine: &dyn Engine, builder_container: &str, phases: &mut Phases) -> Result<(String, BTreeMap<String, String>)> {
    let cfg = plan.cfg;
    let running = phases.start(Phase::Runtime);
    // The reference gives the runtime container the network and capabilities, not volumes or hosts.
    // Without assemble-runtime (an engine that composes layers), the container only receives files.
    let cmd = match &runtime.assemble_runtime {
        Some(script) => vec!["/bin/sh".into(), "-c".into(), crate::inject::shell_quote(script)],
        None => vec!["/bin/true".into()],
    };
    let spec = ContainerSpec {
        cmd,
        user: runtime.user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        binds: Vec::new(),
        extra_hosts: Vec::new(),
        ..container::spec(&cfg.container, &cfg.builder_image, &runtime.name)
    };
    debug!("runtime container: image {}, user {:?}, command {:?}", spec.image, spec.user, spec.cmd);

    // One archive: every mapping's files out of the builder, plus the shipped scripts.
    let mut parts: Vec<Box<dyn TarPart>> = Vec::new();
    for m in &runtime.mappings {
        let Some(stream) = engine.download_archive(builder_container, &m.source).await? else {
            return Err(BuildError::InvalidValue {
                what: "runtime artifact",
                value: m.source.clone(),
                reason: format!("it does not exist in the builder container after assemble ({})", cfg.builder_image),
            });
        };
        let prefix = if m.destination == "." { PathBuf::new() } else { PathBuf::from(&m.destination) };
        parts.push(Box::new(CopiedPart { prefix, tar: Box::new(StreamReader::new(stream)), limits: cfg.limits }));
    }
    let shipped: Vec<(&str, &[u8])> = runtime.scripts.external().chain(plan.scripts.external().filter(|(name, _)| *name == scripts::RUN)).collect();
    if !shipped.is_empty() {
        parts.push(tar_stream::dir("scripts", 0o755));
        for (name, data) in shipped {
            parts.push(tar_stream::file(format!("scripts/{name}"), data.to_vec(), 0o755));
        }
    }

    let id = engine.create_container(&spec).await?;
    let outcome = async {
        // The engine unpacks the artifacts as root: they are given to the user of assemble-runtime.
        let stats = container::upload(engine, &id, &runtime.workdir, parts, StreamOptions { owner: runtime.owner, ..Default::default() }).await?;
        info!("Copied {} entries ({} bytes) into the runtime image", stats.files, stats.bytes);
        if runtime.assemble_runtime.is_some() {
            let mut log = ContainerLog::new(plan.reporter.clone(), cfg.quiet);
            let code = engine.run_container(&id, None, &mut log).await?;
            let tail = log.into_stderr_tail();
            if code != 0 {
                return Err(BuildError::ScriptFailed { script: ASSEMBLE_RUNTIME.into(), image: runtime.name.clone(), code, stderr_tail: tail });
            }
        }
        phases.end(running);
        assemble::commit(plan, engine, &id, &runtime.image, runtime.run.clone(), cfg.tag.as_ref(), phases).await
    }
    .await;
    container::remove(engine, &id).await;
    outcome
}
