//! Builds with `--runtime-image`: assemble runs on the (fat) builder image, then the chosen
//! artifacts go from the stopped builder container straight into a container of the (slim) runtime
//! image as one archive stream, `assemble-runtime` runs there, and that container is committed.
//!
//! With `--incremental` too, the builder stage is kept as `<tag>-build`, and the next incremental
//! build takes its artifacts from there (the reference refuses this combination).

use std::time::Instant;

use s2i_engine::{ContainerSpec, Engine, ImageInfo};
use tokio_util::io::StreamReader;
use tracing::{debug, info};

use super::standard::{self, container_spec, remove_container, Plan};
use crate::container_log::{ContainerLog, OutputFn};
use crate::env::EnvVar;
use crate::error::{BuildError, Result};
use crate::image_ref::{with_default_tag, ImageRef};
use crate::mapping::{self, Mapping};
use crate::scripts::{self, Resolver, Script, Scripts};
use crate::tar_stream::{self, Part};
use crate::{labels, users, BuildConfig, BuildResult, Timings};

pub const ASSEMBLE_RUNTIME: &str = "assemble-runtime";

pub async fn build(cfg: &BuildConfig, engine: &dyn Engine, output: OutputFn) -> Result<BuildResult> {
    let runtime_name = cfg.runtime_image.as_deref().expect("a runtime build has a runtime image");
    let mut timings = Timings::default();
    let mut plan = standard::prepare(cfg, engine, &[scripts::SAVE_ARTIFACTS], &mut timings).await?;
    if !plan.builder.on_build.is_empty() {
        return super::onbuild::build(plan, engine, output, timings).await;
    }

    let t = Instant::now();
    let runtime = crate::images::obtain(engine, runtime_name, cfg.runtime_pull_policy).await?;
    timings.record("runtime image", t);
    let named = users::needs_passwd(&cfg.allowed_uids, &runtime, cfg.assemble_runtime_user.as_deref(), labels::ASSEMBLE_RUNTIME_USER);
    let passwd = crate::images::passwd_if_needed(engine, runtime_name, named).await?;
    users::check_runtime(&cfg.allowed_uids, &runtime, runtime_name, cfg.assemble_runtime_user.as_deref(), passwd.as_deref())?;
    let mappings = runtime_mappings(cfg, &runtime, runtime_name)?;
    let runtime_scripts = Resolver {
        scripts_url: cfg.scripts_url.as_deref(),
        source_root: Some(&plan.source.root),
        image_url: scripts::image_scripts_url(&runtime, runtime_name),
        image_name: runtime_name,
    }
    .resolve(&[], &[ASSEMBLE_RUNTIME])
    .await?;
    let Some(assemble_runtime) = runtime_scripts.get(ASSEMBLE_RUNTIME) else {
        return Err(BuildError::ScriptsMissing {
            missing: vec![ASSEMBLE_RUNTIME.into()],
            looked_in: vec![format!("the source's .s2i/bin and runtime image {runtime_name} (it has no {} label)", labels::SCRIPTS_URL)],
        });
    };
    plan.skip.extend(runtime_scripts.moved_from_source.iter().cloned());

    let stage_tag = plan.tag.as_ref().map(builder_stage_tag);
    let previous = match (cfg.incremental, &stage_tag) {
        (true, stage) => standard::find_previous(&plan, engine, stage.as_ref().map(|s| s.normalized()).as_deref()).await,
        (false, _) => None,
    };
    let assembled = standard::assemble_with_fallback(&plan, engine, &output, previous.as_ref(), &mut timings).await?;
    let outcome = async {
        if let (true, Some(stage)) = (cfg.incremental, &stage_tag) {
            // Kept for the next incremental build, which runs its save-artifacts.
            let run = plan.scripts.command_path(scripts::RUN, &plan.destination).expect("run was resolved");
            let (id, _) = standard::commit(&plan, engine, &assembled.container, &plan.builder, run, Some(stage), &mut timings).await?;
            info!("Builder stage kept as {} ({id}) for the next incremental build", stage.normalized());
        }
        ship(&plan, engine, &output, &assembled.container, &runtime, runtime_name, &mappings, &runtime_scripts, assemble_runtime, &mut timings).await
    }
    .await;
    remove_container(engine, &assembled.container).await;
    let (image_id, labels) = outcome?;
    if cfg.remove_previous {
        standard::remove_previous(engine, previous.as_ref(), &image_id).await;
    }
    Ok(BuildResult::new(cfg, image_id, labels, timings, assembled.stats))
}

/// `-a` mappings, or else the runtime image's assemble-input-files label; each checked.
fn runtime_mappings(cfg: &BuildConfig, runtime: &ImageInfo, name: &str) -> Result<Vec<Mapping>> {
    let mut mappings = Vec::new();
    for spec in &cfg.runtime_artifacts {
        mappings.extend(mapping::parse_specs(spec, "--runtime-artifact")?);
    }
    if mappings.is_empty() {
        if let Some(label) = runtime.label(labels::ASSEMBLE_INPUT_FILES) {
            mappings = mapping::parse_specs(label, "assemble-input-files label")?;
        }
    }
    if mappings.is_empty() {
        return Err(BuildError::InvalidValue {
            what: "runtime artifacts",
            value: name.to_string(),
            reason: format!("no runtime artifacts to copy were specified: use -a/--runtime-artifact or set the {} label", labels::ASSEMBLE_INPUT_FILES),
        });
    }
    for m in &mappings {
        mapping::check_runtime_artifact(m)?;
    }
    Ok(mappings)
}

/// `repo:tag` → `repo:tag-build`, where the builder stage of an incremental runtime build lives.
fn builder_stage_tag(tag: &ImageRef) -> ImageRef {
    let mut stage = tag.clone();
    stage.tag = Some(format!("{}-build", tag.tag.as_deref().unwrap_or("latest")));
    stage
}

/// Copy the artifacts into a runtime container, run assemble-runtime there and commit it.
#[allow(clippy::too_many_arguments)]
async fn ship(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    output: &OutputFn,
    builder_container: &str,
    runtime: &ImageInfo,
    runtime_name: &str,
    mappings: &[Mapping],
    runtime_scripts: &Scripts,
    assemble_runtime: &Script,
    timings: &mut Timings,
) -> Result<(String, std::collections::BTreeMap<String, String>)> {
    let cfg = plan.cfg;
    let t = Instant::now();
    let workdir = if runtime.working_dir.is_empty() { "/".to_string() } else { runtime.working_dir.clone() };
    let in_workdir = |rel: &str| format!("{}/{rel}", workdir.trim_end_matches('/'));
    let command = match assemble_runtime {
        Script::External { .. } => in_workdir("scripts/assemble-runtime"),
        Script::InImage { dir } => format!("{dir}/{ASSEMBLE_RUNTIME}"),
    };
    let user = cfg
        .assemble_runtime_user
        .clone()
        .or_else(|| runtime.label(labels::ASSEMBLE_RUNTIME_USER).map(str::to_string))
        .or_else(|| Some(runtime.user.clone()))
        .filter(|u| !u.is_empty());
    // The reference gives the runtime container the network and capabilities, not volumes or hosts.
    let spec = ContainerSpec {
        cmd: vec!["/bin/sh".into(), "-c".into(), command],
        user,
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        binds: Vec::new(),
        extra_hosts: Vec::new(),
        ..container_spec(cfg, with_default_tag(runtime_name))
    };
    debug!("runtime container: image {}, user {:?}, command {:?}", spec.image, spec.user, spec.cmd);

    // One archive: every mapping's files out of the builder, plus the shipped scripts.
    let mut parts = Vec::new();
    for m in mappings {
        let Some(stream) = engine.download_archive(builder_container, &m.source).await? else {
            return Err(BuildError::InvalidValue {
                what: "runtime artifact",
                value: m.source.clone(),
                reason: format!("it does not exist in the builder container after assemble ({})", cfg.builder_image),
            });
        };
        let prefix = if m.destination == "." { String::new() } else { m.destination.clone() };
        parts.push(Part::Copied { prefix, tar: Box::new(StreamReader::new(stream)) });
    }
    let shipped: Vec<(&str, &[u8])> = runtime_scripts
        .external()
        .chain(plan.scripts.external().filter(|(name, _)| *name == scripts::RUN))
        .collect();
    if !shipped.is_empty() {
        parts.push(Part::Dir { path: "scripts".into(), mode: 0o755 });
        for (name, data) in shipped {
            parts.push(Part::File { path: format!("scripts/{name}"), data: data.to_vec(), mode: 0o755 });
        }
    }

    let id = engine.create_container(&spec).await?;
    let outcome = async {
        let input = tar_stream::spawn(parts, None);
        let uploaded = engine.upload_archive(&id, &workdir, Box::new(input.reader)).await;
        let produced = input.done.await.map_err(|e| BuildError::SourceStream(std::io::Error::other(e)))?;
        let stats = produced.map_err(|e| BuildError::io("copying the runtime artifacts", e))?;
        uploaded?;
        info!("Copied {} entries ({} bytes) into the runtime image", stats.files, stats.bytes);
        let mut log = ContainerLog::new(output.clone(), cfg.quiet);
        let code = engine.run_container(&id, None, &mut log).await?;
        let tail = log.finish();
        if code != 0 {
            return Err(BuildError::ScriptFailed { script: ASSEMBLE_RUNTIME.into(), image: runtime_name.into(), code, stderr_tail: tail });
        }
        timings.record("runtime", t);
        let run = match plan.scripts.get(scripts::RUN) {
            Some(Script::External { .. }) => in_workdir("scripts/run"),
            _ => plan.scripts.command_path(scripts::RUN, &plan.destination).expect("run was resolved"),
        };
        standard::commit(plan, engine, &id, runtime, run, plan.tag.as_ref(), timings).await
    }
    .await;
    remove_container(engine, &id).await;
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_stage_tag_adds_build() {
        let t = ImageRef::parse("registry:5000/team/app:v1").unwrap();
        assert_eq!(builder_stage_tag(&t).normalized(), "registry:5000/team/app:v1-build");
        let t = ImageRef::parse("app").unwrap();
        assert_eq!(builder_stage_tag(&t).normalized(), "docker.io/library/app:latest-build");
    }
}
