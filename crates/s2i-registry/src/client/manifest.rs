//! Manifests as registries serve them: Docker v2 schema 2 and OCI image manifests, and the lists
//! (Docker manifest lists, OCI indexes) that point at one per platform.

use bytes::Bytes;
use serde::Deserialize;

use crate::oci::{Descriptor, ImageIndex, ImageManifest, Platform, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};

/// Every manifest type we read, for an `Accept` header.
pub(crate) const ACCEPT_MANIFESTS: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// A manifest exactly as the registry served it: its bytes are what its digest is of.
#[derive(Debug, Clone)]
pub struct RawManifest {
    pub digest: String,
    pub media_type: String,
    pub bytes: Bytes,
}

/// What a manifest turned out to be.
#[derive(Debug, Clone)]
pub(crate) enum Parsed {
    Image(ImageManifest),
    Index(ImageIndex),
    /// Schema 1 and anything else we do not read: the media type.
    Other(String),
}

impl RawManifest {
    /// Parse by the served media type, or the document's own `mediaType` when the registry sent a
    /// generic one (OCI documents may leave it out; a `manifests` array then says index).
    pub(crate) fn parse(&self) -> Result<Parsed, String> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Probe {
            #[serde(default)]
            schema_version: Option<u32>,
            #[serde(default)]
            media_type: Option<String>,
            #[serde(default)]
            manifests: Option<serde_json::Value>,
        }
        let probe: Probe = serde_json::from_slice(&self.bytes).map_err(|e| format!("the manifest is not valid JSON: {e}"))?;
        let media_type = match self.media_type.as_str() {
            DOCKER_MANIFEST | DOCKER_MANIFEST_LIST | OCI_MANIFEST | OCI_INDEX => self.media_type.clone(),
            _ => match (probe.media_type, probe.manifests.is_some()) {
                (Some(t), _) => t,
                (None, true) => OCI_INDEX.to_string(),
                (None, false) if probe.schema_version == Some(2) => OCI_MANIFEST.to_string(),
                (None, false) => self.media_type.clone(),
            },
        };
        let invalid = |e: serde_json::Error| format!("invalid {media_type} manifest: {e}");
        Ok(match media_type.as_str() {
            DOCKER_MANIFEST | OCI_MANIFEST => Parsed::Image(serde_json::from_slice(&self.bytes).map_err(invalid)?),
            DOCKER_MANIFEST_LIST | OCI_INDEX => Parsed::Index(serde_json::from_slice(&self.bytes).map_err(invalid)?),
            other => Parsed::Other(other.to_string()),
        })
    }
}

/// An image manifest ready to pull: where it came from and what it points at.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The image manifest itself (for a list, the platform's entry).
    pub raw: RawManifest,
    pub manifest: ImageManifest,
    /// The list or index it was picked from, if any.
    pub index: Option<RawManifest>,
}

impl Manifest {
    pub fn config(&self) -> &Descriptor {
        &self.manifest.config
    }

    pub fn layers(&self) -> &[Descriptor] {
        &self.manifest.layers
    }
}

/// The entry of `index` for `platform`, if any.
pub(crate) fn pick_platform<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| platform.accepts(p)))
}

/// The platforms an index holds, for an error message.
pub(crate) fn platforms_of(index: &ImageIndex) -> String {
    let names: Vec<String> = index
        .manifests
        .iter()
        .filter_map(|d| d.platform.as_ref())
        // Attestation manifests are listed as unknown/unknown.
        .filter(|p| p.os != "unknown")
        .map(Platform::to_string)
        .collect();
    if names.is_empty() {
        "no platform at all".into()
    } else {
        names.join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut entry = Descriptor::new(DOCKER_MANIFEST, crate::digest::Digest::of(arch.as_bytes()), 1);
        entry.platform = Some(Platform::new(os, arch, variant));
        entry
    }

    #[test]
    fn platform_picking() {
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST_LIST.into()),
            manifests: vec![
                entry("unknown", "unknown", None),
                entry("linux", "arm", Some("v6")),
                entry("linux", "arm", Some("v7")),
                entry("linux", "arm64", None),
                entry("windows", "amd64", None),
                entry("linux", "amd64", None),
            ],
        };
        let pick = |os, arch, v| pick_platform(&index, &Platform::new(os, arch, v)).map(|d| d.platform.clone().unwrap());
        assert_eq!(pick("linux", "amd64", None), Some(Platform::new("linux", "amd64", None)));
        assert_eq!(pick("linux", "arm", Some("v7")), Some(Platform::new("linux", "arm", Some("v7"))));
        assert_eq!(pick("linux", "arm64", Some("v8")), Some(Platform::new("linux", "arm64", None)));
        assert_eq!(pick("linux", "s390x", None), None);
        assert_eq!(platforms_of(&index), "linux/arm/v6, linux/arm/v7, linux/arm64, windows/amd64, linux/amd64");
        if cfg!(target_arch = "x86_64") {
            assert_eq!(Platform::host(), Platform::new("linux", "amd64", None));
        }
    }

    #[test]
    fn media_types_from_the_answer_or_the_document() {
        let raw = |media_type: &str, json: &str| RawManifest { digest: String::new(), media_type: media_type.into(), bytes: Bytes::from(json.to_string()) };
        let image = format!(r#"{{"schemaVersion":2,"config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:{}","size":1}},"layers":[]}}"#, "a".repeat(64));
        let image = image.as_str();
        // A digest that could not name a blob (it would become a path in a store) is refused here.
        let escaping = image.replace(&"a".repeat(64), "../../etc");
        assert!(raw(OCI_MANIFEST, &escaping).parse().unwrap_err().contains("unsupported digest"));
        assert!(matches!(raw(OCI_MANIFEST, image).parse(), Ok(Parsed::Image(_))));
        // A generic type from a static file server: the document decides.
        assert!(matches!(raw("application/json", image).parse(), Ok(Parsed::Image(_))));
        assert!(matches!(raw("application/octet-stream", r#"{"schemaVersion":2,"manifests":[]}"#).parse(), Ok(Parsed::Index(_))));
        let v1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
        assert!(matches!(raw(v1, r#"{"schemaVersion":1}"#).parse(), Ok(Parsed::Other(t)) if t == v1));
        assert!(raw(DOCKER_MANIFEST, "{").parse().unwrap_err().contains("not valid JSON"));
        assert!(raw(DOCKER_MANIFEST, r#"{"schemaVersion":2}"#).parse().unwrap_err().contains("invalid"));
    }
}
