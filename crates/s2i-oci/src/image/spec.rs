//! The JSON documents of an image: descriptors, manifests, indexes (OCI image spec 1.1, and the
//! Docker v2 schema 2 media types that mean the same), `docker save`'s `manifest.json`, and the
//! parts of an image config that s2i reads.
//!
//! Our own small types rather than a spec crate's: maps are `BTreeMap`s, so what we write is the
//! same bytes every time (reproducible digests), and Docker's media types and config fields
//! (`OnBuild`, `Healthcheck`…) pass through untouched. Media types and platforms are
//! s2i-registry's; descriptors, manifests and indexes are not, because here a digest becomes a
//! path in the store and so is a validated [`Digest`], where the registry client's are the
//! strings a registry sent (checked when content arrives).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_LAYOUT_VERSION: &str = "1.0.0";
pub use s2i_registry::client::manifest::{
    Platform, DOCKER_LAYER, DOCKER_LAYER_GZIP, DOCKER_MANIFEST_LIST, OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_LAYER_GZIP, OCI_LAYER_ZSTD,
    OCI_MANIFEST,
};

/// The annotation naming a manifest in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker 25+ put the full image name in.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type: media_type.into(), digest, size, annotations: BTreeMap::new(), platform: None }
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_REF_NAME).map(String::as_str)
    }

    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl Manifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> Manifest {
        Manifest { schema_version: 2, media_type: Some(OCI_MANIFEST.into()), config, layers, annotations: BTreeMap::new() }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index { schema_version: 2, media_type: Some(OCI_INDEX.into()), manifests }
    }
}

/// One image of `docker save`'s `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DockerArchiveEntry {
    pub config: String,
    #[serde(default)]
    pub repo_tags: Option<Vec<String>>,
    pub layers: Vec<String>,
}

/// How a layer blob is compressed, from its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
}

/// The compression of a layer of this media type; an error for what we cannot read.
pub fn layer_compression(media_type: &str) -> Result<Compression, String> {
    match media_type {
        OCI_LAYER | DOCKER_LAYER => Ok(Compression::None),
        OCI_LAYER_GZIP | DOCKER_LAYER_GZIP => Ok(Compression::Gzip),
        OCI_LAYER_ZSTD => Err("read zstd-compressed layers (convert the image with skopeo copy --dest-compress-format gzip)".into()),
        other => Err(format!("read layers of media type {other:?}")),
    }
}

/// The media type of a layer blob whose first bytes are `magic` (a `docker save` archive names
/// no media types).
pub fn sniff_layer_media_type(magic: &[u8]) -> Result<&'static str, String> {
    match magic {
        [0x1f, 0x8b, ..] => Ok(OCI_LAYER_GZIP),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Err("read zstd-compressed layers (re-save the image with gzip or no compression)".into()),
        [0x42, 0x5a, 0x68, ..] => Err("read bzip2-compressed layers".into()),
        [0xfd, b'7', b'z', b'X', b'Z', 0x00, ..] => Err("read xz-compressed layers".into()),
        _ => Ok(OCI_LAYER),
    }
}

/// What s2i reads of an image's configuration (Docker's container config, which the OCI one is
/// a subset of).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageConfig {
    pub user: String,
    pub env: Vec<String>,
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub working_dir: String,
    pub labels: BTreeMap<String, String>,
    /// `port/proto` keys of `ExposedPorts`.
    pub exposed_ports: Vec<String>,
    /// Docker's `OnBuild` triggers (not part of the OCI spec; kept when present).
    pub on_build: Vec<String>,
    pub architecture: String,
    pub os: String,
}

fn strings(v: Option<&serde_json::Value>) -> Option<Vec<String>> {
    let arr = v?.as_array()?;
    Some(arr.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
}

impl ImageConfig {
    /// Read from a config blob's JSON (`{"config": {"Env": …}, "architecture": …}`); absent or
    /// mistyped fields read as empty.
    pub fn from_json(doc: &serde_json::Value) -> ImageConfig {
        let c = doc.get("config").or_else(|| doc.get("container_config")).filter(|c| c.is_object());
        let field = |name: &str| c.and_then(|c| c.get(name));
        let text = |name: &str| field(name).and_then(|v| v.as_str()).unwrap_or_default().to_string();
        let map_keys = |name: &str| -> Vec<String> {
            field(name).and_then(|v| v.as_object()).map(|m| m.keys().cloned().collect()).unwrap_or_default()
        };
        ImageConfig {
            user: text("User"),
            env: strings(field("Env")).unwrap_or_default(),
            cmd: strings(field("Cmd")),
            entrypoint: strings(field("Entrypoint")),
            working_dir: text("WorkingDir"),
            labels: field("Labels")
                .and_then(|v| v.as_object())
                .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                .unwrap_or_default(),
            exposed_ports: map_keys("ExposedPorts"),
            on_build: strings(field("OnBuild")).unwrap_or_default(),
            architecture: doc.get("architecture").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
            os: doc.get("os").and_then(|v| v.as_str()).unwrap_or_default().to_string(),
        }
    }
}

/// The `rootfs.diff_ids` of a config blob.
pub fn diff_ids(doc: &serde_json::Value) -> Result<Vec<Digest>, String> {
    let ids = doc
        .get("rootfs")
        .and_then(|r| r.get("diff_ids"))
        .and_then(|d| d.as_array())
        .ok_or("the image config has no rootfs.diff_ids")?;
    ids.iter()
        .map(|v| {
            let text = v.as_str().unwrap_or_default();
            Digest::parse(text).ok_or_else(|| format!("the image config has an unsupported diff id {text:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_fields_are_read_from_docker_json() {
        let doc = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "config": {
                "User": "1001", "Env": ["PATH=/bin", "A=b=c"], "Cmd": ["/bin/sh"], "Entrypoint": null,
                "WorkingDir": "/opt", "Labels": {"io.openshift.s2i.scripts-url": "image:///s"},
                "ExposedPorts": {"8080/tcp": {}}, "OnBuild": ["RUN x"]
            },
            "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", "0".repeat(64))]}
        });
        let c = ImageConfig::from_json(&doc);
        assert_eq!(c.user, "1001");
        assert_eq!(c.env, ["PATH=/bin", "A=b=c"]);
        assert_eq!(c.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
        assert_eq!(c.entrypoint, None);
        assert_eq!(c.labels["io.openshift.s2i.scripts-url"], "image:///s");
        assert_eq!(c.exposed_ports, ["8080/tcp"]);
        assert_eq!(c.on_build, ["RUN x"]);
        assert_eq!(diff_ids(&doc).unwrap().len(), 1);
        assert!(diff_ids(&serde_json::json!({"rootfs": {"diff_ids": ["sha256:../../x"]}})).is_err());
    }

    #[test]
    fn layer_media_types() {
        assert_eq!(sniff_layer_media_type(&[0x1f, 0x8b, 8]).unwrap(), OCI_LAYER_GZIP);
        assert_eq!(sniff_layer_media_type(b"etc/").unwrap(), OCI_LAYER);
        assert!(sniff_layer_media_type(&[0x28, 0xb5, 0x2f, 0xfd]).unwrap_err().contains("zstd"));
        assert_eq!(layer_compression(DOCKER_LAYER_GZIP).unwrap(), Compression::Gzip);
        assert!(layer_compression(OCI_LAYER_ZSTD).is_err());
    }
}
