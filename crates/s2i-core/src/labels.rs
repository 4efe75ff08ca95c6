//! Labels read from builder images and written on output images: their names, and the checks of
//! what a script adds. The labels a build generates are the plan's (`plan::generated_labels`).

use std::collections::HashMap;

use crate::error::{BuildError, Result};

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
/// The OCI image spec's standard keys (annotations, and labels of the same names).
pub const OCI_SOURCE: &str = "org.opencontainers.image.source";
pub const OCI_REVISION: &str = "org.opencontainers.image.revision";
pub const OCI_CREATED: &str = "org.opencontainers.image.created";
pub const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const OCI_BASE_NAME: &str = "org.opencontainers.image.base.name";
pub const OCI_BASE_DIGEST: &str = "org.opencontainers.image.base.digest";
pub const OCI_TITLE: &str = "org.opencontainers.image.title";
pub const OCI_DESCRIPTION: &str = "org.opencontainers.image.description";
/// The standard keys that describe one image's own build: what the base image carries under them
/// describes the base, so the result never inherits them.
pub const OCI_BUILD_KEYS: [&str; 9] = [
    OCI_SOURCE,
    OCI_REVISION,
    OCI_CREATED,
    OCI_REF_NAME,
    OCI_BASE_NAME,
    OCI_BASE_DIGEST,
    "org.opencontainers.image.version",
    "org.opencontainers.image.url",
    "org.opencontainers.image.documentation",
];

/// `SOURCE_DATE_EPOCH` when it is set (seconds since 1970), else now, as RFC 3339 in UTC.
pub fn created_now() -> String {
    let epoch = std::env::var("SOURCE_DATE_EPOCH").ok().and_then(|v| v.trim().parse::<i64>().ok());
    let at = match epoch {
        Some(secs) => time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
        None => time::OffsetDateTime::now_utc(),
    };
    at.replace_nanosecond(0)
        .unwrap_or(at)
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// Deprecated image environment variables standing in for the labels above.
pub const ENV_SCRIPTS_URL: &str = "STI_SCRIPTS_URL";
pub const ENV_LOCATION: &str = "STI_LOCATION";

/// The upper bound the reference puts on Σ(len(key)+len(value)).
pub const MAX_LABELS_SIZE: usize = 10240;

/// The path assemble may write extra labels to, in the container being committed.
pub const IMAGE_METADATA_PATH: &str = "/tmp/.s2i/image_metadata.json";

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
