//! A container's root file system: the image's unpacked layers as the lower dirs of an overlay
//! with a fresh upper dir (kernel overlay, else fuse-overlayfs), or, where neither mounts, a
//! plain copy of the image.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use rustix::mount::{
    fsconfig_create, fsconfig_set_string, fsmount, fsopen, move_mount, FsMountFlags, FsOpenFlags, MountAttrFlags,
    MoveMountFlags, UnmountFlags,
};
use tracing::debug;

use super::error::{IoContext, Result, RunError};

/// How a root file system is put together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsDriver {
    /// The kernel's overlay file system.
    Overlay,
    /// `fuse-overlayfs` (where the kernel refuses overlay, e.g. nested in some containers).
    FuseOverlayfs,
    /// The image's layers applied into one directory: slow and big, but works everywhere.
    Copy,
}

impl RootfsDriver {
    pub fn as_str(self) -> &'static str {
        match self {
            RootfsDriver::Overlay => "overlay",
            RootfsDriver::FuseOverlayfs => "fuse-overlayfs",
            RootfsDriver::Copy => "copy",
        }
    }

    /// `overlay`, `fuse-overlayfs` or `copy`.
    pub fn parse(name: &str) -> Option<RootfsDriver> {
        [RootfsDriver::Overlay, RootfsDriver::FuseOverlayfs, RootfsDriver::Copy]
            .into_iter()
            .find(|d| d.as_str() == name)
    }
}

impl std::fmt::Display for RootfsDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The directories of one overlay.
#[derive(Debug, Clone)]
pub struct OverlayDirs<'a> {
    /// Top layer first.
    pub lower: &'a [PathBuf],
    pub upper: &'a Path,
    pub work: &'a Path,
    pub target: &'a Path,
}

/// Mount a kernel overlay. The new mount API takes the lower dirs one at a time
/// (`lowerdir+`, Linux 6.8), so neither the option string's page-size limit nor `:` and `,`
/// in paths matter there; older kernels get the classic mount(2) option string.
///
/// `redirect_dir` and `metacopy` are off: the upper dir must hold whole copies of what changed,
/// since it becomes the image's new layer as it is.
pub fn mount_overlay(dirs: &OverlayDirs<'_>) -> Result<()> {
    match mount_overlay_new_api(dirs) {
        Ok(()) => Ok(()),
        Err(e) if matches!(e, rustix::io::Errno::NOSYS | rustix::io::Errno::INVAL) => {
            debug!("the new mount API refused the overlay ({e}); trying mount(2)");
            mount_overlay_classic(dirs)
        }
        Err(e) => Err(RunError::io(format!("mounting an overlay on {}", dirs.target.display()), e.into())),
    }
}

fn mount_overlay_new_api(dirs: &OverlayDirs<'_>) -> rustix::io::Result<()> {
    let fs = fsopen("overlay", FsOpenFlags::FSOPEN_CLOEXEC)?;
    fsconfig_set_string(&fs, "source", "s2i")?;
    // Each `lowerdir+` goes below those given before it: top first, as in `lowerdir=a:b`.
    for lower in dirs.lower {
        fsconfig_set_string(&fs, "lowerdir+", lower.as_path())?;
    }
    fsconfig_set_string(&fs, "upperdir", dirs.upper)?;
    fsconfig_set_string(&fs, "workdir", dirs.work)?;
    for (key, value) in [("redirect_dir", "off"), ("metacopy", "off"), ("index", "off")] {
        fsconfig_set_string(&fs, key, value)?;
    }
    fsconfig_create(&fs)?;
    let mnt = fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, MountAttrFlags::empty())?;
    move_mount(&mnt, "", rustix::fs::CWD, dirs.target, MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH)
}

fn mount_overlay_classic(dirs: &OverlayDirs<'_>) -> Result<()> {
    let data = overlay_options(dirs, ",redirect_dir=off,metacopy=off,index=off")?;
    let page = rustix::param::page_size();
    if data.len() >= page {
        return Err(RunError::io(
            format!("mounting an overlay on {}", dirs.target.display()),
            std::io::Error::other(format!(
                "the image has too many layers for mount(2)'s {page}-byte option string on this kernel (Linux 6.8 takes any number)"
            )),
        ));
    }
    let data = std::ffi::CString::new(data).map_err(|_| RunError::io("overlay options", std::io::Error::other("NUL in a path")))?;
    rustix::mount::mount("overlay", dirs.target, "overlay", rustix::mount::MountFlags::empty(), data.as_c_str())
        .context(|| format!("mounting an overlay on {}", dirs.target.display()))
}

/// `lowerdir=…,upperdir=…,workdir=…` plus `extra`, refusing paths that the option syntax
/// cannot carry.
fn overlay_options(dirs: &OverlayDirs<'_>, extra: &str) -> Result<String> {
    let all = dirs.lower.iter().map(PathBuf::as_path).chain([dirs.upper, dirs.work]);
    for p in all {
        if p.as_os_str().as_bytes().iter().any(|b| matches!(b, b',' | b':' | b'\n')) {
            return Err(RunError::io(
                format!("mounting an overlay with {}", p.display()),
                std::io::Error::other("the path holds ',' or ':', which overlay options cannot carry; use another --oci-store"),
            ));
        }
    }
    let lower: Vec<String> = dirs.lower.iter().map(|p| p.display().to_string()).collect();
    Ok(format!(
        "lowerdir={},upperdir={},workdir={}{extra}",
        lower.join(":"),
        dirs.upper.display(),
        dirs.work.display()
    ))
}

/// Mount with `fuse-overlayfs` (it daemonizes once the mount is up; unmounting ends it).
pub fn mount_fuse_overlayfs(bin: &Path, dirs: &OverlayDirs<'_>) -> Result<()> {
    let options = overlay_options(dirs, "")?;
    let out = std::process::Command::new(bin)
        .arg("-o")
        .arg(options)
        .arg(dirs.target)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .context(|| format!("running {} (install it with `apt-get install fuse-overlayfs`)", bin.display()))?;
    if !out.status.success() {
        return Err(RunError::io(
            format!("mounting {} with {}", dirs.target.display(), bin.display()),
            std::io::Error::other(String::from_utf8_lossy(&out.stderr).trim().to_string()),
        ));
    }
    Ok(())
}

/// Unmount `target` if something is mounted there (lazily when it is busy).
pub fn unmount(target: &Path) -> Result<()> {
    if !mount_points_under(target)?.iter().any(|m| m == target) {
        return Ok(());
    }
    match rustix::mount::unmount(target, UnmountFlags::empty()) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::BUSY) => {
            debug!("{} is busy; detaching it", target.display());
            rustix::mount::unmount(target, UnmountFlags::DETACH).context(|| format!("unmounting {}", target.display()))
        }
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(RunError::io(format!("unmounting {}", target.display()), e.into())),
    }
}

/// Every mount point at or below `dir` in this process's mount namespace, deepest first.
pub fn mount_points_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let info = std::fs::read("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".to_string())?;
    let mut found: Vec<PathBuf> = info
        .split(|b| *b == b'\n')
        .filter_map(|line| line.split(|b| *b == b' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|p| p.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// mountinfo writes space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() && field[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b)) {
            let n = (field[i + 1] - b'0') * 64 + (field[i + 2] - b'0') * 8 + (field[i + 3] - b'0');
            out.push(n);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&out))
}

/// Remove a directory tree that must not reach through a mount: refused while anything is still
/// mounted under it.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if let Some(m) = mount_points_under(dir)?.into_iter().next() {
        return Err(RunError::StillMounted { path: m });
    }
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RunError::io(format!("removing {}", dir.display()), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_and_options() {
        assert_eq!(unescape_mountinfo(br"/a\040b\134c"), PathBuf::from("/a b\\c"));
        assert_eq!(unescape_mountinfo(br"/plain\04"), PathBuf::from(r"/plain\04"));
        let lower = vec![PathBuf::from("/s/l2"), PathBuf::from("/s/l1")];
        let dirs = OverlayDirs { lower: &lower, upper: Path::new("/s/u"), work: Path::new("/s/w"), target: Path::new("/s/m") };
        assert_eq!(overlay_options(&dirs, ",x=y").unwrap(), "lowerdir=/s/l2:/s/l1,upperdir=/s/u,workdir=/s/w,x=y");
        let lower = vec![PathBuf::from("/s/a,b")];
        let dirs = OverlayDirs { lower: &lower, ..dirs };
        assert!(overlay_options(&dirs, "").is_err());
        assert_eq!(RootfsDriver::parse("fuse-overlayfs"), Some(RootfsDriver::FuseOverlayfs));
        assert_eq!(RootfsDriver::parse("zfs"), None);
    }
}
