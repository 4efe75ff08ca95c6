//! Paths inside a root file system, resolved by the kernel as if that directory were `/`
//! (openat2 with `RESOLVE_IN_ROOT`): an absolute symlink such as `var/run -> /run`, or a `..`,
//! planted by an image layer or a build script, never reaches a host path. The one place that
//! makes that call, for the image side (layers unpacked into a directory) and the run side (files
//! copied into and out of a container, users read from its /etc/passwd) alike.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use crate::run::error::{IoContext, Result, RunError};

/// An open directory used as the root of every path resolved through it.
pub(crate) struct RootDir {
    fd: OwnedFd,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Open `rel` below the directory `root` (absolute or relative, both meaning "inside the root"),
/// every symlink and `..` on the way resolved inside it; `ENOSYS` on kernels without openat2
/// (before 5.6), which callers turn into a refusal, never a weaker check.
pub(crate) fn open_in_root(root: impl AsFd, rel: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
    let rel = relative(rel);
    // EAGAIN: a rename raced with a `..` lookup; the kernel asks us to try again.
    let mut tries = 0;
    loop {
        match openat2(root.as_fd(), rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
            Err(Errno::AGAIN) if tries < 16 => tries += 1,
            other => return other,
        }
    }
}

impl RootDir {
    /// Open `path` as a root. Fails with [`RunError::NoOpenat2`] on kernels without openat2.
    pub(crate) fn open(path: &Path) -> Result<RootDir> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .context(|| format!("opening {}", path.display()))?;
        let root = RootDir { fd };
        match root.open_raw(Path::new("."), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
            Ok(_) => Ok(root),
            Err(Errno::NOSYS) => Err(RunError::NoOpenat2),
            Err(e) => Err(RunError::io(format!("opening {}", path.display()), e.into())),
        }
    }

    fn open_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        open_in_root(&self.fd, rel, flags, mode)
    }

    /// Open `rel` (absolute or relative, both meaning "inside the root").
    pub(crate) fn open_in(&self, rel: &Path, flags: OFlags, mode: Mode) -> std::io::Result<OwnedFd> {
        self.open_raw(rel, flags, mode).map_err(Into::into)
    }

    /// The parent directory of `rel` (resolved in the root) and `rel`'s last component, for the
    /// `*at` calls that must not follow that component. `None` for the root itself.
    pub(crate) fn parent_of<'a>(&self, rel: &'a Path) -> Result<Option<(OwnedFd, &'a OsStr)>> {
        let Some(name) = normal_components(rel).last() else { return Ok(None) };
        let parent = rel.parent().unwrap_or(Path::new("/"));
        let fd = self
            .open_raw(parent, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
            .context(|| format!("opening {}", self.describe(parent)))?;
        Ok(Some((fd, name)))
    }

    /// A regular file's content, at most `limit` bytes; `None` when it does not exist.
    pub(crate) fn read_file(&self, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let fd = match self.open_raw(rel, OFlags::RDONLY, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
            Err(e) => return Err(RunError::io(format!("opening {}", self.describe(rel)), e.into())),
        };
        let stat = rustix::fs::fstat(&fd).context(|| self.describe(rel))?;
        if rustix::fs::FileType::from_raw_mode(stat.st_mode) != rustix::fs::FileType::RegularFile {
            return Ok(None);
        }
        let mut data = Vec::new();
        std::fs::File::from(fd)
            .take(limit + 1)
            .read_to_end(&mut data)
            .context(|| format!("reading {}", self.describe(rel)))?;
        if data.len() as u64 > limit {
            return Err(RunError::FileTooLarge { file: rel.display().to_string(), limit });
        }
        Ok(Some(data))
    }

    /// `rel` as a user reads it in messages: the path inside the container.
    pub(crate) fn describe(&self, rel: &Path) -> String {
        format!("{} in the container", Path::new("/").join(relative(rel)).display())
    }
}

/// `rel` without its leading `/` (openat2 takes root-relative paths; `""` is the root).
fn relative(rel: &Path) -> &Path {
    let rel = rel.strip_prefix("/").unwrap_or(rel);
    if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    }
}

/// The normal components of a path (`.` and the root dropped). `..` is kept: the kernel
/// clamps it at the root.
pub(crate) fn normal_components(path: &Path) -> impl Iterator<Item = &OsStr> {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        Component::ParentDir => Some(OsStr::from_bytes(b"..")),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_and_dotdot_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let root_dir = host.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        std::fs::write(root_dir.join("etc/passwd"), "inside\n").unwrap();
        std::fs::write(host.path().join("secret"), "host\n").unwrap();
        symlink("/etc", root_dir.join("etc2")).unwrap();
        symlink("../../secret", root_dir.join("up")).unwrap();
        symlink(host.path().join("secret"), root_dir.join("abs")).unwrap();
        let root = RootDir::open(&root_dir).unwrap();

        assert_eq!(root.read_file(Path::new("/etc2/passwd"), 100).unwrap().unwrap(), b"inside\n");
        assert_eq!(root.read_file(Path::new("up"), 100).unwrap(), None);
        assert_eq!(root.read_file(Path::new("../../secret"), 100).unwrap(), None);
        assert_eq!(root.read_file(Path::new("abs"), 100).unwrap(), None);
        let err = root.read_file(Path::new("etc/passwd"), 3).unwrap_err();
        assert!(err.to_string().contains("larger than 3 bytes"), "{err}");

    }
}
