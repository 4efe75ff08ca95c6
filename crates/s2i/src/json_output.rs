//! `--output=json`: the one JSON document `s2i build` prints on stdout when it ends, for tools.
//!
//! ```json
//! {"success":true,"image_id":"sha256:…","tag":"app:v1","builder_image":"python:3.12",
//!  "strategy":"standard","labels":{…},"phases":[{"name":"assemble","seconds":1.25}],"seconds":1.9,
//!  "engine":{"kind":"docker","version":"20.10.24","api_version":"1.41","endpoint":"unix:///var/run/docker.sock"}}
//! {"success":false,"builder_image":"python:3.12","tag":"app:v1",
//!  "error":{"message":"…","hint":"…","exit_code":11},"seconds":0.2}
//! ```
//!
//! With `--push`, `pushed` says what went where: `{"name":"reg:5000/app:v1","digest":"sha256:…"}`,
//! a list when there are several (the tag and an incremental runtime build's builder stage). A
//! failed push adds the kept image's `image_id` (and `pushed`, for what went before it failed).

use std::path::Path;
use std::time::Duration;

use s2i_core::registry::Pushed;
use s2i_core::{BuildConfig, BuildError, BuildResult};
use s2i_engine::EngineVersion;
use serde_json::{json, Value};

/// Which engine did the work: `{"kind":"podman","version":"4.3.1","api_version":"1.41","endpoint":"unix://…"}`.
pub fn engine(v: &EngineVersion) -> Value {
    json!({ "kind": v.kind.as_str(), "version": v.version, "api_version": v.api_version, "endpoint": v.endpoint })
}

pub fn success(cfg: &BuildConfig, result: &BuildResult, took: Duration) -> Value {
    let phases: Vec<Value> =
        result.timings.phases.iter().map(|(phase, d)| json!({ "name": phase.as_str(), "seconds": round(*d) })).collect();
    let mut doc = json!({
        "success": true,
        "image_id": result.image_id,
        "tag": result.tag,
        "builder_image": result.builder_image,
        "strategy": cfg.build_method.as_str(),
        "labels": result.labels,
        "phases": phases,
        "seconds": round(took),
    });
    if let Some(pushed) = pushed_value(&result.pushed) {
        doc["pushed"] = pushed;
    }
    doc
}

/// One object for one image pushed, a list for several; `None` for none.
fn pushed_value(pushed: &[Pushed]) -> Option<Value> {
    let one = |p: &Pushed| json!({ "name": p.name, "digest": p.digest });
    match pushed {
        [] => None,
        [p] => Some(one(p)),
        several => Some(Value::Array(several.iter().map(one).collect())),
    }
}

pub fn dockerfile(cfg: &BuildConfig, path: &Path, took: Duration) -> Value {
    json!({
        "success": true,
        "dockerfile": path.display().to_string(),
        "tag": cfg.tag_name(),
        "builder_image": cfg.builder_image,
        "strategy": "as-dockerfile",
        "seconds": round(took),
    })
}

pub fn failure(builder: &str, tag: Option<&str>, e: &BuildError, took: Duration) -> Value {
    let mut doc = json!({
        "success": false,
        "builder_image": builder,
        "tag": tag,
        "error": {
            "message": s2i_core::redact::text(&s2i_engine::error_chain(e)),
            "hint": e.hint(),
            "exit_code": e.exit_code().clamp(1, 255),
        },
        "seconds": round(took),
    });
    // A failed push leaves a built image behind, on purpose: say which.
    if let BuildError::Registry(failure) = e {
        if let Some((image_id, pushed)) = failure.kept_image() {
            doc["image_id"] = json!(image_id);
            if let Some(pushed) = pushed_value(pushed) {
                doc["pushed"] = pushed;
            }
        }
    }
    doc
}

fn round(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pushed_is_an_object_for_one_image_and_a_list_for_several() {
        let p = |name: &str| Pushed { name: name.into(), digest: format!("sha256:{}", "a".repeat(64)) };
        assert_eq!(pushed_value(&[]), None);
        assert_eq!(pushed_value(&[p("r:5000/app:v1")]).unwrap()["name"], "r:5000/app:v1");
        let two = pushed_value(&[p("r:5000/app:v1"), p("r:5000/app:v1-build")]).unwrap();
        assert_eq!(two.as_array().map(Vec::len), Some(2));
        assert_eq!(two[1]["name"], "r:5000/app:v1-build");
    }
}
