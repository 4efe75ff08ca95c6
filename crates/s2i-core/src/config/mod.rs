//! One build's settings, resolved, typed and validated before any work starts: the stages after
//! this one never parse or check a flag again.
//!
//! Plain data at the bottom of the pipeline: this module imports none of the stages, only value
//! types and the shared error and limits. What a build works with besides its settings (the
//! engine, the registries' credentials, the reporter) travels beside it as `Services`.

mod secrets;
mod source_spec;
mod values;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use regex::Regex;

pub use secrets::{check_id as check_secret_id, SecretSource, SecretSpec, SecretValue, MAX_SECRET_SIZE, SECRETS_DIR};
pub use source_spec::{ArchiveFormat, ParsedSource, SourceSpec};
pub use values::{parse_env_flag, parse_ranges, EnvVar, UidRange};

use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;
use crate::limits::Limits;
use crate::mapping::Mapping;

/// When to pull an image from its registry. Parsed with [`FromStr`] (the flags' spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }
}

impl FromStr for PullPolicy {
    type Err = BuildError;

    /// The reference's spelling and message; `""` is the default, as there.
    fn from_str(s: &str) -> Result<PullPolicy> {
        match s {
            "always" => Ok(PullPolicy::Always),
            "if-not-present" | "" => Ok(PullPolicy::IfNotPresent),
            "never" => Ok(PullPolicy::Never),
            other => Err(BuildError::InvalidValue {
                what: "pull policy",
                value: other.to_string(),
                reason: "valid values are: always, never or if-not-present".into(),
            }),
        }
    }
}

impl fmt::Display for PullPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the output image is made. Parsed with [`FromStr`] (the flag's spelling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMethod {
    /// The reference's way: run assemble in a container of the builder, commit that container.
    #[default]
    Standard,
    /// Generate the `--as-dockerfile` Dockerfile and build it with the engine's image builder.
    Dockerfile,
}

impl BuildMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            BuildMethod::Standard => "standard",
            BuildMethod::Dockerfile => "dockerfile",
        }
    }
}

impl FromStr for BuildMethod {
    type Err = BuildError;

    fn from_str(s: &str) -> Result<BuildMethod> {
        match s {
            "standard" | "" => Ok(BuildMethod::Standard),
            "dockerfile" => Ok(BuildMethod::Dockerfile),
            other => Err(BuildError::InvalidValue {
                what: "build method",
                value: other.to_string(),
                reason: "valid values are: standard or dockerfile".into(),
            }),
        }
    }
}

/// The application source and how to take it.
#[derive(Debug, Clone, Default)]
pub struct SourceConfig {
    /// SOURCE, parsed: a local path, a git URL or an http(s) archive.
    pub spec: SourceSpec,
    /// SOURCE as the user wrote it (messages; the source-location label of copies), with any
    /// credentials in a URL already removed.
    pub location: String,
    /// The git ref to build: `--ref`, else the source's `#fragment`.
    pub git_ref: Option<String>,
    /// What the commit.ref label records when `git_ref` is a commit id (a rebuild keeps the
    /// original build's branch name while building its commit).
    pub reference_name: Option<String>,
    /// `--copy`: build a local directory as it is, even when it is a git work tree.
    pub copy: bool,
    pub ignore_submodules: bool,
    /// `--context-dir`, relative and inside the source.
    pub context_dir: Option<String>,
    /// `None` when `--exclude ""` turned exclusion off.
    pub exclude: Option<Regex>,
    pub keep_symlinks: bool,
}

/// Settings every build container gets.
#[derive(Debug, Clone, Default)]
pub struct ContainerSettings {
    pub volumes: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network: Option<String>,
    pub add_hosts: Vec<String>,
    /// `--security-opt`: the seccomp profile and no-new-privileges.
    pub security: s2i_engine::SecurityOptions,
}

/// `--runtime-image` and what goes with it.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub image: String,
    pub pull_policy: PullPolicy,
    /// `-a` mappings; empty means the runtime image's assemble-input-files label decides.
    pub artifacts: Vec<Mapping>,
    pub assemble_user: Option<String>,
}

/// Everything one `s2i build` needs, after flags were parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct BuildConfig {
    pub source: SourceConfig,
    pub builder_image: String,
    /// The output tag, validated; untagged when `None`.
    pub tag: Option<ImageRef>,
    pub scripts_url: Option<String>,
    /// `--destination`, absolute.
    pub destination: Option<String>,
    /// `-e` values in flag order.
    pub env: Vec<EnvVar>,
    /// `--secret`: build-only secrets, by name and where their values are (never the values).
    pub secrets: Vec<SecretSpec>,
    /// `-E`: read at prepare time, after `.s2i/environment` and `-e`.
    pub environment_file: Option<PathBuf>,
    pub pull_policy: PullPolicy,
    /// Reuse the previous image's artifacts (the tag's image, through its save-artifacts script).
    pub incremental: bool,
    pub incremental_pull_policy: PullPolicy,
    /// `--cache-dir`: the artifacts of incremental builds are kept in and restored from this
    /// directory, not taken from the previous image.
    pub cache_dir: Option<PathBuf>,
    /// After a successful incremental build, remove the previous image.
    pub remove_previous: bool,
    pub quiet: bool,
    pub assemble_user: Option<String>,
    pub allowed_uids: Vec<UidRange>,
    pub application_name: Option<String>,
    pub description: Option<String>,
    pub save_temp_dir: bool,
    pub container: ContainerSettings,
    /// `--inject` mappings, parsed.
    pub injections: Vec<Mapping>,
    pub runtime: Option<RuntimeConfig>,
    /// Extra labels (`--label`); generated labels are overridden by these.
    pub labels: Vec<(String, String)>,
    /// `--as-dockerfile`: write a Dockerfile and its context to this path instead of building.
    pub as_dockerfile: Option<PathBuf>,
    /// `--image-scripts-url`: where Dockerfile builds take the scripts the builder does not declare.
    pub image_scripts_url: Option<String>,
    pub build_method: BuildMethod,
    pub limits: Limits,
    /// `--dockercfg-path`: the file registry credentials come from (Docker's places when `None`).
    /// The `Registries` service is made from it.
    pub dockercfg_path: Option<PathBuf>,
    /// `--push`: push the tag (and the builder stage an incremental runtime build keeps) once the
    /// build succeeds. The tag names a registry ([`check_push`]).
    pub push: bool,
}

impl BuildConfig {
    /// The output tag as the user wrote it.
    pub fn tag_name(&self) -> Option<String> {
        self.tag.as_ref().map(ImageRef::to_string)
    }
}

/// Validate `--context-dir`: relative, and not climbing out of the source.
pub fn validate_context_dir(dir: &str) -> Result<()> {
    let p = std::path::Path::new(dir);
    let climbs = p.components().any(|c| matches!(c, std::path::Component::ParentDir));
    if p.is_absolute() || climbs {
        return Err(BuildError::InvalidValue {
            what: "--context-dir",
            value: dir.to_string(),
            reason: "must be a relative path inside the source".into(),
        });
    }
    Ok(())
}

/// Validate an output tag: a lowercase reference without a digest.
pub fn parse_tag(tag: &str) -> Result<ImageRef> {
    crate::image_ref::parse_output_tag(tag).map_err(|reason| BuildError::InvalidValue { what: "tag", value: tag.to_string(), reason })
}

/// `--push` needs a tag that names its registry (`registry.example.com/team/app:v1`): a bare
/// `app:v1` would go to Docker Hub, which is rarely what a build means.
pub fn check_push(tag: Option<&ImageRef>) -> Result<()> {
    push_target(tag).map(|_| ())
}

/// The tag `--push` pushes: it must name its registry.
pub fn push_target(tag: Option<&ImageRef>) -> Result<&ImageRef> {
    let why = match tag {
        None => "it needs the TAG of the image to push (REGISTRY/NAME[:TAG])".to_string(),
        Some(t) if t.domain.is_none() => {
            format!("TAG {t} names no registry: name one, as in 127.0.0.1:5000/{} or docker.io/{}", t.path, t.path)
        }
        Some(t) => return Ok(t),
    };
    Err(BuildError::InvalidValue { what: "--push", value: tag.map(ImageRef::to_string).unwrap_or_default(), reason: why })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_parse_with_the_reference_message() {
        assert_eq!("never".parse::<PullPolicy>().unwrap(), PullPolicy::Never);
        assert_eq!("".parse::<PullPolicy>().unwrap(), PullPolicy::IfNotPresent);
        let e = "sometimes".parse::<PullPolicy>().unwrap_err().to_string();
        assert!(e.contains("valid values are: always, never or if-not-present"), "{e}");
    }

    #[test]
    fn values_parse_back_from_their_names() {
        for p in [PullPolicy::Always, PullPolicy::IfNotPresent, PullPolicy::Never] {
            assert_eq!(p.as_str().parse::<PullPolicy>().unwrap(), p);
        }
        for m in [BuildMethod::Standard, BuildMethod::Dockerfile] {
            assert_eq!(m.as_str().parse::<BuildMethod>().unwrap(), m);
        }
    }

    #[test]
    fn push_needs_a_tag_that_names_a_registry() {
        assert!(check_push(Some(&parse_tag("127.0.0.1:5000/team/app:v1").unwrap())).is_ok());
        assert!(check_push(Some(&parse_tag("docker.io/team/app").unwrap())).is_ok());
        assert!(check_push(Some(&parse_tag("localhost/app").unwrap())).is_ok());
        let e = check_push(Some(&parse_tag("team/app:v1").unwrap())).unwrap_err().to_string();
        assert!(e.contains("TAG team/app:v1 names no registry") && e.contains("127.0.0.1:5000/team/app"), "{e}");
        let e = check_push(None).unwrap_err().to_string();
        assert!(e.contains("needs the TAG"), "{e}");
    }

    #[test]
    fn context_dirs_stay_inside() {
        assert!(validate_context_dir("app/web").is_ok());
        assert!(validate_context_dir("/etc").is_err());
        assert!(validate_context_dir("../x").is_err());
        assert!(validate_context_dir("a/../../x").is_err());
    }
}
