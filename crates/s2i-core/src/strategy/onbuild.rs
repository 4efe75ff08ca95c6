//! Builders with ONBUILD instructions: their own triggers do the work, so s2i builds
//! `FROM <builder>` with the engine's image builder, the source as the build context.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use s2i_engine::{Engine, EngineError, ImageBuildSpec};
use tracing::info;

use crate::error::{BuildError, Result};
use crate::plan::Plan;
use crate::report::{ContainerLog, Phase};
use crate::result::{BuildResult, Phases};
use crate::scripts::{self, Script};
use crate::source::Content;
use crate::tar_stream::{self, StreamOptions, TarPart};

/// Files that may start the application, in the order they are looked for.
const ENTRYPOINTS: [&str; 8] = ["exec", "exec.sh", "execute", "execute.sh", "run", "run.sh", "start", "start.sh"];

pub async fn build(plan: &Plan<'_>, engine: &dyn Engine, mut phases: Phases) -> Result<BuildResult> {
    let cfg = plan.cfg;
    if cfg.runtime.is_some() {
        return Err(BuildError::conflict("--runtime-image", format!("{}, which has ONBUILD instructions", cfg.builder_image)));
    }
    if !matches!(plan.source.content, Content::Dir { .. }) {
        return Err(BuildError::OnbuildArchive { builder: cfg.builder_image.clone() });
    }
    info!("Builder {} has ONBUILD instructions: building FROM it with the engine's image builder", cfg.builder_image);
    let running = phases.start(Phase::Onbuild);
    // Scripts shipped as files go into the context's root; image:// ones stay where they are.
    let shipped: Vec<(String, Vec<u8>)> = [scripts::ASSEMBLE, scripts::RUN]
        .into_iter()
        .filter_map(|name| match plan.scripts.get(name) {
            Some(Script::External { data, .. }) => Some((name.to_string(), data.clone())),
            _ => None,
        })
        .collect();
    let entry = entrypoint(&plan.source.root, shipped.iter().any(|(n, _)| n == scripts::RUN)).ok_or_else(|| BuildError::InvalidValue {
        what: "source",
        value: cfg.source.location.clone(),
        reason: format!("no valid entrypoint specified: an ONBUILD build needs an executable {} in the source", ENTRYPOINTS.join(", ")),
    })?;
    let env_from_source = source_env(plan)?;
    // Only the OCI standard keys: the reference labels an ONBUILD result with nothing of its own.
    let labels: std::collections::BTreeMap<String, String> = plan.oci_labels(&plan.builder).into_iter().collect();
    let dockerfile = dockerfile(&cfg.builder_image, &env_from_source, &labels, shipped.iter().any(|(n, _)| n == scripts::ASSEMBLE), &entry)?;

    // The generated Dockerfile and the shipped scripts replace files of the same name.
    let mut replaced: Vec<PathBuf> = vec!["Dockerfile".into()];
    replaced.extend(shipped.iter().map(|(name, _)| PathBuf::from(name)));
    let mut parts: Vec<Box<dyn TarPart>> = vec![plan.source_part("", &replaced)];
    parts.push(tar_stream::file("Dockerfile", dockerfile.into_bytes(), 0o644));
    for (name, data) in shipped {
        parts.push(tar_stream::file(name, data, 0o755));
    }
    let input = tar_stream::spawn(parts, StreamOptions::default());
    let spec = ImageBuildSpec {
        dockerfile: "Dockerfile".into(),
        tag: cfg.tag.as_ref().map(|t| t.normalized()),
        network_mode: cfg.container.network.clone(),
        extra_hosts: cfg.container.add_hosts.clone(),
    };
    let mut log = ContainerLog::new(plan.reporter.clone(), cfg.quiet);
    let built = engine.build_image(Box::new(input.reader), &spec, &mut log).await;
    log.into_stderr_tail();
    // An engine without an image builder refuses without reading the context: its own words say
    // why (the stream's broken pipe is only a consequence), and no step failed.
    if let Err(e @ EngineError::NotSupported { .. }) = built {
        return Err(BuildError::Engine(e));
    }
    let stats = input.done.written().await.map_err(BuildError::SourceStream)?;
    let image_id = built.map_err(|e| BuildError::OnbuildFailed { builder: cfg.builder_image.clone(), message: e.to_string() })?;
    phases.end(running);
    Ok(super::result_of_build(plan, image_id, Default::default(), phases, stats))
}

/// `.s2i/environment` only: `-e` and `-E` do not apply to ONBUILD builds, as in the reference.
fn source_env(plan: &Plan<'_>) -> Result<Vec<(String, String)>> {
    let file = plan.source.root.join(".s2i/environment");
    Ok(match crate::fsutil::read_text(&file, &plan.cfg.limits)? {
        Some(text) => crate::env::parse_s2i_environment(&text, &file).into_iter().map(|v| (v.name, v.value)).collect(),
        None => Vec::new(),
    })
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

fn dockerfile(builder: &str, env: &[(String, String)], labels: &std::collections::BTreeMap<String, String>, run_assemble: bool, entry: &str) -> Result<String> {
    use super::dockerfile::{env_name, quote};
    let mut d = format!("FROM {builder}\n");
    if !labels.is_empty() {
        let lines: Vec<String> = labels.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect();
        d.push_str(&format!("LABEL {}\n", lines.join(" \\\n    ")));
    }
    if !env.is_empty() {
        let lines = env.iter().map(|(k, v)| Ok(format!("{}={}", env_name(k)?, quote(v)))).collect::<Result<Vec<String>>>()?;
        d.push_str(&format!("ENV {}\n", lines.join(" \\\n    ")));
    }
    if run_assemble {
        d.push_str("RUN sh assemble\n");
    }
    d.push_str(&format!("ENTRYPOINT [\"./{entry}\"]\n"));
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dockerfile_escapes_values_so_none_adds_an_instruction() {
        let env = vec![("A".to_string(), "plain".to_string()), ("B".to_string(), "x\"\nRUN evil $HOME \\".to_string())];
        assert_eq!(
            dockerfile("builder:1", &env, &Default::default(), true, "run").unwrap(),
            "FROM builder:1\nENV A=\"plain\" \\\n    B=\"x\\\"\\nRUN evil \\$HOME \\\\\"\nRUN sh assemble\nENTRYPOINT [\"./run\"]\n"
        );
        assert_eq!(dockerfile("b", &[], &Default::default(), false, "start.sh").unwrap(), "FROM b\nENTRYPOINT [\"./start.sh\"]\n");
        let bad = vec![("A B".to_string(), "1".to_string())];
        assert!(dockerfile("b", &bad, &Default::default(), false, "run").is_err(), "a name with a space would add an instruction");
        let cr = vec![("A".to_string(), "x\rRUN evil".to_string())];
        assert!(dockerfile("b", &cr, &Default::default(), false, "run").unwrap().contains("A=\"x\\rRUN evil\""), "\\r is escaped");
    }

    #[test]
    fn labels_are_quoted_so_none_adds_an_instruction() {
        let labels = [("org.opencontainers.image.ref.name".to_string(), "app:v1\nRUN evil".to_string())].into_iter().collect();
        let d = dockerfile("b", &[], &labels, false, "run").unwrap();
        assert!(d.starts_with("FROM b\nLABEL \"org.opencontainers.image.ref.name\"=\"app:v1\\nRUN evil\"\n"), "{d}");
        assert_eq!(d.lines().filter(|l| l.starts_with("RUN")).count(), 0, "{d}");
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
