//! `--network none`: a network namespace with only the loopback interface, up (as Docker gives),
//! kept alive by a bind mount on a file of the container's directory. runc alone would leave `lo`
//! down, and a build that talks to 127.0.0.1 (a test server, say) would fail.

use std::path::Path;

use super::error::{IoContext, Result, RunError};

/// Make the namespace and bind it at `path` (an empty file is created there).
pub fn create(path: &Path) -> Result<()> {
    std::fs::File::create(path).context(|| format!("creating {}", path.display()))?;
    let target = path.to_path_buf();
    // A thread of its own: unshare changes only the calling thread's namespace, and the thread
    // ends right after, so no other code ever runs in the new namespace by accident.
    let made = std::thread::spawn(move || -> std::io::Result<()> {
        // SAFETY: this thread runs nothing but the calls below and then exits; no other code
        // (and no other thread) relies on its network namespace.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
        loopback_up()?;
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
        Ok(())
    })
    .join()
    .map_err(|_| RunError::io("making the network namespace", std::io::Error::other("the thread panicked")))?;
    made.context(|| format!("making a network namespace at {}", path.display()))
}

/// Unmount and remove the namespace file; a missing one is fine.
pub fn remove(path: &Path) -> Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(RunError::io(format!("unmounting {}", path.display()), e.into())),
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunError::io(format!("removing {}", path.display()), e)),
    }
}

/// `ip link set lo up` in the calling thread's network namespace.
fn loopback_up() -> std::io::Result<()> {
    // SAFETY: plain socket and ioctl calls on a descriptor we own and close, with an ifreq that
    // lives on this stack frame for the duration of the calls.
    unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if fd < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (i, b) in b"lo\0".iter().enumerate() {
            req.ifr_name[i] = *b as libc::c_char;
        }
        let mut result = if libc::ioctl(fd, libc::SIOCGIFFLAGS, &mut req) < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(())
        };
        if result.is_ok() {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            if libc::ioctl(fd, libc::SIOCSIFFLAGS, &req) < 0 {
                result = Err(std::io::Error::last_os_error());
            }
        }
        libc::close(fd);
        result
    }
}
