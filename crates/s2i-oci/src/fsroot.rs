//! Paths inside a root file system, resolved by the kernel as if that directory were `/`
//! (openat2 with `RESOLVE_IN_ROOT`): an absolute symlink such as `var/run -> /run`, or a `..`,
//! planted by an image layer or a build script, never reaches a host path. The one place that
//! makes that call, for the image side (layers unpacked into a directory) and the run side (files
//! copied into and out of a container, users read from its /etc/passwd) alike.
//!
//! Also the one way to open, for reading, a file of a tree that is not ours ([`open_regular`]):
//! a FIFO there would block the open for ever, and a device node (which a layer may carry with
//! any numbers) would open the host's device.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::fs::{openat2, FileType, Mode, OFlags, ResolveFlags, Stat};
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

/// What [`open_regular`] found.
pub(crate) enum Regular {
    /// A regular file, open for reading, and its metadata.
    File(File, Stat),
    /// Something else, left unopened.
    Not(FileType),
}

/// Opens for reading the file that `path` (an `O_PATH` descriptor) refers to, only if it is a
/// regular file. The type is read from the `O_PATH` handle, which opens nothing (no FIFO
/// rendezvous, no device driver); the same inode is then opened through `/proc/self/fd`, so a
/// rename or a swap in the tree between the two steps cannot put another file there.
pub(crate) fn open_regular(path: OwnedFd) -> std::io::Result<Regular> {
    let stat = rustix::fs::fstat(&path)?;
    let kind = FileType::from_raw_mode(stat.st_mode);
    if kind != FileType::RegularFile {
        return Ok(Regular::Not(kind));
    }
    let proc_path = format!("/proc/self/fd/{}", path.as_raw_fd());
    let fd = rustix::fs::open(proc_path.as_str(), OFlags::RDONLY | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(Regular::File(File::from(fd), stat))
}

/// `name` in `dir`, never through a final symlink, opened by [`open_regular`].
pub(crate) fn open_regular_at(dir: impl AsFd, name: &OsStr) -> std::io::Result<Regular> {
    let path = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    open_regular(path)
}

/// What a file type is called in messages.
pub(crate) fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        _ => "a file of an unknown type",
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

    /// A regular file's content, at most `limit` bytes; `None` when it does not exist or is not
    /// a regular file (a FIFO or a device there is never opened).
    pub(crate) fn read_file(&self, rel: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
        use std::io::Read;
        let fd = match self.open_raw(rel, OFlags::PATH, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => return Ok(None),
            Err(e) => return Err(RunError::io(format!("opening {}", self.describe(rel)), e.into())),
        };
        let file = match open_regular(fd).context(|| format!("opening {}", self.describe(rel)))? {
            Regular::File(file, _) => file,
            Regular::Not(_) => return Ok(None),
        };
        let mut data = Vec::new();
        file
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

    /// An image's /etc/passwd that is a FIFO blocked the open for ever; a device node there (the
    /// numbers of /dev/zero) opened the host's device. Neither is opened now: both read as missing.
    #[test]
    fn fifos_and_devices_are_never_opened() {
        assert!(rustix::process::geteuid().is_root(), "making device nodes needs root: run the tests as root");
        let host = tempfile::tempdir().unwrap();
        let root_dir = host.path().join("root");
        std::fs::create_dir_all(root_dir.join("etc")).unwrap();
        let etc = rustix::fs::open(root_dir.join("etc"), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        rustix::fs::mknodat(&etc, "passwd", FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        rustix::fs::mknodat(&etc, "group", FileType::CharacterDevice, Mode::from_raw_mode(0o644), rustix::fs::makedev(1, 5)).unwrap();
        symlink("/etc/passwd", root_dir.join("etc/link")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let root = RootDir::open(&root_dir).unwrap();
            let read = |p: &str| root.read_file(Path::new(p), 1 << 20).map_err(|e| e.to_string());
            let _ = tx.send((read("etc/passwd"), read("etc/group"), read("etc/link")));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("reading a FIFO or a device in the image hung");
        assert_eq!(got, (Ok(None), Ok(None), Ok(None)));
    }
}
