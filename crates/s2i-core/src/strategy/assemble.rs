//! The step the standard and runtime flows share: run assemble in a container of the builder, fed
//! the scripts, the previous image's artifacts and the source as one stream, and commit a stopped
//! container with the build's labels.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use s2i_engine::{CommitSpec, ContainerInput, ContainerSpec, Engine, EngineError, ImageInfo};
use tokio::io::AsyncReadExt;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

use crate::artifacts::{self, ArtifactsPart, CachedPart};
use crate::config::{EnvVar, SecretValue, SECRETS_DIR};
use crate::container;
use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;
use crate::labels;
use crate::plan::{Plan, Previous};
use crate::report::{ContainerLog, Phase};
use crate::result::Phases;
use crate::scripts;
use crate::tar_stream::{self, Owner, StreamOptions, TarPart, WalkStats};

/// A finished assemble: its stopped container (the caller commits and removes it).
pub struct Assembled {
    pub container: String,
    pub stats: WalkStats,
}

/// Where the artifacts of an incremental build come from.
#[derive(Clone, Copy)]
enum Artifacts<'p> {
    /// save-artifacts in a container of the previous image.
    Image(&'p Previous),
    /// The tar `--cache-dir` kept.
    Cache(&'p std::path::Path),
}

/// Assemble with the previous image's (or the cache's) artifacts; when they cannot be used,
/// assemble again clean.
pub async fn assemble_with_fallback(plan: &Plan<'_>, engine: &dyn Engine, phases: &mut Phases) -> Result<Assembled> {
    let previous = match (&plan.cached, &plan.previous) {
        (Some(path), _) => Some(Artifacts::Cache(path)),
        (None, Some(prev)) => Some(Artifacts::Image(prev)),
        (None, None) => None,
    };
    let running = phases.start(Phase::Assemble);
    let outcome = match assemble(plan, engine, previous).await {
        Err(BuildError::ArtifactsUnusable { reason, .. }) if previous.is_some() => {
            warn!("Clean build will be performed because of error saving previous build artifacts: {reason}");
            assemble(plan, engine, None).await
        }
        other => other,
    };
    phases.end(running);
    outcome
}

/// How the input reaches the assemble container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Feed {
    /// Streamed on stdin to `tar -xf -` in the container, as the reference does.
    Stdin,
    /// Unpacked by the engine into the created container (builders without tar, and engines
    /// that unpack faster than the image's tar).
    Upload,
}

/// Run assemble in a new container fed scripts, artifacts of `previous` and the source.
async fn assemble(plan: &Plan<'_>, engine: &dyn Engine, previous: Option<Artifacts<'_>>) -> Result<Assembled> {
    // Read now, as the container that needs them is made; the command says only their sizes.
    let secrets = read_secrets(plan)?;
    let (id, feed) = if engine.capabilities().unpacks_input {
        // The engine unpacks faster than the image's tar would (the in-place engine's own root).
        (create_assemble_container(plan, engine, Feed::Upload, &secrets).await?, Feed::Upload)
    } else {
        let id = create_assemble_container(plan, engine, Feed::Stdin, &secrets).await?;
        // The builder's files decide whether its tar unpacks the input, never what a script prints.
        match container::has_tar(engine, &id).await {
            Ok(true) => (id, Feed::Stdin),
            Ok(false) => {
                container::remove(engine, &id).await;
                info!("Image {} has no tar: the engine will copy the input into the container instead", plan.cfg.builder_image);
                (create_assemble_container(plan, engine, Feed::Upload, &secrets).await?, Feed::Upload)
            }
            Err(e) => {
                container::remove(engine, &id).await;
                return Err(e);
            }
        }
    };
    match run_assemble(plan, engine, &id, feed, previous, &secrets).await {
        Ok(stats) => Ok(Assembled { container: id, stats }),
        Err(e) => {
            container::remove(engine, &id).await;
            Err(e)
        }
    }
}

/// The `--secret` values of this build, in flag order.
fn read_secrets(plan: &Plan<'_>) -> Result<Vec<(String, SecretValue)>> {
    plan.cfg.secrets.iter().map(|s| Ok((s.id.clone(), s.read()?))).collect()
}

async fn create_assemble_container(plan: &Plan<'_>, engine: &dyn Engine, feed: Feed, secrets: &[(String, SecretValue)]) -> Result<String> {
    let cfg = plan.cfg;
    let mut spec = ContainerSpec {
        cmd: assemble_command(plan, feed, secrets)?,
        user: plan.assemble_user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        open_stdin: feed == Feed::Stdin || !secrets.is_empty(),
        ..container::spec(&cfg.container, &cfg.builder_image, &cfg.builder_image)
    };
    if !secrets.is_empty() {
        let uid = plan.owner.map(|o| o.uid).or_else(|| numeric_uid(plan.assemble_user.as_deref()));
        spec.tmpfs.push((SECRETS_DIR.to_string(), secrets_tmpfs_options(secrets, uid)));
    }
    debug!("assemble container: image {}, user {:?}, command {:?}", spec.image, spec.user, spec.cmd);
    Ok(engine.create_container(&spec).await?)
}

/// The owner of everything streamed in: the plan's (the assemble user by number). A name the
/// builder's /etc/passwd does not know can do with headers of root when its own `tar -x` unpacks
/// the input (a non-root user owns what it unpacks, whatever the headers say), not when the engine
/// does it as root.
fn stream_owner(plan: &Plan<'_>, feed: Feed) -> Result<Owner> {
    match (plan.owner, feed) {
        (Some(owner), _) => Ok(owner),
        (None, Feed::Stdin) => Ok(Owner::default()),
        (None, Feed::Upload) => Err(BuildError::UserNotAllowed {
            what: format!("the assemble user {:?}", plan.assemble_user.as_deref().unwrap_or("")),
            reason: format!("{} has no such user in its /etc/passwd", plan.cfg.builder_image),
        }),
    }
}

/// The assemble container's command: unpack stdin then assemble (or just assemble when the engine
/// unpacked the input), then empty the injected files whatever assemble's outcome. Paths are
/// quoted: a destination from an image label is not trusted to be a plain word.
fn assemble_command(plan: &Plan<'_>, feed: Feed, secrets: &[(String, SecretValue)]) -> Result<Vec<String>> {
    let assemble = plan.command(scripts::ASSEMBLE)?;
    let quoted = crate::inject::shell_quote(&assemble);
    let mut line = match feed {
        Feed::Stdin => format!("tar -C {} -xf - && {quoted}", crate::inject::shell_quote(&plan.destination)),
        Feed::Upload if plan.injections.is_empty() && secrets.is_empty() => return Ok(vec![assemble]),
        Feed::Upload => quoted,
    };
    if let Some(prelude) = secrets_prelude(secrets) {
        line = format!("{prelude} && {line}");
    }
    if !plan.injections.is_empty() {
        line = format!("{line}; result=$?; . {}; exit $result", crate::inject::RM_SCRIPT);
    }
    Ok(vec!["/bin/sh".into(), "-c".into(), line])
}

/// The tmpfs the secrets are written to: in memory only, never part of a commit, writable by the
/// assemble user whoever it is (sticky, like /tmp: each secret file is its own, mode 0400), and
/// owned by `uid` when it is known: Docker and Podman copy the mode and owner of a directory the
/// image already has at the mount point (a previous image has /run/secrets, root's, 0755) onto
/// the tmpfs, and `mode=` alone then leaves it unwritable.
fn secrets_tmpfs_options(secrets: &[(String, SecretValue)], uid: Option<u64>) -> String {
    let total: usize = secrets.iter().map(|(_, v)| v.bytes().len() + 4096).sum();
    let owner = uid.map(|u| format!(",uid={u}")).unwrap_or_default();
    format!("rw,nosuid,nodev,noexec,mode=1777{owner},size={}", total.max(64 * 1024))
}

/// The uid of a container's user when it is a number (`1001`, `1001:0`).
fn numeric_uid(user: Option<&str>) -> Option<u64> {
    user?.split(':').next()?.parse().ok()
}

/// The shell words that take the secrets off the front of stdin, each into its own file under
/// /run/secrets, made by the assemble user with umask 077 and then made read-only (0400). `dd
/// bs=1` reads exactly the secret's bytes and not one more: the input tar follows them.
/// Only ids (checked plain words) and sizes are in the command, never a value.
fn secrets_prelude(secrets: &[(String, SecretValue)]) -> Option<String> {
    if secrets.is_empty() {
        return None;
    }
    let writes: Vec<String> = secrets
        .iter()
        .map(|(id, value)| {
            let path = format!("{SECRETS_DIR}/{id}");
            format!("dd bs=1 count={} of={path} 2>/dev/null && chmod 0400 {path}", value.bytes().len())
        })
        .collect();
    Some(format!(
        "(umask 077 && {}) || {{ echo 's2i: cannot write the build secrets to {SECRETS_DIR} (does the builder have dd and chmod?)' >&2; exit 1; }}",
        writes.join(" && ")
    ))
}

/// What goes on stdin ahead of the input tar: the secrets' bytes, back to back, in the prelude's
/// order. Held in memory that is wiped when the stream is dropped.
fn secrets_input(secrets: &[(String, SecretValue)]) -> Option<std::io::Cursor<Zeroizing<Vec<u8>>>> {
    if secrets.is_empty() {
        return None;
    }
    let mut bytes = Zeroizing::new(Vec::with_capacity(secrets.iter().map(|(_, v)| v.bytes().len()).sum()));
    for (_, value) in secrets {
        bytes.extend_from_slice(value.bytes());
    }
    Some(std::io::Cursor::new(bytes))
}

async fn run_assemble(plan: &Plan<'_>, engine: &dyn Engine, id: &str, feed: Feed, previous: Option<Artifacts<'_>>, secrets: &[(String, SecretValue)]) -> Result<WalkStats> {
    let cfg = plan.cfg;
    let owner = stream_owner(plan, feed)?;
    crate::inject::upload(engine, id, &plan.injections, owner).await?;
    let mut parts: Vec<Box<dyn TarPart>> = vec![tar_stream::dir("scripts", 0o755)];
    for (name, data) in plan.scripts.external() {
        parts.push(tar_stream::file(format!("scripts/{name}"), data.to_vec(), 0o755));
    }
    let save_container = match previous {
        Some(Artifacts::Cache(path)) => {
            parts.push(tar_stream::dir("artifacts", 0o755));
            parts.push(Box::new(CachedPart { prefix: PathBuf::from("artifacts"), path: path.to_path_buf(), limits: cfg.limits }));
            None
        }
        Some(Artifacts::Image(prev)) => {
            let (save_id, run) = start_save_artifacts(plan, engine, prev, secrets).await?;
            parts.push(tar_stream::dir("artifacts", 0o755));
            parts.push(Box::new(ArtifactsPart { prefix: PathBuf::from("artifacts"), run, limits: cfg.limits }));
            Some(save_id)
        }
        None => None,
    };
    parts.push(tar_stream::dir("src", 0o755));
    parts.push(plan.source_part("src", &[]));

    let options = StreamOptions { owner, tee: plan.kept_dir.as_ref().map(|d| d.join("upload.tar")), ..Default::default() };
    plan.reporter.streaming(options.progress.clone());
    let input = tar_stream::spawn(parts, options);
    // The stream is done when its writer is, which is before assemble ends.
    let reporter = plan.reporter.clone();
    let done = input.done;
    let produced = tokio::spawn(async move {
        let produced = done.written().await;
        reporter.streamed();
        produced
    });
    let produced = async { produced.await.unwrap_or_else(|e| Err(std::io::Error::other(e))) };
    let mut log = ContainerLog::new(plan.reporter.clone(), cfg.quiet);
    let (ran, produced) = match feed {
        Feed::Stdin => {
            let stdin: ContainerInput = match secrets_input(secrets) {
                Some(prefix) => Box::new(prefix.chain(input.reader)),
                None => Box::new(input.reader),
            };
            let ran = engine.run_container(id, Some(stdin), &mut log).await;
            (ran, produced.await)
        }
        Feed::Upload => {
            let uploaded = engine.upload_archive(id, &plan.destination, Box::new(input.reader)).await;
            // The engine read the whole stream before the container starts: a failure here is real.
            let produced = produced.await;
            let ran = match (&produced, uploaded) {
                (Ok(_), Ok(())) => {
                    let stdin = secrets_input(secrets).map(|s| Box::new(s) as ContainerInput);
                    engine.run_container(id, stdin, &mut log).await
                }
                (_, Err(e)) => Err(e),
                (Err(_), Ok(())) => Ok(0),
            };
            if let Err(e) = &produced {
                if let Some(id) = save_container {
                    container::remove(engine, &id).await;
                }
                return Err(stream_failure(e));
            }
            (ran, produced)
        }
    };
    let tail = log.into_stderr_tail();
    if let Some(save_id) = save_container {
        container::remove(engine, &save_id).await;
    }
    let code = match ran {
        Ok(code) => code,
        Err(EngineError::Input(e)) => {
            // The producer's own error says more than the pipe's copy of it.
            return Err(stream_failure(&produced.err().unwrap_or(e)));
        }
        Err(e) => return Err(classify_start_error(e, &cfg.builder_image)),
    };
    if code != 0 {
        // A stream that broke (hostile artifacts, say) explains a failing assemble better.
        if let Err(e) = &produced {
            if artifacts::as_artifacts_failure(e).is_some() {
                return Err(stream_failure(e));
            }
        }
        return Err(BuildError::ScriptFailed { script: scripts::ASSEMBLE.into(), image: cfg.builder_image.clone(), code, stderr_tail: tail });
    }
    // The container read all it needed; a producer that then hit a closed pipe is no failure.
    let stats = produced.unwrap_or_else(|e| {
        debug!("input stream ended early after a successful assemble: {e}");
        WalkStats::default()
    });
    info!("Streamed {} files, {} directories, {} bytes ({} entries left out)", stats.files, stats.dirs, stats.bytes, stats.left_out);
    Ok(stats)
}

/// The error for a broken input stream: unusable artifacts (the build goes on clean), or ours.
fn stream_failure(e: &std::io::Error) -> BuildError {
    match artifacts::as_artifacts_failure(e) {
        Some(failed) => BuildError::ArtifactsUnusable { reason: failed.reason.clone(), cause: Some(Box::new(std::io::Error::new(e.kind(), e.to_string()))) },
        None => BuildError::SourceStream(std::io::Error::new(e.kind(), e.to_string())),
    }
}

/// Start save-artifacts in a container of the previous image; its stdout becomes the artifacts
/// stream. The secrets are at /run/secrets for it too, handed over as for assemble: a tmpfs of
/// this container alone, the values on stdin (it reads nothing else there).
async fn start_save_artifacts(plan: &Plan<'_>, engine: &dyn Engine, prev: &Previous, secrets: &[(String, SecretValue)]) -> Result<(String, s2i_engine::RunningOutput)> {
    let cfg = plan.cfg;
    let unusable = |e: EngineError| BuildError::ArtifactsUnusable { reason: e.to_string(), cause: Some(Box::new(e)) };
    let mut spec = ContainerSpec {
        cmd: vec![prev.command.clone()],
        user: prev.user.clone(),
        ..container::spec(&cfg.container, &cfg.builder_image, &prev.image.id)
    };
    let input = give_save_artifacts_secrets(plan, &mut spec, &prev.command, secrets);
    debug!("save-artifacts container: image {}, command {:?}", spec.image, spec.cmd);
    let id = engine.create_container(&spec).await.map_err(unusable)?;
    let stderr = Box::new(ContainerLog::new(plan.reporter.clone(), false));
    match engine.run_with_stdout(&id, input, stderr).await {
        Ok(run) => Ok((id, run)),
        Err(e) => {
            container::remove(engine, &id).await;
            Err(unusable(e))
        }
    }
}

/// Make `spec`, a save-artifacts container running `command`, take the build's secrets as
/// assemble does (the prelude, the tmpfs owned by the script's user): the stdin to give it.
fn give_save_artifacts_secrets(plan: &Plan<'_>, spec: &mut ContainerSpec, command: &str, secrets: &[(String, SecretValue)]) -> Option<ContainerInput> {
    let prelude = secrets_prelude(secrets)?;
    spec.cmd = vec!["/bin/sh".into(), "-c".into(), format!("{prelude} && exec {}", crate::inject::shell_quote(command))];
    spec.open_stdin = true;
    let uid = match (&spec.user, plan.owner) {
        (Some(u), Some(owner)) if Some(u) == plan.assemble_user.as_ref() => Some(owner.uid),
        (u, _) => numeric_uid(u.as_deref()),
    };
    spec.tmpfs.push((SECRETS_DIR.to_string(), secrets_tmpfs_options(secrets, uid)));
    secrets_input(secrets).map(|s| Box::new(s) as ContainerInput)
}

/// The spec of a save-artifacts container for the cache (`--cache-dir`), run in the image just
/// committed, and its stdin: the build's secrets, read again (they were wiped after assemble).
pub(super) fn cache_save_artifacts(plan: &Plan<'_>, image: &str, command: String) -> Result<(ContainerSpec, Option<ContainerInput>)> {
    let cfg = plan.cfg;
    let secrets = read_secrets(plan)?;
    let mut spec = ContainerSpec { cmd: vec![command.clone()], user: plan.assemble_user.clone(), ..container::spec(&cfg.container, &cfg.builder_image, image) };
    let input = give_save_artifacts_secrets(plan, &mut spec, &command, &secrets);
    Ok((spec, input))
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

/// Commit the stopped container `id` with the labels and env of this build and `run` as its
/// command; `base` is the image whose USER, ENTRYPOINT and labels the result inherits.
pub async fn commit(plan: &Plan<'_>, engine: &dyn Engine, id: &str, base: &ImageInfo, run: String, tag: Option<&ImageRef>, phases: &mut Phases) -> Result<(String, BTreeMap<String, String>)> {
    let running = phases.start(Phase::Commit);
    let metadata = read_image_metadata(engine, id, plan.cfg.limits.file_size).await?;
    let labels: HashMap<String, String> = plan.labels(base, metadata)?;
    let spec = CommitSpec {
        repo: tag.map(|r| r.repository()),
        tag: tag.map(|r| r.tag.clone().unwrap_or_else(|| "latest".into())),
        cmd: vec![run],
        entrypoint: base.entrypoint.clone().unwrap_or_default(),
        user: base.user.clone(),
        env: plan.env.iter().map(EnvVar::to_kv).collect(),
        labels: labels.clone(),
    };
    let shown = tag.map(|t| t.normalized()).unwrap_or_else(|| "the image".into());
    let image_id = container::commit(engine, id, &spec, &shown).await?;
    phases.end(running);
    Ok((image_id, labels.into_iter().collect()))
}

/// Labels from `/tmp/.s2i/image_metadata.json` in the stopped container, if assemble wrote it.
async fn read_image_metadata(engine: &dyn Engine, id: &str, limit: u64) -> Result<Vec<(String, String)>> {
    let json = match container::read_file(engine, id, labels::IMAGE_METADATA_PATH, limit).await {
        Ok(Some(json)) => json,
        Ok(None) => return Ok(Vec::new()),
        Err(BuildError::Io { source, .. }) => return Err(BuildError::ImageMetadata { reason: source.to_string() }),
        Err(e) => return Err(e),
    };
    let found = labels::parse_image_metadata(&json)?;
    info!("Adding {} labels from image_metadata.json", found.len());
    Ok(found)
}

/// `--rm`: the previous image goes once the new one is committed (a failure is only logged).
pub async fn remove_previous(plan: &Plan<'_>, engine: &dyn Engine, new_id: &str) {
    let Some(prev) = plan.previous.as_ref().filter(|p| p.image.id != new_id) else { return };
    match engine.remove_image(&prev.image.id).await {
        Ok(()) => info!("Removed previous image {}", prev.image.id),
        Err(e) => warn!("Could not remove the previous image {}: {e}", prev.image.id),
    }
}
