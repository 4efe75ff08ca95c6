//! Copying an untrusted tar stream into one of ours, entry by entry, through the guard.

use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use tracing::{trace, warn};

use crate::error::{CopyError, TarError};
use crate::guard::{CleanEntry, CleanKind, Guard, Skipped, Verdict};
use crate::reader::{Drained, Limits, TarReader};

/// How many example paths [`Stats`] keeps for a warning.
const EXAMPLES: usize = 5;

/// What one copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Entries written: files, hard links, directories and symlinks.
    pub entries: u64,
    pub files: u64,
    pub hard_links: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file data copied.
    pub bytes: u64,
    /// Entries left out (the root directory itself is not counted).
    pub skipped: SkipCounts,
    /// The first few entries left out, and why.
    pub skipped_examples: Vec<(String, Skipped)>,
    /// Files and hard links whose setuid or setgid bit was dropped.
    pub setid_stripped: u64,
    /// The first few of them (as written, under the prefix).
    pub setid_examples: Vec<PathBuf>,
    /// What followed the end-of-archive marker: drained and ignored.
    pub trailing: Drained,
}

/// Entries left out, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SkipCounts {
    /// Character and block devices.
    pub devices: u64,
    pub fifos: u64,
    /// Entries of a type the reader does not know.
    pub unknown: u64,
}

impl SkipCounts {
    pub fn total(&self) -> u64 {
        self.devices + self.fifos + self.unknown
    }
}

impl Stats {
    fn skipped(&mut self, why: Skipped, path: &str) {
        match why {
            Skipped::Root => return,
            Skipped::CharDevice | Skipped::BlockDevice => self.skipped.devices += 1,
            Skipped::Fifo => self.skipped.fifos += 1,
            Skipped::Unknown(_) => self.skipped.unknown += 1,
        }
        if self.skipped_examples.len() < EXAMPLES {
            self.skipped_examples.push((path.to_string(), why));
        }
    }

    fn written(&mut self, entry: &CleanEntry, path: &[u8]) {
        self.entries += 1;
        match entry.kind {
            CleanKind::File => {
                self.files += 1;
                self.bytes += entry.meta.size;
            }
            CleanKind::Dir => self.dirs += 1,
            CleanKind::Symlink { .. } => self.symlinks += 1,
            CleanKind::HardLink { .. } => self.hard_links += 1,
        }
        if entry.setid_stripped {
            self.setid_stripped += 1;
            if self.setid_examples.len() < EXAMPLES {
                self.setid_examples.push(PathBuf::from(OsStr::from_bytes(path)));
            }
        }
    }
}

/// Copy every entry of the tar read from `input` into `out` under `prefix`, checked by `guard`.
///
/// Headers are rebuilt from what was parsed and checked, never copied: a file's size is the
/// number of bytes copied for it, directories and links carry no data, and PAX or GNU records of
/// the input never reach the output (long names and targets are written again as GNU `L`/`K`
/// records, which GNU tar, busybox, Go's archive/tar and the `tar` crate read). Extended
/// attributes are not copied: `security.capability` would grant privileges. At the end-of-archive marker the rest of
/// the input is read to its end (the writer must not block on a full pipe); after an error it is
/// not, and the caller drops it.
///
/// `prefix` is the caller's own (trusted) relative path; hard link targets are rewritten under it.
pub fn copy_guarded<R: Read, W: Write>(
    input: R,
    out: &mut tar::Builder<W>,
    prefix: &Path,
    guard: &mut Guard,
    limits: &Limits,
) -> Result<Stats, CopyError> {
    if !prefix.components().all(|c| matches!(c, Component::Normal(_) | Component::CurDir)) {
        return Err(CopyError::Prefix(prefix.to_path_buf()));
    }
    // The prefix with a '/' after it, as bytes (empty for the top level).
    let prefix: Vec<u8> = prefix.components().filter(|c| *c != Component::CurDir).flat_map(|c| [c.as_os_str().as_bytes(), b"/"].concat()).collect();
    let under = |path: &Path| -> Vec<u8> { [prefix.as_slice(), path.as_os_str().as_bytes()].concat() };
    let mut reader = TarReader::with_limits(input, *limits);
    let mut stats = Stats::default();
    while let Some(mut entry) = reader.next_entry()? {
        let clean = match guard.check(entry.header())? {
            Verdict::Accept(clean) => clean,
            Verdict::Skip(why) => {
                trace!("Skipping {:?}: {why}", entry.header().display_path());
                stats.skipped(why, &entry.header().display_path());
                continue;
            }
        };
        let path = under(&clean.path);
        let link = match &clean.kind {
            CleanKind::Symlink { target } => Some(target.as_os_str().as_bytes().to_vec()),
            CleanKind::HardLink { target } => Some(under(target)),
            CleanKind::File | CleanKind::Dir => None,
        };
        write_entry(out, &path, link.as_deref(), &clean, &mut entry)?;
        trace!("A {}", String::from_utf8_lossy(&path));
        stats.written(&clean, &path);
    }
    stats.trailing = reader.drain()?;
    if stats.trailing.non_zero {
        warn!("Ignored {} bytes after the end of the archive: they are not part of it", stats.trailing.bytes);
    }
    Ok(stats)
}

/// Write one rebuilt entry: `path` (and `link`, for links) whole, in GNU long-name records
/// when they do not fit the header's 100-byte fields.
fn write_entry<W: Write>(
    out: &mut tar::Builder<W>,
    path: &[u8],
    link: Option<&[u8]>,
    clean: &CleanEntry,
    data: &mut impl Read,
) -> Result<(), CopyError> {
    let mut header = tar::Header::new_gnu();
    {
        // tar::Header's numeric setters format each number through an allocated String, and
        // its path setters want UTF-8 where a long name is cut: both are written here directly.
        let fields = header.as_old_mut();
        put_number(&mut fields.mode, u64::from(clean.meta.mode));
        put_number(&mut fields.uid, clean.meta.uid);
        put_number(&mut fields.gid, clean.meta.gid);
        put_number(&mut fields.mtime, clean.meta.mtime);
        put_number(&mut fields.size, if clean.kind == CleanKind::File { clean.meta.size } else { 0 });
        put_name(&mut fields.name, path);
        if let Some(link) = link {
            put_name(&mut fields.linkname, link);
        }
    }
    // A name that is not UTF-8 or longer than its field is dropped: the numeric id remains.
    if let Some(name) = clean.meta.uname.as_deref().and_then(|n| std::str::from_utf8(n).ok()) {
        let _ = header.set_username(name);
    }
    if let Some(name) = clean.meta.gname.as_deref().and_then(|n| std::str::from_utf8(n).ok()) {
        let _ = header.set_groupname(name);
    }
    header.set_entry_type(match clean.kind {
        CleanKind::File => tar::EntryType::Regular,
        CleanKind::Dir => tar::EntryType::Directory,
        CleanKind::Symlink { .. } => tar::EntryType::Symlink,
        CleanKind::HardLink { .. } => tar::EntryType::Link,
    });
    header.set_cksum();
    if path.len() >= NAME_FIELD {
        append_long_name(out, b'L', path).map_err(CopyError::Output)?;
    }
    if let Some(link) = link.filter(|l| l.len() >= NAME_FIELD) {
        append_long_name(out, b'K', link).map_err(CopyError::Output)?;
    }
    if clean.kind != CleanKind::File {
        return out.append(&header, io::empty()).map_err(CopyError::Output);
    }
    let mut tracked = Tracked { inner: data, failed: false };
    // The entry yields exactly `size` bytes or fails, so the header we wrote stays true.
    out.append(&header, &mut tracked).map_err(|e| if tracked.failed { input_error(e) } else { CopyError::Output(e) })
}

/// The name and link name fields of a header.
const NAME_FIELD: usize = 100;

/// As much of a name as fits; the whole name goes in a long-name record before the header when
/// it is this long (as GNU tar does from 100 bytes on).
fn put_name(field: &mut [u8; NAME_FIELD], name: &[u8]) {
    let n = name.len().min(NAME_FIELD);
    field[..n].copy_from_slice(&name[..n]);
}

/// A GNU `L` or `K` record: the name, NUL-terminated, as the data of a `././@LongLink` entry.
fn append_long_name<W: Write>(out: &mut tar::Builder<W>, kind: u8, name: &[u8]) -> io::Result<()> {
    let mut header = tar::Header::new_gnu();
    let size = name.len() as u64 + 1;
    {
        let fields = header.as_old_mut();
        put_name(&mut fields.name, b"././@LongLink");
        put_number(&mut fields.mode, 0o644);
        put_number(&mut fields.uid, 0);
        put_number(&mut fields.gid, 0);
        put_number(&mut fields.mtime, 0);
        put_number(&mut fields.size, size);
    }
    header.set_entry_type(tar::EntryType::new(kind));
    header.set_cksum();
    out.append(&header, name.chain(&[0u8][..]))
}

/// A numeric header field: zero-padded octal and a NUL when it fits, else GNU base-256 (as
/// `tar::Header` writes them).
fn put_number(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits >= 22 || value >> (3 * digits) == 0 {
        let mut v = value;
        for slot in field[..digits].iter_mut().rev() {
            *slot = b'0' + (v & 7) as u8;
            v >>= 3;
        }
        field[digits] = 0;
    } else {
        field.fill(0);
        let len = field.len();
        for (i, slot) in field[len - 8..].iter_mut().enumerate() {
            *slot = (value >> (8 * (7 - i))) as u8;
        }
        field[0] |= 0x80;
    }
}

/// Remembers whether reading failed, to tell the input's failures from the output's.
struct Tracked<'a, R> {
    inner: &'a mut R,
    failed: bool,
}

impl<R: Read> Read for Tracked<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf);
        if read.as_ref().is_err_and(|e| e.kind() != io::ErrorKind::Interrupted) {
            self.failed = true;
        }
        read
    }
}

/// A read error of an entry: the archive's (cut short), or the stream's.
fn input_error(e: io::Error) -> CopyError {
    if !e.get_ref().is_some_and(|inner| inner.is::<TarError>()) {
        return CopyError::Input(e);
    }
    match e.into_inner().map(|inner| inner.downcast::<TarError>()) {
        Some(Ok(tar)) => (*tar).into(),
        Some(Err(other)) => CopyError::Input(io::Error::other(other)),
        None => CopyError::Input(io::Error::other("reading an entry failed")),
    }
}

#[cfg(test)]
mod tests {
    use super::put_number;

    #[test]
    fn numbers_are_written_as_tar_writes_them() {
        // uid and gid are 8-byte fields (at most u32::MAX reaches them), size and mtime 12-byte.
        for value in [0, 1, 0o777, 0o7777777, 0o10000000, 0o77777777777, 0o100000000000, u64::from(u32::MAX), u64::MAX] {
            let mut ours = tar::Header::new_gnu();
            let mut theirs = tar::Header::new_gnu();
            let uid = value.min(u64::from(u32::MAX));
            put_number(&mut ours.as_old_mut().uid, uid);
            put_number(&mut ours.as_old_mut().size, value);
            theirs.set_uid(uid);
            theirs.set_size(value);
            assert_eq!(ours.as_old().uid, theirs.as_old().uid, "uid {uid:o}");
            assert_eq!(ours.as_old().size, theirs.as_old().size, "size {value:o}");
            assert_eq!((ours.uid().unwrap(), ours.size().unwrap()), (uid, value));
        }
        let mut h = tar::Header::new_gnu();
        put_number(&mut h.as_old_mut().mode, 0o4755);
        assert_eq!(h.mode().unwrap(), 0o4755);
    }
}
