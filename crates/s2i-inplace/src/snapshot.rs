//! What a build changed in the root filesystem it runs in: a walk of the root before the build
//! ([`Snapshot::take`]) and one after ([`Snapshot::write_layer`]), compared path by path (type,
//! size, mode, owner, mtime, ctime, inode, link target), written as one layer tar with whiteouts
//! for what was removed and an opaque marker where a directory was replaced.
//!
//! Mount points are not the image's: every one of `/proc/self/mountinfo` but the root (workspaces,
//! `/proc`, `/sys`, `/dev`, `/etc/hosts`, service-account tokens, the s2i binary's own volume) is
//! left out with everything below it, and so are the paths the engine names (its own store). The
//! walk never follows a symlink and opens only directories and regular files (with `O_NOFOLLOW`
//! and `O_NONBLOCK`, checked again after the open): a FIFO, socket or device that the build left
//! is never opened, it is an error that names it.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a snapshot or its layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{what} {}: {source}", path.display())]
    Io { what: &'static str, path: PathBuf, source: io::Error },
    #[error("the build left files that an image layer cannot carry: {}", .0.join(", "))]
    SpecialFiles(Vec<String>),
    #[error("reading /proc/self/mountinfo: {0}")]
    MountInfo(io::Error),
}

impl SnapshotError {
    fn io(what: &'static str, rel: &[u8], source: impl Into<io::Error>) -> SnapshotError {
        SnapshotError::Io { what, path: absolute(rel), source: source.into() }
    }
}

type Result<T, E = SnapshotError> = std::result::Result<T, E>;

fn absolute(rel: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&[b"/", rel].concat()))
}

/// What the walk records of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    kind: Kind,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, u64),
    ctime: (i64, u64),
    ino: u64,
    dev: u64,
    /// A directory the process may not list: its contents are unknown, before and after.
    unlisted: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
    Fifo,
    Socket,
    Char,
    Block,
}

impl Kind {
    fn of(ft: FileType) -> Kind {
        match ft {
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::Char,
            FileType::BlockDevice => Kind::Block,
            _ => Kind::File,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Kind::Fifo => "a FIFO",
            Kind::Socket => "a socket",
            Kind::Char => "a character device",
            Kind::Block => "a block device",
            Kind::Dir => "a directory",
            Kind::File => "a file",
            Kind::Symlink => "a symlink",
        }
    }
}

fn meta(st: &rfs::Stat) -> Meta {
    Meta {
        kind: Kind::of(FileType::from_raw_mode(st.st_mode)),
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec),
        ctime: (st.st_ctime, st.st_ctime_nsec),
        ino: st.st_ino,
        dev: st.st_dev,
        unlisted: false,
    }
}

/// Paths left out of the walk, relative to the root, without a leading `/`.
#[derive(Debug, Clone, Default)]
pub struct Excluded(Vec<Vec<u8>>);

impl Excluded {
    /// Every mount point of `/proc/self/mountinfo` but the root, and `extra` (absolute paths).
    pub fn mount_points_and(extra: &[PathBuf]) -> Result<Excluded> {
        let text = std::fs::read("/proc/self/mountinfo").map_err(SnapshotError::MountInfo)?;
        let mut out = Excluded(mount_points(&text));
        for p in extra {
            out.add(p);
        }
        Ok(out)
    }

    /// Also leave out the absolute path `p` (an engine's own files).
    pub fn add(&mut self, p: &Path) {
        let rel = relative(p.as_os_str().as_bytes());
        if !rel.is_empty() && !self.0.contains(&rel) {
            self.0.push(rel);
        }
    }

    /// Whether the absolute path `p` is left out.
    pub fn covers(&self, p: &Path) -> bool {
        self.contains(&relative(p.as_os_str().as_bytes()))
    }

    fn contains(&self, rel: &[u8]) -> bool {
        self.0.iter().any(|x| rel == &x[..] || (rel.starts_with(x) && rel.get(x.len()) == Some(&b'/')))
    }
}

/// `/a//b/` as `a/b`.
fn relative(path: &[u8]) -> Vec<u8> {
    path.split(|c| *c == b'/').filter(|c| !c.is_empty() && *c != b".").collect::<Vec<_>>().join(&b'/')
}

/// The mount points of a mountinfo text (its fifth field, octal escapes undone), the root left out.
fn mount_points(text: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for line in text.split(|c| *c == b'\n') {
        let Some(field) = line.split(|c| *c == b' ').nth(4) else { continue };
        let rel = relative(&unescape(field));
        if !rel.is_empty() && !out.contains(&rel) {
            out.push(rel);
        }
    }
    out
}

/// mountinfo writes space, tab, newline and backslash as `\NNN` (octal).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' && i + 3 < field.len() && field[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = (field[i + 1] - b'0') as u32 * 64 + (field[i + 2] - b'0') as u32 * 8 + (field[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(field[i]);
            i += 1;
        }
    }
    out
}

/// What [`compare_layer`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Compared {
    /// The first path not in the root as the layer has it.
    pub differs: Option<String>,
    /// How many regular files were compared.
    pub files: usize,
}

/// Compare the first `max` entries of a layer tar (gzip or plain) with the root. `above`: the
/// paths that layers above this one set or removed (skipped, with what is under them), and to
/// which this layer's paths are added. Whiteouts and excluded paths are skipped; nothing is
/// followed or opened.
pub fn compare_layer(input: impl Read, root: &Path, excluded: &Excluded, max: usize, above: &mut std::collections::HashSet<Vec<u8>>) -> Result<Compared> {
    let mut input = io::BufReader::new(input);
    let gzip = io::BufRead::fill_buf(&mut input).map_err(|e| SnapshotError::io("reading the layer for", b"", e))?.starts_with(&[0x1f, 0x8b]);
    let reader: Box<dyn Read> = if gzip { Box::new(flate2::read::GzDecoder::new(input)) } else { Box::new(input) };
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(|e| SnapshotError::io("reading the layer for", b"", e))?;
    let mut out = Compared::default();
    let mut here_set = Vec::new();
    let shadowed = |rel: &[u8], above: &std::collections::HashSet<Vec<u8>>| {
        let mut prefix = rel;
        loop {
            if above.contains(prefix) {
                return true;
            }
            match prefix.iter().rposition(|c| *c == b'/') {
                Some(i) => prefix = &prefix[..i],
                None => return false,
            }
        }
    };
    for entry in entries.take(max) {
        let entry = entry.map_err(|e| SnapshotError::io("reading the layer for", b"", e))?;
        let raw = entry.path_bytes();
        let rel = relative(&raw);
        let name = rel.rsplit(|c| *c == b'/').next().unwrap_or_default().to_vec();
        if rel.is_empty() || excluded.contains(&rel) || rel.split(|c| *c == b'/').any(|c| c == b"..") {
            continue;
        }
        if let Some(gone) = name.strip_prefix(b".wh.") {
            if gone != b".wh..opq" {
                let parent = &rel[..rel.len() - name.len()];
                here_set.push([parent, gone].concat());
            }
            continue;
        }
        let header = entry.header();
        let kind = header.entry_type();
        if kind != tar::EntryType::Directory {
            here_set.push(rel.clone());
        }
        if shadowed(&rel, above) {
            continue;
        }
        let shown = absolute(&rel).display().to_string();
        let full = root.join(OsStr::from_bytes(&rel));
        let here = rfs::statat(rfs::CWD, &full, AtFlags::SYMLINK_NOFOLLOW);
        let found = here.as_ref().ok().map(|st| FileType::from_raw_mode(st.st_mode));
        let differs = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                out.files += 1;
                match &here {
                    Ok(st) if found == Some(FileType::RegularFile) => (st.st_size as u64 != header.size().unwrap_or(0)).then(|| format!("{shown} has another size")),
                    _ => Some(format!("{shown} (a file) is missing")),
                }
            }
            tar::EntryType::Directory => (found != Some(FileType::Directory)).then(|| format!("{shown} (a directory) is missing")),
            tar::EntryType::Symlink => match found {
                Some(FileType::Symlink) => {
                    let target = rfs::readlinkat(rfs::CWD, &full, Vec::new()).ok();
                    let want = entry.link_name_bytes();
                    (target.as_ref().map(|t| t.as_bytes()) != want.as_deref()).then(|| format!("{shown} links elsewhere"))
                }
                _ => Some(format!("{shown} (a symlink) is missing")),
            },
            _ => None,
        };
        if differs.is_some() {
            out.differs = differs;
            return Ok(out);
        }
    }
    above.extend(here_set);
    Ok(out)
}

/// The root as the first walk saw it.
pub struct Snapshot {
    root: PathBuf,
    excluded: Excluded,
    entries: BTreeMap<Vec<u8>, Meta>,
}

/// What a layer held, for the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    pub whiteouts: u64,
    pub bytes: u64,
}

fn open_dir_at(dir: &impl AsFd, name: &OsStr) -> rustix::io::Result<OwnedFd> {
    rfs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
}

/// The names in an open directory, sorted, `.` and `..` left out.
fn list_dir(dir: &OwnedFd) -> io::Result<Vec<Vec<u8>>> {
    let fd = rfs::openat(dir, ".", OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort();
    Ok(names)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

impl Snapshot {
    /// Walk `root` (`/` in a build) and record every path that is not excluded.
    pub fn take(root: &Path, excluded: Excluded) -> Result<Snapshot> {
        let mut snap = Snapshot { root: root.to_path_buf(), excluded, entries: BTreeMap::new() };
        let fd = rfs::open(root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty()).map_err(|e| SnapshotError::io("opening", b"", e))?;
        let st = rfs::fstat(&fd).map_err(|e| SnapshotError::io("reading", b"", e))?;
        snap.entries.insert(Vec::new(), meta(&st));
        snap.record_dir(&fd, b"")?;
        Ok(snap)
    }

    /// Whether the walk left the absolute path `p` out.
    pub fn excludes(&self, p: &Path) -> bool {
        self.excluded.covers(p)
    }

    /// How many paths the walk recorded.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    fn record_dir(&mut self, dir: &OwnedFd, rel: &[u8]) -> Result<()> {
        let names = match list_dir(dir) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc_eacces()) => {
                if let Some(m) = self.entries.get_mut(rel) {
                    m.unlisted = true;
                }
                return Ok(());
            }
            Err(e) => return Err(SnapshotError::io("listing", rel, e)),
        };
        for name in names {
            let path = join(rel, &name);
            if self.excluded.contains(&path) {
                continue;
            }
            let st = match rfs::statat(dir, OsStr::from_bytes(&name), AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::NOENT) => continue, // gone while walked: a process of the build
                Err(e) => return Err(SnapshotError::io("reading", &path, e)),
            };
            let m = meta(&st);
            let is_dir = m.kind == Kind::Dir;
            self.entries.insert(path.clone(), m);
            if is_dir {
                match open_dir_at(dir, OsStr::from_bytes(&name)) {
                    Ok(fd) => self.record_dir(&fd, &path)?,
                    Err(Errno::ACCESS) => {
                        if let Some(m) = self.entries.get_mut(&path) {
                            m.unlisted = true;
                        }
                    }
                    Err(Errno::NOENT) => {}
                    Err(e) => return Err(SnapshotError::io("opening", &path, e)),
                }
            }
        }
        Ok(())
    }

    /// The names directly under `dir` in the snapshot.
    fn children(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let prefix = if dir.is_empty() { Vec::new() } else { [dir, b"/"].concat() };
        self.entries
            .range(prefix.clone()..)
            .skip_while(|(k, _)| k.is_empty())
            .take_while(|(k, _)| k.starts_with(&prefix))
            .filter_map(|(k, _)| {
                let rest = &k[prefix.len()..];
                (!rest.is_empty() && !rest.contains(&b'/')).then(|| rest.to_vec())
            })
            .collect()
    }

    /// Walk the root again and write what changed since [`Snapshot::take`] to `out` as one layer
    /// tar (uncompressed). `clamp`: the newest mtime written (`SOURCE_DATE_EPOCH`), also the
    /// mtime of whiteouts. Fails, naming them, when the build left FIFOs, sockets or devices.
    pub fn write_layer(&self, out: &mut dyn Write, clamp: Option<u64>) -> Result<LayerStats> {
        let fd = rfs::open(&self.root, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| SnapshotError::io("opening", b"", e))?;
        let mut w = Writer { snap: self, tar: tar::Builder::new(out), clamp, links: HashMap::new(), special: Vec::new(), stats: LayerStats::default(), xattr_names: Vec::new() };
        w.dir(&fd, b"", false)?;
        if !w.special.is_empty() {
            return Err(SnapshotError::SpecialFiles(w.special));
        }
        let stats = w.stats;
        w.tar.finish().map_err(|e| SnapshotError::io("writing the layer after", b"", e))?;
        Ok(stats)
    }
}

fn libc_eacces() -> i32 {
    Errno::ACCESS.raw_os_error()
}

struct Writer<'a> {
    snap: &'a Snapshot,
    tar: tar::Builder<&'a mut dyn Write>,
    clamp: Option<u64>,
    /// The first path written of each multiply-linked inode, for hard link entries.
    links: HashMap<(u64, u64), Vec<u8>>,
    special: Vec<String>,
    stats: LayerStats,
    /// The names of a file's extended attributes (64 KiB, allocated once, not per file).
    xattr_names: Vec<u8>,
}

impl Writer<'_> {
    fn mtime(&self, t: i64) -> u64 {
        let t = t.max(0) as u64;
        self.clamp.map_or(t, |c| t.min(c))
    }

    fn header(&self, st: &rfs::Stat, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(st.st_mode & 0o7777);
        h.set_uid(st.st_uid as u64);
        h.set_gid(st.st_gid as u64);
        h.set_mtime(self.mtime(st.st_mtime));
        h.set_size(0);
        h
    }

    /// The `user.*` extended attributes of the open file or directory `fd`, as PAX records
    /// (`SCHILY.xattr.NAME`, what Docker and containerd unpack) before its entry, sorted by name.
    /// Other namespaces are left out: `security.*` and `trusted.*` are the runtime's to set, and
    /// this process could not read most of them.
    fn xattrs(&mut self, fd: &OwnedFd, rel: &[u8]) -> Result<()> {
        let found = user_xattrs(fd, &mut self.xattr_names).map_err(|e| SnapshotError::io("reading the extended attributes of", rel, e))?;
        if found.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, Vec<u8>)> = found.into_iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v)).collect();
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), v.as_slice())))
            .map_err(|e| SnapshotError::io("writing the extended attributes of", rel, e))
    }

    fn append(&mut self, h: &mut tar::Header, rel: &[u8], data: impl Read) -> Result<()> {
        self.stats.entries += 1;
        self.tar.append_data(h, Path::new(OsStr::from_bytes(rel)), data).map_err(|e| SnapshotError::io("writing the layer entry of", rel, e))
    }

    /// An empty root-owned file: a whiteout (`.wh.NAME`) or an opaque marker (`.wh..wh..opq`).
    fn marker(&mut self, rel: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_size(0);
        h.set_mtime(self.clamp.unwrap_or(0));
        self.stats.whiteouts += 1;
        self.append(&mut h, rel, io::empty())
    }

    /// The children of the directory `fd` at `rel`; `fresh`: nothing under it comes from before
    /// (a new or replaced directory), so every child is written and none is whited out.
    fn dir(&mut self, fd: &OwnedFd, rel: &[u8], fresh: bool) -> Result<()> {
        let before = self.snap.entries.get(rel);
        if !fresh && before.is_some_and(|m| m.unlisted) {
            return Ok(()); // unknown before: the build (the same uid) could not change it either
        }
        let names = match list_dir(fd) {
            Ok(n) => n,
            Err(e) if e.raw_os_error() == Some(libc_eacces()) => return Ok(()),
            Err(e) => return Err(SnapshotError::io("listing", rel, e)),
        };
        let names: Vec<Vec<u8>> = names.into_iter().filter(|n| !self.snap.excluded.contains(&join(rel, n))).collect();
        // What was there before and is gone: a whiteout each, sorted among the names.
        let mut all: Vec<(Vec<u8>, bool)> = names.iter().map(|n| (n.clone(), false)).collect();
        if !fresh {
            for gone in self.snap.children(rel) {
                if names.binary_search(&gone).is_err() && !self.snap.excluded.contains(&join(rel, &gone)) {
                    all.push(([b".wh.".as_slice(), &gone].concat(), true));
                }
            }
            all.sort();
        }
        for (name, whiteout) in all {
            let path = join(rel, &name);
            if whiteout {
                self.marker(&path)?;
            } else {
                self.entry(fd, &name, &path, fresh)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, name: &[u8], rel: &[u8], fresh: bool) -> Result<()> {
        let name_os = OsStr::from_bytes(name);
        let st = match rfs::statat(dir, name_os, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => return Ok(()),
            Err(e) => return Err(SnapshotError::io("reading", rel, e)),
        };
        let now = meta(&st);
        let before = if fresh { None } else { self.snap.entries.get(rel) };
        let changed = before.is_none_or(|b| !same(b, &now));
        match now.kind {
            Kind::Dir => {
                // Replaced: it was something else, or another directory (a new inode) took its
                // place; what was under the old one is hidden by an opaque marker.
                let replaced = before.is_some_and(|b| b.kind != Kind::Dir || b.ino != now.ino || b.dev != now.dev);
                let fd = match open_dir_at(dir, name_os) {
                    Ok(fd) => Some(fd),
                    Err(Errno::ACCESS) => None,
                    Err(Errno::NOENT) => return Ok(()),
                    Err(e) => return Err(SnapshotError::io("opening", rel, e)),
                };
                if changed {
                    if let Some(fd) = &fd {
                        self.xattrs(fd, rel)?;
                    }
                    let mut h = self.header(&st, tar::EntryType::Directory);
                    self.append(&mut h, &[rel, b"/"].concat(), io::empty())?;
                }
                if replaced && before.is_some_and(|b| b.kind == Kind::Dir) {
                    self.marker(&join(rel, b".wh..wh..opq"))?;
                }
                match fd {
                    Some(fd) => self.dir(&fd, rel, fresh || before.is_none() || replaced),
                    None => Ok(()),
                }
            }
            _ if !changed => Ok(()),
            Kind::File => self.file(dir, name_os, rel, &st),
            Kind::Symlink => {
                let target = rfs::readlinkat(dir, name_os, Vec::new()).map_err(|e| SnapshotError::io("reading the link", rel, e))?;
                let mut h = self.header(&st, tar::EntryType::Symlink);
                self.stats.entries += 1;
                self.tar
                    .append_link(&mut h, Path::new(OsStr::from_bytes(rel)), Path::new(OsStr::from_bytes(target.as_bytes())))
                    .map_err(|e| SnapshotError::io("writing the layer entry of", rel, e))
            }
            kind => {
                self.special.push(format!("{} ({})", absolute(rel).display(), kind.name()));
                Ok(())
            }
        }
    }

    fn file(&mut self, dir: &OwnedFd, name: &OsStr, rel: &[u8], st: &rfs::Stat) -> Result<()> {
        if st.st_nlink > 1 {
            let key = (st.st_dev, st.st_ino);
            if let Some(first) = self.links.get(&key).cloned() {
                let mut h = self.header(st, tar::EntryType::Link);
                self.stats.entries += 1;
                return self
                    .tar
                    .append_link(&mut h, Path::new(OsStr::from_bytes(rel)), Path::new(OsStr::from_bytes(&first)))
                    .map_err(|e| SnapshotError::io("writing the layer entry of", rel, e));
            }
            self.links.insert(key, rel.to_vec());
        }
        // Never blocks on a FIFO put there since the stat, never follows a symlink; checked again.
        let fd = rfs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|e| SnapshotError::io("opening", rel, e))?;
        let again = rfs::fstat(&fd).map_err(|e| SnapshotError::io("reading", rel, e))?;
        if FileType::from_raw_mode(again.st_mode) != FileType::RegularFile || again.st_ino != st.st_ino {
            return Err(SnapshotError::io("reading", rel, io::Error::other("it was replaced while the layer was written")));
        }
        self.xattrs(&fd, rel)?;
        let mut h = self.header(st, tar::EntryType::Regular);
        h.set_size(st.st_size as u64);
        self.stats.bytes += st.st_size as u64;
        let file = std::fs::File::from(fd);
        // A small file's buffer is its size: no 128 KiB allocation for each of 30,000 small files.
        let buffer = (st.st_size as usize).clamp(8 << 10, 128 << 10);
        let data = s2i_tar::header::ExactReader::new(io::BufReader::with_capacity(buffer, file), st.st_size as u64);
        self.append(&mut h, rel, data)
    }
}

/// Whether a path is as it was: same type, owner, mode, size, times, inode.
fn same(before: &Meta, now: &Meta) -> bool {
    before.kind == now.kind
        && before.mode == now.mode
        && before.uid == now.uid
        && before.gid == now.gid
        && before.ino == now.ino
        && before.dev == now.dev
        && before.mtime == now.mtime
        && before.ctime == now.ctime
        && (before.kind == Kind::Dir || before.size == now.size)
}

/// The `user.*` extended attributes of `fd`, sorted by name. A file system without them has none.
/// `list`: room for the list of names (the kernel's limit, 64 KiB), kept from file to file.
fn user_xattrs(fd: &OwnedFd, list: &mut Vec<u8>) -> io::Result<Vec<(String, Vec<u8>)>> {
    list.resize(64 << 10, 0);
    let n = match rfs::flistxattr(fd, &mut list[..]) {
        Ok(n) => n,
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut names: Vec<&[u8]> = list[..n].split(|b| *b == 0).filter(|n| n.starts_with(b"user.")).collect();
    names.sort();
    let mut out = Vec::new();
    if names.is_empty() {
        return Ok(out);
    }
    let mut value = vec![0u8; 64 << 10];
    for name in names {
        let Ok(name) = std::str::from_utf8(name) else { continue };
        match rfs::fgetxattr(fd, name, &mut value[..]) {
            Ok(len) => out.push((name.to_string(), value[..len].to_vec())),
            Err(Errno::NODATA) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_read_with_their_escapes() {
        let text = b"22 27 0:21 / /proc rw - proc proc rw\n1 0 0:1 / / rw - overlay overlay rw\n5 1 0:5 / /work\\040space/src rw - ext4 x rw\n6 1 0:6 / /etc/hosts rw - ext4 x rw\n";
        assert_eq!(mount_points(text), vec![b"proc".to_vec(), b"work space/src".to_vec(), b"etc/hosts".to_vec()]);
        let mut x = Excluded(mount_points(text));
        x.add(Path::new("/tmp/store/"));
        assert!(x.contains(b"proc") && x.contains(b"proc/1/root") && x.contains(b"tmp/store/blobs"));
        assert!(!x.contains(b"processes") && !x.contains(b"etc") && !x.contains(b"tmp"));
    }

    /// A tree changed in every way a build can: the layer holds exactly the changes, whiteouts
    /// for what went away, an opaque marker for a replaced directory, nothing excluded.
    #[test]
    fn the_layer_holds_exactly_the_changes() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let mk = |p: &str, data: &str| {
            let path = root.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, data).unwrap();
        };
        mk("keep/same", "same");
        mk("keep/edit", "old");
        mk("gone/file", "x");
        mk("deleted", "x");
        mk("replaced/old", "x");
        mk("ws/before", "x");
        let excluded = Excluded(vec![b"ws".to_vec()]);
        let snap = Snapshot::take(root, excluded).unwrap();

        std::fs::write(root.join("keep/edit"), "new content").unwrap();
        std::fs::remove_dir_all(root.join("gone")).unwrap();
        std::fs::remove_file(root.join("deleted")).unwrap();
        // Another directory in its place (made before the old one went: a new inode).
        mk("replaced.next/new", "n");
        std::fs::remove_dir_all(root.join("replaced")).unwrap();
        std::fs::rename(root.join("replaced.next"), root.join("replaced")).unwrap();
        mk("ws/during", "must not be in the layer");
        std::os::unix::fs::symlink("/proc/self/environ", root.join("link")).unwrap();
        mk("added/deep/file", "a");

        let mut out = Vec::new();
        let stats = snap.write_layer(&mut out, Some(1_700_000_000)).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            assert!(e.header().mtime().unwrap() <= 1_700_000_000, "{p}: mtimes clamped");
            if p == "link" {
                assert_eq!(e.link_name().unwrap().unwrap(), Path::new("/proc/self/environ"), "the link is carried, not followed");
            }
            seen.push(p);
        }
        seen.sort();
        let want = [
            ".wh.deleted", ".wh.gone", "added/", "added/deep/", "added/deep/file", "keep/edit", "link", "replaced/",
            "replaced/.wh..wh..opq", "replaced/new",
        ];
        assert_eq!(seen, want, "exactly the changes");
        assert_eq!(stats.whiteouts, 3);
    }

    /// The user.* extended attributes of changed files and directories ride along as PAX
    /// records, sorted; an attribute set on an unchanged file makes it changed (its ctime moved).
    #[test]
    fn user_xattrs_are_carried_as_pax_records() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("old"), "x").unwrap();
        let snap = Snapshot::take(root, Excluded::default()).unwrap();
        std::fs::create_dir(root.join("dir")).unwrap();
        std::fs::write(root.join("dir/new"), "y").unwrap();
        let set = |p: &str, k: &str, v: &[u8]| rustix::fs::setxattr(root.join(p).as_path(), k, v, rustix::fs::XattrFlags::empty()).unwrap();
        set("dir/new", "user.b", b"2");
        set("dir/new", "user.a", b"1");
        set("dir", "user.d", b"dir");
        // Only the attribute changed: the file is in the layer again, with it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        set("old", "user.o", b"old");

        let mut out = Vec::new();
        snap.write_layer(&mut out, None).unwrap();
        let mut archive = tar::Archive::new(&out[..]);
        let mut seen = Vec::new();
        for e in archive.entries().unwrap() {
            let mut e = e.unwrap();
            let p = e.path().unwrap().display().to_string();
            let mut records = Vec::new();
            if let Some(exts) = e.pax_extensions().unwrap() {
                for r in exts {
                    let r = r.unwrap();
                    records.push(format!("{}={}", r.key().unwrap(), r.value().unwrap()));
                }
            }
            seen.push((p, records));
        }
        let want = |p: &str, r: &[&str]| (p.to_string(), r.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(
            seen,
            vec![
                want("dir/", &["SCHILY.xattr.user.d=dir"]),
                want("dir/new", &["SCHILY.xattr.user.a=1", "SCHILY.xattr.user.b=2"]),
                want("old", &["SCHILY.xattr.user.o=old"]),
            ]
        );
    }

    #[test]
    fn a_layer_is_compared_with_the_root() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::create_dir_all(root.join("usr/libexec/s2i")).unwrap();
        std::fs::write(root.join("usr/libexec/s2i/assemble"), "#!/bin/sh\n").unwrap();
        let layer = |files: &[(&str, &str)]| {
            let mut b = tar::Builder::new(Vec::new());
            for (path, data) in files {
                let mut h = tar::Header::new_gnu();
                h.set_size(data.len() as u64);
                h.set_mode(0o755);
                b.append_data(&mut h, path, data.as_bytes()).unwrap();
            }
            b.into_inner().unwrap()
        };
        let none = &mut std::collections::HashSet::new();
        let same = layer(&[("usr/libexec/s2i/assemble", "#!/bin/sh\n"), ("usr/libexec/s2i/.wh.gone", "")]);
        assert_eq!(compare_layer(&same[..], root, &Excluded::default(), 10, none).unwrap(), Compared { differs: None, files: 1 });
        let other = layer(&[("usr/libexec/s2i/assemble", "#!/bin/sh\nexit 1\n")]);
        assert_eq!(
            compare_layer(&other[..], root, &Excluded::default(), 10, &mut Default::default()).unwrap().differs.as_deref(),
            Some("/usr/libexec/s2i/assemble has another size")
        );
        // A lower layer's file that a layer above replaced is not compared.
        assert_eq!(compare_layer(&other[..], root, &Excluded::default(), 10, none).unwrap().differs, None);
        let missing = layer(&[("usr/libexec/s2i/assemble-runtime", "x")]);
        assert!(compare_layer(&missing[..], root, &Excluded::default(), 10, none).unwrap().differs.unwrap().contains("assemble-runtime (a file) is missing"));
    }

    #[test]
    fn fifos_and_sockets_left_behind_are_an_error_naming_them() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        let snap = Snapshot::take(root, Excluded::default()).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, root.join("fifo"), FileType::Fifo, Mode::from_raw_mode(0o644), 0).unwrap();
        let _sock = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
        let err = snap.write_layer(&mut Vec::new(), None).unwrap_err().to_string();
        assert!(err.contains("/fifo (a FIFO)") && err.contains("/sock (a socket)"), "{err}");
    }
}

