//! Applying a layer tar to a directory: whiteouts, hard links, owners, modes, xattrs, device
//! nodes, and every path kept inside the directory.
//!
//! A layer is untrusted. Each entry's parent directory is opened with `openat2(RESOLVE_IN_ROOT)`
//! relative to the root: symlinks among the parents (`var/run -> /run`, `etc2 -> /etc`) and `..`
//! resolve as they would inside the container, never on the host. The entry itself is then made
//! with `*at` calls on that parent's descriptor that never follow a final symlink (`O_NOFOLLOW`,
//! `AT_SYMLINK_NOFOLLOW`, `linkat` without `AT_SYMLINK_FOLLOW`). Paths with `..` components are
//! refused outright, so an entry never names anything above its own parent. Kernels without
//! openat2 (before 5.6) get a clear error, not a weaker check.
//!
//! For overlay lower dirs each layer is unpacked alone into its own directory, as Docker's
//! overlay2 driver does: a later layer's entries do not follow symlinks of the layers below
//! (containerd, which unpacks onto a mount of the lower layers, would). Layers made from
//! overlay diffs never depend on that. A hard link to a file of a layer below is a copy of it,
//! found where overlay will show it (opaque directories, whiteouts and symlinks of any layer
//! count); only a regular file is copied, opened through [`fsroot::open_regular`] (a FIFO's open
//! would block for ever, a device node's would reach the host's device), and anything else is
//! refused, in one tree as in lower dirs, so that every rootfs driver gives the same result.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use tracing::{debug, warn};

use super::commit::xattrs_of;
use super::error::{ImageError, Result};
use super::tar_read::{self, EntryHeader, Kind};
use crate::cancel::{Cancel, Cancelled};
use crate::fsroot::{self, Regular};

/// What whiteout entries (`.wh.NAME`, `.wh..wh..opq`) become.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    /// Overlay's own format, for a layer unpacked alone into an overlay lower dir: a 0:0
    /// character device for a removed name, `trusted.overlay.opaque=y` on an opaque directory.
    Overlay,
    /// Real deletion, for layers applied in order into one directory.
    Apply,
    /// No meaning: `.wh.` names are ordinary files (an archive copied into a container).
    Plain,
}

/// What an unpack did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UnpackStats {
    pub entries: u64,
    pub bytes: u64,
    /// Entries of unknown types, and xattrs outside the allowed namespaces, left out.
    pub skipped: u64,
}

pub(crate) const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_NAME: &[u8] = b".wh..wh..opq";

/// Options for one tar applied to a directory.
pub struct Unpack<'a> {
    /// Names the layer (or archive) in errors.
    pub name: &'a str,
    pub whiteouts: Whiteouts,
    /// Where entries go inside the root (`""` for the root itself); resolved inside the root.
    pub under: &'a str,
    /// Unpacked layers below this one, top first: where a hard link to a file of an earlier layer
    /// finds its target when layers are unpacked into separate overlay lower dirs.
    pub lowers: &'a [PathBuf],
    /// Checked before each entry and each read of a file copied from a lower layer.
    pub cancel: &'a Cancel,
}

/// Applies the tar `input` to the directory `root` and returns `input` read up to the end of the
/// archive (the caller may hash what is left).
pub fn unpack<R: Read>(root: &Path, input: R, opts: &Unpack<'_>) -> Result<(R, UnpackStats)> {
    let root_fd = open_root(root)?;
    let root_real = std::fs::canonicalize(root).map_err(|e| ImageError::io("resolving", root, e))?;
    let mut u = Unpacker {
        root: root_fd,
        root_path: root,
        root_real,
        opts,
        under: split_path(opts.under.as_bytes()).map_err(|r| ImageError::layer(opts.name, opts.under, r))?,
        written: HashSet::new(),
        touched: HashSet::new(),
        dir_times: Vec::new(),
        parent: None,
        ids: (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()),
        stats: UnpackStats::default(),
    };
    let input = tar_read::for_each_entry(input, opts.name, |h, data| u.entry(h, data))?;
    u.finish_dir_times()?;
    Ok((input, u.stats))
}

pub(crate) fn open_root(root: &Path) -> Result<OwnedFd> {
    rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| ImageError::io("opening", root, e.into()))
}

/// Path components without `.` and empty ones; `..` is refused.
pub(crate) fn split_path(path: &[u8]) -> std::result::Result<Vec<Vec<u8>>, String> {
    if path.contains(&0) {
        return Err("the path contains a NUL byte".into());
    }
    let mut out = Vec::new();
    for comp in path.split(|c| *c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("the path contains '..'".into()),
            c => out.push(c.to_vec()),
        }
    }
    Ok(out)
}

fn join(comps: &[Vec<u8>]) -> PathBuf {
    if comps.is_empty() {
        return PathBuf::from(".");
    }
    PathBuf::from(OsStr::from_bytes(&comps.join(&b'/')))
}

fn kernel_unsupported() -> ImageError {
    ImageError::Unsupported(
        "unpack layers safely on this kernel: openat2 with RESOLVE_IN_ROOT (Linux 5.6 or newer) is needed".into(),
    )
}

/// A symlink target's components: `.` and empty ones dropped, `..` kept.
fn split_link(target: &[u8]) -> Vec<Vec<u8>> {
    target.split(|c| *c == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec).collect()
}

/// `target` joined to `base` lexically, `..` stopping at the root (as the kernel resolves it
/// with `RESOLVE_IN_ROOT`).
fn clean_in_root(mut base: Vec<Vec<u8>>, target: &[u8]) -> Vec<Vec<u8>> {
    for comp in target.split(|c| *c == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => {
                base.pop();
            }
            c => base.push(c.to_vec()),
        }
    }
    base
}

/// Opens the directory at `comps` inside `root`, symlinks resolved inside `root`.
pub(crate) fn open_in_root(root: &OwnedFd, comps: &[Vec<u8>], flags: OFlags) -> io::Result<OwnedFd> {
    crate::fsroot::open_in_root(root, &join(comps), flags, Mode::empty()).map_err(Into::into)
}

struct Unpacker<'a> {
    root: OwnedFd,
    root_path: &'a Path,
    /// The root's canonical path, to tell where an open directory is inside it.
    root_real: PathBuf,
    opts: &'a Unpack<'a>,
    under: Vec<Vec<u8>>,
    /// In `Whiteouts::Apply`, what this tar wrote, as its directory's device and inode and its
    /// name (wherever the entry's path led, through symlinks included): an opaque directory keeps
    /// these, and a hard link to anything but a regular file must name one of them.
    written: HashSet<(u64, u64, Vec<u8>)>,
    /// In `Whiteouts::Apply`, the directories this tar put entries in (a whiteout too): an opaque
    /// directory keeps them, and those on the way to them, as the layer's own directory would.
    touched: HashSet<(u64, u64)>,
    /// Directory mtimes, set last: creating their children changes them.
    dir_times: Vec<(Vec<Vec<u8>>, u64)>,
    /// The parent directory of the last regular file, kept for the next one in the same directory
    /// (every other kind of entry drops it: it may change where a path leads).
    parent: Option<Parent>,
    /// The process's effective uid and gid, which a new file gets without an `fchown` (on a
    /// FUSE root every call is a round trip to its daemon).
    ids: (u32, u32),
    stats: UnpackStats,
}

/// An open parent directory and the path it was opened at.
struct Parent {
    comps: Vec<Vec<u8>>,
    fd: OwnedFd,
}

impl Unpacker<'_> {
    fn err(&self, h: &EntryHeader, reason: impl Into<String>) -> ImageError {
        ImageError::layer(self.opts.name, h.display_path(), reason)
    }

    fn io_err(&self, h: &EntryHeader, what: &str, e: impl Into<io::Error>) -> ImageError {
        let e: io::Error = e.into();
        if e.raw_os_error() == Some(libc_enosys()) {
            return kernel_unsupported();
        }
        if let Some(cancelled) = e.get_ref().and_then(|inner| inner.downcast_ref::<Cancelled>()) {
            return ImageError::Cancelled(*cancelled);
        }
        ImageError::Apply { layer: self.opts.name.to_string(), entry: h.display_path(), what: what.to_string(), source: e }
    }

    /// The parent directory of an entry, made (0755, root) when missing.
    fn parent(&self, h: &EntryHeader, comps: &[Vec<u8>]) -> Result<OwnedFd> {
        self.ensure_dir(comps, 0).map_err(|e| self.io_err(h, &format!("making its parent directory {}", join(comps).display()), e))
    }

    /// Opens the directory at `comps`, making what is missing. A symlink whose target is missing
    /// gets its target made, resolved inside the root (`var/run -> /run` makes `/run`), as
    /// containerd and Docker do.
    fn ensure_dir(&self, comps: &[Vec<u8>], depth: u32) -> io::Result<OwnedFd> {
        let dir_flags = OFlags::PATH | OFlags::DIRECTORY;
        match open_in_root(&self.root, comps, dir_flags) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => return other,
        }
        if depth > 40 {
            return Err(io::Error::from_raw_os_error(Errno::LOOP.raw_os_error()));
        }
        let mut cur = open_in_root(&self.root, &[], dir_flags)?;
        for i in 0..comps.len() {
            match open_in_root(&self.root, &comps[..=i], dir_flags) {
                Ok(fd) => {
                    cur = fd;
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let name = OsStr::from_bytes(&comps[i]);
            match rfs::mkdirat(&cur, name, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            cur = match open_in_root(&self.root, &comps[..=i], dir_flags) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    // A dangling symlink: make its target (inside the root), then go through it.
                    let target = rfs::readlinkat(&cur, name, Vec::new())?;
                    let base = if target.as_bytes().starts_with(b"/") { Vec::new() } else { self.path_in_root(&cur)? };
                    let target_comps = clean_in_root(base, target.as_bytes());
                    self.ensure_dir(&target_comps, depth + 1)?;
                    open_in_root(&self.root, &comps[..=i], dir_flags)?
                }
                Err(e) => return Err(e),
            };
        }
        Ok(cur)
    }

    /// Where an open directory is, inside the root.
    fn path_in_root(&self, fd: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)))?;
        let rel = link.strip_prefix(&self.root_real).map_err(|_| io::Error::other("a directory outside the root"))?;
        Ok(rel.as_os_str().as_bytes().split(|c| *c == b'/').filter(|c| !c.is_empty()).map(<[u8]>::to_vec).collect())
    }

    fn entry(&mut self, h: &EntryHeader, data: &mut dyn Read) -> Result<()> {
        self.opts.cancel.check()?;
        self.stats.entries += 1;
        let kind = match h.kind {
            Kind::Unknown(t) => {
                warn!("{}: skipping {:?}, an entry of unknown type {:?}", self.opts.name, h.display_path(), t as char);
                self.stats.skipped += 1;
                return Ok(());
            }
            k => k,
        };
        let rel = split_path(&h.path).map_err(|r| self.err(h, r))?;
        let mut comps = self.under.clone();
        comps.extend(rel.iter().cloned());
        let Some((name, parent_comps)) = comps.split_last() else {
            // The root itself: only its metadata.
            if kind == Kind::Dir {
                let fd = open_in_root(&self.root, &[], OFlags::RDONLY | OFlags::DIRECTORY)
                    .map_err(|e| self.io_err(h, "opening the root", e))?;
                self.set_fd_meta(h, &fd)?;
                self.dir_times.push((Vec::new(), h.mtime));
            }
            return Ok(());
        };
        let parent = match kind {
            // A whiteout may remove a directory: it drops the kept parent, unless it is a plain file.
            Kind::File if self.opts.whiteouts == Whiteouts::Plain || !name.starts_with(WHITEOUT_PREFIX) => self.file_parent(h, parent_comps)?,
            _ => {
                self.parent = None;
                self.parent(h, parent_comps)?
            }
        };
        if self.opts.whiteouts == Whiteouts::Apply {
            let id = self.dir_id(h, &parent)?;
            self.touched.insert(id);
        }

        if self.opts.whiteouts != Whiteouts::Plain && name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(h, &parent, parent_comps, name);
        }
        let name_os = OsStr::from_bytes(name);
        if self.opts.whiteouts == Whiteouts::Apply {
            let key = self.written_key(h, &parent, name)?;
            self.written.insert(key);
        }

        if kind == Kind::Dir {
            let mut replaced = false;
            match rfs::statat(&parent, name_os, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => {}
                Ok(_) => {
                    self.remove(h, &parent, name)?;
                    self.mkdir(h, &parent, name_os)?;
                    replaced = true;
                }
                Err(Errno::NOENT) => self.mkdir(h, &parent, name_os)?,
                Err(e) => return Err(self.io_err(h, "inspecting", e)),
            }
            let fd = rfs::openat(&parent, name_os, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| self.io_err(h, "opening the directory", e))?;
            if replaced && self.opts.whiteouts == Whiteouts::Overlay {
                // What this layer put here (a file, a whiteout) hid the lower layers' directory at
                // this path; the directory that takes its place must hide it too.
                rfs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty()).map_err(|e| self.io_err(h, &format!("setting {OPAQUE_XATTR}"), e))?;
            }
            self.set_fd_meta(h, &fd)?;
            self.dir_times.push((comps.clone(), h.mtime));
            return Ok(());
        }

        if kind == Kind::File {
            return self.file(h, &parent, name, data);
        }
        self.remove_existing(h, &parent, name)?;
        match kind {
            Kind::Symlink => {
                let target = h.link.as_deref().ok_or_else(|| self.err(h, "a symlink without a target"))?;
                if target.is_empty() || target.contains(&0) {
                    return Err(self.err(h, "an empty symlink target, or one with a NUL byte"));
                }
                // The target is stored as written: it is read by the container's kernel, inside its
                // root, and we never follow it here.
                rfs::symlinkat(OsStr::from_bytes(target), &parent, name_os)
                    .map_err(|e| self.io_err(h, "creating the symlink", e))?;
                self.set_link_meta(h, &parent, name_os)?;
            }
            Kind::HardLink => self.hard_link(h, &parent, name_os)?,
            Kind::Char | Kind::Block | Kind::Fifo => {
                let ft = match kind {
                    Kind::Char => FileType::CharacterDevice,
                    Kind::Block => FileType::BlockDevice,
                    _ => FileType::Fifo,
                };
                rfs::mknodat(&parent, name_os, ft, Mode::from_raw_mode(0o600), rfs::makedev(h.dev_major, h.dev_minor))
                    .map_err(|e| self.io_err(h, "creating the device node", e))?;
                rfs::chownat(
                    &parent,
                    name_os,
                    Some(rfs::Uid::from_raw(h.uid as u32)),
                    Some(rfs::Gid::from_raw(h.gid as u32)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )
                .map_err(|e| self.io_err(h, "setting its owner", e))?;
                // The node was just made here by us: following `name` cannot leave the parent.
                rfs::chmodat(&parent, name_os, Mode::from_raw_mode(h.mode & 0o7777), AtFlags::empty())
                    .map_err(|e| self.io_err(h, "setting its mode", e))?;
                rfs::utimensat(&parent, name_os, &times(h.mtime), AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(|e| self.io_err(h, "setting its mtime", e))?;
            }
            _ => unreachable!("handled above"),
        }
        Ok(())
    }

    /// The parent directory of a regular file: the previous file's when it is the same path.
    fn file_parent(&mut self, h: &EntryHeader, comps: &[Vec<u8>]) -> Result<OwnedFd> {
        if let Some(p) = self.parent.as_ref().filter(|p| p.comps == comps) {
            return p.fd.try_clone().map_err(|e| self.io_err(h, "opening its parent directory", e));
        }
        let fd = self.parent(h, comps)?;
        let kept = fd.try_clone().map_err(|e| self.io_err(h, "opening its parent directory", e))?;
        self.parent = Some(Parent { comps: comps.to_vec(), fd: kept });
        Ok(fd)
    }

    /// A regular file. Made with the permission bits it asks for when it asks for the process's
    /// own ids (else 0600, until it has its owner); the owner and mode are then set only where
    /// the new file's differ from the header's (a umask, a default ACL or a set-group-ID
    /// directory can make them differ; `fstat` of a file just made costs no round trip on FUSE).
    /// Whatever was at its name goes first, found by the failing exclusive create: no lookup for
    /// the usual new file.
    fn file(&mut self, h: &EntryHeader, parent: &OwnedFd, name: &[u8], data: &mut dyn Read) -> Result<()> {
        let mode = h.mode & 0o7777;
        let own_ids = (h.uid, h.gid) == (self.ids.0 as u64, self.ids.1 as u64);
        let create_mode = Mode::from_raw_mode(if own_ids { mode & 0o777 } else { 0o600 });
        let name_os = OsStr::from_bytes(name);
        let create = || rfs::openat(parent, name_os, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC, create_mode);
        let fd = match create() {
            Err(Errno::EXIST) => {
                self.remove_existing(h, parent, name)?;
                create()
            }
            other => other,
        }
        .map_err(|e| self.io_err(h, "creating the file", e))?;
        let mut file = File::from(fd);
        let n = io::copy(data, &mut file).map_err(|e| self.io_err(h, "writing the file", e))?;
        self.stats.bytes += n;
        let st = rfs::fstat(&file).map_err(|e| self.io_err(h, "inspecting the file", e))?;
        if (st.st_uid as u64, st.st_gid as u64) != (h.uid, h.gid) || st.st_mode & 0o7777 != mode {
            // fchown clears set-ID bits: the mode is always set after it.
            self.set_fd_meta(h, &file)?;
        } else {
            self.set_xattrs(h, &file)?;
        }
        set_times_fd(&file, h.mtime).map_err(|e| self.io_err(h, "setting its mtime", e))
    }

    fn mkdir(&self, h: &EntryHeader, parent: &OwnedFd, name: &OsStr) -> Result<()> {
        rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)).map_err(|e| self.io_err(h, "creating the directory", e))
    }

    fn whiteout(&mut self, h: &EntryHeader, parent: &OwnedFd, parent_comps: &[Vec<u8>], name: &[u8]) -> Result<()> {
        if name == OPAQUE_NAME {
            match self.opts.whiteouts {
                Whiteouts::Overlay => {
                    let dir = open_in_root(&self.root, parent_comps, OFlags::RDONLY | OFlags::DIRECTORY)
                        .map_err(|e| self.io_err(h, "opening the opaque directory", e))?;
                    rfs::fsetxattr(&dir, OPAQUE_XATTR, b"y", XattrFlags::empty())
                        .map_err(|e| self.io_err(h, &format!("setting {OPAQUE_XATTR}"), e))?;
                }
                _ => {
                    // Everything of the earlier layers goes, at every depth; what this layer put
                    // there stays, with the directories on the way to it.
                    let dir = open_in_root(&self.root, parent_comps, OFlags::RDONLY | OFlags::DIRECTORY)
                        .map_err(|e| self.io_err(h, "opening the opaque directory", e))?;
                    self.keep_written(&dir).map_err(|e| self.io_err(h, "emptying the opaque directory", e))?;
                }
            }
            return Ok(());
        }
        let target = &name[WHITEOUT_PREFIX.len()..];
        if target.is_empty() || target == b"." || target == b".." || target.starts_with(WHITEOUT_PREFIX) {
            return Err(self.err(h, "a whiteout that names no file"));
        }
        match self.opts.whiteouts {
            Whiteouts::Overlay => {
                self.remove_existing(h, parent, target)?;
                rfs::mknodat(parent, OsStr::from_bytes(target), FileType::CharacterDevice, Mode::empty(), rfs::makedev(0, 0))
                    .map_err(|e| self.io_err(h, "creating the overlay whiteout", e))?;
            }
            _ => self.remove_existing(h, parent, target)?,
        }
        Ok(())
    }

    /// Removes whatever is at `name` (a whole tree for a directory), if anything.
    fn remove_existing(&self, h: &EntryHeader, parent: &OwnedFd, name: &[u8]) -> Result<()> {
        match rfs::statat(parent, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.io_err(h, "inspecting", e)),
            Ok(_) => self.remove(h, parent, name),
        }
    }

    fn remove(&self, h: &EntryHeader, parent: &OwnedFd, name: &[u8]) -> Result<()> {
        remove_all_at(parent, name).map_err(|e| self.io_err(h, "removing what was there", e))
    }

    fn hard_link(&self, h: &EntryHeader, parent: &OwnedFd, name: &OsStr) -> Result<()> {
        let link = h.link.as_deref().ok_or_else(|| self.err(h, "a hard link without a target"))?;
        let mut target = self.under.clone();
        target.extend(split_path(link).map_err(|r| self.err(h, format!("hard link target: {r}")))?);
        let Some((tname, tparent)) = target.split_last() else {
            return Err(self.err(h, "a hard link to the root directory"));
        };
        let gone = || self.err(h, format!("hard link to {:?}, which is not in the image", String::from_utf8_lossy(link)));
        let linked = |tdir: &OwnedFd, tname: &[u8]| {
            rfs::linkat(tdir, OsStr::from_bytes(tname), parent, name, AtFlags::empty())
                .map_err(|e| self.io_err(h, &format!("linking to {}", String::from_utf8_lossy(link)), e))
        };
        if self.opts.whiteouts == Whiteouts::Overlay {
            // The target is where overlay will show it: in this layer, or in one below.
            return match self.find_in_union(&target).map_err(|e| self.io_err(h, "looking up the link target", e))? {
                None => Err(gone()),
                Some((0, tdir, tname)) => linked(&tdir, &tname),
                Some((_, tdir, tname)) => self.copy_from_lower(h, &tdir, &tname, parent, name, link),
            };
        }
        let tdir = match open_in_root(&self.root, tparent, OFlags::PATH | OFlags::DIRECTORY) {
            Ok(tdir) => tdir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(gone()),
            Err(e) => return Err(self.io_err(h, "opening the link target's directory", e)),
        };
        let st = match rfs::statat(&tdir, OsStr::from_bytes(tname), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Err(gone()),
            Err(e) => return Err(self.io_err(h, "inspecting the link target", e)),
        };
        let kind = FileType::from_raw_mode(st.st_mode);
        // In one tree an earlier layer's file is at hand too: what the overlay path would copy
        // (a regular file) is linked, anything else refused alike.
        if self.opts.whiteouts == Whiteouts::Apply && kind != FileType::RegularFile && !self.written.contains(&self.written_key(h, &tdir, tname)?) {
            return Err(self.not_copied(h, kind, link));
        }
        linked(&tdir, tname)
    }

    /// Where `path` is in what overlay will show of this layer over the lower layers: the index
    /// of the layer that holds it (0: this one), its directory there and its name; `None` when
    /// nothing is there. As overlay looks it up: per name, the topmost layer's entry; a directory
    /// goes on down the layers below it that have a directory there, until an opaque one; a
    /// whiteout hides. Symlinks on the way resolve in that union, inside the root; the last
    /// component is not followed.
    fn find_in_union(&self, path: &[Vec<u8>]) -> io::Result<Option<(usize, OwnedFd, Vec<u8>)>> {
        let mut roots = vec![(0, self.root.try_clone()?)];
        for (i, lower) in self.opts.lowers.iter().enumerate() {
            roots.push((i + 1, rfs::open(lower, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?));
        }
        // The directories of each level of the path so far, top layer first.
        let mut levels: Vec<Vec<(usize, OwnedFd)>> = vec![roots];
        let mut pending: std::collections::VecDeque<Vec<u8>> = path.iter().cloned().collect();
        let mut links = 0;
        while let Some(comp) = pending.pop_front() {
            if comp == b".." {
                if levels.len() > 1 {
                    levels.pop();
                }
                continue;
            }
            let stack = levels.last().expect("the root level");
            let name = OsStr::from_bytes(&comp);
            // The topmost entry (its place in `stack`, its stat), and the directories below it.
            let mut top: Option<(usize, rfs::Stat)> = None;
            let mut below = Vec::new();
            for (at, (layer, dir)) in stack.iter().enumerate() {
                let st = match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) => st,
                    Err(Errno::NOENT) => continue,
                    Err(e) => return Err(e.into()),
                };
                let kind = FileType::from_raw_mode(st.st_mode);
                if kind == FileType::CharacterDevice && st.st_rdev == 0 {
                    break; // a whiteout
                }
                if top.is_none() {
                    top = Some((at, st));
                }
                if kind != FileType::Directory {
                    break;
                }
                let sub = rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                let opaque = rfs::fgetxattr(&sub, OPAQUE_XATTR, &mut [0u8; 1][..]).is_ok_and(|n| n == 1);
                below.push((*layer, sub));
                if opaque {
                    break;
                }
            }
            let Some((at, st)) = top else { return Ok(None) };
            let (layer, dir) = &stack[at];
            if pending.is_empty() {
                return Ok(Some((*layer, dir.try_clone()?, comp)));
            }
            match FileType::from_raw_mode(st.st_mode) {
                FileType::Directory => levels.push(below),
                FileType::Symlink => {
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(Errno::LOOP.raw_os_error()));
                    }
                    let target = rfs::readlinkat(dir, name, Vec::new())?;
                    if target.as_bytes().starts_with(b"/") {
                        levels.truncate(1);
                    }
                    for c in split_link(target.as_bytes()).into_iter().rev() {
                        pending.push_front(c);
                    }
                }
                _ => return Err(io::Error::from_raw_os_error(Errno::NOTDIR.raw_os_error())),
            }
        }
        Ok(None)
    }

    /// A hard link to a file of a lower layer, made as a copy of it (the layers are separate
    /// trees): content, owner, mode, xattrs, mtime. Only a regular file is opened, and only
    /// through `open_regular`: a FIFO there would block the open for ever, and a device node of
    /// the layer (any numbers) would open the host's device.
    fn copy_from_lower(&self, h: &EntryHeader, tdir: &OwnedFd, tname: &[u8], parent: &OwnedFd, name: &OsStr, link: &[u8]) -> Result<()> {
        let (src, st) = match fsroot::open_regular_at(tdir, OsStr::from_bytes(tname)) {
            Ok(Regular::File(file, st)) => (file, st),
            Ok(Regular::Not(kind)) => return Err(self.not_copied(h, kind, link)),
            Err(e) => return Err(self.io_err(h, "opening the link target in an earlier layer", e)),
        };
        let dst = rfs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io_err(h, "creating the file", e))?;
        let mut dst = File::from(dst);
        io::copy(&mut self.opts.cancel.reader(&src), &mut dst).map_err(|e| self.io_err(h, "copying the link target", e))?;
        rfs::fchown(&dst, Some(rfs::Uid::from_raw(st.st_uid)), Some(rfs::Gid::from_raw(st.st_gid)))
            .map_err(|e| self.io_err(h, "setting its owner", e))?;
        rfs::fchmod(&dst, Mode::from_raw_mode(st.st_mode & 0o7777)).map_err(|e| self.io_err(h, "setting its mode", e))?;
        // After the owner (a chown clears file capabilities): the same xattrs as the target.
        let xattrs = xattrs_of(&src).map_err(|e| self.io_err(h, "reading the link target's xattrs", e))?;
        for (key, value) in xattrs.iter().filter(|(k, _)| xattr_allowed(k)) {
            rfs::fsetxattr(&dst, key.as_str(), value, XattrFlags::empty()).map_err(|e| self.io_err(h, &format!("setting the xattr {key}"), e))?;
        }
        let mtime = Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ };
        rfs::futimens(&dst, &Timestamps { last_access: mtime, last_modification: mtime }).map_err(|e| self.io_err(h, "setting its mtime", e))
    }

    /// A directory's device and inode.
    fn dir_id(&self, h: &EntryHeader, dir: &impl AsFd) -> Result<(u64, u64)> {
        let st = rfs::fstat(dir).map_err(|e| self.io_err(h, "inspecting its directory", e))?;
        Ok((st.st_dev, st.st_ino))
    }

    /// The key of `name` in `dir` in `written`.
    fn written_key(&self, h: &EntryHeader, dir: &impl AsFd, name: &[u8]) -> Result<(u64, u64, Vec<u8>)> {
        let (dev, ino) = self.dir_id(h, dir)?;
        Ok((dev, ino, name.to_vec()))
    }

    /// Removes from `dir`, at every depth, what this tar did not write, but for the directories
    /// on the way to something it wrote. Whether anything is left.
    fn keep_written(&self, dir: &OwnedFd) -> io::Result<bool> {
        let st = rfs::fstat(dir)?;
        let mut kept = false;
        for child in list_dir(dir)? {
            let mut keep = self.written.contains(&(st.st_dev, st.st_ino, child.clone()));
            let cst = rfs::statat(dir, OsStr::from_bytes(&child), AtFlags::SYMLINK_NOFOLLOW)?;
            if FileType::from_raw_mode(cst.st_mode) == FileType::Directory {
                let sub = rfs::openat(dir, OsStr::from_bytes(&child), OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
                keep |= self.keep_written(&sub)? || self.touched.contains(&(cst.st_dev, cst.st_ino));
            }
            if keep {
                kept = true;
            } else {
                remove_all_at(dir, &child)?;
            }
        }
        Ok(kept)
    }

    /// The refusal of a hard link to something of an earlier layer that is not a regular file.
    fn not_copied(&self, h: &EntryHeader, kind: FileType, link: &[u8]) -> ImageError {
        self.err(
            h,
            format!(
                "a hard link to {} of an earlier layer ({}): only regular files are copied from one layer to the next",
                fsroot::kind_name(kind),
                String::from_utf8_lossy(link)
            ),
        )
    }

    /// Owner, then mode (a chown clears setuid bits), then xattrs, on an open file or directory.
    fn set_fd_meta(&mut self, h: &EntryHeader, fd: &impl AsFd) -> Result<()> {
        rfs::fchown(fd, Some(rfs::Uid::from_raw(h.uid as u32)), Some(rfs::Gid::from_raw(h.gid as u32)))
            .map_err(|e| self.io_err(h, "setting its owner", e))?;
        rfs::fchmod(fd, Mode::from_raw_mode(h.mode & 0o7777)).map_err(|e| self.io_err(h, "setting its mode", e))?;
        self.set_xattrs(h, fd)
    }

    fn set_xattrs(&mut self, h: &EntryHeader, fd: &impl AsFd) -> Result<()> {
        for (key, value) in &h.xattrs {
            if !xattr_allowed(key) {
                debug!("{}: {:?}: leaving out the xattr {key}", self.opts.name, h.display_path());
                self.stats.skipped += 1;
                continue;
            }
            rfs::fsetxattr(fd, key.as_str(), value, XattrFlags::empty())
                .map_err(|e| self.io_err(h, &format!("setting the xattr {key}"), e))?;
        }
        Ok(())
    }

    fn set_link_meta(&self, h: &EntryHeader, parent: &OwnedFd, name: &OsStr) -> Result<()> {
        rfs::chownat(
            parent,
            name,
            Some(rfs::Uid::from_raw(h.uid as u32)),
            Some(rfs::Gid::from_raw(h.gid as u32)),
            AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.io_err(h, "setting its owner", e))?;
        rfs::utimensat(parent, name, &times(h.mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| self.io_err(h, "setting its mtime", e))
    }

    fn finish_dir_times(&mut self) -> Result<()> {
        for (comps, mtime) in std::mem::take(&mut self.dir_times) {
            // A later entry may have replaced the directory; what is there now is followed only
            // inside the root, and only directories are touched.
            let Ok(fd) = open_in_root(&self.root, &comps, OFlags::RDONLY | OFlags::DIRECTORY) else { continue };
            set_times_fd(&fd, mtime).map_err(|e| ImageError::io("setting the mtime of", self.root_path.join(join(&comps)), e))?;
        }
        Ok(())
    }
}

fn libc_enosys() -> i32 {
    Errno::NOSYS.raw_os_error()
}

/// Which xattrs a layer may set: file capabilities and user attributes. `trusted.*` (overlay's
/// own `trusted.overlay.*` among them) and `user.overlay.*` would change what overlay shows;
/// security labels are the host's business.
fn xattr_allowed(key: &str) -> bool {
    key == "security.capability" || (key.starts_with("user.") && !key.starts_with("user.overlay."))
}

fn times(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: mtime.min(i64::MAX as u64) as i64, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

fn set_times_fd(fd: &impl AsFd, mtime: u64) -> io::Result<()> {
    rfs::futimens(fd, &times(mtime)).map_err(Into::into)
}

/// The names in a directory, without `.` and `..`.
pub(crate) fn list_dir(dir: &impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Removes `name` in `parent` and, for a directory, everything below it; symlinks are removed,
/// never followed.
pub(crate) fn remove_all_at(parent: &impl AsFd, name: &[u8]) -> io::Result<()> {
    let name = OsStr::from_bytes(name);
    let st = match rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => return Ok(()),
        other => other?,
    };
    if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
        let dir = rfs::openat(parent, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
        for child in list_dir(&dir)? {
            remove_all_at(&dir, &child)?;
        }
        rfs::unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    } else {
        rfs::unlinkat(parent, name, AtFlags::empty())?;
    }
    Ok(())
}

/// Removes a directory tree the store made (a temp dir, a cached layer), never following symlinks.
pub(crate) fn remove_tree(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other(format!("refusing to remove {}", path.display())));
    };
    let parent = match rfs::open(parent, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()) {
        Err(Errno::NOENT) => return Ok(()),
        other => other?,
    };
    remove_all_at(&parent, name.as_bytes())
}
