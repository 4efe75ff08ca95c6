//! `--inject src[:dest]`: files readable (and writable) during assemble and emptied afterwards.
//! They are copied into the created build container before it starts, so assemble never waits
//! for them; a script uploaded with them truncates every injected file once assemble is done.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use s2i_engine::Engine;

use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::mapping::{self, clean_path};
use crate::source::SourceTree;
use crate::tar_stream::{self, Part};

/// Where the truncation script lives in the container (as in the reference).
pub const RM_SCRIPT: &str = "/tmp/rm-injections";

/// One injection, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub source: PathBuf,
    /// Absolute path in the container that receives the source (its contents, for a directory).
    pub destination: String,
    /// Every injected file, as an absolute container path.
    pub files: Vec<String>,
}

/// Resolve `--inject` values against the builder's working directory and list the injected files.
pub fn resolve(specs: &[String], workdir: &str) -> Result<Vec<Injection>> {
    let workdir = if workdir.is_empty() { "/" } else { workdir };
    let mut out = Vec::new();
    for spec in specs {
        for m in mapping::parse_specs(spec, "--inject")? {
            let destination = match m.destination.as_str() {
                "." => workdir.to_string(),
                d if d.starts_with('/') => d.to_string(),
                d => clean_path(&format!("{workdir}/{d}")),
            };
            if destination == "/" {
                return Err(BuildError::InvalidValue { what: "--inject", value: spec.clone(), reason: "the destination cannot be /".into() });
            }
            let source = PathBuf::from(&m.source);
            let files = list_files(&source, &destination)
                .map_err(|e| BuildError::io(format!("reading the injection source {}", source.display()), e))?;
            out.push(Injection { source, destination, files });
        }
    }
    Ok(out)
}

/// Files below `source` (symlinks followed, directories not listed) as paths under `destination`.
fn list_files(source: &Path, destination: &str) -> std::io::Result<Vec<String>> {
    let meta = std::fs::metadata(source)?;
    if !meta.is_dir() {
        return Ok(vec![destination.to_string()]);
    }
    let mut files = Vec::new();
    let mut stack = vec![(source.to_path_buf(), destination.to_string())];
    while let Some((dir, dest)) = stack.pop() {
        let mut entries = std::fs::read_dir(&dir)?.collect::<std::io::Result<Vec<_>>>()?;
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let path = e.path();
            let target = format!("{dest}/{}", e.file_name().to_string_lossy());
            if std::fs::metadata(&path)?.is_dir() {
                stack.push((path, target));
            } else {
                files.push(target);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The script sourced after assemble: empties every injected file, then itself.
pub fn rm_script(injections: &[Injection]) -> String {
    let mut script = String::from("set -e\n");
    for file in injections.iter().flat_map(|i| &i.files) {
        script.push_str(&format!(": > {}\n", shell_quote(file)));
    }
    script.push_str(&format!(": > {RM_SCRIPT}\nset +e\n"));
    script
}

/// Single-quote a string for sh.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Copy the injections and the truncation script into the created container `id`.
pub async fn upload(engine: &dyn Engine, id: &str, injections: &[Injection]) -> Result<()> {
    for inj in injections {
        let (parent, name) = match inj.destination.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((parent, name)) => (parent, name),
            None => ("/", inj.destination.as_str()),
        };
        let parts = if std::fs::metadata(&inj.source).map(|m| m.is_dir()).unwrap_or(false) {
            let tree = SourceTree {
                root: inj.source.clone(),
                ignore: IgnoreRules::default(),
                exclude: None,
                keep_symlinks: false,
                skip: Default::default(),
                world_writable: true,
            };
            vec![Part::Dir { path: name.to_string(), mode: 0o777 }, Part::Tree { prefix: name.to_string(), tree: Arc::new(tree) }]
        } else {
            let data = std::fs::read(&inj.source)
                .map_err(|e| BuildError::io(format!("reading the injection source {}", inj.source.display()), e))?;
            vec![Part::File { path: name.to_string(), data, mode: 0o666 }]
        };
        upload_parts(engine, id, parent, parts).await.map_err(|e| match e {
            BuildError::Engine(e) if e.is_not_found() => BuildError::InvalidValue {
                what: "--inject",
                value: inj.source.display().to_string(),
                reason: format!("the destination directory of the injection must exist in the container ({})", inj.destination),
            },
            other => other,
        })?;
    }
    let (dir, name) = RM_SCRIPT.rsplit_once('/').expect("an absolute path");
    let script = Part::File { path: name.to_string(), data: rm_script(injections).into_bytes(), mode: 0o666 };
    upload_parts(engine, id, dir, vec![script]).await
}

/// Stream `parts` as one tar into `path` of the container.
pub(crate) async fn upload_parts(engine: &dyn Engine, id: &str, path: &str, parts: Vec<Part>) -> Result<()> {
    let input = tar_stream::spawn(parts, None);
    let uploaded = engine.upload_archive(id, path, Box::new(input.reader)).await;
    let produced = input.done.await.map_err(|e| BuildError::SourceStream(std::io::Error::other(e)))?;
    uploaded?;
    produced.map_err(BuildError::SourceStream)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn destinations_resolve_against_the_workdir_and_files_are_listed() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("secrets");
        std::fs::create_dir_all(secret.join("sub")).unwrap();
        std::fs::write(secret.join("token"), "t").unwrap();
        std::fs::write(secret.join("sub/key"), "k").unwrap();
        let spec = format!("{0}:/etc/creds;{0}:rel;{0}", secret.display());
        let inj = resolve(&[spec], "/opt/app").unwrap();
        assert_eq!(inj[0].destination, "/etc/creds");
        assert_eq!(inj[0].files, vec!["/etc/creds/sub/key", "/etc/creds/token"]);
        assert_eq!(inj[1].destination, "/opt/app/rel");
        assert_eq!(inj[2].destination, "/opt/app");
        let file = resolve(&[format!("{}:/tmp/t", secret.join("token").display())], "").unwrap();
        assert_eq!(file[0].files, vec!["/tmp/t"]);
        assert!(resolve(&["/nonexistent/secret:/x".into()], "/").is_err());
        assert!(resolve(&[format!("{}:/", secret.display())], "/").is_err());
    }

    #[test]
    fn the_rm_script_quotes_every_path() {
        let inj = Injection { source: "/s".into(), destination: "/d".into(), files: vec!["/d/it's".into(), "/d/$x".into()] };
        assert_eq!(rm_script(&[inj]), "set -e\n: > '/d/it'\\''s'\n: > '/d/$x'\n: > /tmp/rm-injections\nset +e\n");
    }
}
