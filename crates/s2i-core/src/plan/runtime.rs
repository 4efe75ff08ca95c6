//! What a build with `--runtime-image` decides before it starts: the runtime image and its user,
//! which artifacts it gets, its assemble-runtime script, where it all goes and what the final
//! image runs.

use s2i_engine::{Engine, ImageInfo};

use super::Plan;
use crate::config::RuntimeConfig;
use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;
use crate::labels;
use crate::mapping::{self, Mapping};
use crate::report::Phase;
use crate::result::Phases;
use crate::scripts::{self, Resolver, Script, Scripts};
use crate::tar_stream::Owner;
use crate::users;

pub const ASSEMBLE_RUNTIME: &str = "assemble-runtime";

/// The runtime image and everything the runtime flow does with it.
pub struct RuntimePlan {
    /// The runtime image as the user named it.
    pub name: String,
    pub image: ImageInfo,
    /// What goes from the builder to the runtime image: `-a`, else the image's
    /// assemble-input-files label.
    pub mappings: Vec<Mapping>,
    /// The runtime image's scripts (assemble-runtime at least).
    pub scripts: Scripts,
    /// Where the artifacts and shipped scripts go: the image's working directory, else `/`.
    pub workdir: String,
    /// The command that runs assemble-runtime; `None` on an engine that composes the runtime
    /// image from its layers and the artifacts, running nothing in it (the in-place engine).
    pub assemble_runtime: Option<String>,
    /// The final image's command: the run script shipped into the workdir, else the builder's.
    pub run: String,
    /// Who runs assemble-runtime: `--assemble-runtime-user`, else the image's label, else its USER.
    pub user: Option<String>,
    /// Who owns what is copied in (the engine unpacks it as root): that user, by number.
    pub owner: Owner,
    /// Where an incremental build keeps its builder stage for the next one: `<tag>-build`.
    pub stage_tag: Option<ImageRef>,
}

/// Get the runtime image, check its user, find its artifacts mappings and assemble-runtime.
pub(super) async fn prepare(plan: &Plan<'_>, engine: &dyn Engine, phases: &mut Phases, rt: &RuntimeConfig) -> Result<RuntimePlan> {
    let cfg = plan.cfg;
    let running = phases.start(Phase::RuntimeImage);
    let image = crate::images::obtain(engine, &plan.registries, &rt.image, rt.pull_policy, "--runtime-pull-policy", &plan.reporter).await?;
    phases.end(running);
    let user = rt
        .assemble_user
        .clone()
        .or_else(|| image.label(labels::ASSEMBLE_RUNTIME_USER).map(str::to_string))
        .or_else(|| Some(image.user.clone()))
        .filter(|u| !u.is_empty());
    // One look-up of a named user, for --allowed-uids and for the owner of the artifacts.
    let named = users::needs_passwd(&cfg.allowed_uids, &image, rt.assemble_user.as_deref(), labels::ASSEMBLE_RUNTIME_USER)
        || users::is_named(user.as_deref());
    let passwd = match named {
        true => crate::images::passwd(engine, &rt.image, cfg.limits.file_size).await?,
        false => None,
    };
    users::check_runtime(&cfg.allowed_uids, &image, &rt.image, rt.assemble_user.as_deref(), passwd.as_deref())?;
    let mappings = mappings(rt, &image)?;
    let scripts = Resolver {
        scripts_url: cfg.scripts_url.as_deref(),
        source_root: Some(&plan.source.root),
        image_url: scripts::image_scripts_url(&image, &rt.image),
        image_name: &rt.image,
        limits: &cfg.limits,
    }
    .resolve(&[], &[ASSEMBLE_RUNTIME])
    .await?;
    let workdir = if image.working_dir.is_empty() { "/".to_string() } else { image.working_dir.clone() };
    let in_workdir = |rel: &str| format!("{}/{rel}", workdir.trim_end_matches('/'));
    let compose_only = engine.capabilities().only_builder;
    let assemble_runtime = match scripts.get(ASSEMBLE_RUNTIME) {
        Some(_) if compose_only => {
            let engine_name = engine.version().await.map(|v| v.kind.to_string()).unwrap_or_else(|_| "chosen".into());
            return Err(BuildError::EngineCannot {
                engine: engine_name,
                what: format!(
                    "run the {ASSEMBLE_RUNTIME} script of the runtime image {} (--runtime-image): it runs only the scripts of the builder it is in, and composes a runtime image without that script from its layers and the artifacts",
                    rt.image
                ),
            });
        }
        None if compose_only => None,
        Some(Script::External { .. }) => Some(in_workdir("scripts/assemble-runtime")),
        Some(Script::InImage { dir }) => Some(format!("{dir}/{ASSEMBLE_RUNTIME}")),
        None => {
            return Err(BuildError::ScriptsMissing {
                missing: vec![ASSEMBLE_RUNTIME.into()],
                looked_in: vec![format!("the source's .s2i/bin and runtime image {} (it has no {} label)", rt.image, labels::SCRIPTS_URL)],
            })
        }
    };
    let run = match plan.scripts.get(scripts::RUN) {
        Some(Script::External { .. }) => in_workdir("scripts/run"),
        _ => plan.command(scripts::RUN)?,
    };
    let owner = users::numeric_owner(user.as_deref(), passwd.as_deref()).map(|(uid, gid)| Owner { uid, gid }).ok_or_else(|| {
        BuildError::UserNotAllowed {
            what: format!("the assemble-runtime user {:?}", user.as_deref().unwrap_or("")),
            reason: format!("{} has no such user in its /etc/passwd", rt.image),
        }
    })?;
    let stage_tag = cfg.tag.as_ref().filter(|_| cfg.incremental).map(builder_stage_tag);
    Ok(RuntimePlan { name: rt.image.clone(), image, mappings, scripts, workdir, assemble_runtime, run, user, owner, stage_tag })
}

/// `-a` mappings, or else the runtime image's assemble-input-files label; each checked.
fn mappings(rt: &RuntimeConfig, image: &ImageInfo) -> Result<Vec<Mapping>> {
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
