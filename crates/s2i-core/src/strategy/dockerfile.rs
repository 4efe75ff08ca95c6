//! The Dockerfile flow: `--as-dockerfile`, `s2i generate` and `--build-method=dockerfile`.
//!
//! One plan, a Dockerfile and its context (`upload/scripts`, `upload/src`), is either written to
//! disk (`--as-dockerfile`) or streamed as a tar build context to the engine's image builder. The
//! source is walked once by [`SourceTree`], with the same rules as a standard build.
//!
//! Every value written into the Dockerfile is either quoted ([`quote`]: label keys and values,
//! variable values) or checked against a plain character set ([`plain_word`]: paths, users, image
//! names), so that no label, variable or path can end an instruction or start another.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use s2i_engine::{ImageBuildSpec, ImageInfo};
use tracing::{debug, info, warn};

use crate::config::{BuildConfig, EnvVar};
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::image_ref::ImageRef;
use crate::labels;
use crate::plan::{generated_labels, BuildFacts};
use crate::redact;
use crate::report::{ContainerLog, Phase};
use crate::result::{BuildResult, Phases};
use crate::scripts::{self, Resolver, Script};
use crate::services::Services;
use crate::source::{self, PreparedSource};
use crate::tar_stream::{self, StreamOptions, TarPart};
use crate::users;

/// The assemble user of `--as-dockerfile` when none is given (the reference's default).
pub const DEFAULT_ASSEMBLE_USER: &str = "1001";
/// Where scripts are looked for in the image when nothing says otherwise.
const DEFAULT_IMAGE_SCRIPTS_URL: &str = "image:///usr/libexec/s2i";
/// Where the incremental stage leaves the previous image's artifacts (fixed, as in the reference).
const ARTIFACTS_TAR: &str = "/tmp/artifacts.tar";

/// Where one script comes from, as the Dockerfile sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptPlace {
    /// Shipped in `upload/scripts` and copied to `<destination>/scripts`.
    Uploaded,
    /// Already in the image, in this directory.
    Image(String),
}

/// Everything that shapes the Dockerfile's text.
#[derive(Debug, Clone)]
pub struct DockerfileSpec {
    pub builder: String,
    pub labels: BTreeMap<String, String>,
    pub env: Vec<EnvVar>,
    pub assemble_user: String,
    pub destination: String,
    pub assemble: ScriptPlace,
    pub run: ScriptPlace,
    /// For an incremental build: the image to take artifacts from, and its save-artifacts script.
    pub incremental: Option<(String, ScriptPlace)>,
    /// The USER of the final image, when it must differ from the assemble user.
    pub final_user: Option<String>,
    /// The ids of the `--secret`s: mounted on the assemble RUN line (BuildKit's secret mounts).
    pub secrets: Vec<String>,
}

impl DockerfileSpec {
    /// The Dockerfile, or an error naming the value that cannot be written into one safely.
    pub fn render(&self) -> Result<String> {
        image_name(&self.builder, "builder image")?;
        let user = plain_word(&self.assemble_user, "assemble user")?;
        let dest = plain_word(&self.destination, "destination")?.trim_end_matches('/');
        let chown = format!("--chown={user}:0");
        let user_line = if user == "root" { String::new() } else { format!("USER {user}\n") };
        let mut d = String::new();
        if !self.secrets.is_empty() {
            // RUN --mount needs BuildKit's Dockerfile syntax.
            d.push_str("# syntax=docker/dockerfile:1\n");
        }

        if let Some((from, save)) = &self.incremental {
            image_name(from, "incremental image")?;
            let _ = writeln!(d, "FROM {from} as cached");
            let script = match save {
                ScriptPlace::Uploaded => {
                    d.push_str("# save-artifacts from the source's .s2i/bin or --scripts-url\n");
                    let _ = writeln!(d, "COPY {chown} upload/scripts/save-artifacts {dest}/scripts/save-artifacts");
                    format!("{dest}/scripts/save-artifacts")
                }
                ScriptPlace::Image(dir) => {
                    d.push_str("# save-artifacts of the previous image, where the builder keeps its scripts\n");
                    format!("{}/save-artifacts", image_dir(dir)?)
                }
            };
            d.push_str(&user_line);
            let _ = writeln!(d, "RUN if [ -s {script} ]; then {script} > {ARTIFACTS_TAR}; else touch {ARTIFACTS_TAR}; fi");
            d.push('\n');
        }

        let _ = writeln!(d, "FROM {}", self.builder);
        write_pairs(&mut d, "LABEL", self.labels.iter().map(|(k, v)| (quote(k), quote(v))));
        let mut env = Vec::new();
        for var in &self.env {
            env.push((env_name(&var.name)?.to_string(), quote(&var.value)));
        }
        write_pairs(&mut d, "ENV", env.into_iter());
        if self.incremental.is_some() {
            let _ = writeln!(d, "COPY {chown} --from=cached {ARTIFACTS_TAR} {ARTIFACTS_TAR}");
        }
        let uploaded = [&self.assemble, &self.run]
            .into_iter()
            .chain(self.incremental.as_ref().map(|(_, s)| s))
            .any(|s| *s == ScriptPlace::Uploaded);
        if uploaded {
            d.push_str("# Scripts from the source's .s2i/bin or --scripts-url\n");
            let _ = writeln!(d, "COPY {chown} upload/scripts {dest}/scripts");
        }
        d.push_str("# The application source\n");
        let _ = writeln!(d, "COPY {chown} upload/src {dest}/src");
        d.push_str(&user_line);
        if self.incremental.is_some() {
            d.push_str("# Artifacts of the previous image\n");
            let _ = writeln!(
                d,
                "RUN if [ -s {ARTIFACTS_TAR} ]; then mkdir -p {dest}/artifacts; tar -xf {ARTIFACTS_TAR} -C {dest}/artifacts; fi && \\\n    rm {ARTIFACTS_TAR}"
            );
        }
        let assemble = script_command(&mut d, &self.assemble, dest, scripts::ASSEMBLE)?;
        let mounts = self.secret_mounts(user)?;
        if !mounts.is_empty() {
            d.push_str("# Build secrets (--secret): at /run/secrets/ID while assemble runs, never in a layer\n");
        }
        let _ = writeln!(d, "RUN {mounts}{assemble}");
        if let Some(u) = &self.final_user {
            let _ = writeln!(d, "USER {}", plain_word(u, "image user")?);
        }
        let run = script_command(&mut d, &self.run, dest, scripts::RUN)?;
        let _ = writeln!(d, "CMD {run}");
        Ok(d)
    }
}

impl DockerfileSpec {
    /// `--mount=type=secret,…` of every secret, each followed by a space. The file belongs to the
    /// assemble user when it is a number (BuildKit takes only numbers), else it is readable by all
    /// of the RUN step's users.
    fn secret_mounts(&self, user: &str) -> Result<String> {
        let owner = match user {
            "root" | "0" => "mode=0400".to_string(),
            u if u.bytes().all(|b| b.is_ascii_digit()) => format!("uid={u},mode=0400"),
            _ => "mode=0444".to_string(),
        };
        let mut mounts = String::new();
        for id in &self.secrets {
            crate::config::check_secret_id(id).map_err(|reason| BuildError::InvalidValue { what: "--secret", value: id.clone(), reason })?;
            let _ = write!(mounts, "--mount=type=secret,id={id},target={}/{id},required=true,{owner} ", crate::config::SECRETS_DIR);
        }
        Ok(mounts)
    }
}

/// The command path of a script, after the comment lines that say where it comes from.
fn script_command(d: &mut String, place: &ScriptPlace, dest: &str, name: &str) -> Result<String> {
    Ok(match place {
        ScriptPlace::Uploaded => format!("{dest}/scripts/{name}"),
        ScriptPlace::Image(dir) => {
            let _ = writeln!(d, "# {name} is taken from the builder image (its scripts label or --image-scripts-url);");
            let _ = writeln!(d, "# the build stops here if the image does not have it.");
            format!("{}/{name}", image_dir(dir)?)
        }
    })
}

/// `INSTR k="v" \` continued with one pair per line; nothing when there is none.
fn write_pairs(d: &mut String, instruction: &str, pairs: impl Iterator<Item = (String, String)>) {
    let pairs: Vec<String> = pairs.map(|(k, v)| format!("{k}={v}")).collect();
    if pairs.is_empty() {
        return;
    }
    let indent = " ".repeat(instruction.len() + 1);
    let _ = writeln!(d, "{instruction} {}", pairs.join(&format!(" \\\n{indent}")));
}

/// A double-quoted Dockerfile word holding exactly `value`: `"`, `\` and `$` are escaped, so the
/// value can neither end the quotes nor expand a variable. A Dockerfile cannot hold a newline in a
/// value at all: newlines and carriage returns become the two characters `\n` and `\r`.
pub fn quote(value: &str) -> String {
    let mut q = String::with_capacity(value.len() + 2);
    q.push('"');
    for c in value.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '$' => q.push_str("\\$"),
            '\n' => q.push_str("\\n"),
            '\r' => q.push_str("\\r"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

/// Paths and users are written unquoted (COPY arguments, shell-form RUN and CMD), so they must
/// consist of characters that mean nothing to the Dockerfile parser or to a shell.
pub fn plain_word<'a>(value: &'a str, what: &'static str) -> Result<&'a str> {
    let ok = !value.is_empty()
        && value.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+@:,=~%".contains(c));
    if ok {
        Ok(value)
    } else {
        Err(BuildError::InvalidValue {
            what,
            value: value.to_string(),
            reason: "cannot be written into a Dockerfile: use letters, digits and / . _ - + @ : , = ~ %".into(),
        })
    }
}

fn image_dir(dir: &str) -> Result<&str> {
    Ok(plain_word(dir, "image scripts directory")?.trim_end_matches('/'))
}

fn image_name<'a>(name: &'a str, what: &'static str) -> Result<&'a str> {
    ImageRef::parse(name).map_err(|reason| BuildError::InvalidValue { what, value: name.to_string(), reason })?;
    Ok(name)
}

/// Variable names are written unquoted before `=`.
pub(crate) fn env_name(name: &str) -> Result<&str> {
    let ok = !name.is_empty() && !name.chars().any(|c| c.is_whitespace() || c.is_control() || "\"'\\$=`".contains(c));
    if ok {
        Ok(name)
    } else {
        Err(BuildError::InvalidValue {
            what: "environment variable name",
            value: name.to_string(),
            reason: "cannot be written into a Dockerfile: no spaces, quotes, backslashes, $ or =".into(),
        })
    }
}

/// What a Dockerfile build needs besides the config.
struct Request<'a> {
    cfg: &'a BuildConfig,
    /// The builder as the local engine knows it, when it does.
    builder: Option<&'a ImageInfo>,
    /// Take the source from `cfg.source` (`false` for `s2i generate`).
    with_source: bool,
    assemble_user: String,
    destination: String,
    incremental_from: Option<String>,
    final_user: Option<String>,
    /// Absolute paths to leave out of the source walk (the output, when it lies inside the source).
    outputs: Vec<PathBuf>,
}

/// A Dockerfile with everything its context holds.
struct Context {
    dockerfile: String,
    labels: BTreeMap<String, String>,
    scripts: Vec<(String, Vec<u8>)>,
    /// The fetched source and how to walk it (`None` for `s2i generate`).
    source: Option<(PreparedSource, IgnoreRules, HashSet<PathBuf>)>,
    exclude: Option<regex::Regex>,
    keep_symlinks: bool,
}

impl Context {
    /// The context as tar parts: the Dockerfile (under `dockerfile_name`), `upload/scripts`, `upload/src`.
    /// The context must outlive the stream: it holds the source's temp dir, if any.
    fn parts(&self, dockerfile_name: &str) -> Vec<Box<dyn TarPart>> {
        let mut parts = vec![
            tar_stream::file(dockerfile_name, self.dockerfile.clone().into_bytes(), 0o644),
            tar_stream::dir("upload", 0o755),
            tar_stream::dir("upload/scripts", 0o755),
        ];
        for (name, data) in &self.scripts {
            parts.push(tar_stream::file(format!("upload/scripts/{name}"), data.clone(), 0o755));
        }
        parts.push(tar_stream::dir("upload/src", 0o755));
        if let Some((prepared, ignore, skip)) = &self.source {
            parts.push(prepared.part("upload/src", ignore.clone(), self.exclude.clone(), self.keep_symlinks, skip.clone()));
        }
        parts
    }
}

async fn context(req: Request<'_>) -> Result<Context> {
    let cfg = req.cfg;
    let prepared = if req.with_source { Some(source::prepare(&cfg.source, &cfg.limits).await?) } else { None };
    let app_root = prepared.as_ref().map(|p| p.root.clone());

    // Scripts: --scripts-url, the source's .s2i/bin, then the builder's label (or --image-scripts-url
    // when the builder is unknown). What none of them has is expected in the image.
    let label_url = req.builder.and_then(|b| scripts::image_scripts_url(b, &cfg.builder_image));
    let image_url = label_url
        .clone()
        .or_else(|| cfg.image_scripts_url.clone().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| DEFAULT_IMAGE_SCRIPTS_URL.to_string());
    let fallback_dir = [label_url.as_deref(), cfg.image_scripts_url.as_deref()]
        .into_iter()
        .flatten()
        .find_map(|u| u.strip_prefix("image://"))
        .map(|d| d.trim_end_matches('/').to_string())
        .map(|d| if d.is_empty() { "/".to_string() } else { d })
        .unwrap_or_else(|| DEFAULT_IMAGE_SCRIPTS_URL["image://".len()..].to_string());
    let mut wanted = vec![scripts::ASSEMBLE, scripts::RUN];
    if req.incremental_from.is_some() {
        wanted.push(scripts::SAVE_ARTIFACTS);
    }
    let found = Resolver {
        scripts_url: cfg.scripts_url.as_deref(),
        source_root: app_root.as_deref(),
        image_url: Some(image_url),
        image_name: &cfg.builder_image,
        limits: &cfg.limits,
    }
    .resolve(&[], &wanted)
    .await?;
    let mut uploaded = Vec::new();
    let mut place = |name: &str| match found.get(name) {
        Some(Script::External { data, .. }) => {
            uploaded.push((name.to_string(), data.clone()));
            ScriptPlace::Uploaded
        }
        Some(Script::InImage { dir }) => ScriptPlace::Image(dir.clone()),
        None => ScriptPlace::Image(fallback_dir.clone()),
    };
    let assemble = place(scripts::ASSEMBLE);
    let run = place(scripts::RUN);
    let incremental = req.incremental_from.clone().map(|from| (from, place(scripts::SAVE_ARTIFACTS)));

    let (source, build_env) = match &app_root {
        Some(root) => {
            let ignore = IgnoreRules::load(root, &cfg.limits)?;
            let build_env = crate::plan::build_environment(cfg, Some(root), &ignore)?;
            crate::plan::check_secret_references(cfg, Some(root), &ignore)?;
            let mut skip: HashSet<PathBuf> = found.moved_from_source.iter().cloned().collect();
            skip.extend(req.outputs.iter().filter_map(|o| o.strip_prefix(root).ok().map(Path::to_path_buf)));
            let prepared = prepared.expect("a source was prepared for this root");
            (Some((prepared, ignore, skip)), build_env)
        }
        None => (None, crate::plan::build_environment(cfg, None, &IgnoreRules::default())?),
    };

    let tag = cfg.tag_name();
    let mut labels: BTreeMap<String, String> = generated_labels(&BuildFacts {
        builder_image: &cfg.builder_image,
        tag: tag.as_deref(),
        application_name: cfg.application_name.as_deref(),
        description: cfg.description.as_deref(),
        source_location: source.as_ref().map(|(p, _, _)| p.location.as_str()),
        context_dir: cfg.source.context_dir.as_deref(),
        commit: source.as_ref().and_then(|(p, _, _)| p.commit.as_ref()),
    })
    .into_iter()
    .collect();
    // The OCI standard keys, as the other flows write them: the builder is the base. `created` is
    // when s2i wrote the Dockerfile (SOURCE_DATE_EPOCH when set).
    let location = source.as_ref().map(|(p, _, _)| p.location.as_str());
    let base_digest = req.builder.and_then(|b| crate::plan::base_digest(b, &cfg.builder_image));
    labels.extend(crate::plan::oci_labels(&crate::plan::OciFacts {
        source: location.filter(|l| crate::plan::is_source_url(l)),
        revision: source.as_ref().and_then(|(p, _, _)| p.commit.as_ref()).map(|c| c.id.as_str()),
        ref_name: tag.as_deref(),
        base_name: &cfg.builder_image,
        base_digest: base_digest.as_deref(),
    }));
    labels.extend(cfg.labels.iter().cloned());
    if let Some(url) = cfg.scripts_url.as_deref().filter(|u| !u.is_empty()) {
        labels.insert(labels::SCRIPTS_URL.into(), redact::url(url));
    }
    if let Some(d) = cfg.destination.as_deref().filter(|d| !d.is_empty()) {
        labels.insert(labels::DESTINATION.into(), d.into());
    }
    labels::check_size(&labels.clone().into_iter().collect(), tag.as_deref().unwrap_or(&cfg.builder_image))?;

    let dockerfile = DockerfileSpec {
        builder: cfg.builder_image.clone(),
        labels: labels.clone(),
        env: build_env,
        assemble_user: req.assemble_user,
        destination: req.destination,
        assemble,
        run,
        incremental,
        final_user: req.final_user,
        secrets: cfg.secrets.iter().map(|s| s.id.clone()).collect(),
    }
    .render()?;
    Ok(Context { dockerfile, labels, scripts: uploaded, source, exclude: cfg.source.exclude.clone(), keep_symlinks: cfg.source.keep_symlinks })
}

/// `--as-dockerfile PATH` and `s2i generate`: write the Dockerfile to `cfg.as_dockerfile` and its
/// context (`upload/`) beside it. `builder` is the builder as the local engine knows it, if it
/// does; without it, `--image-scripts-url` says where the scripts are. Returns the Dockerfile's path.
pub async fn write(cfg: &BuildConfig, builder: Option<&ImageInfo>, with_source: bool) -> Result<PathBuf> {
    let Some(requested) = cfg.as_dockerfile.as_deref() else {
        return Err(BuildError::InvalidValue { what: "--as-dockerfile", value: String::new(), reason: "cannot be empty".into() });
    };
    // On Ctrl-C this future is dropped: what it fetched (a clone, a download) goes with it.
    if cfg.builder_image.trim().is_empty() {
        return Err(BuildError::InvalidValue { what: "builder image", value: String::new(), reason: "cannot be empty".into() });
    }
    let path = dockerfile_path(requested);
    let path = std::path::absolute(&path).map_err(|e| BuildError::io("resolving the Dockerfile path", e))?;
    let dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "Dockerfile".into());

    let assemble_user = cfg.assemble_user.clone().filter(|u| !u.is_empty()).unwrap_or_else(|| DEFAULT_ASSEMBLE_USER.into());
    users::check_builder(&cfg.allowed_uids, &ImageInfo::default(), &cfg.builder_image, Some(&assemble_user), None)?;
    let incremental_from = if cfg.incremental {
        match cfg.tag_name() {
            Some(tag) => Some(tag),
            None => return Err(BuildError::IncrementalDockerfileNeedsTag),
        }
    } else {
        None
    };
    let upload = dir.join("upload");
    let plan = context(Request {
        cfg,
        builder,
        with_source,
        assemble_user,
        // As in the reference, the builder's destination label is not consulted here.
        destination: cfg.destination.clone().filter(|d| !d.is_empty()).unwrap_or_else(|| "/tmp".into()),
        incremental_from,
        final_user: None,
        outputs: vec![upload.clone(), path.clone()],
    })
    .await?;

    std::fs::create_dir_all(&dir).map_err(|e| BuildError::io(format!("creating {}", dir.display()), e))?;
    clear_previous_upload(&upload)?;
    let input = tar_stream::spawn(plan.parts(&name), StreamOptions::default());
    let bridge = tokio_util::io::SyncIoBridge::new(input.reader);
    let target = dir.clone();
    let unpacked = tokio::task::spawn_blocking(move || {
        let mut archive = tar::Archive::new(bridge);
        archive.set_preserve_mtime(true);
        archive.unpack(&target)
    })
    .await
    .map_err(|e| BuildError::io("writing the Dockerfile context", std::io::Error::other(e)))?;
    input.done.written().await.map_err(BuildError::SourceStream)?;
    unpacked.map_err(|e| BuildError::io(format!("writing the Dockerfile context into {}", dir.display()), e))?;
    debug!("wrote {} and its context", path.display());
    Ok(path)
}

/// `DIR/` (or an existing directory) means `DIR/Dockerfile`.
fn dockerfile_path(requested: &Path) -> PathBuf {
    if requested.as_os_str().to_string_lossy().ends_with('/') || requested.is_dir() {
        requested.join("Dockerfile")
    } else {
        requested.to_path_buf()
    }
}

/// A previous run's `upload/` is replaced; anything else there is not ours to delete.
fn clear_previous_upload(upload: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(upload) {
        Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name()).collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(BuildError::io(format!("reading {}", upload.display()), e)),
    };
    let ours = ["scripts", "src", "injections"];
    if let Some(other) = entries.iter().find(|n| !ours.iter().any(|o| n.as_os_str() == *o)) {
        return Err(BuildError::UploadDirNotOurs { dir: upload.to_path_buf(), entry: other.to_string_lossy().into_owned() });
    }
    debug!("replacing the previous {}", upload.display());
    std::fs::remove_dir_all(upload).map_err(|e| BuildError::io(format!("removing the previous {}", upload.display()), e))
}

/// `--build-method=dockerfile`: generate the Dockerfile and build it with the engine's image
/// builder, the context streamed straight from the source walk.
pub async fn build(cfg: &BuildConfig, services: &Services<'_>, mut phases: Phases) -> Result<BuildResult> {
    if !cfg.secrets.is_empty() {
        // The engines' image build API is the classic builder, which has no secret mounts.
        return Err(BuildError::conflict("--secret", "--build-method=dockerfile (the engine's classic builder has no secret mounts; write the Dockerfile with --as-dockerfile and build it with BuildKit)"));
    }
    let (engine, reporter) = (services.engine, services.reporter.clone());
    let running = phases.start(Phase::BuilderImage);
    let builder = crate::images::obtain(engine, &services.registries, &cfg.builder_image, cfg.pull_policy, "--pull-policy", &reporter).await?;
    phases.end(running);
    users::check_builder(&cfg.allowed_uids, &builder, &cfg.builder_image, cfg.assemble_user.as_deref(), None)?;
    let assemble_user = crate::plan::assemble_user(cfg, &builder, &builder.user).unwrap_or_else(|| "root".into());
    // The image keeps the builder's USER, as a committed build does.
    let image_user = if builder.user.is_empty() { "root".to_string() } else { builder.user.clone() };
    let final_user = (image_user != assemble_user).then_some(image_user);

    let incremental_from = match cfg.tag_name() {
        Some(tag) if cfg.incremental => {
            if engine.inspect_image(&tag).await?.is_some() {
                info!("Existing image for tag {tag} detected for incremental build");
                Some(tag)
            } else {
                info!("Clean build will be performed");
                None
            }
        }
        _ => None,
    };

    let running = phases.start(Phase::Scripts);
    let plan = context(Request {
        cfg,
        builder: Some(&builder),
        with_source: true,
        assemble_user,
        destination: crate::plan::destination(cfg, &builder),
        incremental_from,
        final_user,
        outputs: Vec::new(),
    })
    .await?;
    phases.end(running);
    debug!("generated Dockerfile:\n{}", plan.dockerfile);
    let labels = plan.labels.clone();

    let running = phases.start(Phase::ImageBuild);
    let input = tar_stream::spawn(plan.parts("Dockerfile"), StreamOptions::default());
    let spec = ImageBuildSpec {
        dockerfile: "Dockerfile".into(),
        tag: cfg.tag_name(),
        network_mode: cfg.container.network.clone(),
        extra_hosts: cfg.container.add_hosts.clone(),
    };
    if !cfg.container.volumes.is_empty() || !cfg.container.cap_drop.is_empty() {
        warn!("--volume and --cap-drop do not apply to Dockerfile builds");
    }
    if cfg.container.security != s2i_engine::SecurityOptions::default() {
        // The image build API has no such setting: RUN steps get the daemon's default profile.
        warn!("--security-opt does not apply to Dockerfile builds");
    }
    let mut log = ContainerLog::new(reporter, cfg.quiet);
    let built = engine.build_image(Box::new(input.reader), &spec, &mut log).await;
    log.into_stderr_tail();
    input.done.written().await.map_err(BuildError::SourceStream)?;
    let image_id = built.map_err(|e| match e {
        s2i_engine::EngineError::Api { message, .. } => BuildError::ImageBuild { message },
        other => other.into(),
    })?;
    phases.end(running);
    let mut all_labels = builder.labels.clone().into_iter().collect::<BTreeMap<_, _>>();
    all_labels.extend(labels);
    Ok(BuildResult {
        image_id,
        tag: cfg.tag_name(),
        builder_image: cfg.builder_image.clone(),
        labels: all_labels,
        timings: phases.into_timings(),
        source_stats: Default::default(),
        size: None,
        builder_stage: None,
        pushed: Vec::new(),
        // The Dockerfile's scripts are not hashed yet (the provenance then names the URL alone).
        scripts_fetched: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> DockerfileSpec {
        DockerfileSpec {
            builder: "docker.io/centos/nodejs-8-centos7".into(),
            labels: BTreeMap::new(),
            env: Vec::new(),
            assemble_user: "1001".into(),
            destination: "/tmp".into(),
            assemble: ScriptPlace::Image("/usr/libexec/s2i".into()),
            run: ScriptPlace::Image("/usr/libexec/s2i".into()),
            incremental: None,
            final_user: None,
            secrets: Vec::new(),
        }
    }

    #[test]
    fn a_plain_build_from_image_scripts() {
        let mut s = spec();
        s.labels.insert("io.openshift.s2i.build.image".into(), "docker.io/centos/nodejs-8-centos7".into());
        s.labels.insert("io.openshift.s2i.build.source-location".into(), "/src/app".into());
        s.env = vec![EnvVar { name: "key1".into(), value: "value1".into() }, EnvVar { name: "key2".into(), value: "value2".into() }];
        assert_eq!(
            s.render().unwrap(),
            r#"FROM docker.io/centos/nodejs-8-centos7
LABEL "io.openshift.s2i.build.image"="docker.io/centos/nodejs-8-centos7" \
      "io.openshift.s2i.build.source-location"="/src/app"
ENV key1="value1" \
    key2="value2"
# The application source
COPY --chown=1001:0 upload/src /tmp/src
USER 1001
# assemble is taken from the builder image (its scripts label or --image-scripts-url);
# the build stops here if the image does not have it.
RUN /usr/libexec/s2i/assemble
# run is taken from the builder image (its scripts label or --image-scripts-url);
# the build stops here if the image does not have it.
CMD /usr/libexec/s2i/run
"#
        );
    }

    #[test]
    fn uploaded_scripts_and_an_incremental_stage() {
        let mut s = spec();
        s.destination = "/destination/".into();
        s.assemble = ScriptPlace::Uploaded;
        s.incremental = Some(("test:tag".into(), ScriptPlace::Uploaded));
        s.assemble_user = "2250".into();
        assert_eq!(
            s.render().unwrap(),
            r#"FROM test:tag as cached
# save-artifacts from the source's .s2i/bin or --scripts-url
COPY --chown=2250:0 upload/scripts/save-artifacts /destination/scripts/save-artifacts
USER 2250
RUN if [ -s /destination/scripts/save-artifacts ]; then /destination/scripts/save-artifacts > /tmp/artifacts.tar; else touch /tmp/artifacts.tar; fi

FROM docker.io/centos/nodejs-8-centos7
COPY --chown=2250:0 --from=cached /tmp/artifacts.tar /tmp/artifacts.tar
# Scripts from the source's .s2i/bin or --scripts-url
COPY --chown=2250:0 upload/scripts /destination/scripts
# The application source
COPY --chown=2250:0 upload/src /destination/src
USER 2250
# Artifacts of the previous image
RUN if [ -s /tmp/artifacts.tar ]; then mkdir -p /destination/artifacts; tar -xf /tmp/artifacts.tar -C /destination/artifacts; fi && \
    rm /tmp/artifacts.tar
RUN /destination/scripts/assemble
# run is taken from the builder image (its scripts label or --image-scripts-url);
# the build stops here if the image does not have it.
CMD /usr/libexec/s2i/run
"#
        );
    }

    #[test]
    fn image_save_artifacts_root_user_and_a_final_user() {
        let mut s = spec();
        s.assemble_user = "root".into();
        s.final_user = Some("1001".into());
        s.assemble = ScriptPlace::Uploaded;
        s.run = ScriptPlace::Uploaded;
        s.incremental = Some(("app".into(), ScriptPlace::Image("/usr/libexec/s2i/".into())));
        let d = s.render().unwrap();
        assert!(d.starts_with(
            "FROM app as cached\n# save-artifacts of the previous image, where the builder keeps its scripts\nRUN if [ -s /usr/libexec/s2i/save-artifacts ]; then /usr/libexec/s2i/save-artifacts > /tmp/artifacts.tar;"
        ), "{d}");
        assert!(!d.contains("USER root"), "{d}");
        assert!(d.ends_with("RUN /tmp/scripts/assemble\nUSER 1001\nCMD /tmp/scripts/run\n"), "{d}");
    }

    #[test]
    fn secrets_are_mounted_on_the_assemble_step_only() {
        let mut s = spec();
        s.secrets = vec!["pip-index".into(), "token".into()];
        let d = s.render().unwrap();
        assert!(d.starts_with("# syntax=docker/dockerfile:1\n"), "{d}");
        let runs: Vec<&str> = d.lines().filter(|l| l.starts_with("RUN")).collect();
        assert_eq!(
            runs,
            ["RUN --mount=type=secret,id=pip-index,target=/run/secrets/pip-index,required=true,uid=1001,mode=0400 --mount=type=secret,id=token,target=/run/secrets/token,required=true,uid=1001,mode=0400 /usr/libexec/s2i/assemble"],
            "{d}"
        );
        s.assemble_user = "default".into();
        assert!(s.render().unwrap().contains("id=token,target=/run/secrets/token,required=true,mode=0444 "));
        s.secrets = vec!["a,src=/etc/shadow".into()];
        assert!(s.render().is_err());
        // Without secrets the Dockerfile is the reference's, without a syntax line.
        assert!(!spec().render().unwrap().contains("syntax"));
    }

    #[test]
    fn values_cannot_add_instructions() {
        let mut s = spec();
        let evil = "x\" \\\nRUN touch /pwned\n$HOME `id` \\";
        s.labels.insert(evil.into(), evil.into());
        s.env = vec![EnvVar { name: "E".into(), value: evil.into() }];
        let d = s.render().unwrap();
        let expected = r#""x\" \\\nRUN touch /pwned\n\$HOME `id` \\""#;
        assert!(d.contains(&format!("LABEL {expected}={expected}\n")), "{d}");
        assert!(d.contains(&format!("ENV E={expected}\n")), "{d}");
        assert!(!d.lines().any(|l| l.starts_with("RUN touch")), "{d}");

        for (field, value) in [("destination", "/tmp; rm -rf /"), ("destination", "/a b"), ("user", "1001\nRUN x"), ("dir", "/usr/$X")] {
            let mut s = spec();
            match field {
                "destination" => s.destination = value.into(),
                "user" => s.assemble_user = value.into(),
                _ => s.run = ScriptPlace::Image(value.into()),
            }
            let err = s.render().unwrap_err();
            assert!(err.to_string().contains("cannot be written into a Dockerfile"), "{value}: {err}");
        }
        let mut s = spec();
        s.env = vec![EnvVar { name: "A B".into(), value: "1".into() }];
        assert!(s.render().is_err());
        let mut s = spec();
        s.builder = "img\nRUN x".into();
        assert!(s.render().is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(quote("plain"), r#""plain""#);
        assert_eq!(quote(r#"a"b\c$d"#), r#""a\"b\\c\$d""#);
        assert_eq!(quote("l1\nl2\r"), r#""l1\nl2\r""#);
        assert_eq!(quote("ünï"), "\"ünï\"");
    }

    #[test]
    fn dockerfile_paths() {
        assert_eq!(dockerfile_path(Path::new("out/")), PathBuf::from("out/Dockerfile"));
        assert_eq!(dockerfile_path(Path::new("/nonexistent/MyDockerfile")), PathBuf::from("/nonexistent/MyDockerfile"));
    }
}
