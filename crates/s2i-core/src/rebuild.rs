//! `s2i rebuild IMAGE [NEW_TAG]`: the build config recorded in the labels of an image s2i made.

use std::collections::HashMap;

use s2i_engine::Engine;

use crate::config::{BuildConfig, PullPolicy};
use crate::error::{BuildError, Result};
use crate::labels;
use crate::source::ParsedSource;

const COMMIT_ID: &str = "io.openshift.s2i.build.commit.id";

/// The build that made an image, from its labels: builder and source are required; context dir,
/// display name and description are taken when present. Unlike the reference, the image's
/// scripts-url label (inherited from the builder) is not turned into a `--scripts-url` override,
/// so the source's `.s2i/bin` scripts still apply, as they did in the original build.
pub fn config_from_labels(image: &str, found: &HashMap<String, String>) -> Result<BuildConfig> {
    let get = |k: &str| found.get(k).map(String::as_str).filter(|v| !v.is_empty());
    let required = |k: &'static str| {
        get(k).map(str::to_string).ok_or_else(|| BuildError::MissingLabel { image: image.to_string(), label: k })
    };
    let builder_image = required(labels::BUILD_IMAGE)?;
    let source_location = required(labels::SOURCE_LOCATION)?;
    let parsed = ParsedSource::parse(&source_location)?;
    // The commit that was built, not the branch tip (the reference takes commit.ref, the branch).
    let git_ref = get(COMMIT_ID).map(str::to_string).or(parsed.fragment);
    Ok(BuildConfig {
        source: parsed.spec,
        source_location,
        git_ref,
        builder_image,
        context_dir: get(labels::SOURCE_CONTEXT_DIR).map(str::to_string),
        application_name: get(labels::DISPLAY_NAME).map(str::to_string),
        description: get(labels::DESCRIPTION).map(str::to_string),
        exclude: Some(regex::Regex::new(crate::source::DEFAULT_EXCLUDE).expect("the default exclude is valid")),
        ..Default::default()
    })
}

/// Obtain `image` per `policy` and read its build config.
pub async fn config_for(engine: &dyn Engine, image: &str, policy: PullPolicy) -> Result<BuildConfig> {
    let info = crate::images::obtain(engine, image, policy).await?;
    config_from_labels(image, &info.labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_become_a_config() {
        let mut l: HashMap<String, String> = [
            (labels::BUILD_IMAGE, "docker.io/acme/builder:1"),
            (labels::SOURCE_LOCATION, "/src/app"),
            (labels::SOURCE_CONTEXT_DIR, "web"),
            (labels::SCRIPTS_URL_DEPRECATED, "image:///old"),
            (labels::DISPLAY_NAME, "App"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cfg = config_from_labels("app", &l).unwrap();
        assert_eq!(cfg.builder_image, "docker.io/acme/builder:1");
        assert_eq!(cfg.source, crate::source::SourceSpec::Local("/src/app".into()));
        assert_eq!(cfg.git_ref, None);
        assert_eq!(cfg.context_dir.as_deref(), Some("web"));
        assert_eq!(cfg.scripts_url, None, "the inherited scripts label is no override");
        assert_eq!(cfg.application_name.as_deref(), Some("App"));
        assert!(cfg.exclude.is_some(), ".git stays excluded");

        l.insert(labels::SOURCE_LOCATION.into(), "https://git.example.com/app.git".into());
        l.insert(COMMIT_ID.into(), "0123456789abcdef0123456789abcdef01234567".into());
        let cfg = config_from_labels("app", &l).unwrap();
        assert_eq!(cfg.source, crate::source::SourceSpec::GitRemote("https://git.example.com/app.git".into()));
        assert_eq!(cfg.git_ref.as_deref(), Some("0123456789abcdef0123456789abcdef01234567"), "the recorded commit, not the branch");

        l.remove(labels::BUILD_IMAGE);
        let err = config_from_labels("app", &l).unwrap_err().to_string();
        assert!(err.contains("io.openshift.s2i.build.image"), "{err}");
    }
}
