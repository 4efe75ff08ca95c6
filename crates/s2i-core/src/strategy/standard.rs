//! The standard ("sti") flow: stream scripts, the previous build's artifacts and the source into a
//! container of the builder image, run assemble, commit the stopped container with the run script
//! as its command.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use rand::Rng;
use s2i_engine::{CommitSpec, ContainerSpec, Engine, EngineError, ImageInfo};
use tracing::{debug, info, warn};

use crate::config::BuildConfig;
use crate::container_log::{ContainerLog, OutputFn};
use crate::env::{self, EnvVar};
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::image_ref::{parse_output_tag, with_default_tag, ImageRef};
use crate::labels::{self, BuildFacts};
use crate::scripts::{self, Resolver, Scripts};
use crate::source::{self, PreparedSource, SourceRequest, WalkStats};
use crate::tar_stream::{self, Part};
use crate::users;
use crate::{BuildResult, Timings};

/// The shared memory size the reference gives build containers.
const SHM_SIZE: i64 = 64 * 1024 * 1024;
/// image_metadata.json is small; refuse to read more than this of it.
const MAX_METADATA_SIZE: u64 = 1024 * 1024;

/// Everything decided before the first container starts.
pub(crate) struct Plan<'a> {
    pub cfg: &'a BuildConfig,
    pub builder: ImageInfo,
    pub scripts: Scripts,
    pub destination: String,
    pub assemble_user: Option<String>,
    pub env: Vec<EnvVar>,
    /// The fetched source (a directory, clone or archive) and how to walk it.
    pub source: PreparedSource,
    pub ignore: IgnoreRules,
    /// Paths left out of `src/` (scripts moved to `scripts/`).
    pub skip: HashSet<PathBuf>,
    pub tag: Option<ImageRef>,
    pub kept_dir: Option<PathBuf>,
    pub injections: Vec<crate::inject::Injection>,
}

/// The previous image of an incremental build, and how to run its save-artifacts.
pub(crate) struct Previous {
    image: ImageInfo,
    command: String,
}

pub async fn build(cfg: &BuildConfig, engine: &dyn Engine, output: OutputFn) -> Result<BuildResult> {
    let mut timings = Timings::default();
    // save-artifacts ships with every build, as in the reference: the next incremental build
    // runs it from this build's image.
    let plan = prepare(cfg, engine, &[scripts::SAVE_ARTIFACTS], &mut timings).await?;
    if !plan.builder.on_build.is_empty() {
        return super::onbuild::build(plan, engine, output, timings).await;
    }
    let previous = match (cfg.incremental, cfg.tag.as_deref()) {
        (true, tag) => find_previous(&plan, engine, tag).await,
        (false, _) => None,
    };
    let assembled = assemble_with_fallback(&plan, engine, &output, previous.as_ref(), &mut timings).await?;
    let run = plan.scripts.command_path(scripts::RUN, &plan.destination).expect("run was resolved");
    let committed = commit(&plan, engine, &assembled.container, &plan.builder, run, plan.tag.as_ref(), &mut timings).await;
    remove_container(engine, &assembled.container).await;
    let (image_id, labels) = committed?;
    if cfg.remove_previous {
        remove_previous(engine, previous.as_ref(), &image_id).await;
    }
    Ok(BuildResult::new(cfg, image_id, labels, timings, assembled.stats))
}

/// Assemble with the previous image's artifacts; when they cannot be used, assemble again clean.
pub(crate) async fn assemble_with_fallback(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    output: &OutputFn,
    previous: Option<&Previous>,
    timings: &mut Timings,
) -> Result<Assembled> {
    let (mut previous, mut feed) = (previous, Feed::Stdin);
    // Each fallback happens at most once, so this loop runs at most three times.
    loop {
        match assemble(plan, engine, output, previous, feed, timings).await {
            Err(BuildError::ArtifactsUnusable { reason }) if previous.is_some() => {
                warn!("Clean build will be performed because of error saving previous build artifacts: {reason}");
                previous = None;
            }
            Err(BuildError::BuilderLacks { what: "tar", .. }) if feed == Feed::Stdin => {
                info!("Image {} has no tar: the engine will copy the input into the container instead", plan.cfg.builder_image);
                feed = Feed::Upload;
            }
            other => return other,
        }
    }
}

/// How the input reaches the assemble container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// Streamed on stdin to `tar -xf -` in the container, as the reference does.
    Stdin,
    /// Unpacked by the engine into the created container (builders without tar).
    Upload,
}

/// `--rm`: the previous image goes once the new one is committed (a failure is only logged).
pub(crate) async fn remove_previous(engine: &dyn Engine, previous: Option<&Previous>, new_id: &str) {
    let Some(prev) = previous.filter(|p| p.image.id != new_id) else { return };
    match engine.remove_image(&prev.image.id).await {
        Ok(()) => info!("Removed previous image {}", prev.image.id),
        Err(e) => warn!("Could not remove the previous image {}: {e}", prev.image.id),
    }
}

/// Check the request, get the builder image, resolve scripts, environment and the source tree.
pub(crate) async fn prepare<'a>(
    cfg: &'a BuildConfig,
    engine: &dyn Engine,
    optional_scripts: &[&str],
    timings: &mut Timings,
) -> Result<Plan<'a>> {
    let tag = cfg
        .tag
        .as_deref()
        .map(|t| {
            parse_output_tag(t).map_err(|reason| BuildError::InvalidValue { what: "tag", value: t.to_string(), reason })
        })
        .transpose()?;

    let t = Instant::now();
    let builder = crate::images::obtain(engine, &cfg.builder_image, cfg.pull_policy).await?;
    timings.record("builder image", t);
    let named = users::needs_passwd(&cfg.allowed_uids, &builder, cfg.assemble_user.as_deref(), labels::ASSEMBLE_USER);
    let passwd = crate::images::passwd_if_needed(engine, &cfg.builder_image, named).await?;
    users::check_builder(&cfg.allowed_uids, &builder, &cfg.builder_image, cfg.assemble_user.as_deref(), passwd.as_deref())?;
    // An ONBUILD builder does its own work: no script is required of it.
    let onbuild = !builder.on_build.is_empty();
    let (required, optional): (&[&str], &[&str]) =
        if onbuild { (&[], &[scripts::ASSEMBLE, scripts::RUN]) } else { (&[scripts::ASSEMBLE, scripts::RUN], optional_scripts) };
    // After the cheap builder checks: a clone or a download can take a while.
    let t = Instant::now();
    let source = source::prepare(&SourceRequest::from_config(cfg)).await?;
    timings.record("source", t);
    let app_root = source.root.clone();

    let destination = destination(cfg, &builder);
    let assemble_user = cfg
        .assemble_user
        .clone()
        .or_else(|| builder.label(labels::ASSEMBLE_USER).map(str::to_string))
        .or_else(|| Some(builder.user.clone()))
        .filter(|u| !u.is_empty());

    let t = Instant::now();
    let scripts = Resolver {
        scripts_url: cfg.scripts_url.as_deref(),
        source_root: Some(&app_root),
        image_url: scripts::image_scripts_url(&builder, &cfg.builder_image),
        image_name: &cfg.builder_image,
    }
    .resolve(required, optional)
    .await?;
    timings.record("scripts", t);

    let ignore = IgnoreRules::load(&app_root)
        .map_err(|e| BuildError::io(format!("reading {}", app_root.join(crate::ignore::IGNORE_FILE).display()), e))?;
    let env = build_environment(cfg, &app_root, &ignore);
    let skip = scripts.moved_from_source.iter().cloned().collect::<HashSet<PathBuf>>();

    let injections = crate::inject::resolve(&cfg.injections, &builder.working_dir)?;
    // Only --save-temp-dir needs a host directory: it keeps a copy of what assemble was fed.
    let kept_dir = if cfg.save_temp_dir {
        let dir = tempfile::Builder::new()
            .prefix("s2i")
            .tempdir()
            .map_err(|e| BuildError::io("creating the temporary directory", e))?
            .keep();
        warn!("Temporary directory {} is kept (--save-temp-dir); upload.tar holds what assemble was fed", dir.display());
        Some(dir)
    } else {
        None
    };
    Ok(Plan { cfg, builder, scripts, destination, assemble_user, env, source, ignore, skip, tag, kept_dir, injections })
}

/// The previous image of an incremental build, when there is one with a save-artifacts script;
/// otherwise one line says why the build is clean.
pub(crate) async fn find_previous(plan: &Plan<'_>, engine: &dyn Engine, tag: Option<&str>) -> Option<Previous> {
    let cfg = plan.cfg;
    let Some(tag) = tag else {
        info!("Clean build will be performed: an incremental build needs a tag to find the previous image");
        return None;
    };
    let Some(command) = plan.scripts.command_path(scripts::SAVE_ARTIFACTS, &plan.destination) else {
        info!("Clean build will be performed: there is no save-artifacts script");
        return None;
    };
    match crate::images::obtain(engine, tag, cfg.incremental_pull_policy).await {
        Ok(image) => {
            info!("Existing image for tag {tag} detected for incremental build");
            Some(Previous { image, command })
        }
        Err(e) => {
            info!("Clean build will be performed: no previous image {tag} ({e})");
            None
        }
    }
}

/// A finished assemble: its stopped container (the caller commits and removes it).
pub(crate) struct Assembled {
    pub container: String,
    pub stats: WalkStats,
}

/// Run assemble in a new container fed scripts, artifacts of `previous` and the source.
pub(crate) async fn assemble(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    output: &OutputFn,
    previous: Option<&Previous>,
    feed: Feed,
    timings: &mut Timings,
) -> Result<Assembled> {
    let cfg = plan.cfg;
    let t = Instant::now();
    let mut parts = vec![Part::Dir { path: "scripts".into(), mode: 0o755 }];
    for (name, data) in plan.scripts.external() {
        parts.push(Part::File { path: format!("scripts/{name}"), data: data.to_vec(), mode: 0o755 });
    }
    let mut save_container = None;
    if let Some(prev) = previous {
        match start_save_artifacts(plan, engine, output, prev).await {
            Ok((id, run)) => {
                save_container = Some(id);
                parts.push(Part::Dir { path: "artifacts".into(), mode: 0o755 });
                parts.push(Part::Checked { prefix: "artifacts".into(), run });
            }
            Err((id, e)) => {
                if let Some(id) = id {
                    remove_container(engine, &id).await;
                }
                return Err(BuildError::ArtifactsUnusable { reason: e.to_string() });
            }
        }
    }
    parts.push(Part::Dir { path: "src".into(), mode: 0o755 });
    parts.push(plan.source.part("src", plan.ignore.clone(), cfg.exclude.clone(), cfg.keep_symlinks, plan.skip.clone()));

    let spec = ContainerSpec {
        cmd: assemble_command(plan, feed),
        user: plan.assemble_user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        open_stdin: feed == Feed::Stdin,
        ..container_spec(cfg, with_default_tag(&cfg.builder_image))
    };
    debug!("assemble container: image {}, user {:?}, command {:?}", spec.image, spec.user, spec.cmd);
    let created = engine.create_container(&spec).await;
    let ran = match created {
        Ok(id) => {
            let ran = async {
                crate::inject::upload(engine, &id, &plan.injections).await?;
                run_assemble(plan, engine, output, &id, parts, feed).await
            };
            ran.await.map(|stats| (id.clone(), stats)).map_err(|e| (Some(id), e))
        }
        Err(e) => Err((None, e.into())),
    };
    if let Some(id) = save_container {
        remove_container(engine, &id).await;
    }
    match ran {
        Ok((container, stats)) => {
            timings.record("assemble", t);
            Ok(Assembled { container, stats })
        }
        Err((id, e)) => {
            if let Some(id) = id {
                remove_container(engine, &id).await;
            }
            Err(e)
        }
    }
}

/// Start save-artifacts in a container of the previous image; its stdout becomes the artifacts stream.
async fn start_save_artifacts(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    output: &OutputFn,
    prev: &Previous,
) -> std::result::Result<(String, s2i_engine::RunningOutput), (Option<String>, EngineError)> {
    let cfg = plan.cfg;
    let user = cfg
        .assemble_user
        .clone()
        .or_else(|| plan.builder.label(labels::ASSEMBLE_USER).map(str::to_string))
        .or_else(|| Some(prev.image.user.clone()))
        .filter(|u| !u.is_empty());
    let spec = ContainerSpec { cmd: vec![prev.command.clone()], user, ..container_spec(cfg, prev.image.id.clone()) };
    debug!("save-artifacts container: image {}, command {:?}", spec.image, spec.cmd);
    let id = engine.create_container(&spec).await.map_err(|e| (None, e))?;
    let stderr = Box::new(ContainerLog::new(output.clone(), false));
    match engine.run_with_stdout(&id, stderr).await {
        Ok(run) => Ok((id, run)),
        Err(e) => Err((Some(id), e)),
    }
}

/// What every build container of `cfg` shares: name, image, volumes, network, capabilities.
pub(crate) fn container_spec(cfg: &BuildConfig, image: String) -> ContainerSpec {
    ContainerSpec {
        name: Some(container_name(&cfg.builder_image)),
        image,
        no_log: true,
        binds: cfg.volumes.clone(),
        cap_drop: cfg.cap_drop.clone(),
        network_mode: cfg.network.clone(),
        extra_hosts: cfg.add_hosts.clone(),
        shm_size: Some(SHM_SIZE),
        ..Default::default()
    }
}

/// The assemble container's command: unpack stdin then assemble (or just assemble when the engine
/// unpacked the input), then empty the injected files whatever assemble's outcome.
fn assemble_command(plan: &Plan<'_>, feed: Feed) -> Vec<String> {
    let assemble = plan.scripts.command_path(scripts::ASSEMBLE, &plan.destination).expect("assemble was resolved");
    let mut line = match feed {
        Feed::Stdin => format!("tar -C {} -xf - && {assemble}", plan.destination),
        Feed::Upload if plan.injections.is_empty() => return vec![assemble],
        Feed::Upload => assemble,
    };
    if !plan.injections.is_empty() {
        line = format!("{line}; result=$?; . {}; exit $result", crate::inject::RM_SCRIPT);
    }
    vec!["/bin/sh".into(), "-c".into(), line]
}

async fn run_assemble(plan: &Plan<'_>, engine: &dyn Engine, output: &OutputFn, id: &str, parts: Vec<Part>, feed: Feed) -> Result<WalkStats> {
    let cfg = plan.cfg;
    let input = tar_stream::spawn(parts, plan.kept_dir.as_ref().map(|d| d.join("upload.tar")));
    let mut log = ContainerLog::new(output.clone(), cfg.quiet);
    let ran = match feed {
        Feed::Stdin => engine.run_container(id, Some(Box::new(input.reader)), &mut log).await,
        Feed::Upload => match engine.upload_archive(id, &plan.destination, Box::new(input.reader)).await {
            Ok(()) => engine.run_container(id, None, &mut log).await,
            Err(e) => Err(e),
        },
    };
    let tail = log.finish();
    let produced = input.done.await.map_err(|e| BuildError::SourceStream(std::io::Error::other(e)))?;
    if feed == Feed::Upload {
        // The engine read the whole stream before the container started: a failure here is real.
        if let Err(e) = produced {
            return Err(match tar_stream::as_artifacts_failure(&e) {
                Some(failed) => BuildError::ArtifactsUnusable { reason: failed.0.clone() },
                None => BuildError::SourceStream(e),
            });
        }
    }
    let code = match ran {
        Ok(code) => code,
        Err(EngineError::Input(e)) => {
            // The producer's own error says more than the pipe's copy of it.
            let e = produced.err().unwrap_or(e);
            if let Some(failed) = tar_stream::as_artifacts_failure(&e) {
                return Err(BuildError::ArtifactsUnusable { reason: failed.0.clone() });
            }
            return Err(BuildError::SourceStream(e));
        }
        Err(e) => return Err(classify_start_error(e, &cfg.builder_image)),
    };
    if code != 0 {
        if let Some(what) = missing_requirement(&tail) {
            return Err(BuildError::BuilderLacks { image: cfg.builder_image.clone(), what });
        }
        return Err(BuildError::ScriptFailed {
            script: scripts::ASSEMBLE.into(),
            image: cfg.builder_image.clone(),
            code,
            stderr_tail: tail,
        });
    }
    // The container read all it needed; a producer that then hit a closed pipe is no failure.
    let stats = produced.unwrap_or_else(|e| {
        debug!("input stream ended early after a successful assemble: {e}");
        WalkStats::default()
    });
    info!(
        "Streamed {} files, {} directories, {} bytes ({} entries left out)",
        stats.files, stats.dirs, stats.bytes, stats.left_out
    );
    Ok(stats)
}

/// Commit the stopped container `id` as `tag` with the labels and env of this build and `run` as
/// its command; `base` is the image whose USER, ENTRYPOINT and labels the result inherits.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn commit(
    plan: &Plan<'_>,
    engine: &dyn Engine,
    id: &str,
    base: &ImageInfo,
    run: String,
    tag: Option<&ImageRef>,
    timings: &mut Timings,
) -> Result<(String, BTreeMap<String, String>)> {
    let cfg = plan.cfg;
    let t = Instant::now();
    let mut labels: HashMap<String, String> = base.labels.clone();
    labels.extend(labels::generated(&BuildFacts {
        builder_image: &cfg.builder_image,
        tag: cfg.tag.as_deref(),
        application_name: cfg.application_name.as_deref(),
        description: cfg.description.as_deref(),
        source_location: Some(&plan.source.location),
        context_dir: cfg.context_dir.as_deref(),
        commit: plan.source.commit.as_ref(),
    }));
    labels.extend(cfg.labels.iter().cloned());
    labels.extend(read_image_metadata(engine, id).await?);
    labels::check_size(&labels, cfg.tag.as_deref().unwrap_or(&cfg.builder_image))?;
    let cmd = vec![run];

    let spec = CommitSpec {
        repo: tag.map(|r| r.repository()),
        tag: tag.map(|r| r.tag.clone().unwrap_or_else(|| "latest".into())),
        cmd,
        entrypoint: base.entrypoint.clone().unwrap_or_default(),
        user: base.user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        labels: labels.clone(),
    };
    let image_id = engine.commit_container(id, &spec).await.map_err(|source| BuildError::Commit {
        tag: tag.map(|t| t.normalized()).unwrap_or_else(|| "the image".into()),
        source,
    })?;
    timings.record("commit", t);
    Ok((image_id, labels.into_iter().collect()))
}

pub(crate) async fn remove_container(engine: &dyn Engine, id: &str) {
    if let Err(e) = engine.remove_container(id).await {
        warn!("could not remove the build container {id}: {e}");
    }
}

/// dest = `--destination` ‖ the builder's destination label (or its deprecated forms) ‖ `/tmp`.
pub(crate) fn destination(cfg: &BuildConfig, builder: &ImageInfo) -> String {
    if let Some(d) = cfg.destination.as_deref().filter(|d| !d.is_empty()) {
        return d.to_string();
    }
    if let Some(d) = builder.label(labels::DESTINATION) {
        return d.to_string();
    }
    if let Some(d) = builder.label(labels::DESTINATION_DEPRECATED) {
        warn!("Image {} uses deprecated label '{}', please migrate it to {} instead!", cfg.builder_image, labels::DESTINATION_DEPRECATED, labels::DESTINATION);
        return d.to_string();
    }
    if let Some(d) = builder.env_var(labels::ENV_LOCATION).filter(|d| !d.is_empty()) {
        warn!("Image {} uses deprecated environment variable {}, please migrate it to the {} label instead!", cfg.builder_image, labels::ENV_LOCATION, labels::DESTINATION);
        return d.to_string();
    }
    "/tmp".to_string()
}

/// `.s2i/environment` (unless `.s2iignore` removes it), then `-e`, then `-E`; last wins.
pub(crate) fn build_environment(cfg: &BuildConfig, app_root: &Path, ignore: &IgnoreRules) -> Vec<EnvVar> {
    let env_file = app_root.join(".s2i/environment");
    let from_source = if ignore.is_ignored(".s2i") || ignore.is_ignored(".s2i/environment") {
        Vec::new()
    } else {
        match std::fs::read_to_string(&env_file) {
            Ok(text) => {
                let vars = env::parse_s2i_environment(&text, &env_file);
                info!("Setting {} environment variables from .s2i/environment", vars.len());
                vars
            }
            Err(_) => Vec::new(),
        }
    };
    let from_file = cfg.environment_file.as_deref().map(env::read_environment_file).unwrap_or_default();
    env::merge(&[&from_source, &cfg.env, &from_file])
}

/// `s2i_<image with every non-alphanumeric character replaced by _>_<8 hex digits>`.
pub(crate) fn container_name(image: &str) -> String {
    let clean: String = image.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("s2i_{clean}_{:08x}", rand::rng().random::<u32>())
}

/// A start failure because the image lacks `/bin/sh` is the builder's problem, said plainly.
fn classify_start_error(e: EngineError, image: &str) -> BuildError {
    if let EngineError::Api { message, .. } = &e {
        if message.contains("/bin/sh") && message.contains("no such file") {
            return BuildError::BuilderLacks { image: image.to_string(), what: "/bin/sh" };
        }
    }
    e.into()
}

/// What the builder lacks, judging by the shell's complaint.
fn missing_requirement(stderr: &str) -> Option<&'static str> {
    let lower = stderr.to_ascii_lowercase();
    // Only the shell's "command not found" for tar itself; tar's own complaints are not this.
    if lower.lines().any(|l| l.contains("tar: not found") || l.contains("tar: command not found")) {
        return Some("tar");
    }
    if lower.contains("/bin/sh") && lower.contains("no such file") {
        return Some("/bin/sh");
    }
    None
}

/// Labels from `/tmp/.s2i/image_metadata.json` in the stopped container, if assemble wrote it.
async fn read_image_metadata(engine: &dyn Engine, id: &str) -> Result<Vec<(String, String)>> {
    let Some(mut stream) = engine.download_archive(id, labels::IMAGE_METADATA_PATH).await? else {
        return Ok(Vec::new());
    };
    let mut tar_bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| BuildError::io("reading image_metadata.json from the container", e))?;
        tar_bytes.extend_from_slice(&chunk);
        if tar_bytes.len() as u64 > MAX_METADATA_SIZE + 4096 {
            return Err(BuildError::ImageMetadata { reason: "the file is bigger than 1 MiB".into() });
        }
    }
    let mut archive = tar::Archive::new(&tar_bytes[..]);
    let entries = archive.entries().map_err(|e| BuildError::io("reading image_metadata.json", e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| BuildError::io("reading image_metadata.json", e))?;
        if entry.header().entry_type().is_file() {
            let mut json = Vec::new();
            entry.read_to_end(&mut json).map_err(|e| BuildError::io("reading image_metadata.json", e))?;
            let found = labels::parse_image_metadata(&json)?;
            info!("Adding {} labels from image_metadata.json", found.len());
            return Ok(found);
        }
    }
    Err(BuildError::ImageMetadata { reason: "it is not a regular file".into() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_reference_pattern() {
        let n = container_name("quay.io/org/img:1.0");
        assert!(n.starts_with("s2i_quay_io_org_img_1_0_"), "{n}");
        assert_eq!(n.len(), "s2i_quay_io_org_img_1_0_".len() + 8);
    }

    #[test]
    fn missing_tar_or_shell_is_recognised() {
        assert_eq!(missing_requirement("/bin/sh: tar: not found"), Some("tar"));
        assert_eq!(missing_requirement("sh: 1: tar: command not found"), Some("tar"));
        assert_eq!(missing_requirement("assemble: pip failed"), None);
        assert_eq!(missing_requirement("tar: can't change directory to '/opt/x': No such file or directory"), None);
    }
}
