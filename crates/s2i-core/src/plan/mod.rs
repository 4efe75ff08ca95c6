//! The preparation every flow shares, and every decision of the build: get the builder image,
//! check its users, fetch the source, find the scripts, read the ignore rules and the
//! environment, resolve injections, pick the flow (with the runtime image and its scripts when
//! there is one) and find the previous image of an incremental build. What comes out, a
//! [`Plan`], holds everything decided before the first build container starts; the flows get it
//! by shared reference, and nothing changes it afterwards.

mod previous;
mod runtime;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use s2i_engine::ImageInfo;
use tracing::{info, warn};

pub use previous::Previous;
pub use runtime::{RuntimePlan, ASSEMBLE_RUNTIME};

use crate::config::{BuildConfig, EnvVar};
use crate::env;
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::inject::Injection;
use crate::labels;
use crate::registry::Registries;
use crate::report::{Phase, Reporter};
use crate::result::Phases;
use crate::scripts::{self, Resolver, Scripts};
use crate::services::Services;
use crate::source::{self, CommitInfo, PreparedSource};
use crate::tar_stream::{Owner, TarPart};
use crate::users;

/// Everything decided before the first container starts.
pub struct Plan<'a> {
    pub cfg: &'a BuildConfig,
    pub registries: Registries,
    pub reporter: Arc<dyn Reporter>,
    pub builder: ImageInfo,
    pub scripts: Scripts,
    /// Where scripts, source and artifacts go in the container (`/tmp` by default).
    pub destination: String,
    pub assemble_user: Option<String>,
    /// Who owns what is streamed into the assemble container: the assemble user by number, group
    /// 0. `None` for a name that the builder's /etc/passwd does not know.
    pub owner: Option<Owner>,
    pub env: Vec<EnvVar>,
    /// The fetched source (a directory, clone or archive) and how to walk it.
    pub source: PreparedSource,
    pub ignore: IgnoreRules,
    /// Paths left out of `src/`: the scripts the source ships for the builder and the runtime
    /// image (they go to `scripts/`).
    pub skip: HashSet<PathBuf>,
    /// `--save-temp-dir`: a kept directory that gets a copy of what assemble was fed.
    pub kept_dir: Option<PathBuf>,
    pub injections: Vec<Injection>,
    /// The flow that makes the image, with what only it needs.
    pub flow: Flow,
    /// The previous image of an incremental build, when it has artifacts to give.
    pub previous: Option<Previous>,
    /// The artifacts kept in `--cache-dir` by the previous build, when usable (instead of the
    /// previous image's).
    pub cached: Option<PathBuf>,
}

/// How the image is made (the Dockerfile build method has its own plan and is not among them).
pub enum Flow {
    /// Assemble in a container of the builder and commit it.
    Standard,
    /// Assemble on the builder, then ship the artifacts into the runtime image.
    Runtime(Box<RuntimePlan>),
    /// The builder has ONBUILD instructions: build `FROM` it.
    Onbuild,
}

impl<'a> Plan<'a> {
    /// Make every decision of the build, fetching and asking the engine what that takes.
    pub async fn prepare(cfg: &'a BuildConfig, services: &Services<'_>, phases: &mut Phases) -> Result<Plan<'a>> {
        let Services { engine, registries, reporter } = services.clone();
        let running = phases.start(Phase::BuilderImage);
        let builder = crate::images::obtain(engine, &registries, &cfg.builder_image, cfg.pull_policy, "--pull-policy", &reporter).await?;
        phases.end(running);
        // An ONBUILD builder does its own work: no script is required of it, nothing is streamed.
        let onbuild = !builder.on_build.is_empty();
        let capabilities = engine.capabilities();
        if capabilities.only_builder {
            check_only_builder(cfg, engine, onbuild).await?;
        }
        let assemble_user = assemble_user(cfg, &builder, &builder.user);
        let owner = match capabilities.fixed_user {
            // The engine runs every script as this uid, whatever the image or the flags say: that
            // uid is the one --allowed-uids judges, and it owns the input.
            Some((uid, gid)) => {
                users::check_fixed_uid(&cfg.allowed_uids, uid)?;
                if let Some(asked) = cfg.assemble_user.as_deref().filter(|u| !u.is_empty()) {
                    warn!("--assemble-user {asked} is ignored: the engine runs the scripts as uid {uid}, the process's own");
                }
                Some(Owner { uid: uid as u64, gid: gid as u64 })
            }
            None => {
                // A user given by name is looked up once, here: --allowed-uids and the owner of
                // the input both need its number.
                let named = users::needs_passwd(&cfg.allowed_uids, &builder, cfg.assemble_user.as_deref(), labels::ASSEMBLE_USER)
                    || (!onbuild && users::is_named(assemble_user.as_deref()));
                let passwd = match named {
                    true => crate::images::passwd(engine, &cfg.builder_image, cfg.limits.file_size).await?,
                    false => None,
                };
                users::check_builder(&cfg.allowed_uids, &builder, &cfg.builder_image, cfg.assemble_user.as_deref(), passwd.as_deref())?;
                users::numeric_owner(assemble_user.as_deref(), passwd.as_deref()).map(|(uid, gid)| Owner { uid, gid })
            }
        };
        let (required, optional): (&[&str], &[&str]) = match onbuild {
            false => (&[scripts::ASSEMBLE, scripts::RUN], &[scripts::SAVE_ARTIFACTS]),
            true => (&[], &[scripts::ASSEMBLE, scripts::RUN]),
        };
        // After the cheap builder checks: a clone or a download can take a while.
        let running = phases.start(Phase::Source);
        let source = source::prepare(&cfg.source, &cfg.limits).await?;
        phases.end(running);

        let running = phases.start(Phase::Scripts);
        let scripts = Resolver {
            scripts_url: cfg.scripts_url.as_deref(),
            source_root: Some(&source.root),
            image_url: scripts::image_scripts_url(&builder, &cfg.builder_image),
            image_name: &cfg.builder_image,
            limits: &cfg.limits,
        }
        .resolve(required, optional)
        .await?;
        phases.end(running);

        let ignore = IgnoreRules::load(&source.root, &cfg.limits)?;
        let env = build_environment(cfg, Some(&source.root), &ignore)?;
        check_secret_references(cfg, Some(&source.root), &ignore)?;
        if onbuild && !cfg.secrets.is_empty() {
            return Err(BuildError::conflict("--secret", format!("the ONBUILD builder {} (its image build has no secrets)", cfg.builder_image)));
        }
        let skip = scripts.moved_from_source.iter().cloned().collect::<HashSet<PathBuf>>();
        let injections = crate::inject::resolve(&cfg.injections, &builder.working_dir)?;
        let mut plan = Plan {
            cfg,
            registries,
            reporter,
            destination: destination(cfg, &builder),
            assemble_user,
            owner,
            builder,
            scripts,
            env,
            source,
            ignore,
            skip,
            kept_dir: None,
            injections,
            flow: if onbuild { Flow::Onbuild } else { Flow::Standard },
            previous: None,
            cached: None,
        };
        // The flow's own decisions, on the plan made so far; each is made once, here.
        if let (false, Some(rt)) = (onbuild, &cfg.runtime) {
            let runtime = runtime::prepare(&plan, engine, phases, rt).await?;
            plan.skip.extend(runtime.scripts.moved_from_source.iter().cloned());
            plan.flow = Flow::Runtime(Box::new(runtime));
        }
        if let (true, false, Some(dir)) = (cfg.incremental, onbuild, &cfg.cache_dir) {
            let entry = crate::cache::entry(dir, &plan.builder.id, &cfg.tag_name().unwrap_or_default());
            plan.cached = crate::cache::find(&entry, &cfg.limits);
        } else if cfg.incremental && !onbuild {
            // A runtime build takes the artifacts from the builder stage it kept, not the image.
            let tag = match &plan.flow {
                Flow::Runtime(runtime) => runtime.stage_tag.clone(),
                _ => cfg.tag.clone(),
            };
            plan.previous = previous::find(&plan, engine, tag.as_ref()).await?;
        }
        // Last: a plan that fails leaves no kept directory behind.
        plan.kept_dir = kept_dir(cfg)?;
        Ok(plan)
    }

    /// The part that streams the application under `prefix/`, minus what `extra_skip` names.
    pub fn source_part(&self, prefix: &str, extra_skip: &[PathBuf]) -> Box<dyn TarPart> {
        let mut skip = self.skip.clone();
        skip.extend(extra_skip.iter().cloned());
        let src = &self.cfg.source;
        self.source.part(prefix, self.ignore.clone(), src.exclude.clone(), src.keep_symlinks, skip)
    }

    /// The command that runs script `name` in a build container. A script the plan did not find is
    /// an error (a flow asked for one the plan did not require), never a panic.
    pub fn command(&self, name: &str) -> Result<String> {
        script_command(&self.scripts, name, &self.destination, &self.cfg.builder_image)
    }

    /// The OCI standard labels of a result made from `base` (the builder, or the runtime image).
    pub fn oci_labels(&self, base: &ImageInfo) -> HashMap<String, String> {
        let cfg = self.cfg;
        let tag = cfg.tag_name();
        let (base_name, base_digest) = match &self.flow {
            Flow::Runtime(rt) if rt.image.id == base.id => (rt.name.as_str(), base_digest(base, &rt.name)),
            _ => (cfg.builder_image.as_str(), base_digest(base, &cfg.builder_image)),
        };
        oci_labels(&OciFacts {
            source: Some(self.source.location.as_str()).filter(|l| is_source_url(l)),
            revision: self.source.commit.as_ref().map(|c| c.id.as_str()),
            ref_name: tag.as_deref(),
            base_name,
            base_digest: base_digest.as_deref(),
        })
    }

    /// The labels of the output image: `base`'s, the generated ones, `--label`, then what assemble
    /// wrote to image_metadata.json (provenance labels excepted).
    pub fn labels(&self, base: &ImageInfo, metadata: Vec<(String, String)>) -> Result<HashMap<String, String>> {
        let cfg = self.cfg;
        let tag = cfg.tag_name();
        let mut labels: HashMap<String, String> = base.labels.clone();
        labels.extend(generated_labels(&BuildFacts {
            builder_image: &cfg.builder_image,
            tag: tag.as_deref(),
            application_name: cfg.application_name.as_deref(),
            description: cfg.description.as_deref(),
            source_location: Some(&self.source.location),
            context_dir: cfg.source.context_dir.as_deref(),
            commit: self.source.commit.as_ref(),
        }));
        labels.retain(|k, _| !labels::OCI_BUILD_KEYS.contains(&k.as_str()));
        labels.extend(self.oci_labels(base));
        labels.extend(cfg.labels.iter().cloned());
        labels::add_metadata(&mut labels, metadata);
        labels::check_size(&labels, tag.as_deref().unwrap_or(&cfg.builder_image))?;
        Ok(labels)
    }
}

/// An engine that starts containers only from the image it runs in refuses, before any work, the
/// flows that need another image's container: an ONBUILD builder (built FROM), an incremental
/// build without a cache directory (save-artifacts runs in the previous image). A runtime image
/// whose assemble-runtime must run is refused when the runtime plan finds that script.
async fn check_only_builder(cfg: &BuildConfig, engine: &dyn s2i_engine::Engine, onbuild: bool) -> Result<()> {
    let engine_name = engine.version().await.map(|v| v.kind.to_string()).unwrap_or_else(|_| "chosen".into());
    let cannot = |what: String| BuildError::EngineCannot { engine: engine_name.clone(), what };
    if onbuild {
        return Err(cannot(format!("build FROM the ONBUILD builder {}: it runs only the scripts of the image it is in", cfg.builder_image)));
    }
    if cfg.incremental && cfg.cache_dir.is_none() {
        return Err(cannot(
            "run save-artifacts in the previous image (--incremental): it runs only the builder it is in; pass --cache-dir DIR to keep the artifacts of incremental builds in a directory (a workspace)".into(),
        ));
    }
    Ok(())
}

/// What the build knows that becomes a standard OCI label.
#[derive(Debug, Default, Clone)]
pub struct OciFacts<'a> {
    /// A URL of the source (a git remote, an archive's); never a host path.
    pub source: Option<&'a str>,
    /// The git commit built.
    pub revision: Option<&'a str>,
    pub ref_name: Option<&'a str>,
    /// The image the result is made from: the builder, or the runtime image.
    pub base_name: &'a str,
    pub base_digest: Option<&'a str>,
}

/// The `org.opencontainers.image.*` labels of a result; only non-empty values, and `created`
/// ([`labels::created_now`]) always.
pub fn oci_labels(facts: &OciFacts) -> HashMap<String, String> {
    let base = crate::image_ref::normalize_for_label(facts.base_name);
    let created = labels::created_now();
    [
        (labels::OCI_SOURCE, facts.source),
        (labels::OCI_REVISION, facts.revision),
        (labels::OCI_CREATED, Some(created.as_str())),
        (labels::OCI_REF_NAME, facts.ref_name),
        (labels::OCI_BASE_NAME, Some(base.as_str())),
        (labels::OCI_BASE_DIGEST, facts.base_digest),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.to_string())))
    .collect()
}

/// Whether a source location is a URL others can fetch (a git remote, an archive's URL), not a
/// host path (`file://` included).
pub(crate) fn is_source_url(location: &str) -> bool {
    let scheme = location.split_once("://").map(|(s, _)| s);
    matches!(scheme, Some("http" | "https" | "git" | "ssh" | "git+ssh")) || (scheme.is_none() && location.contains('@') && location.contains(':'))
}

/// The manifest digest `image` was pulled as: the repo digest of its own repository, else its
/// only one; `None` for an image built locally.
pub fn base_digest(image: &ImageInfo, name: &str) -> Option<String> {
    let wanted = crate::image_ref::normalize_for_label(name);
    let wanted = wanted.rsplit_once(':').filter(|(_, t)| !t.contains('/')).map_or(wanted.as_str(), |(r, _)| r).to_string();
    let digests: Vec<(&str, &str)> = image.repo_digests.iter().filter_map(|d| d.split_once('@')).collect();
    let same = digests.iter().find(|(repo, _)| crate::image_ref::normalize_for_label(repo).starts_with(&format!("{wanted}:")) || *repo == wanted);
    match (same, &digests[..]) {
        (Some((_, d)), _) => Some(d.to_string()),
        (None, [(_, d)]) => Some(d.to_string()),
        _ => None,
    }
}

/// What the build knows that becomes a generated label.
#[derive(Debug, Default, Clone)]
pub struct BuildFacts<'a> {
    pub builder_image: &'a str,
    pub tag: Option<&'a str>,
    pub application_name: Option<&'a str>,
    pub description: Option<&'a str>,
    pub source_location: Option<&'a str>,
    pub context_dir: Option<&'a str>,
    /// The commit a git source was built from.
    pub commit: Option<&'a CommitInfo>,
}

/// The labels s2i generates; only non-empty values are emitted.
pub fn generated_labels(facts: &BuildFacts) -> HashMap<String, String> {
    let display_name = facts.application_name.or(facts.tag);
    let builder = crate::image_ref::normalize_for_label(facts.builder_image);
    [
        (labels::DESCRIPTION, facts.description),
        (labels::DISPLAY_NAME, display_name),
        (labels::BUILD_IMAGE, Some(builder.as_str())),
        (labels::SOURCE_LOCATION, facts.source_location),
        (labels::SOURCE_CONTEXT_DIR, facts.context_dir),
        (labels::COMMIT_ID, facts.commit.map(|c| c.id.as_str())),
        (labels::COMMIT_REF, facts.commit.map(|c| c.reference.as_str())),
        (labels::COMMIT_AUTHOR, facts.commit.map(|c| c.author.as_str())),
        (labels::COMMIT_DATE, facts.commit.map(|c| c.date.as_str())),
        (labels::COMMIT_MESSAGE, facts.commit.map(|c| c.message.as_str())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.to_string())))
    .collect()
}

/// dest = `--destination` ‖ the builder's destination label (or its deprecated forms) ‖ `/tmp`.
pub fn destination(cfg: &BuildConfig, builder: &ImageInfo) -> String {
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

/// Who runs the build's scripts: `--assemble-user` ‖ the builder's assemble-user label ‖
/// `image_user` (the USER of the image the container runs); `None` means the image's default.
pub fn assemble_user(cfg: &BuildConfig, builder: &ImageInfo, image_user: &str) -> Option<String> {
    cfg.assemble_user
        .clone()
        .or_else(|| builder.label(labels::ASSEMBLE_USER).map(str::to_string))
        .or_else(|| Some(image_user.to_string()))
        .filter(|u| !u.is_empty())
}

/// `.s2i/environment` of `app_root` (unless `.s2iignore` removes it), then `-e`, then `-E`; last wins.
pub fn build_environment(cfg: &BuildConfig, app_root: Option<&Path>, ignore: &IgnoreRules) -> Result<Vec<EnvVar>> {
    let from_source = match app_root {
        Some(root) if !(ignore.is_ignored(".s2i") || ignore.is_ignored(".s2i/environment")) => {
            let env_file = root.join(".s2i/environment");
            match crate::fsutil::read_text(&env_file, &cfg.limits)? {
                Some(text) => {
                    let vars = env::parse_s2i_environment(&text, &env_file);
                    info!("Setting {} environment variables from .s2i/environment", vars.len());
                    vars
                }
                None => Vec::new(),
            }
        }
        _ => Vec::new(),
    };
    let from_file = cfg.environment_file.as_deref().map(|p| env::read_environment_file(p, &cfg.limits)).unwrap_or_default();
    Ok(env::merge(&[&from_source, &cfg.env, &from_file]))
}

/// Every `# s2i:secret ID` of the application's `.s2i/environment` (unless `.s2iignore` removes
/// it) must be given by a `--secret`: a missing one stops the build before any container starts.
pub fn check_secret_references(cfg: &BuildConfig, app_root: Option<&Path>, ignore: &IgnoreRules) -> Result<()> {
    let Some(root) = app_root.filter(|_| !(ignore.is_ignored(".s2i") || ignore.is_ignored(".s2i/environment"))) else { return Ok(()) };
    let env_file = root.join(".s2i/environment");
    let Some(text) = crate::fsutil::read_text(&env_file, &cfg.limits)? else { return Ok(()) };
    for reference in env::secret_references(&text, &env_file) {
        if !cfg.secrets.iter().any(|s| s.id == reference.id) {
            return Err(BuildError::SecretNotGiven { id: reference.id, file: PathBuf::from(".s2i/environment"), line: reference.line });
        }
    }
    Ok(())
}

/// The command that runs script `name` of `scripts` (found for `image`) with `destination`.
fn script_command(scripts: &Scripts, name: &str, destination: &str, image: &str) -> Result<String> {
    scripts.command_path(name, destination).ok_or_else(|| BuildError::ScriptsMissing {
        missing: vec![name.to_string()],
        looked_in: vec![format!("{image} and the source (the plan did not require it)")],
    })
}

/// `--save-temp-dir`: the kept directory (the only host directory a plain build makes).
fn kept_dir(cfg: &BuildConfig) -> Result<Option<PathBuf>> {
    if !cfg.save_temp_dir {
        return Ok(None);
    }
    let dir = tempfile::Builder::new()
        .prefix("s2i")
        .tempdir()
        .map_err(|e| BuildError::io("creating the temporary directory", e))?
        .keep();
    warn!("Temporary directory {} is kept (--save-temp-dir); upload.tar holds what assemble was fed", dir.display());
    Ok(Some(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oci_labels_name_the_source_revision_and_base() {
        let l = oci_labels(&OciFacts {
            source: Some("https://git.example.com/app.git"),
            revision: Some("abc"),
            ref_name: Some("app:v1"),
            base_name: "busybox",
            base_digest: Some("sha256:1234"),
        });
        assert_eq!(l[labels::OCI_SOURCE], "https://git.example.com/app.git");
        assert_eq!(l[labels::OCI_REVISION], "abc");
        assert_eq!(l[labels::OCI_REF_NAME], "app:v1");
        assert_eq!(l[labels::OCI_BASE_NAME], "docker.io/library/busybox:latest");
        assert_eq!(l[labels::OCI_BASE_DIGEST], "sha256:1234");
        assert!(!l.contains_key(labels::OCI_TITLE) && !l.contains_key(labels::OCI_DESCRIPTION), "only the builder or --label set those");
        let created = &l[labels::OCI_CREATED];
        assert!(created.len() == 20 && created.ends_with('Z') && created.as_bytes()[10] == b'T', "{created}");
    }

    #[test]
    fn the_base_digest_is_its_own_repositorys() {
        let image = ImageInfo {
            repo_digests: vec!["quay.io/other/img@sha256:aaa".into(), "docker.io/library/busybox@sha256:bbb".into()],
            ..Default::default()
        };
        assert_eq!(base_digest(&image, "busybox:1.36").as_deref(), Some("sha256:bbb"));
        assert_eq!(base_digest(&image, "registry.example.com/x").as_deref(), None, "two others: none is the base's");
        let one = ImageInfo { repo_digests: vec!["127.0.0.1:5000/b@sha256:ccc".into()], ..Default::default() };
        assert_eq!(base_digest(&one, "localhost/b").as_deref(), Some("sha256:ccc"));
        assert_eq!(base_digest(&ImageInfo::default(), "b"), None);
    }

    #[test]
    fn only_urls_are_sources() {
        for url in ["https://github.com/a/b.git", "git@github.com:a/b.git", "ssh://git@h/a.git", "http://h/a.tar.gz"] {
            assert!(is_source_url(url), "{url}");
        }
        for path in ["/home/me/app", "app", "file:///home/me/app", "./a@b"] {
            assert!(!is_source_url(path), "{path}");
        }
    }

    #[test]
    fn generated_labels_follow_the_reference() {
        let facts = BuildFacts {
            builder_image: "busybox",
            tag: Some("app:v1"),
            source_location: Some("/src/app"),
            ..Default::default()
        };
        let l = generated_labels(&facts);
        assert_eq!(l[labels::BUILD_IMAGE], "docker.io/library/busybox:latest");
        assert_eq!(l[labels::DISPLAY_NAME], "app:v1");
        assert_eq!(l[labels::SOURCE_LOCATION], "/src/app");
        assert!(!l.contains_key(labels::DESCRIPTION));
        assert!(!l.contains_key(labels::SOURCE_CONTEXT_DIR));
        assert!(!l.contains_key(labels::COMMIT_ID));

        let named = generated_labels(&BuildFacts { application_name: Some("My App"), description: Some("d"), ..facts });
        assert_eq!(named[labels::DISPLAY_NAME], "My App");
        assert_eq!(named[labels::DESCRIPTION], "d");

        let commit = CommitInfo {
            id: "a".repeat(40),
            reference: "main".into(),
            author: "A U Thor <a@example.com>".into(),
            date: "Sat Nov 21 12:00:00 2026 +0000".into(),
            message: "first".into(),
        };
        let l = generated_labels(&BuildFacts { commit: Some(&commit), context_dir: Some("app"), ..Default::default() });
        assert_eq!(l[labels::COMMIT_ID], "a".repeat(40));
        assert_eq!(l[labels::COMMIT_REF], "main");
        assert_eq!(l[labels::COMMIT_AUTHOR], "A U Thor <a@example.com>");
        assert_eq!(l[labels::COMMIT_DATE], "Sat Nov 21 12:00:00 2026 +0000");
        assert_eq!(l[labels::COMMIT_MESSAGE], "first");
        assert_eq!(l[labels::SOURCE_CONTEXT_DIR], "app");
    }
}
