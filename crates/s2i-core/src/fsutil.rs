//! Small files s2i reads on the host from places it does not control (the source's
//! `.s2i/environment` and `.s2iignore`, scripts in `.s2i/bin`, an `-E` file): only regular files,
//! and only up to a size. A FIFO or a link to `/dev/zero` would otherwise hang a build past Ctrl-C
//! or exhaust its memory.

use std::io::Read;
use std::path::Path;

use crate::error::{BuildError, Result};
use crate::limits::Limit;

/// Opens `path` (links followed) for reading if it is a regular file; `Ok(None)` when it is
/// something else, which is never opened: the type is read on an `O_PATH` handle (which opens
/// nothing, so a FIFO does not block and a device's driver is not called), then the same inode is
/// opened through `/proc/self/fd`, so nothing swapped in after a check is read.
pub fn open_regular(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH).open(path)?;
    if !handle.metadata()?.is_file() {
        return Ok(None);
    }
    std::fs::File::open(format!("/proc/self/fd/{}", handle.as_raw_fd())).map(Some)
}

/// The content of `path` (links followed), `None` when nothing is there. Anything but a regular
/// file, or a file bigger than `cap` bytes, is an error naming it (`limit` names the cap).
pub fn read_regular(path: &Path, limit: Limit, cap: u64, limits: &crate::limits::Limits) -> Result<Option<Vec<u8>>> {
    let file = match open_regular(path) {
        Ok(Some(f)) => f,
        Ok(None) => return Err(BuildError::NotARegularFile { path: path.to_path_buf() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(BuildError::io(format!("reading {}", path.display()), e)),
    };
    let len = file.metadata().map_err(|e| BuildError::io(format!("reading {}", path.display()), e))?.len();
    if len > cap {
        return Err(limits.exceeded(limit, path.display().to_string()));
    }
    let mut data = Vec::with_capacity(len as usize);
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

    /// What a source tree's walk opens: a FIFO (say, swapped in after the walk saw a file) is
    /// reported at once, not waited on for ever as a plain open would.
    #[test]
    fn open_regular_never_waits_on_a_fifo() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        std::fs::write(d.path().join("file"), "x").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let dir = d.path().to_path_buf();
        std::thread::spawn(move || {
            let _ = tx.send((open_regular(&dir.join("fifo")).map(|f| f.is_some()).ok(), open_regular(&dir.join("file")).map(|f| f.is_some()).ok()));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("opening a FIFO hung");
        assert_eq!(got, (Some(false), Some(true)));
    }
}
