//! `s2i copy-binary DEST`: the running binary, copied to DEST. The first step of a Tekton task
//! runs it from the minimal s2i image to fill a shared volume; the build step, in the builder
//! image, runs the copy (the static build needs nothing of that image).
//!
//! The copy appears whole or not at all: it is written beside DEST, synced, made 0755 and renamed
//! over DEST, so a step that starts on a half-written file cannot happen.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use s2i_core::BuildError;

use crate::cli::CopyBinaryArgs;
use crate::ui::ui;

pub fn run(args: CopyBinaryArgs) -> Result<(), BuildError> {
    let dest = copy_self(&args.dest)?;
    ui().line(&format!("Copied s2i v{} to {}", crate::VERSION, dest.display()));
    Ok(())
}

/// Copy the running executable to `dest` (`dest/s2i` when `dest` is a directory); the path written.
fn copy_self(dest: &Path) -> Result<PathBuf, BuildError> {
    // The executable itself, even if its path was replaced or is not visible from here.
    let exe = File::open("/proc/self/exe").map_err(|e| failed(dest, "cannot open this binary (/proc/self/exe)", e))?;
    copy_to(exe, dest)
}

fn copy_to(mut source: File, dest: &Path) -> Result<PathBuf, BuildError> {
    let dest = if dest.is_dir() { dest.join("s2i") } else { dest.to_path_buf() };
    let dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    match fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(failed(&dest, &format!("{} is not a directory", dir.display()), None)),
        Err(e) => return Err(failed(&dest, &format!("its directory {} does not exist", dir.display()), e)),
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(".s2i-copy-")
        .tempfile_in(&dir)
        .map_err(|e| failed(&dest, &format!("cannot write in {}", dir.display()), e))?;
    let written = (|| {
        io::copy(&mut source, tmp.as_file_mut())?;
        tmp.as_file().set_permissions(Permissions::from_mode(0o755))?;
        tmp.as_file().sync_all()
    })();
    written.map_err(|e| failed(&dest, "writing the copy failed", e))?;
    tmp.persist(&dest).map_err(|e| failed(&dest, "cannot put the copy in place", e.error))?;
    // The rename itself survives a crash only once the directory is synced.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(dest)
}

fn failed(dest: &Path, reason: &str, source: impl Into<Option<io::Error>>) -> BuildError {
    BuildError::CopyBinary { dest: dest.to_path_buf(), reason: reason.into(), source: source.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::MetadataExt;

    fn source(content: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(content).unwrap();
        io::Seek::rewind(&mut f).unwrap();
        f
    }

    #[test]
    fn a_directory_gets_s2i_inside_and_a_file_name_is_replaced_whole() {
        let dir = tempfile::tempdir().unwrap();
        let written = copy_to(source(b"binary v1"), dir.path()).unwrap();
        assert_eq!(written, dir.path().join("s2i"));
        assert_eq!(fs::read(&written).unwrap(), b"binary v1");
        assert_eq!(fs::metadata(&written).unwrap().mode() & 0o7777, 0o755);
        // Over an existing file (even read-only): replaced, never written into.
        fs::set_permissions(&written, Permissions::from_mode(0o444)).unwrap();
        let other = dir.path().join("tool");
        copy_to(source(b"binary v2"), &other).unwrap();
        copy_to(source(b"binary v3"), &written).unwrap();
        assert_eq!(fs::read(&written).unwrap(), b"binary v3");
        assert_eq!(fs::read(&other).unwrap(), b"binary v2");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 2, "no temp file left: {names:?}");
    }

    #[test]
    fn a_missing_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("missing/s2i");
        let e = copy_to(source(b"x"), &dest).unwrap_err();
        assert_eq!(e.to_string(), format!("cannot copy s2i to {}: its directory {} does not exist", dest.display(), dir.path().join("missing").display()));
        assert!(e.hint().is_some());
        let file = dir.path().join("file");
        fs::write(&file, "").unwrap();
        let e = copy_to(source(b"x"), &file.join("s2i")).unwrap_err();
        assert!(e.to_string().ends_with(&format!("{} is not a directory", file.display())), "{e}");
    }
}
