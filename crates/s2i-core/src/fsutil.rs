//! Small files s2i reads on the host from places it does not control (the source's
//! `.s2i/environment` and `.s2iignore`, scripts in `.s2i/bin`, an `-E` file): only regular files,
//! and only up to a size. A FIFO or a link to `/dev/zero` would otherwise hang a build past Ctrl-C
//! or exhaust its memory.

use std::io::Read;
use std::path::Path;

use crate::error::{BuildError, Result};
use crate::limits::Limit;

/// The content of `path` (links followed), `None` when nothing is there. Anything but a regular
/// file, or a file bigger than `cap` bytes, is an error naming it (`limit` names the cap).
pub fn read_regular(path: &Path, limit: Limit, cap: u64, limits: &crate::limits::Limits) -> Result<Option<Vec<u8>>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io(format!("reading {}", path.display()), e)),
    };
    if !meta.is_file() {
        return Err(BuildError::NotARegularFile { path: path.to_path_buf() });
    }
    if meta.len() > cap {
        return Err(limits.exceeded(limit, path.display().to_string()));
    }
    let file = std::fs::File::open(path).map_err(|e| BuildError::io(format!("reading {}", path.display()), e))?;
    let mut data = Vec::with_capacity(meta.len() as usize);
    // The file may grow after the check: never read past the cap.
    file.take(cap + 1).read_to_end(&mut data).map_err(|e| BuildError::io(format!("reading {}", path.display()), e))?;
    if data.len() as u64 > cap {
        return Err(limits.exceeded(limit, path.display().to_string()));
    }
    Ok(Some(data))
}

/// [`read_regular`] as text (invalid UTF-8 replaced), with the small-file limit.
pub fn read_text(path: &Path, limits: &crate::limits::Limits) -> Result<Option<String>> {
    Ok(read_regular(path, Limit::FileSize, limits.file_size, limits)?.map(|d| String::from_utf8_lossy(&d).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::limits::Limits;

    #[test]
    fn only_small_regular_files_are_read() {
        let d = tempfile::tempdir().unwrap();
        let limits = Limits { file_size: 8, ..Limits::default() };
        let f = d.path().join("env");
        std::fs::write(&f, "A=1\n").unwrap();
        assert_eq!(read_text(&f, &limits).unwrap().as_deref(), Some("A=1\n"));
        assert_eq!(read_text(&d.path().join("missing"), &limits).unwrap(), None);
        std::fs::write(&f, "A=123456789\n").unwrap();
        let err = read_text(&f, &limits).unwrap_err().to_string();
        assert!(err.contains("S2I_LIMIT_FILE_SIZE"), "{err}");
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = read_text(&fifo, &limits).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
        std::os::unix::fs::symlink("/dev/zero", d.path().join("zero")).unwrap();
        assert!(read_text(&d.path().join("zero"), &limits).is_err());
        assert!(read_text(d.path(), &limits).is_err(), "a directory is no file");
    }
}
