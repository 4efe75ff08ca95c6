//! `--inject src[:dest]`: files readable (and writable) during assemble and emptied afterwards.
//! They are copied into the created build container before it starts, so assemble never waits
//! for them; a script uploaded with them truncates every injected file once assemble is done.

use std::io;
use std::path::{Path, PathBuf};

use s2i_engine::Engine;

use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::mapping::{clean_path, Mapping};
use crate::source::tree::SourceTree;
use crate::tar_stream::{self, StreamOptions, TarPart, TarSink};

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

/// Resolve `--inject` mappings against the builder's working directory and list the injected files.
pub fn resolve(mappings: &[Mapping], workdir: &str) -> Result<Vec<Injection>> {
    let workdir = if workdir.is_empty() { "/" } else { workdir };
    let mut out = Vec::new();
    for m in mappings {
        let destination = match m.destination.as_str() {
            "." => workdir.to_string(),
            d if d.starts_with('/') => d.to_string(),
            d => clean_path(&format!("{workdir}/{d}")),
        };
        if destination == "/" {
            return Err(BuildError::InvalidValue { what: "--inject", value: m.source.clone(), reason: "the destination cannot be /".into() });
        }
        let source = PathBuf::from(&m.source);
        let meta = std::fs::metadata(&source).map_err(|e| BuildError::io(format!("reading the injection source {}", source.display()), e))?;
        // A FIFO or a device would hang the upload or never end.
        if !meta.is_file() && !meta.is_dir() {
            return Err(BuildError::NotARegularFile { path: source });
        }
        let files = list_files(&source, &destination)
            .map_err(|e| BuildError::io(format!("reading the injection source {}", source.display()), e))?;
        out.push(Injection { source, destination, files });
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

/// A regular host file streamed as one entry (read when the stream gets to it, not before).
struct HostFile {
    source: PathBuf,
    name: PathBuf,
}

impl TarPart for HostFile {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        let file = crate::fsutil::open_regular(&self.source)?
            .ok_or_else(|| io::Error::other(format!("{} is not a regular file", self.source.display())))?;
        let meta = file.metadata()?;
        sink.file(&self.name, 0o666, None, meta.len(), io::Read::take(file, meta.len()))
    }
}

/// Copy the injections and the truncation script into the created container `id`.
pub async fn upload(engine: &dyn Engine, id: &str, injections: &[Injection], owner: tar_stream::Owner) -> Result<()> {
    if injections.is_empty() {
        return Ok(());
    }
    for inj in injections {
        let (parent, name) = match inj.destination.rsplit_once('/') {
            Some(("", name)) => ("/", name),
            Some((parent, name)) => (parent, name),
            None => ("/", inj.destination.as_str()),
        };
        let parts: Vec<Box<dyn TarPart>> = if std::fs::metadata(&inj.source).map(|m| m.is_dir()).unwrap_or(false) {
            let tree = SourceTree {
                root: inj.source.clone(),
                ignore: IgnoreRules::default(),
                exclude: None,
                keep_symlinks: false,
                skip: Default::default(),
                world_writable: true,
            };
            vec![tar_stream::dir(name, 0o777), tree.part(name)]
        } else {
            vec![Box::new(HostFile { source: inj.source.clone(), name: name.into() })]
        };
        let options = StreamOptions { owner, ..Default::default() };
        crate::container::upload(engine, id, parent, parts, options).await.map_err(|e| match e {
            BuildError::Engine(e) if e.is_not_found() => BuildError::InvalidValue {
                what: "--inject",
                value: inj.source.display().to_string(),
                reason: format!("the destination directory of the injection must exist in the container ({})", inj.destination),
            },
            other => other,
        })?;
    }
    let (dir, name) = RM_SCRIPT.rsplit_once('/').expect("an absolute path");
    let script = tar_stream::file(name, rm_script(injections).into_bytes(), 0o666);
    crate::container::upload(engine, id, dir, vec![script], StreamOptions { owner, ..Default::default() }).await?;
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
        let inj = resolve(&crate::mapping::parse_specs(&spec, "--inject").unwrap(), "/opt/app").unwrap();
        assert_eq!(inj[0].destination, "/etc/creds");
        assert_eq!(inj[0].files, vec!["/etc/creds/sub/key", "/etc/creds/token"]);
        assert_eq!(inj[1].destination, "/opt/app/rel");
        assert_eq!(inj[2].destination, "/opt/app");
        let parse = |s: &str| crate::mapping::parse_specs(s, "--inject").unwrap();
        let file = resolve(&parse(&format!("{}:/tmp/t", secret.join("token").display())), "").unwrap();
        assert_eq!(file[0].files, vec!["/tmp/t"]);
        assert!(resolve(&parse("/nonexistent/secret:/x"), "/").is_err());
        assert!(resolve(&parse(&format!("{}:/", secret.display())), "/").is_err());
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = resolve(&parse(&format!("{}:/tmp/f", fifo.display())), "/").unwrap_err();
        assert!(matches!(err, BuildError::NotARegularFile { .. }), "{err}");
    }

    #[test]
    fn the_rm_script_quotes_every_path() {
        let inj = Injection { source: "/s".into(), destination: "/d".into(), files: vec!["/d/it's".into(), "/d/$x".into()] };
        assert_eq!(rm_script(&[inj]), "set -e\n: > '/d/it'\\''s'\n: > '/d/$x'\n: > /tmp/rm-injections\nset +e\n");
    }
}
