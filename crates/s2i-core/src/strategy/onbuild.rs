//! Builders with ONBUILD instructions: their own triggers do the work, so s2i builds
//! `FROM <builder>` with the engine's image builder, the source as the build context.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Instant;

use s2i_engine::{Engine, ImageBuildSpec};
use tracing::info;

use super::standard::Plan;
use crate::container_log::{ContainerLog, OutputFn};
use crate::error::{BuildError, Result};
use crate::scripts::{self, Script};
use crate::source::Content;
use crate::tar_stream::{self, Part};
use crate::{BuildResult, Timings};

/// Files that may start the application, in the order they are looked for.
const ENTRYPOINTS: [&str; 8] = ["exec", "exec.sh", "execute", "execute.sh", "run", "run.sh", "start", "start.sh"];

pub(crate) async fn build(mut plan: Plan<'_>, engine: &dyn Engine, output: OutputFn, mut timings: Timings) -> Result<BuildResult> {
    let cfg = plan.cfg;
    if cfg.runtime_image.is_some() {
        return Err(BuildError::Conflict(format!("--runtime-image cannot be used with {}, which has ONBUILD instructions", cfg.builder_image)));
    }
    if !matches!(plan.source.content, Content::Dir { .. }) {
        return Err(BuildError::NotSupported(format!("an archive source with the ONBUILD builder {}", cfg.builder_image)));
    }
    info!("Builder {} has ONBUILD instructions: building FROM it with the engine's image builder", cfg.builder_image);
    let t = Instant::now();
    // Scripts shipped as files go into the context's root; image:// ones stay where they are.
    let shipped: Vec<(String, Vec<u8>)> = [scripts::ASSEMBLE, scripts::RUN]
        .into_iter()
        .filter_map(|name| match plan.scripts.get(name) {
            Some(Script::External { data, .. }) => Some((name.to_string(), data.clone())),
            _ => None,
        })
        .collect();
    let entry = entrypoint(&plan.source.root, shipped.iter().any(|(n, _)| n == scripts::RUN))
        .ok_or_else(|| BuildError::InvalidValue {
            what: "source",
            value: cfg.source_location.clone(),
            reason: format!("no valid entrypoint specified: an ONBUILD build needs an executable {} in the source", ENTRYPOINTS.join(", ")),
        })?;
    let env_from_source = source_env(&plan);
    let dockerfile = dockerfile(&cfg.builder_image, &env_from_source, shipped.iter().any(|(n, _)| n == scripts::ASSEMBLE), &entry);

    // The generated Dockerfile and the shipped scripts replace files of the same name.
    plan.skip.insert("Dockerfile".into());
    for (name, _) in &shipped {
        plan.skip.insert(name.into());
    }
    let mut parts = vec![plan.source.part("", plan.ignore.clone(), cfg.exclude.clone(), cfg.keep_symlinks, plan.skip.clone())];
    parts.push(Part::File { path: "Dockerfile".into(), data: dockerfile.into_bytes(), mode: 0o644 });
    for (name, data) in shipped {
        parts.push(Part::File { path: name, data, mode: 0o755 });
    }
    let input = tar_stream::spawn(parts, None);
    let spec = ImageBuildSpec {
        dockerfile: "Dockerfile".into(),
        tag: plan.tag.as_ref().map(|t| t.normalized()),
        network_mode: cfg.network.clone(),
        extra_hosts: cfg.add_hosts.clone(),
    };
    let mut log = ContainerLog::new(output, cfg.quiet);
    let built = engine.build_image(Box::new(input.reader), &spec, &mut log).await;
    let tail = log.finish();
    let produced = input.done.await.map_err(|e| BuildError::SourceStream(std::io::Error::other(e)))?;
    let stats = produced.map_err(BuildError::SourceStream)?;
    let image_id = built.map_err(|e| BuildError::ScriptFailed {
        script: "the ONBUILD build".into(),
        image: cfg.builder_image.clone(),
        code: 1,
        stderr_tail: format!("{e}\n{tail}"),
    })?;
    timings.record("onbuild", t);
    Ok(BuildResult::new(cfg, image_id, Default::default(), timings, stats))
}

/// `.s2i/environment` only: `-e` and `-E` do not apply to ONBUILD builds, as in the reference.
fn source_env(plan: &Plan<'_>) -> Vec<(String, String)> {
    let file = plan.source.root.join(".s2i/environment");
    match std::fs::read_to_string(&file) {
        Ok(text) => crate::env::parse_s2i_environment(&text, &file).into_iter().map(|v| (v.name, v.value)).collect(),
        Err(_) => Vec::new(),
    }
}

/// The first executable regular file at the root named like an entrypoint (a shipped run script counts).
fn entrypoint(root: &Path, shipped_run: bool) -> Option<String> {
    ENTRYPOINTS.iter().find_map(|name| {
        if *name == scripts::RUN && shipped_run {
            return Some(name.to_string());
        }
        let meta = std::fs::metadata(root.join(name)).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then(|| name.to_string())
    })
}

/// A Dockerfile value in double quotes with `\`, `"` and `$` escaped and newlines spelled out.
fn quote(v: &str) -> String {
    let mut q = String::with_capacity(v.len() + 2);
    q.push('"');
    for c in v.chars() {
        match c {
            '\\' | '"' | '$' => {
                q.push('\\');
                q.push(c)
            }
            '\n' => q.push_str("\\n"),
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

fn dockerfile(builder: &str, env: &[(String, String)], run_assemble: bool, entry: &str) -> String {
    let mut d = format!("FROM {builder}\n");
    if !env.is_empty() {
        let lines: Vec<String> = env.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect();
        d.push_str(&format!("ENV {}\n", lines.join(" \\\n    ")));
    }
    if run_assemble {
        d.push_str("RUN sh assemble\n");
    }
    d.push_str(&format!("ENTRYPOINT [\"./{entry}\"]\n"));
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_escapes_values_so_none_adds_an_instruction() {
        let env = vec![("A".to_string(), "plain".to_string()), ("B".to_string(), "x\"\nRUN evil $HOME \\".to_string())];
        assert_eq!(
            dockerfile("builder:1", &env, true, "run"),
            "FROM builder:1\nENV A=\"plain\" \\\n    B=\"x\\\"\\nRUN evil \\$HOME \\\\\"\nRUN sh assemble\nENTRYPOINT [\"./run\"]\n"
        );
        assert_eq!(dockerfile("b", &[], false, "start.sh"), "FROM b\nENTRYPOINT [\"./start.sh\"]\n");
    }

    #[test]
    fn the_entrypoint_is_the_first_executable_candidate() {
        let d = tempfile::tempdir().unwrap();
        let write = |n: &str, mode: u32| {
            std::fs::write(d.path().join(n), "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(d.path().join(n), std::fs::Permissions::from_mode(mode)).unwrap();
        };
        write("start.sh", 0o755);
        write("run", 0o644);
        assert_eq!(entrypoint(d.path(), false).as_deref(), Some("start.sh"));
        assert_eq!(entrypoint(d.path(), true).as_deref(), Some("run"));
        write("exec", 0o700);
        assert_eq!(entrypoint(d.path(), false).as_deref(), Some("exec"));
        assert_eq!(entrypoint(tempfile::tempdir().unwrap().path(), false), None);
    }
}
