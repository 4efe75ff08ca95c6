//! One build's settings, resolved and validated before any work starts.

use std::fmt;
use std::path::PathBuf;

use regex::Regex;

use crate::env::EnvVar;
use crate::error::{BuildError, Result};
use crate::source::SourceSpec;
use crate::users::UidRange;

/// When to pull an image from its registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullPolicy {
    Always,
    #[default]
    IfNotPresent,
    Never,
}

impl PullPolicy {
    pub const VALUES: [&'static str; 3] = ["always", "never", "if-not-present"];

    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "always",
            PullPolicy::IfNotPresent => "if-not-present",
            PullPolicy::Never => "never",
        }
    }

    pub fn parse(s: &str) -> Result<PullPolicy> {
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

/// How the output image is made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BuildMethod {
    /// The reference's way: run assemble in a container of the builder, commit that container.
    #[default]
    Standard,
    /// Generate the `--as-dockerfile` Dockerfile and build it with the engine's image builder.
    Dockerfile,
}

impl BuildMethod {
    pub const VALUES: [&'static str; 2] = ["standard", "dockerfile"];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildMethod::Standard => "standard",
            BuildMethod::Dockerfile => "dockerfile",
        }
    }

    pub fn parse(s: &str) -> Result<BuildMethod> {
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

/// Everything one `s2i build` needs, after flags were parsed and checked.
#[derive(Debug, Clone, Default)]
pub struct BuildConfig {
    /// The source, parsed (§3.1).
    pub source: SourceSpec,
    /// The source as the user wrote it (messages; the source-location label of copies).
    pub source_location: String,
    /// The git ref to build: `--ref`, else the source's `#fragment`.
    pub git_ref: Option<String>,
    /// `--copy`: build a local directory as it is, even when it is a git work tree.
    pub copy: bool,
    pub ignore_submodules: bool,
    pub builder_image: String,
    pub tag: Option<String>,
    pub context_dir: Option<String>,
    pub scripts_url: Option<String>,
    pub destination: Option<String>,
    /// `-e` values in flag order.
    pub env: Vec<EnvVar>,
    pub environment_file: Option<PathBuf>,
    pub pull_policy: PullPolicy,
    /// Reuse the previous image's artifacts (the tag's image, through its save-artifacts script).
    pub incremental: bool,
    pub incremental_pull_policy: PullPolicy,
    /// After a successful incremental build, remove the previous image.
    pub remove_previous: bool,
    pub quiet: bool,
    pub assemble_user: Option<String>,
    pub allowed_uids: Vec<UidRange>,
    pub application_name: Option<String>,
    pub description: Option<String>,
    /// `None` when `--exclude ""` turned exclusion off.
    pub exclude: Option<Regex>,
    pub keep_symlinks: bool,
    pub save_temp_dir: bool,
    pub volumes: Vec<String>,
    pub cap_drop: Vec<String>,
    pub network: Option<String>,
    pub add_hosts: Vec<String>,
    /// `--inject` values as given.
    pub injections: Vec<String>,
    /// Build on the builder, ship on this image (`--runtime-image`).
    pub runtime_image: Option<String>,
    pub runtime_pull_policy: PullPolicy,
    /// `src[:dest]` specs as given (`-a`); empty means the runtime image's label decides.
    pub runtime_artifacts: Vec<String>,
    pub assemble_runtime_user: Option<String>,
    /// Extra labels from a library caller; generated labels are overridden by these.
    pub labels: Vec<(String, String)>,
    /// `--as-dockerfile`: write a Dockerfile and its context to this path instead of building.
    pub as_dockerfile: Option<PathBuf>,
    /// `--image-scripts-url`: where Dockerfile builds take the scripts the builder does not declare.
    pub image_scripts_url: Option<String>,
    pub build_method: BuildMethod,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pull_policies_parse_with_the_reference_message() {
        assert_eq!(PullPolicy::parse("never").unwrap(), PullPolicy::Never);
        assert_eq!(PullPolicy::parse("").unwrap(), PullPolicy::IfNotPresent);
        let e = PullPolicy::parse("sometimes").unwrap_err().to_string();
        assert!(e.contains("valid values are: always, never or if-not-present"), "{e}");
    }

    #[test]
    fn context_dirs_stay_inside() {
        assert!(validate_context_dir("app/web").is_ok());
        assert!(validate_context_dir("/etc").is_err());
        assert!(validate_context_dir("../x").is_err());
        assert!(validate_context_dir("a/../../x").is_err());
    }
}
