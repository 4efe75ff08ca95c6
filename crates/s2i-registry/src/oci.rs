//! The image and distribution documents, once for every crate: content descriptors, image
//! manifests and indexes (OCI image spec 1.1, and the Docker v2 schema 2 media types that mean
//! the same), platforms, `docker save`'s `manifest.json`, and the parts of an image config that
//! s2i reads. The registry client (s2i-registry), the OCI image store (s2i-oci) and the in-place
//! engine (s2i-inplace) all use these.
//!
//! Why our own types rather than `oci-spec`'s image module (s2i-oci does use `oci-spec` for the
//! runtime spec): what s2i writes must be the same bytes every time, because a manifest's digest
//! is of its bytes and builds are reproducible; `oci-spec` keeps annotations in `HashMap`s, whose
//! order changes from run to run, where these keep `BTreeMap`s and a fixed field order. Its image
//! configuration drops what Docker adds (`OnBuild`, `Healthcheck`…), which must pass through a
//! rebuild untouched; and its media type is an enum that does not match Docker's list and layer
//! types as the `&str` constants below do. A descriptor's digest is a validated [`Digest`], so a
//! digest a registry or an archive sent can become a store path only once it has passed
//! [`Digest::parse`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;

/// The version an OCI layout's `oci-layout` file names.
pub const OCI_LAYOUT_VERSION: &str = "1.0.0";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
/// The annotation naming a manifest in an OCI layout's `index.json`.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker 25+ put the full image name in.
pub const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A pointer to content: its type, digest and size (and, in lists, its platform).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor { media_type: media_type.into(), digest, size, urls: Vec::new(), annotations: BTreeMap::new(), platform: None }
    }

    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.get(ANNOTATION_REF_NAME).map(String::as_str)
    }

    pub fn is_index(&self) -> bool {
        matches!(self.media_type.as_str(), OCI_INDEX | DOCKER_MANIFEST_LIST)
    }
}

/// An OS and CPU, as manifest lists name them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

impl Platform {
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform { os: os.into(), architecture: architecture.into(), variant: variant.map(str::to_string) }
    }

    /// Linux on this machine's CPU, named as Go (and so Docker) names it.
    pub fn host() -> Platform {
        let (arch, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", None),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", None),
            "loongarch64" => ("loong64", None),
            other => (other, None),
        };
        Platform::new("linux", arch, variant)
    }

    /// Whether an entry of a list is for this platform. A wanted variant must match, except that
    /// arm64 images name theirs (`v8`) or not.
    pub fn accepts(&self, other: &Platform) -> bool {
        if self.os != other.os || self.architecture != other.architecture {
            return false;
        }
        match (&self.variant, &other.variant) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// A Docker v2 schema 2 or OCI image manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A Docker manifest list or an OCI index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
}

impl ImageManifest {
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest { schema_version: 2, media_type: Some(OCI_MANIFEST.into()), config, layers, annotations: BTreeMap::new() }
    }
}

impl ImageIndex {
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex { schema_version: 2, media_type: Some(OCI_INDEX.into()), manifests }
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
