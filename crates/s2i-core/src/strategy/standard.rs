//! The standard ("sti") flow: stream scripts and source into a container of the builder image,
//! run assemble, commit the stopped container with the run script as its command.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures_util::StreamExt;
use rand::Rng;
use s2i_engine::{CommitSpec, ContainerSpec, Engine, EngineError, ImageInfo, OutputSink};
use tracing::{debug, info, warn};

use crate::config::BuildConfig;
use crate::container_log::ContainerLog;
use crate::env::{self, EnvVar};
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::image_ref::{parse_output_tag, with_default_tag};
use crate::labels::{self, BuildFacts};
use crate::scripts::{self, Resolver, Scripts};
use crate::source::SourceTree;
use crate::tar_stream::{self, Part};
use crate::users;
use crate::{BuildResult, Timings};

/// The shared memory size the reference gives build containers.
const SHM_SIZE: i64 = 64 * 1024 * 1024;
/// image_metadata.json is small; refuse to read more than this of it.
const MAX_METADATA_SIZE: u64 = 1024 * 1024;

pub async fn build(cfg: &BuildConfig, engine: &dyn Engine, output: &mut dyn OutputSink) -> Result<BuildResult> {
    let mut timings = Timings::default();
    let tag = cfg
        .tag
        .as_deref()
        .map(|t| {
            parse_output_tag(t).map_err(|reason| BuildError::InvalidValue { what: "tag", value: t.to_string(), reason })
        })
        .transpose()?;
    let app_root = application_root(cfg)?;

    let t = Instant::now();
    let builder = crate::images::obtain(engine, &cfg.builder_image, cfg.pull_policy).await?;
    timings.record("builder image", t);
    users::check_builder(&cfg.allowed_uids, &builder, &cfg.builder_image, cfg.assemble_user.as_deref())?;
    if !builder.on_build.is_empty() {
        return Err(BuildError::NotSupported(format!(
            "builder image {} has ONBUILD instructions; ONBUILD builders",
            cfg.builder_image
        )));
    }
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
    .resolve(&[scripts::ASSEMBLE, scripts::RUN], &[])
    .await?;
    timings.record("scripts", t);

    let ignore = IgnoreRules::load(&app_root)
        .map_err(|e| BuildError::io(format!("reading {}", app_root.join(crate::ignore::IGNORE_FILE).display()), e))?;
    let build_env = build_environment(cfg, &app_root, &ignore);
    let tree = SourceTree {
        root: app_root.clone(),
        ignore,
        exclude: cfg.exclude.clone(),
        keep_symlinks: cfg.keep_symlinks,
        skip: scripts.moved_from_source.iter().cloned().collect::<HashSet<PathBuf>>(),
    };

    let assemble = scripts.command_path(scripts::ASSEMBLE, &destination).expect("assemble was resolved");
    let spec = ContainerSpec {
        name: Some(container_name(&cfg.builder_image)),
        image: with_default_tag(&cfg.builder_image),
        cmd: vec!["/bin/sh".into(), "-c".into(), format!("tar -C {destination} -xf - && {assemble}")],
        entrypoint: None,
        user: assemble_user,
        env: build_env.iter().map(EnvVar::to_kv).collect(),
        working_dir: None,
        open_stdin: true,
        no_log: true,
        binds: cfg.volumes.clone(),
        cap_drop: cfg.cap_drop.clone(),
        network_mode: cfg.network.clone(),
        extra_hosts: cfg.add_hosts.clone(),
        publish_all_ports: false,
        shm_size: Some(SHM_SIZE),
    };
    debug!("assemble container: image {}, user {:?}, command {:?}", spec.image, spec.user, spec.cmd);

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

    let parts = input_parts(&scripts, tree);
    let id = engine.create_container(&spec).await?;
    let outcome = assemble_and_commit(cfg, engine, output, &id, parts, kept_dir, &builder, &scripts, &destination, &build_env, tag.as_ref(), &mut timings).await;
    if let Err(e) = engine.remove_container(&id).await {
        warn!("could not remove the build container {id}: {e}");
    }
    let (image_id, labels, stats) = outcome?;
    Ok(BuildResult {
        image_id,
        tag: cfg.tag.clone(),
        builder_image: cfg.builder_image.clone(),
        labels,
        timings,
        source_stats: stats,
    })
}

/// The source directory, or its `--context-dir`, absolute.
pub(crate) fn application_root(cfg: &BuildConfig) -> Result<PathBuf> {
    let source = std::path::absolute(&cfg.source).map_err(|e| BuildError::io("resolving the source path", e))?;
    match std::fs::metadata(&source) {
        Err(_) => return Err(BuildError::SourceNotFound { path: cfg.source.clone() }),
        Ok(m) if !m.is_dir() => return Err(BuildError::SourceNotDirectory { path: cfg.source.clone() }),
        Ok(_) => {}
    }
    let Some(ctx) = cfg.context_dir.as_deref().filter(|c| !c.is_empty()) else { return Ok(source) };
    crate::config::validate_context_dir(ctx)?;
    let root = source.join(ctx);
    if !root.is_dir() {
        return Err(BuildError::ContextDirNotFound { dir: ctx.to_string(), source_root: cfg.source.clone() });
    }
    Ok(root)
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

fn input_parts(scripts: &Scripts, tree: SourceTree) -> Vec<Part> {
    let mut parts = vec![Part::Dir("scripts".into())];
    for (name, data) in scripts.external() {
        parts.push(Part::File { path: format!("scripts/{name}"), data: data.to_vec(), mode: 0o755 });
    }
    parts.push(Part::Dir("src".into()));
    parts.push(Part::Tree { prefix: "src".into(), tree });
    parts
}

/// `s2i_<image with every non-alphanumeric character replaced by _>_<8 hex digits>`.
pub(crate) fn container_name(image: &str) -> String {
    let clean: String = image.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("s2i_{clean}_{:08x}", rand::rng().random::<u32>())
}

#[allow(clippy::too_many_arguments)]
async fn assemble_and_commit(
    cfg: &BuildConfig,
    engine: &dyn Engine,
    output: &mut dyn OutputSink,
    id: &str,
    parts: Vec<Part>,
    kept_dir: Option<PathBuf>,
    builder: &ImageInfo,
    scripts: &Scripts,
    destination: &str,
    build_env: &[EnvVar],
    tag: Option<&crate::image_ref::ImageRef>,
    timings: &mut Timings,
) -> Result<(String, BTreeMap<String, String>, crate::source::WalkStats)> {
    let t = Instant::now();
    let input = tar_stream::spawn(parts, kept_dir.map(|d| d.join("upload.tar")));
    let mut log = ContainerLog::new(output, cfg.quiet);
    let ran = engine.run_container(id, Some(Box::new(input.reader)), &mut log).await;
    let tail = log.finish();
    let produced = input.done.await.map_err(|e| BuildError::SourceStream(std::io::Error::other(e)))?;
    let code = match ran {
        Ok(code) => code,
        Err(EngineError::Input(e)) => return Err(BuildError::SourceStream(e)),
        Err(e) => return Err(classify_start_error(e, &cfg.builder_image)),
    };
    timings.record("assemble", t);
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
    let stats = match produced {
        Ok(s) => s,
        Err(e) => {
            debug!("input stream ended early after a successful assemble: {e}");
            Default::default()
        }
    };
    info!(
        "Streamed {} files, {} directories, {} bytes of source ({} entries left out)",
        stats.files, stats.dirs, stats.bytes, stats.left_out
    );

    let t = Instant::now();
    let mut labels: HashMap<String, String> = builder.labels.clone();
    labels.extend(labels::generated(&BuildFacts {
        builder_image: &cfg.builder_image,
        tag: cfg.tag.as_deref(),
        application_name: cfg.application_name.as_deref(),
        description: cfg.description.as_deref(),
        source_location: Some(&cfg.source_location),
        context_dir: cfg.context_dir.as_deref(),
    }));
    labels.extend(cfg.labels.iter().cloned());
    labels.extend(read_image_metadata(engine, id).await?);
    labels::check_size(&labels, cfg.tag.as_deref().unwrap_or(&cfg.builder_image))?;

    let run = scripts.command_path(scripts::RUN, destination).expect("run was resolved");
    let commit = CommitSpec {
        repo: tag.map(|r| r.repository()),
        tag: tag.map(|r| r.tag.clone().unwrap_or_else(|| "latest".into())),
        cmd: vec![run],
        entrypoint: builder.entrypoint.clone().unwrap_or_default(),
        user: builder.user.clone(),
        env: build_env.iter().map(EnvVar::to_kv).collect(),
        labels: labels.clone(),
    };
    let image_id = engine.commit_container(id, &commit).await.map_err(|source| BuildError::Commit {
        tag: cfg.tag.clone().unwrap_or_else(|| "the image".into()),
        source,
    })?;
    timings.record("commit", t);
    Ok((image_id, labels.into_iter().collect(), stats))
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
