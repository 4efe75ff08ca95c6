//! `s2i create IMAGE DIR`: the skeleton of a new builder image. The templates (in `create/`) are
//! POSIX sh, so the scaffold works on minimal bases such as busybox; the Dockerfile takes its base
//! from the `BASE_IMAGE` build argument. Existing files are never overwritten.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;

/// (path relative to the destination, template, mode), in the order they are written.
const FILES: [(&str, &str, u32); 9] = [
    ("Dockerfile", include_str!("create/Dockerfile.tmpl"), 0o644),
    ("s2i/bin/assemble", include_str!("create/assemble.tmpl"), 0o755),
    ("s2i/bin/run", include_str!("create/run.tmpl"), 0o755),
    ("s2i/bin/save-artifacts", include_str!("create/save-artifacts.tmpl"), 0o755),
    ("s2i/bin/usage", include_str!("create/usage.tmpl"), 0o755),
    ("Makefile", include_str!("create/Makefile.tmpl"), 0o644),
    ("README.md", include_str!("create/README.md.tmpl"), 0o644),
    ("test/run", include_str!("create/test-run.tmpl"), 0o755),
    ("test/test-app/index.html", include_str!("create/index.html.tmpl"), 0o644),
];

/// What [`create`] did.
#[derive(Debug, Default)]
pub struct Scaffold {
    pub written: Vec<PathBuf>,
    /// Files that already existed and were left as they were.
    pub skipped: Vec<PathBuf>,
}

/// The scaffold's files with `image_name` filled in.
pub fn render(image_name: &str) -> Result<Vec<(&'static str, String, u32)>> {
    ImageRef::parse(image_name).map_err(|reason| BuildError::InvalidValue {
        what: "image name",
        value: image_name.to_string(),
        reason,
    })?;
    let quoted = crate::strategy::dockerfile::quote(image_name);
    Ok(FILES
        .iter()
        .map(|(path, template, mode)| {
            let text = template.replace("{{name_quoted}}", &quoted).replace("{{name}}", image_name);
            (*path, text, *mode)
        })
        .collect())
}

/// Write the scaffold for `image_name` into `dest`, creating directories as needed. A file that
/// already exists is skipped with a warning, never overwritten.
pub fn create(image_name: &str, dest: &Path) -> Result<Scaffold> {
    let files = render(image_name)?;
    let mut done = Scaffold::default();
    for (rel, text, mode) in files {
        let path = dest.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| BuildError::io(format!("creating {}", parent.display()), e))?;
        }
        let file = OpenOptions::new().write(true).create_new(true).mode(mode).open(&path);
        match file {
            Ok(mut f) => {
                f.write_all(text.as_bytes()).map_err(|e| BuildError::io(format!("writing {}", path.display()), e))?;
                info!("Created {}", path.display());
                done.written.push(path);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                warn!("File already exists: {rel}, skipping");
                done.skipped.push(path);
            }
            Err(e) => return Err(BuildError::io(format!("creating {}", path.display()), e)),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn writes_every_file_once_and_never_overwrites() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("README.md"), "mine").unwrap();
        let done = create("acme/builder", d.path()).unwrap();
        assert_eq!(done.written.len(), FILES.len() - 1);
        assert_eq!(done.skipped, vec![d.path().join("README.md")]);
        assert_eq!(std::fs::read_to_string(d.path().join("README.md")).unwrap(), "mine");
        let run = std::fs::metadata(d.path().join("test/run")).unwrap();
        assert_eq!(run.permissions().mode() & 0o777, 0o755);
        let dockerfile = std::fs::read_to_string(d.path().join("Dockerfile")).unwrap();
        assert!(dockerfile.contains("LABEL io.k8s.display-name=\"acme/builder\""), "{dockerfile}");
        assert!(dockerfile.contains("ARG BASE_IMAGE=") && dockerfile.contains("FROM ${BASE_IMAGE}"));
        let makefile = std::fs::read_to_string(d.path().join("Makefile")).unwrap();
        assert!(makefile.starts_with("IMAGE_NAME = acme/builder\n"));
        assert!(!std::fs::read_dir(d.path()).unwrap().any(|e| e.unwrap().file_name() == ".s2i"));

        let again = create("acme/builder", d.path()).unwrap();
        assert!(again.written.is_empty() && again.skipped.len() == FILES.len());
    }

    #[test]
    fn scripts_are_posix_sh_and_names_are_checked() {
        for (path, text, _) in render("x").unwrap() {
            if path.starts_with("s2i/bin/") || path == "test/run" {
                assert!(text.starts_with("#!/bin/sh\n"), "{path}");
                assert!(!text.contains("[[") && !text.contains("function "), "{path} uses bash syntax");
            }
            assert!(!text.contains("{{"), "{path} has an unfilled placeholder");
        }
        assert!(render("Bad Name\nRUN x").is_err());
    }
}
