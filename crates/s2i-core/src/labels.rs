//! Labels read from builder images and written on output images.

use std::collections::HashMap;

use crate::error::{BuildError, Result};
use crate::source::git::CommitInfo;

pub const SCRIPTS_URL: &str = "io.openshift.s2i.scripts-url";
pub const SCRIPTS_URL_DEPRECATED: &str = "io.s2i.scripts-url";
pub const DESTINATION: &str = "io.openshift.s2i.destination";
pub const DESTINATION_DEPRECATED: &str = "io.s2i.destination";
pub const ASSEMBLE_USER: &str = "io.openshift.s2i.assemble-user";
pub const ASSEMBLE_RUNTIME_USER: &str = "io.openshift.s2i.assemble-runtime-user";
pub const ASSEMBLE_INPUT_FILES: &str = "io.openshift.s2i.assemble-input-files";
pub const BUILD_IMAGE: &str = "io.openshift.s2i.build.image";
pub const SOURCE_LOCATION: &str = "io.openshift.s2i.build.source-location";
pub const SOURCE_CONTEXT_DIR: &str = "io.openshift.s2i.build.source-context-dir";
pub const COMMIT_ID: &str = "io.openshift.s2i.build.commit.id";
pub const COMMIT_REF: &str = "io.openshift.s2i.build.commit.ref";
pub const COMMIT_AUTHOR: &str = "io.openshift.s2i.build.commit.author";
pub const COMMIT_DATE: &str = "io.openshift.s2i.build.commit.date";
pub const COMMIT_MESSAGE: &str = "io.openshift.s2i.build.commit.message";
pub const DISPLAY_NAME: &str = "io.k8s.display-name";
pub const DESCRIPTION: &str = "io.k8s.description";
/// Deprecated image environment variables standing in for the labels above.
pub const ENV_SCRIPTS_URL: &str = "STI_SCRIPTS_URL";
pub const ENV_LOCATION: &str = "STI_LOCATION";

/// The upper bound the reference puts on Σ(len(key)+len(value)).
pub const MAX_LABELS_SIZE: usize = 10240;

/// The path assemble may write extra labels to, in the container being committed.
pub const IMAGE_METADATA_PATH: &str = "/tmp/.s2i/image_metadata.json";

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
pub fn generated(facts: &BuildFacts) -> HashMap<String, String> {
    let display_name = facts.application_name.or(facts.tag);
    let builder = crate::image_ref::normalize_for_label(facts.builder_image);
    [
        (DESCRIPTION, facts.description),
        (DISPLAY_NAME, display_name),
        (BUILD_IMAGE, Some(builder.as_str())),
        (SOURCE_LOCATION, facts.source_location),
        (SOURCE_CONTEXT_DIR, facts.context_dir),
        (COMMIT_ID, facts.commit.map(|c| c.id.as_str())),
        (COMMIT_REF, facts.commit.map(|c| c.reference.as_str())),
        (COMMIT_AUTHOR, facts.commit.map(|c| c.author.as_str())),
        (COMMIT_DATE, facts.commit.map(|c| c.date.as_str())),
        (COMMIT_MESSAGE, facts.commit.map(|c| c.message.as_str())),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| (k.to_string(), v.to_string())))
    .collect()
}

/// Parse `image_metadata.json`: `{"labels":[{"k1":"v1"},{"k2":"v2"}]}`. Unlike the reference, a
/// missing `labels` key or a non-string value is an error rather than a crash.
pub fn parse_image_metadata(bytes: &[u8]) -> Result<Vec<(String, String)>> {
    let err = |reason: String| BuildError::ImageMetadata { reason };
    let doc: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| err(format!("not JSON: {e}")))?;
    let labels = doc
        .get("labels")
        .ok_or_else(|| err("no \"labels\" key".into()))?
        .as_array()
        .ok_or_else(|| err("\"labels\" must be a list of objects".into()))?;
    let mut out = Vec::new();
    for item in labels {
        let obj = item.as_object().ok_or_else(|| err(format!("{item} is not an object")))?;
        for (k, v) in obj {
            let v = v.as_str().ok_or_else(|| err(format!("the value of label {k:?} is not a string")))?;
            out.push((k.clone(), v.to_string()));
        }
    }
    Ok(out)
}

/// The labels that record how an image was built: only s2i sets them.
pub const PROVENANCE_PREFIX: &str = "io.openshift.s2i.build.";

/// Add what assemble wrote to image_metadata.json, except the provenance labels
/// (`io.openshift.s2i.build.*`): a script must not be able to say where its image came from.
pub fn add_metadata(labels: &mut HashMap<String, String>, metadata: Vec<(String, String)>) {
    for (k, v) in metadata {
        if k.starts_with(PROVENANCE_PREFIX) {
            tracing::warn!("Ignoring label {k} from image_metadata.json: only s2i sets the {PROVENANCE_PREFIX}* labels");
            continue;
        }
        labels.insert(k, v);
    }
}

/// Refuse label sets over the reference's size limit.
pub fn check_size(labels: &HashMap<String, String>, image: &str) -> Result<()> {
    let size: usize = labels.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > MAX_LABELS_SIZE {
        return Err(BuildError::LabelsTooBig { image: image.to_string(), size });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_labels_follow_the_reference() {
        let facts = BuildFacts {
            builder_image: "busybox",
            tag: Some("app:v1"),
            source_location: Some("/src/app"),
            ..Default::default()
        };
        let l = generated(&facts);
        assert_eq!(l[BUILD_IMAGE], "docker.io/library/busybox:latest");
        assert_eq!(l[DISPLAY_NAME], "app:v1");
        assert_eq!(l[SOURCE_LOCATION], "/src/app");
        assert!(!l.contains_key(DESCRIPTION));
        assert!(!l.contains_key(SOURCE_CONTEXT_DIR));
        assert!(!l.contains_key(COMMIT_ID));

        let named = generated(&BuildFacts { application_name: Some("My App"), description: Some("d"), ..facts });
        assert_eq!(named[DISPLAY_NAME], "My App");
        assert_eq!(named[DESCRIPTION], "d");

        let commit = CommitInfo {
            id: "a".repeat(40),
            reference: "main".into(),
            author: "A U Thor <a@example.com>".into(),
            date: "Sat Nov 21 12:00:00 2026 +0000".into(),
            message: "first".into(),
        };
        let l = generated(&BuildFacts { commit: Some(&commit), context_dir: Some("app"), ..Default::default() });
        assert_eq!(l[COMMIT_ID], "a".repeat(40));
        assert_eq!(l[COMMIT_REF], "main");
        assert_eq!(l[COMMIT_AUTHOR], "A U Thor <a@example.com>");
        assert_eq!(l[COMMIT_DATE], "Sat Nov 21 12:00:00 2026 +0000");
        assert_eq!(l[COMMIT_MESSAGE], "first");
        assert_eq!(l[SOURCE_CONTEXT_DIR], "app");
    }

    #[test]
    fn image_metadata_is_parsed_strictly() {
        let l = parse_image_metadata(br#"{"labels":[{"a":"1"},{"b":"2","c":"3"}]}"#).unwrap();
        assert_eq!(l, vec![("a".into(), "1".into()), ("b".into(), "2".into()), ("c".into(), "3".into())]);
        assert!(parse_image_metadata(b"{").is_err());
        assert!(parse_image_metadata(br#"{"other":1}"#).is_err());
        assert!(parse_image_metadata(br#"{"labels":[{"a":1}]}"#).is_err());
        assert!(parse_image_metadata(br#"{"labels":"x"}"#).is_err());
    }

    #[test]
    fn image_metadata_cannot_override_provenance() {
        let mut l = HashMap::from([(SOURCE_LOCATION.to_string(), "/src/app".to_string())]);
        add_metadata(&mut l, vec![(SOURCE_LOCATION.into(), "/home/user".into()), (BUILD_IMAGE.into(), "attacker/exfil".into()), ("team".into(), "x".into())]);
        assert_eq!(l[SOURCE_LOCATION], "/src/app");
        assert!(!l.contains_key(BUILD_IMAGE));
        assert_eq!(l["team"], "x");
    }

    #[test]
    fn label_size_limit_counts_keys_and_values() {
        let mut l = HashMap::new();
        l.insert("k".repeat(10), "v".repeat(MAX_LABELS_SIZE - 10));
        assert!(check_size(&l, "img").is_ok());
        l.insert("x".into(), String::new());
        let err = check_size(&l, "img").unwrap_err().to_string();
        assert!(err.contains("10241"), "{err}");
    }
}
