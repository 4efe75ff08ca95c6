//! `s2i rebuild IMAGE [NEW_TAG]`: the build config recorded in the labels of an image s2i made.
//!
//! An image's labels are not trusted: an image from elsewhere could name any host path as its
//! source and an image of its own as builder. Only git sources are rebuilt from the labels alone
//! (a remote URL, or a local repository, whose committed tree is what is built, as for any git
//! source); anything else must be named by the user.

use std::collections::HashMap;
use std::path::Path;

use crate::config::{BuildConfig, ParsedSource, PullPolicy, SourceConfig, SourceSpec};
use crate::error::{BuildError, Result};
use crate::labels;
use crate::services::Services;

/// The build that made an image, from its labels: builder and source are required; context dir,
/// display name and description are taken when present. Unlike the reference, the image's
/// scripts-url label (inherited from the builder) is not turned into a `--scripts-url` override,
/// so the source's `.s2i/bin` scripts still apply, as they did in the original build.
///
/// `source` is a source the user named (`--source`): it is taken instead of the label's, whatever
/// its kind; the label's source is taken only when it is a git repository.
pub fn config_from_labels(image: &str, found: &HashMap<String, String>, source: Option<&str>) -> Result<BuildConfig> {
    let get = |k: &str| found.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let required = |k: &'static str| get(k).map(str::to_string).ok_or_else(|| BuildError::MissingLabel { image: image.to_string(), label: k });
    let builder_image = required(labels::BUILD_IMAGE)?;
    let location = match source {
        Some(given) => given.to_string(),
        None => required(labels::SOURCE_LOCATION)?,
    };
    let parsed = ParsedSource::parse(&location)?;
    let refuse = || BuildError::RebuildSourceNotGiven { image: image.to_string(), location: location.clone() };
    match &parsed.spec {
        _ if source.is_some() => {}
        SourceSpec::GitRemote(_) => {}
        SourceSpec::Local(path) if is_git_work_tree(path) => {}
        SourceSpec::Local(_) | SourceSpec::HttpArchive(_) => return Err(refuse()),
    }
    // The commit that was built, not the branch tip (the reference takes commit.ref, the branch);
    // the commit.ref label keeps the original build's ref.
    let commit = get(labels::COMMIT_ID).filter(|_| source.is_none()).map(str::to_string);
    let git_ref = commit.clone().or(parsed.fragment);
    Ok(BuildConfig {
        source: SourceConfig {
            spec: parsed.spec,
            location: crate::redact::url(&location),
            git_ref,
            reference_name: commit.and(get(labels::COMMIT_REF).map(str::to_string)),
            context_dir: get(labels::SOURCE_CONTEXT_DIR).map(str::to_string),
            exclude: Some(regex::Regex::new(crate::source::DEFAULT_EXCLUDE).expect("the default exclude is valid")),
            ..Default::default()
        },
        builder_image,
        application_name: get(labels::DISPLAY_NAME).map(str::to_string),
        description: get(labels::DESCRIPTION).map(str::to_string),
        ..Default::default()
    })
}

/// A directory holding a git work tree (a `.git` directory or file), links not followed at the top.
fn is_git_work_tree(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir()) && std::fs::symlink_metadata(path.join(".git")).is_ok()
}

/// Obtain `image` per `policy` (with the credentials the registries find for it) and read its
/// build config (see [`config_from_labels`]).
pub async fn config_for(services: &Services<'_>, image: &str, policy: PullPolicy, source: Option<&str>) -> Result<BuildConfig> {
    let s = services;
    let info = crate::images::obtain(s.engine, &s.registries, image, policy, "--pull-policy", &s.reporter).await?;
    config_from_labels(image, &info.labels, source)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels_of(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn a_git_url_becomes_a_config_at_the_recorded_commit_with_its_ref() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let l = labels_of(&[
            (labels::BUILD_IMAGE, "docker.io/acme/builder:1"),
            (labels::SOURCE_LOCATION, "https://git.example.com/app.git"),
            (labels::SOURCE_CONTEXT_DIR, "web"),
            (labels::SCRIPTS_URL_DEPRECATED, "image:///old"),
            (labels::DISPLAY_NAME, "App"),
            (labels::COMMIT_ID, sha),
            (labels::COMMIT_REF, "feature"),
        ]);
        let cfg = config_from_labels("app", &l, None).unwrap();
        assert_eq!(cfg.builder_image, "docker.io/acme/builder:1");
        assert_eq!(cfg.source.spec, SourceSpec::GitRemote("https://git.example.com/app.git".into()));
        assert_eq!(cfg.source.git_ref.as_deref(), Some(sha), "the recorded commit, not the branch");
        assert_eq!(cfg.source.reference_name.as_deref(), Some("feature"), "the label keeps the original ref");
        assert_eq!(cfg.source.context_dir.as_deref(), Some("web"));
        assert_eq!(cfg.scripts_url, None, "the inherited scripts label is no override");
        assert_eq!(cfg.application_name.as_deref(), Some("App"));
        assert!(cfg.source.exclude.is_some(), ".git stays excluded");
    }

    #[test]
    fn a_local_git_repository_is_rebuilt_but_no_other_host_path() {
        let d = tempfile::tempdir().unwrap();
        let repo = d.path().join("repo");
        std::fs::create_dir_all(repo.join(".git")).unwrap();
        let plain = d.path().join("plain");
        std::fs::create_dir_all(&plain).unwrap();
        let with = |loc: &str| labels_of(&[(labels::BUILD_IMAGE, "b"), (labels::SOURCE_LOCATION, loc)]);
        assert!(config_from_labels("app", &with(repo.to_str().unwrap()), None).is_ok());
        for hostile in [plain.to_str().unwrap(), "/", "/etc", "/proc/self/root", "/home/user", "https://h/x.tgz"] {
            let err = config_from_labels("app", &with(hostile), None).unwrap_err();
            assert!(matches!(err, BuildError::RebuildSourceNotGiven { .. }), "{hostile}: {err}");
            assert!(err.hint().unwrap().contains("--source"), "the hint says how to name it");
        }
        // Named by the user, a plain directory is fine.
        let cfg = config_from_labels("app", &with("/etc"), Some(plain.to_str().unwrap())).unwrap();
        assert_eq!(cfg.source.spec, SourceSpec::Local(plain.clone()));
    }

    #[test]
    fn builder_and_source_are_required() {
        let err = config_from_labels("app", &labels_of(&[(labels::SOURCE_LOCATION, "https://h/r.git")]), None).unwrap_err().to_string();
        assert!(err.contains("io.openshift.s2i.build.image"), "{err}");
    }
}
