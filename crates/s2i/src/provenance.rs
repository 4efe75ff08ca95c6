//! `--provenance FILE`: an in-toto Statement (v1) whose predicate is SLSA Provenance (v1),
//! describing one finished build. Made from the build's config and result only: names and
//! sources of secrets and environment variables, never their values.

use std::path::Path;
use std::time::SystemTime;

use s2i_core::labels;
use s2i_core::{BuildConfig, BuildError, BuildResult};
use serde_json::{json, Map, Value};

/// What the statement's predicate type and the build type are.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
pub const PREDICATE_TYPE: &str = "https://slsa.dev/provenance/v1";
/// The build type: a page of this project that says what the external parameters mean.
pub const BUILD_TYPE: &str = "https://github.com/s2i-rs/s2i/blob/main/docs/provenance.md#build-type-v1";
/// Who ran the build.
pub const BUILDER_ID: &str = "https://github.com/s2i-rs/s2i";

/// The times of one build.
pub struct Times {
    pub started: SystemTime,
    pub finished: SystemTime,
}

/// `sha256:hex` as an in-toto DigestSet.
fn digest_set(digest: &str) -> Option<Value> {
    let (alg, hex) = digest.split_once(':')?;
    Some(json!({ alg: hex }))
}

/// The statement for `result`, built from `cfg`. `engine` is `docker`, `podman` or `oci`;
/// `archive_digest` the manifest digest of the OCI archive `--output-archive` wrote, if any.
pub fn statement(cfg: &BuildConfig, result: &BuildResult, engine: &str, times: &Times, archive_digest: Option<&str>) -> Value {
    let label = |k: &str| result.labels.get(k).filter(|v| !v.is_empty()).cloned();
    // The digest of what was pushed, else of the manifest of the archive written, else the image
    // id (what the engine stored).
    let (subject_name, subject_digest) = match result.pushed.first() {
        Some(p) => (p.name.clone(), p.digest.clone()),
        None => (result.tag.clone().unwrap_or_else(|| "_".into()), archive_digest.map_or_else(|| result.image_id.clone(), str::to_string)),
    };
    let commit = label(labels::COMMIT_ID);
    let base_name = label(labels::OCI_BASE_NAME);
    let base_digest = label(labels::OCI_BASE_DIGEST);
    let builder_normalized = s2i_core::image_ref::normalize_for_label(&cfg.builder_image);
    let runtime_normalized = cfg.runtime.as_ref().map(|r| s2i_core::image_ref::normalize_for_label(&r.image));
    // The base's digest is the builder's in a standard build, the runtime image's in a runtime build.
    let builder_digest = base_digest.clone().filter(|_| base_name.as_deref() == Some(builder_normalized.as_str()));
    let runtime_digest = base_digest.filter(|_| base_name.is_some() && base_name == runtime_normalized);

    let mut source = Map::new();
    source.insert("location".into(), cfg.source.location.clone().into());
    if let Some(r) = cfg.source.git_ref.as_deref().or(cfg.source.reference_name.as_deref()) {
        source.insert("ref".into(), r.into());
    }
    if let Some(c) = &commit {
        source.insert("commit".into(), c.clone().into());
    }
    if let Some(d) = &cfg.source.context_dir {
        source.insert("contextDir".into(), d.clone().into());
    }
    let mut external = Map::new();
    external.insert("source".into(), Value::Object(source));
    external.insert("builderImage".into(), json!({ "reference": cfg.builder_image, "digest": builder_digest }));
    if let Some(rt) = &cfg.runtime {
        external.insert("runtimeImage".into(), json!({ "reference": rt.image, "digest": runtime_digest }));
    }
    if let Some(tag) = &result.tag {
        external.insert("tag".into(), tag.clone().into());
    }
    // Names only: values of -e may be anything, secrets' are never known here.
    external.insert("env".into(), cfg.env.iter().map(|v| Value::from(v.name.clone())).collect());
    external.insert("secrets".into(), cfg.secrets.iter().map(|s| Value::from(s.id.clone())).collect());
    let mut flags = Map::new();
    if let Some(u) = &cfg.scripts_url {
        flags.insert("scriptsUrl".into(), s2i_core::redact::url(u).into());
    }
    if let Some(d) = &cfg.destination {
        flags.insert("destination".into(), d.clone().into());
    }
    if let Some(u) = &cfg.assemble_user {
        flags.insert("assembleUser".into(), u.clone().into());
    }
    if cfg.incremental {
        flags.insert("incremental".into(), true.into());
    }
    if !cfg.labels.is_empty() {
        flags.insert("labels".into(), cfg.labels.iter().map(|(k, _)| Value::from(k.clone())).collect());
    }
    if !cfg.injections.is_empty() {
        flags.insert("inject".into(), cfg.injections.len().into());
    }
    flags.insert("buildMethod".into(), cfg.build_method.as_str().into());
    external.insert("flags".into(), Value::Object(flags));

    let mut resolved = Vec::new();
    resolved.push(image_dependency(&cfg.builder_image, builder_digest.as_deref()));
    if let Some(rt) = &cfg.runtime {
        resolved.push(image_dependency(&rt.image, runtime_digest.as_deref()));
    }
    if let (Some(c), true) = (&commit, !cfg.source.location.is_empty()) {
        resolved.push(json!({ "uri": source_uri(&cfg.source.location), "digest": { "gitCommit": c }, "name": "source" }));
    }
    // Each script fetched from the scripts URL with the digest of what was fetched (and run);
    // a URL nothing was fetched from (image://, file://, or every script found elsewhere) by name.
    if !result.scripts_fetched.is_empty() {
        for f in &result.scripts_fetched {
            let name = format!("scripts/{}", f.uri.rsplit('/').next().unwrap_or_default());
            resolved.push(json!({ "uri": f.uri, "digest": { "sha256": f.sha256 }, "name": name }));
        }
    } else if let Some(u) = &cfg.scripts_url {
        resolved.push(json!({ "uri": s2i_core::redact::url(u), "name": "scripts" }));
    }

    let mut subject = json!({ "name": subject_name });
    subject["digest"] = digest_set(&subject_digest).unwrap_or_else(|| json!({ "sha256": subject_digest }));
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [subject],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": external,
                "internalParameters": { "engine": engine },
                "resolvedDependencies": resolved,
            },
            "runDetails": {
                "builder": { "id": BUILDER_ID, "version": { "s2i": env!("CARGO_PKG_VERSION") } },
                "metadata": {
                    "startedOn": rfc3339(times.started),
                    "finishedOn": rfc3339(times.finished),
                },
            },
        },
    })
}

/// A git source as a URI: `git+https://…`, `git+ssh://host/path` for `user@host:path`, and
/// `git+file:///abs/path` for a local repository.
fn source_uri(location: &str) -> String {
    if location.contains("://") {
        return format!("git+{location}");
    }
    if let Some((host, path)) = location.split_once(':').filter(|(h, _)| h.contains('@') && !h.contains('/')) {
        return format!("git+ssh://{host}/{}", path.trim_start_matches('/'));
    }
    let path = std::path::absolute(location).unwrap_or_else(|_| location.into());
    format!("git+file://{}", path.display())
}

fn image_dependency(reference: &str, digest: Option<&str>) -> Value {
    let mut d = json!({ "uri": format!("docker://{}", s2i_core::image_ref::normalize_for_label(reference)), "name": reference });
    if let Some(set) = digest.and_then(digest_set) {
        d["digest"] = set;
    }
    d
}

fn rfc3339(t: SystemTime) -> String {
    let at: time::OffsetDateTime = t.into();
    at.replace_nanosecond(0).unwrap_or(at).format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}

/// Write the statement to `path` through a temporary file beside it, renamed into place.
pub fn write(path: &Path, statement: &Value) -> Result<(), BuildError> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let context = || format!("writing the provenance to {}", path.display());
    let mut tmp = tempfile::Builder::new().prefix(".s2i-provenance").tempfile_in(dir).map_err(|e| BuildError::io(context(), e))?;
    serde_json::to_writer_pretty(&mut tmp, statement).map_err(|e| BuildError::io(context(), e.into()))?;
    std::io::Write::write_all(&mut tmp, b"\n").map_err(|e| BuildError::io(context(), e))?;
    tmp.persist(path).map_err(|e| BuildError::io(context(), e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_sources_become_uris() {
        assert_eq!(source_uri("https://github.com/a/b.git"), "git+https://github.com/a/b.git");
        assert_eq!(source_uri("git@github.com:a/b.git"), "git+ssh://git@github.com/a/b.git");
        assert_eq!(source_uri("/srv/repo"), "git+file:///srv/repo");
        assert!(source_uri("repo").starts_with("git+file:///") && source_uri("repo").ends_with("/repo"));
    }
}
