//! Builds with `--runtime-image`: assemble runs on the (fat) builder image, then the chosen
//! artifacts go from the stopped builder container straight into a container of the (slim) runtime
//! image as one archive stream, `assemble-runtime` runs there, and that container is committed.
//!
//! With `--incremental` too, the builder stage is kept as `<tag>-build`, and the next incremental
//! build takes its artifacts from there (the reference refuses this combination).

use std::collections::BTreeMap;
use std::path::PathBuf;

use s2i_engine::{ContainerSpec, Engine, ImageInfo};
use tokio_util::io::StreamReader;
use tracing::{debug, info, warn};

use super::assemble::{self, find_previous};
use crate::artifacts::CopiedPart;
use crate::config::{EnvVar, RuntimeConfig};
use crate::container;
use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;
use crate::labels;
use crate::mapping::{self, Mapping};
use crate::plan::Plan;
use crate::report::{ContainerLog, Phase};
use crate::result::{BuildResult, Phases};
use crate::scripts::{self, Resolver, Script, Scripts};
use crate::tar_stream::{self, StreamOptions, TarPart};
use crate::users;

pub const ASSEMBLE_RUNTIME: &str = "assemble-runtime";

/// The runtime image and what the flow needs of it.
struct Runtime<'r> {
    name: &'r str,
    image: ImageInfo,
    mappings: Vec<Mapping>,
    scripts: Scripts,
    assemble_runtime: Script,
}

pub async fn build(mut plan: Plan<'_>, engine: &dyn Engine, mut phases: Phases, runtime_cfg: &RuntimeConfig) -> Result<BuildResult> {
    let cfg = plan.cfg;
    let runtime = prepare_runtime(&plan, engine, &mut phases, runtime_cfg).await?;
    plan.skip.extend(runtime.scripts.moved_from_source.iter().cloned());

    let stage_tag = cfg.tag.as_ref().map(builder_stage_tag);
    let previous = match cfg.incremental {
        true => find_previous(&plan, engine, stage_tag.as_ref()).await?,
        false => None,
    };
    let assembled = assemble::assemble_with_fallback(&plan, engine, previous.as_ref(), &mut phases).await?;
    let outcome = async {
        let shipped = ship(&plan, engine, &assembled.container, &runtime, runtime_cfg, &mut phases).await?;
        // Kept for the next incremental build, which runs its save-artifacts; only once the image
        // itself is made, so that a failed build moves no tag. A stage that cannot be kept costs
        // the next build its artifacts, not this build its result.
        let mut kept = None;
        if let (true, Some(stage)) = (cfg.incremental, &stage_tag) {
            let run = plan.command(scripts::RUN)?;
            match assemble::commit(&plan, engine, &assembled.container, &plan.builder, run, Some(stage), &mut phases).await {
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
        assemble::remove_previous(engine, previous.as_ref(), &image_id).await;
    }
    let mut result = super::result_of_build(&plan, image_id, labels, phases, assembled.stats);
    // --push pushes the stage only when this build made it: an older one is no artifact of this one.
    result.builder_stage = kept;
    Ok(result)
}

/// Get the runtime image, check its user, find its artifacts mappings and assemble-runtime.
async fn prepare_runtime<'r>(plan: &Plan<'_>, engine: &dyn Engine, phases: &mut Phases, rt: &'r RuntimeConfig) -> Result<Runtime<'r>> {
    let cfg = plan.cfg;
    let running = phases.start(Phase::RuntimeImage);
    let image = crate::images::obtain(engine, &plan.registries, &rt.image, rt.pull_policy, "--runtime-pull-policy", &plan.reporter).await?;
    phases.end(running);
    let named = users::needs_passwd(&cfg.allowed_uids, &image, rt.assemble_user.as_deref(), labels::ASSEMBLE_RUNTIME_USER);
    let passwd = match named {
        true => crate::images::passwd(engine, &rt.image, cfg.limits.file_size).await?,
        false => None,
    };
    users::check_runtime(&cfg.allowed_uids, &image, &rt.image, rt.assemble_user.as_deref(), passwd.as_deref())?;
    let mappings = runtime_mappings(rt, &image)?;
    let scripts = Resolver {
        scripts_url: cfg.scripts_url.as_deref(),
        source_root: Some(&plan.source.root),
        image_url: scripts::image_scripts_url(&image, &rt.image),
        image_name: &rt.image,
        limits: &cfg.limits,
    }
    .resolve(&[], &[ASSEMBLE_RUNTIME])
    .await?;
    let Some(assemble_runtime) = scripts.get(ASSEMBLE_RUNTIME).cloned() else {
        return Err(BuildError::ScriptsMissing {
            missing: vec![ASSEMBLE_RUNTIME.into()],
            looked_in: vec![format!("the source's .s2i/bin and runtime image {} (it has no {} label)", rt.image, labels::SCRIPTS_URL)],
        });
    };
    Ok(Runtime { name: &rt.image, image, mappings, scripts, assemble_runtime })
}

/// `-a` mappings, or else the runtime image's assemble-input-files label; each checked.
fn runtime_mappings(rt: &RuntimeConfig, image: &ImageInfo) -> Result<Vec<Mapping>> {
    let mut mappings = rt.artifacts.clone();
    if mappings.is_empty() {
        if let Some(label) = image.label(labels::ASSEMBLE_INPUT_FILES) {
            mappings = mapping::parse_specs(label, "assemble-input-files label")?;
        }
    }
    if mappings.is_empty() {
        return Err(BuildError::InvalidValue {
            what: "runtime artifacts",
            value: rt.image.clone(),
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
async fn ship(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    builder_container: &str,
    runtime: &Runtime<'_>,
    rt: &RuntimeConfig,
    phases: &mut Phases,
) -> Result<(String, BTreeMap<String, String>)> {
    let cfg = plan.cfg;
    let running = phases.start(Phase::Runtime);
    let workdir = if runtime.image.working_dir.is_empty() { "/".to_string() } else { runtime.image.working_dir.clone() };
    let in_workdir = |rel: &str| format!("{}/{rel}", workdir.trim_end_matches('/'));
    let command = match &runtime.assemble_runtime {
        Script::External { .. } => in_workdir("scripts/assemble-runtime"),
        Script::InImage { dir } => format!("{dir}/{ASSEMBLE_RUNTIME}"),
    };
    let user = rt
        .assemble_user
        .clone()
        .or_else(|| runtime.image.label(labels::ASSEMBLE_RUNTIME_USER).map(str::to_string))
        .or_else(|| Some(runtime.image.user.clone()))
        .filter(|u| !u.is_empty());
    // The reference gives the runtime container the network and capabilities, not volumes or hosts.
    let spec = ContainerSpec {
        cmd: vec!["/bin/sh".into(), "-c".into(), crate::inject::shell_quote(&command)],
        user: user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        binds: Vec::new(),
        extra_hosts: Vec::new(),
        ..container::spec(&cfg.container, &cfg.builder_image, runtime.name)
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
    // The engine unpacks the artifacts as root: they are given to the user that runs
    // assemble-runtime (looked up in the runtime image when it is a name).
    let owner = match crate::users::numeric_owner(user.as_deref(), None) {
        Some(owner) => Some(owner),
        None => {
            let passwd = crate::images::passwd(engine, runtime.name, cfg.limits.file_size).await?;
            crate::users::numeric_owner(user.as_deref(), passwd.as_deref())
        }
    };
    let owner = owner.map(|(uid, gid)| tar_stream::Owner { uid, gid }).ok_or_else(|| BuildError::UserNotAllowed {
        what: format!("the assemble-runtime user {:?}", user.as_deref().unwrap_or("")),
        reason: format!("{} has no such user in its /etc/passwd", runtime.name),
    })?;

    let id = engine.create_container(&spec).await?;
    let outcome = async {
        let stats = container::upload(engine, &id, &workdir, parts, StreamOptions { owner, ..Default::default() }).await?;
        info!("Copied {} entries ({} bytes) into the runtime image", stats.files, stats.bytes);
        let mut log = ContainerLog::new(plan.reporter.clone(), cfg.quiet);
        let code = engine.run_container(&id, None, &mut log).await?;
        let tail = log.into_stderr_tail();
        if code != 0 {
            return Err(BuildError::ScriptFailed { script: ASSEMBLE_RUNTIME.into(), image: runtime.name.into(), code, stderr_tail: tail });
        }
        phases.end(running);
        let run = match plan.scripts.get(scripts::RUN) {
            Some(Script::External { .. }) => in_workdir("scripts/run"),
            _ => plan.command(scripts::RUN)?,
        };
        assemble::commit(plan, engine, &id, &runtime.image, run, cfg.tag.as_ref(), phases).await
    }
    .await;
    container::remove(engine, &id).await;
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
