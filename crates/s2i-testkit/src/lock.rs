//! Locks shared by every test process on the machine: one held while images are checked and made,
//! and one per file the test kit makes once for all (the static s2i binary).

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// An exclusive `flock` on a file, released when dropped.
pub(crate) struct FileLock(#[allow(dead_code)] File);

/// A daemon-wide lock (an `flock` on a fixed file in /tmp) held while images
/// are checked and made, so that test processes running at the same time do
/// not import or build the same image twice.
pub(crate) fn daemon_lock() -> FileLock {
    file_lock(Path::new("/tmp/s2i-testkit-images.lock"))
}

/// An exclusive lock on `path` (created if missing), waited for.
pub(crate) fn file_lock(path: &Path) -> FileLock {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening lock file {}: {e}", path.display()));
    let _ = file.set_permissions(fs::Permissions::from_mode(0o666));
    loop {
        // Released when the file is closed (when the FileLock is dropped).
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return FileLock(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("locking {}: {e}", path.display()),
        }
    }
}
