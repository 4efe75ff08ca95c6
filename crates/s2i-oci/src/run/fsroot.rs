//! Paths inside a container's root file system, resolved by the kernel as if that directory were
//! `/` (openat2 with `RESOLVE_IN_ROOT`): an absolute symlink such as `var/run -> /run`, or a `..`,
//! planted by an image layer or a build script, never reaches a host path.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};
use rustix::io::Errno;

use super::error::{IoContext, Result, RunError};

/// An open directory used as the root of every path resolved through it.
pub(crate) struct RootDir {
    fd: OwnedFd,
    path: PathBuf,
}

const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

impl RootDir {
    /// Open `path` as a root. Fails with [`RunError::NoOpenat2`] on kernels without openat2.
    pub(crate) fn open(path: &Path) -> Result<RootDir> {
        let fd = rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .context(|| format!("opening {}", path.display()))?;
        let root = RootDir { fd, path: path.to_path_buf() };
        match root.open_raw(Path::new("."), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()) {
            Ok(_) => Ok(root),
            Err(Errno::NOSYS) => Err(RunError::NoOpenat2),
            Err(e) => Err(RunError::io(format!("opening {}", path.display()), e.into())),
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    fn open_raw(&self, rel: &Path, flags: OFlags, mode: Mode) -> rustix::io::Result<OwnedFd> {
        let rel = relative(rel);
        // EAGAIN: a rename raced with a `..` lookup; the kernel asks us to try again.
        let mut tries = 0;
        loop {
            match openat2(&self.fd, rel, flags | OFlags::CLOEXEC, mode, RESOLVE) {
                Err(Errno::AGAIN) if tries < 16 => tries += 1,
                other => return other,
            }
        }
    }

    /// Open `rel` (absolute or relative, both meaning "inside the root").
    pub(crate) fn open_in(&self, rel: &Path, flags: OFlags, mode: Mode) -> std::io::Result<OwnedFd> {
        self.open_raw(rel, flags, mode).map_err(Into::into)
    }

    /// The directory `rel`, creating it and its missing parents (as `mode`, owned by root).
    /// Returns an `O_PATH` descriptor of it.
    pub(crate) fn mkdir_all(&self, rel: &Path, mode: u32) -> Result<OwnedFd> {
        self.mkdir_all_depth(rel, mode, 0)
    }

    fn mkdir_all_depth(&self, rel: &Path, mode: u32, depth: u32) -> Result<OwnedFd> {
        // As many dangling symlinks in a row as the kernel follows in one lookup.
        const MAX_LINKS: u32 = 40;
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
        let mut done = PathBuf::from("/");
        let mut fd = self.open_raw(&done, dir_flags, Mode::empty()).context(|| self.describe(&done))?;
        for part in normal_components(rel) {
            let next = done.join(part);
            match self.open_raw(&next, dir_flags, Mode::empty()) {
                Ok(f) => fd = f,
                Err(Errno::NOENT) => {
                    match rustix::fs::mkdirat(&fd, part, Mode::from_raw_mode(mode)) {
                        Ok(()) => {
                            fd = self.open_raw(&next, dir_flags, Mode::empty()).context(|| self.describe(&next))?
                        }
                        // A dangling symlink: make its target, resolved inside the root.
                        Err(Errno::EXIST) if depth < MAX_LINKS => {
                            let target = rustix::fs::readlinkat(&fd, part, Vec::new())
                                .context(|| format!("reading the link {}", self.describe(&next)))?;
                            let target = Path::new(OsStr::from_bytes(target.as_bytes()));
                            fd = self.mkdir_all_depth(&done.join(target), mode, depth + 1)?;
                        }
                        Err(e) => return Err(RunError::io(format!("creating {}", self.describe(&next)), e.into())),
                    }
                }
                Err(e) => return Err(RunError::io(format!("opening {}", self.describe(&next)), e.into())),
            }
            done = next;
        }
        Ok(fd)
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

    /// Where an open descriptor of something in this root lives, as a path inside the root.
    pub(crate) fn path_in_root(&self, fd: impl AsFd) -> Result<PathBuf> {
        let link = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd.as_fd()));
        let target = std::fs::read_link(&link).context(|| format!("reading {link}"))?;
        let root = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&self.fd)))
            .context(|| format!("resolving {}", self.path.display()))?;
        let inside = target.strip_prefix(&root).map_err(|_| {
            RunError::io(
                format!("{} resolved outside {}", target.display(), root.display()),
                std::io::Error::other("outside the root"),
            )
        })?;
        Ok(Path::new("/").join(inside))
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

        // mkdir_all through an absolute symlink lands inside the root.
        // (the host's own /var/run is a symlink to /run: the canary name must not appear there).
        let canary = format!("s2i-fsroot-test-{}", std::process::id());
        symlink("/var/run", root_dir.join("run")).unwrap();
        let fd = root.mkdir_all(&Path::new("/run").join(&canary).join("y"), 0o755).unwrap();
        assert!(root_dir.join("var/run").join(&canary).join("y").is_dir());
        assert_eq!(root.path_in_root(&fd).unwrap(), Path::new("/var/run").join(&canary).join("y"));
        assert!(!Path::new("/run").join(&canary).exists());
        assert!(!Path::new("/var/run").join(&canary).exists());
    }
}
