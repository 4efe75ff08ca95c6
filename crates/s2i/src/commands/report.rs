//! `--output=json`: the one JSON document `s2i build` prints on stdout when it ends, for tools.
//!
//! ```json
//! {"success":true,"image_id":"sha256:…","tag":"app:v1","builder_image":"python:3.12",
//!  "strategy":"standard","labels":{…},"phases":[{"name":"assemble","seconds":1.25}],"seconds":1.9,
//!  "engine":{"kind":"docker","version":"20.10.24","api_version":"1.41","endpoint":"unix:///var/run/docker.sock"}}
//! {"success":false,"builder_image":"python:3.12","tag":"app:v1",
//!  "error":{"message":"…","hint":"…","exit_code":11},"seconds":0.2}
//! ```

use std::path::Path;
use std::time::Duration;

use s2i_core::{BuildConfig, BuildError, BuildResult};
use s2i_engine::EngineVersion;
use serde_json::{json, Value};

/// Which engine did the work: `{"kind":"podman","version":"4.3.1","api_version":"1.41","endpoint":"unix://…"}`.
pub fn engine(v: &EngineVersion) -> Value {
    json!({ "kind": v.kind.as_str(), "version": v.version, "api_version": v.api_version, "endpoint": v.endpoint })
}

pub fn success(cfg: &BuildConfig, result: &BuildResult, took: Duration) -> Value {
    let phases: Vec<Value> =
        result.timings.phases.iter().map(|(name, d)| json!({ "name": name, "seconds": round(*d) })).collect();
    json!({
        "success": true,
        "image_id": result.image_id,
        "tag": result.tag,
        "builder_image": result.builder_image,
        "strategy": cfg.build_method.as_str(),
        "labels": result.labels,
        "phases": phases,
        "seconds": round(took),
    })
}

pub fn dockerfile(cfg: &BuildConfig, path: &Path, took: Duration) -> Value {
    json!({
        "success": true,
        "dockerfile": path.display().to_string(),
        "tag": cfg.tag,
        "builder_image": cfg.builder_image,
        "strategy": "as-dockerfile",
        "seconds": round(took),
    })
}

pub fn failure(builder: &str, tag: Option<&str>, e: &BuildError, took: Duration) -> Value {
    json!({
        "success": false,
        "builder_image": builder,
        "tag": tag,
        "error": { "message": e.to_string(), "hint": e.hint(), "exit_code": e.exit_code().clamp(1, 255) },
        "seconds": round(took),
    })
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}
