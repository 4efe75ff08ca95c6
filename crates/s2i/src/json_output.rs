//! `--output=json`: the one JSON document `s2i build` and `s2i rebuild` print on stdout when they
//! end, on failure too. [`BuildDocument`] is that document, field by field; docs/json-output.md
//! describes it for its readers, and the snapshots in this module's tests hold its shape.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use s2i_core::registry::Pushed;
use s2i_core::{BuildConfig, BuildError, BuildResult};
use s2i_engine::EngineVersion;
use serde::Serialize;

/// The document. Fields that do not apply are left out, except `tag` (null when untagged) and,
/// in `error`, `hint` (null when there is none).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BuildDocument {
    /// Whether everything asked for succeeded: the build, and the push, archive and load.
    pub success: bool,
    /// The built image. On failure, only when a built image was kept (a failed `--push`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// The output tag as given; null when the image is untagged.
    pub tag: Option<String>,
    pub builder_image: String,
    /// How the image was made: `standard`, `dockerfile` (`--build-method`), or `as-dockerfile`
    /// when only a Dockerfile was written. Success only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub strategy: Option<&'static str>,
    /// `--as-dockerfile`: the Dockerfile written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// The output image's labels. Success of a build only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Wall time of each phase, in the order they ran. Success of a build only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phases: Option<Vec<PhaseTime>>,
    /// Wall time of the whole command, in seconds (to the millisecond).
    pub seconds: f64,
    /// What `--push` pushed, in order: the tag, then the builder stage an incremental runtime
    /// build kept. On failure, what was pushed before the push that failed. Always a list.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub pushed: Vec<PushedImage>,
    /// `--output-archive`: the archive written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub archive: Option<ArchiveWritten>,
    /// `--load`: what the daemon loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loaded: Option<Loaded>,
    /// `--provenance`: the file the provenance statement was written to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    /// The engine that did the work; only `kind` when it failed before one answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineReport>,
    /// Failure only: what went wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

/// One phase and how long it took.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhaseTime {
    /// `builder image`, `source`, `scripts`, `runtime image`, `assemble`, `runtime`, `commit`,
    /// `onbuild`, `image build`, `push`.
    pub name: &'static str,
    pub seconds: f64,
}

/// An image `--push` pushed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PushedImage {
    /// The name pushed, with its tag (`registry:5000/team/app:v1`).
    pub name: String,
    /// The digest of the manifest the registry stored.
    pub digest: String,
}

/// The archive `--output-archive` wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveWritten {
    /// `docker-archive` or `oci-archive`.
    pub format: &'static str,
    pub path: String,
}

/// What `--load` handed to a daemon.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Loaded {
    /// Where the daemon was reached.
    pub endpoint: String,
    /// The names the daemon reports for what it loaded.
    pub images: Vec<String>,
}

/// The engine: `docker`, `podman` or `oci`, and, once it answered, its version and where it was
/// reached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EngineReport {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// The Docker API version in use; empty for the OCI engine.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A failure, as the terminal shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorReport {
    /// The error and its causes, credentials removed.
    pub message: String,
    pub hint: Option<String>,
    /// The process's exit code.
    pub exit_code: i32,
}

impl EngineReport {
    /// The engine that answered.
    pub fn answered(v: &EngineVersion) -> EngineReport {
        EngineReport {
            kind: v.kind.as_str(),
            version: Some(v.version.clone()),
            api_version: Some(v.api_version.clone()),
            endpoint: Some(v.endpoint.clone()),
        }
    }

    /// The engine the flags chose, before any answered.
    pub fn kind_only(kind: &'static str) -> EngineReport {
        EngineReport { kind, version: None, api_version: None, endpoint: None }
    }
}

impl BuildDocument {
    /// A build that succeeded.
    pub fn success(cfg: &BuildConfig, result: &BuildResult, took: Duration) -> BuildDocument {
        BuildDocument {
            success: true,
            image_id: Some(result.image_id.clone()),
            tag: result.tag.clone(),
            builder_image: result.builder_image.clone(),
            strategy: Some(cfg.build_method.as_str()),
            dockerfile: None,
            labels: Some(result.labels.clone()),
            phases: Some(result.timings.phases.iter().map(|(phase, d)| PhaseTime { name: phase.as_str(), seconds: round(*d) }).collect()),
            seconds: round(took),
            pushed: pushed(&result.pushed),
            archive: None,
            loaded: None,
            provenance: None,
            engine: None,
            error: None,
        }
    }

    /// `--as-dockerfile` wrote `path`.
    pub fn dockerfile(cfg: &BuildConfig, path: &Path, took: Duration) -> BuildDocument {
        BuildDocument {
            strategy: Some("as-dockerfile"),
            dockerfile: Some(path.display().to_string()),
            ..BuildDocument::empty(true, &cfg.builder_image, cfg.tag_name(), took)
        }
    }

    /// A failure: of the build of `builder` into `tag`, or of what came after it.
    pub fn failure(builder: &str, tag: Option<&str>, e: &BuildError, took: Duration) -> BuildDocument {
        let mut doc = BuildDocument {
            error: Some(ErrorReport {
                message: s2i_core::redact::text(&s2i_engine::error_chain(e)),
                hint: e.hint(),
                exit_code: e.exit_code().clamp(1, 255),
            }),
            ..BuildDocument::empty(false, builder, tag.map(str::to_string), took)
        };
        // A failed push leaves a built image behind, on purpose: say which.
        if let BuildError::Registry(failure) = e {
            if let Some((image_id, before)) = failure.kept_image() {
                doc.image_id = Some(image_id.to_string());
                doc.pushed = pushed(before);
            }
        }
        doc
    }

    fn empty(success: bool, builder: &str, tag: Option<String>, took: Duration) -> BuildDocument {
        BuildDocument {
            success,
            image_id: None,
            tag,
            builder_image: builder.to_string(),
            strategy: None,
            dockerfile: None,
            labels: None,
            phases: None,
            seconds: round(took),
            pushed: Vec::new(),
            archive: None,
            loaded: None,
            provenance: None,
            engine: None,
            error: None,
        }
    }
}

fn pushed(images: &[Pushed]) -> Vec<PushedImage> {
    images.iter().map(|p| PushedImage { name: p.name.clone(), digest: p.digest.clone() }).collect()
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use s2i_core::registry::RegistryFailure;
    use s2i_core::report::Phase;
    use s2i_core::Timings;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    /// The document as printed, indented for the snapshot: fields in their order.
    fn shown(doc: &BuildDocument) -> String {
        serde_json::to_string_pretty(doc).unwrap()
    }

    /// Every field a successful build can have.
    #[test]
    fn a_success_document_has_this_shape() {
        let cfg = BuildConfig { builder_image: "registry.example.com/builders/python:3.12".into(), ..Default::default() };
        let result = BuildResult {
            image_id: digest('1'),
            tag: Some("127.0.0.1:5000/team/app:v1".into()),
            builder_image: cfg.builder_image.clone(),
            labels: BTreeMap::from([("io.openshift.s2i.build.image".into(), cfg.builder_image.clone())]),
            timings: Timings { phases: vec![(Phase::BuilderImage, Duration::from_millis(120)), (Phase::Assemble, Duration::from_millis(1250))] },
            source_stats: Default::default(),
            size: Some(1 << 20),
            builder_stage: None,
            pushed: vec![Pushed { name: "127.0.0.1:5000/team/app:v1".into(), digest: digest('2') }],
            scripts_fetched: Vec::new(),
        };
        let mut doc = BuildDocument::success(&cfg, &result, Duration::from_millis(1900));
        doc.engine = Some(EngineReport {
            kind: "docker",
            version: Some("20.10.24".into()),
            api_version: Some("1.41".into()),
            endpoint: Some("unix:///var/run/docker.sock".into()),
        });
        doc.archive = Some(ArchiveWritten { format: "docker-archive", path: "out/app.tar".into() });
        doc.loaded = Some(Loaded { endpoint: "unix:///var/run/docker.sock".into(), images: vec!["127.0.0.1:5000/team/app:v1".into()] });
        insta::assert_snapshot!("json-success", shown(&doc));
    }

    /// A failed push: the error, the image kept and what was pushed before (a list, as on success).
    #[test]
    fn a_failure_document_has_this_shape() {
        let cause = RegistryFailure::Engine { image: "127.0.0.1:5000/team/app:v1-build".into(), source: Box::new(s2i_engine::EngineError::Failed { op: "pushing".into(), source: "denied".into() }) };
        let e = BuildError::Registry(RegistryFailure::PushFailed {
            image: "127.0.0.1:5000/team/app:v1".into(),
            image_id: digest('1'),
            pushed: vec![Pushed { name: "127.0.0.1:5000/team/app:v1".into(), digest: digest('2') }],
            cause: Box::new(cause),
        });
        let mut doc = BuildDocument::failure("python:3.12", Some("127.0.0.1:5000/team/app:v1"), &e, Duration::from_millis(2500));
        doc.engine = Some(EngineReport::kind_only("oci"));
        insta::assert_snapshot!("json-failure", shown(&doc));
    }

    #[test]
    fn an_untagged_build_says_null_and_a_dockerfile_says_where() {
        let cfg = BuildConfig { builder_image: "b".into(), ..Default::default() };
        let doc = serde_json::to_value(BuildDocument::dockerfile(&cfg, Path::new("out/Dockerfile"), Duration::ZERO)).unwrap();
        assert_eq!(doc["tag"], serde_json::Value::Null);
        assert_eq!(doc["dockerfile"], "out/Dockerfile");
        assert_eq!(doc["strategy"], "as-dockerfile");
        assert!(doc.get("labels").is_none() && doc.get("pushed").is_none() && doc.get("error").is_none());
    }
}
