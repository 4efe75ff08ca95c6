//! A lock shared by every test process on the machine, held while images are checked and made.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::PermissionsExt;

/// A daemon-wide lock (an `flock` on a fixed file in /tmp) held while images
/// are checked and made, so that test processes running at the same time do
/// not import or build the same image twice.
pub(crate) struct DaemonLock(#[allow(dead_code)] File);

pub(crate) fn daemon_lock() -> DaemonLock {
    let path = "/tmp/s2i-testkit-images.lock";
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .unwrap_or_else(|e| panic!("opening lock file {path}: {e}"));
    let _ = file.set_permissions(fs::Permissions::from_mode(0o666));
    loop {
        // Released when the file is closed (when DaemonLock is dropped).
        match rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive) {
            Ok(()) => return DaemonLock(file),
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => panic!("locking {path}: {e}"),
        }
    }
}
