//! Copying an untrusted tar stream into one of ours, entry by entry, through the guard.

use std::io::{self, Read, Write};
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

    fn written(&mut self, entry: &CleanEntry, path: &Path) {
        self.entries += 1;
        match entry.kind {
            CleanKind::File => {
                self.files += 1;
                self.bytes += entry.size;
            }
            CleanKind::Dir => self.dirs += 1,
            CleanKind::Symlink { .. } => self.symlinks += 1,
            CleanKind::HardLink { .. } => self.hard_links += 1,
        }
        if entry.setid_stripped {
            self.setid_stripped += 1;
            if self.setid_examples.len() < EXAMPLES {
                self.setid_examples.push(path.to_path_buf());
            }
        }
    }
}

/// Copy every entry of the tar read from `input` into `out` under `prefix`, checked by `guard`.
///
/// Headers are rebuilt from what was parsed and checked, never copied: a file's size is the
/// number of bytes copied for it, directories and links carry no data, and PAX or GNU records of
/// the input never reach the output (long names are written again as GNU records by
/// `tar::Builder`). Extended attributes are not copied. At the end-of-archive marker the rest of
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
        let path = prefix.join(&clean.path);
        write_entry(out, prefix, &path, &clean, &mut entry)?;
        trace!("A {}", path.display());
        stats.written(&clean, &path);
    }
    stats.trailing = reader.drain()?;
    if stats.trailing.non_zero {
        warn!("Ignored {} bytes after the end of the archive: they are not part of it", stats.trailing.bytes);
    }
    Ok(stats)
}

fn write_entry<W: Write>(
    out: &mut tar::Builder<W>,
    prefix: &Path,
    path: &Path,
    clean: &CleanEntry,
    data: &mut impl Read,
) -> Result<(), CopyError> {
    let mut header = tar::Header::new_gnu();
    {
        // tar::Header's setters format each number through an allocated String: per entry that
        // costs more than the guard's checks, so the fields are written here directly.
        let fields = header.as_old_mut();
        put_number(&mut fields.mode, u64::from(clean.mode));
        put_number(&mut fields.uid, clean.uid);
        put_number(&mut fields.gid, clean.gid);
        put_number(&mut fields.mtime, clean.mtime);
        put_number(&mut fields.size, if clean.kind == CleanKind::File { clean.size } else { 0 });
    }
    // A name that is not UTF-8 or longer than its field is dropped: the numeric id remains.
    if let Some(name) = clean.uname.as_deref().and_then(|n| std::str::from_utf8(n).ok()) {
        let _ = header.set_username(name);
    }
    if let Some(name) = clean.gname.as_deref().and_then(|n| std::str::from_utf8(n).ok()) {
        let _ = header.set_groupname(name);
    }
    match &clean.kind {
        CleanKind::File => {
            header.set_entry_type(tar::EntryType::Regular);
            let mut tracked = Tracked { inner: data, failed: false };
            // The entry yields exactly `size` bytes or fails, so the header we wrote stays true.
            return out.append_data(&mut header, path, &mut tracked).map_err(|e| {
                if tracked.failed {
                    input_error(e)
                } else {
                    CopyError::Output(e)
                }
            });
        }
        CleanKind::Dir => {
            header.set_entry_type(tar::EntryType::Directory);
            out.append_data(&mut header, path, io::empty())
        }
        CleanKind::Symlink { target } => {
            header.set_entry_type(tar::EntryType::Symlink);
            out.append_link(&mut header, path, target)
        }
        CleanKind::HardLink { target } => {
            header.set_entry_type(tar::EntryType::Link);
            out.append_link(&mut header, path, prefix.join(target))
        }
    }
    .map_err(CopyError::Output)
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
