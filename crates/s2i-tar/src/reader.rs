//! A streaming tar reader whose every record is bounded.
//!
//! Why not `tar::Archive`: it reads GNU long-name and PAX records whole, whatever size their
//! header claims (an 8 GiB name from a few MB of .tgz), and its raw mode ignores PAX sizes. Here
//! each header block is parsed by hand (the checksum checked, numbers read strictly, octal or
//! base-256), extension records are read only up to [`Limits`], and an entry's data is exactly
//! the size that was parsed, PAX `size` included, so what a caller copies is what it checked.

use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::error::{lossy, Limit, LimitExceeded, TarError};

const BLOCK: usize = 512;

/// Caps on what one archive may make us hold in memory. Each has an error that names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest path or link target, in bytes (GNU long-name records, PAX `path` and `linkpath`).
    pub max_name: u64,
    /// Most bytes of PAX extended records before one entry (all its `x` records together), and
    /// the largest global (`g`) record.
    pub max_pax: u64,
    /// Most distinct paths (given or implied) that one [`Guard`](crate::Guard) keeps track of.
    pub max_paths: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_name: 64 * 1024, max_pax: 1024 * 1024, max_paths: 1_000_000 }
    }
}

/// What an entry is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A regular file (types `0`, NUL and `7`).
    #[default]
    File,
    Dir,
    Symlink,
    HardLink,
    CharDevice,
    BlockDevice,
    Fifo,
    /// A type flag this reader does not know; its data (by its size) is skipped with the entry.
    Unknown(u8),
}

impl EntryKind {
    fn from_type_flag(flag: u8) -> EntryKind {
        match flag {
            b'0' | 0 | b'7' => EntryKind::File,
            b'1' => EntryKind::HardLink,
            b'2' => EntryKind::Symlink,
            b'3' => EntryKind::CharDevice,
            b'4' => EntryKind::BlockDevice,
            b'5' => EntryKind::Dir,
            b'6' => EntryKind::Fifo,
            other => EntryKind::Unknown(other),
        }
    }

    /// Kinds that never carry data. Extractors disagree on whether a size given on their header
    /// is followed by data (Go's archive/tar ignores it, GNU tar skips it), so such a header
    /// is refused rather than guessed at.
    fn is_header_only(self) -> bool {
        matches!(
            self,
            EntryKind::Dir | EntryKind::Symlink | EntryKind::HardLink | EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Fifo
        )
    }

    fn describe(self) -> String {
        match self {
            EntryKind::File => "file".into(),
            EntryKind::Dir => "directory".into(),
            EntryKind::Symlink => "symlink".into(),
            EntryKind::HardLink => "hard link".into(),
            EntryKind::CharDevice => "character device".into(),
            EntryKind::BlockDevice => "block device".into(),
            EntryKind::Fifo => "fifo".into(),
            EntryKind::Unknown(t) => format!("entry of unknown type {:?}", t as char),
        }
    }
}

/// An entry's permissions, owner, time and size: as an archive states them (in an
/// [`EntryHeader`]) and as they are to be written once the guard accepted the entry (in a
/// [`CleanEntry`](crate::CleanEntry)).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`0o7777`); file-type bits some writers add are dropped.
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Option<Vec<u8>>,
    pub gname: Option<Vec<u8>>,
    /// Seconds since the epoch (fractions dropped, times before 1970 read as 0).
    pub mtime: u64,
    /// Bytes of data that follow (the PAX `size` when there is one); in a `CleanEntry`, the bytes
    /// to copy: the entry's size for files, 0 for everything else.
    pub size: u64,
}

/// An entry's header as parsed, with its GNU long-name and PAX records applied. Nothing here is
/// checked beyond the format: [`Guard`](crate::Guard) decides what may pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryHeader {
    /// The path as the archive spells it (never containing NUL).
    pub path: Vec<u8>,
    /// For symlinks and hard links, the target as the archive spells it (never containing NUL).
    pub link_target: Option<Vec<u8>>,
    pub kind: EntryKind,
    pub meta: EntryMeta,
    /// `SCHILY.xattr.NAME=VALUE` records, NAME without the prefix.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Major and minor numbers, for devices.
    pub device: Option<(u32, u32)>,
}

impl EntryHeader {
    /// A header with a path and a kind, everything else zero (for callers feeding the guard
    /// entries that do not come from a tar, such as a zip's).
    pub fn new(path: impl Into<Vec<u8>>, kind: EntryKind) -> Self {
        EntryHeader { path: path.into(), kind, ..Default::default() }
    }

    pub fn path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    pub fn link_target(&self) -> Option<&Path> {
        self.link_target.as_deref().map(|t| Path::new(OsStr::from_bytes(t)))
    }

    /// The path for messages (lossy UTF-8).
    pub fn display_path(&self) -> String {
        lossy(&self.path)
    }
}

/// Where the stream is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Entries,
    Ended,
    Failed,
}

/// Reads a tar stream entry by entry, holding at most one header's records in memory.
///
/// The stream must end with the end-of-archive marker (one or two zero blocks): an end of input
/// before it is [`TarError::Truncated`]. After the marker, [`drain`](Self::drain) reads the rest
/// (a container's stdout must be read to its end).
pub struct TarReader<R> {
    inner: R,
    limits: Limits,
    /// Bytes consumed from `inner`.
    offset: u64,
    /// Data of the current entry not read yet, then its padding to the next block.
    remaining: u64,
    padding: u64,
    /// The current entry's header (kept here, not cloned, for an error while skipping its data).
    header: EntryHeader,
    state: State,
}

/// One entry: its header, and its data through [`Read`] (exactly [`EntryHeader::size`] bytes;
/// an early end of the stream is an error naming the entry). What is not read is skipped when
/// the next entry is asked for.
pub struct Entry<'a, R: Read> {
    reader: &'a mut TarReader<R>,
}

impl<R: Read> Entry<'_, R> {
    pub fn header(&self) -> &EntryHeader {
        &self.reader.header
    }

    /// Data bytes not read yet.
    pub fn remaining(&self) -> u64 {
        self.reader.remaining
    }
}

impl<R: Read> Read for Entry<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = &mut *self.reader;
        if r.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let max = buf.len().min(usize::try_from(r.remaining).unwrap_or(usize::MAX));
        let n = match r.inner.read(&mut buf[..max]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                r.state = State::Failed;
                return Err(e);
            }
        };
        if n == 0 {
            r.state = State::Failed;
            let err = TarError::Truncated { offset: r.offset, entry: Some(r.header.display_path()) };
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, err));
        }
        r.remaining -= n as u64;
        r.offset += n as u64;
        Ok(n)
    }
}

/// What came after the end-of-archive marker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drained {
    pub bytes: u64,
    /// Some of it was not zeros (another archive appended, say): it was ignored.
    pub non_zero: bool,
}

/// The GNU and PAX records that apply to the next entry.
#[derive(Default)]
struct Extensions {
    long_name: Option<Vec<u8>>,
    long_link: Option<Vec<u8>>,
    path: Option<Vec<u8>>,
    linkpath: Option<Vec<u8>>,
    size: Option<u64>,
    uid: Option<u64>,
    gid: Option<u64>,
    mtime: Option<u64>,
    uname: Option<Vec<u8>>,
    gname: Option<Vec<u8>>,
    xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Bytes of `x` records read so far for this entry.
    pax_bytes: u64,
    /// Any record was seen (an end-of-archive right after one is malformed).
    any: bool,
}

impl Extensions {
    /// The name the next entry will have, if a record gave one.
    fn name(&self) -> Option<String> {
        self.path.as_deref().or(self.long_name.as_deref()).map(lossy)
    }
}

impl<R: Read> TarReader<R> {
    pub fn new(inner: R) -> Self {
        Self::with_limits(inner, Limits::default())
    }

    pub fn with_limits(inner: R, limits: Limits) -> Self {
        TarReader { inner, limits, offset: 0, remaining: 0, padding: 0, header: EntryHeader::default(), state: State::Entries }
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Bytes read from the stream so far.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// The next entry, or `None` at the end-of-archive marker. Extension records (`x`, `g`,
    /// `L`, `K`) are consumed here and applied to the entry they precede. After an error the
    /// reader is unusable: every later call fails.
    pub fn next_entry(&mut self) -> Result<Option<Entry<'_, R>>, TarError> {
        match self.state {
            State::Ended => return Ok(None),
            State::Failed => {
                return Err(TarError::Malformed { offset: self.offset, entry: None, reason: "reading stopped at an earlier error".into() })
            }
            State::Entries => {}
        }
        match self.read_header() {
            Ok(Some(header)) => {
                self.remaining = header.meta.size;
                self.padding = padding(header.meta.size);
                self.header = header;
                Ok(Some(Entry { reader: self }))
            }
            Ok(None) => {
                self.state = State::Ended;
                Ok(None)
            }
            Err(e) => {
                self.state = State::Failed;
                Err(e)
            }
        }
    }

    /// Read the stream to its end, whatever is left (after the end marker: zero padding, usually).
    pub fn drain(&mut self) -> Result<Drained, TarError> {
        let mut buf = [0u8; 8192];
        let mut drained = Drained::default();
        loop {
            match self.inner.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    drained.bytes += n as u64;
                    drained.non_zero |= buf[..n].iter().any(|b| *b != 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.offset += drained.bytes;
        self.remaining = 0;
        self.padding = 0;
        Ok(drained)
    }

    fn read_header(&mut self) -> Result<Option<EntryHeader>, TarError> {
        self.skip_current()?;
        let mut ext = Extensions::default();
        loop {
            let at = self.offset;
            let mut block = [0u8; BLOCK];
            let n = self.fill(&mut block)?;
            if n == 0 && at == 0 {
                return Err(TarError::Empty);
            }
            if n < BLOCK {
                return Err(TarError::Truncated { offset: self.offset, entry: ext.name() });
            }
            if block.iter().all(|b| *b == 0) {
                // One zero block ends the archive, as for GNU tar; a second, if any, is drained.
                if ext.any {
                    return Err(malformed(at, ext.name(), "extension records are not followed by an entry"));
                }
                return Ok(None);
            }
            let raw = RawHeader(&block);
            if !raw.checksum_ok() {
                let reason = match compression(&block).filter(|_| at == 0) {
                    Some(format) => format!("this is not a tar archive but {format} data"),
                    None => "a header's checksum does not match: this is not a tar header".into(),
                };
                return Err(malformed(at, ext.name(), reason));
            }
            let name = || ext.name().unwrap_or_else(|| lossy(&raw.path()));
            let size = raw.number(SIZE).map_err(|why| malformed(at, Some(name()), format!("its size field {why}")))?;
            match raw.type_flag() {
                b'x' => {
                    self.read_pax(size, &mut ext, at)?;
                    ext.any = true;
                }
                b'g' => {
                    // Global records would apply to every later entry; we pass on rebuilt
                    // headers, so they are read within the cap and dropped.
                    if size > self.limits.max_pax {
                        return Err(LimitExceeded { limit: Limit::PaxRecords, entry: None, actual: size, max: self.limits.max_pax }.into());
                    }
                    self.skip_exact(size, None)?;
                    self.skip_exact(padding(size), None)?;
                }
                b'L' => {
                    ext.long_name = Some(self.read_long_name(size, at, ext.name())?);
                    ext.any = true;
                }
                b'K' => {
                    ext.long_link = Some(self.read_long_name(size, at, ext.name())?);
                    ext.any = true;
                }
                b'S' => return Err(TarError::Unsupported { offset: at, entry: Some(name()), what: "a GNU sparse file" }),
                b'M' => {
                    return Err(TarError::Unsupported { offset: at, entry: Some(name()), what: "a multi-volume continuation" })
                }
                flag => return self.entry_header(&raw, flag, size, ext, at).map(Some),
            }
        }
    }

    /// The header of a real entry, its extension records applied.
    fn entry_header(&mut self, raw: &RawHeader<'_>, flag: u8, size: u64, ext: Extensions, at: u64) -> Result<EntryHeader, TarError> {
        let path = ext.path.or(ext.long_name).unwrap_or_else(|| raw.path());
        // Names for messages are made only when there is an error to report.
        let entry = || Some(lossy(&path));
        let number = |field: Field, what: &str| raw.number(field).map_err(|why| malformed(at, entry(), format!("its {what} field {why}")));
        let mut kind = EntryKind::from_type_flag(flag);
        // A regular-file header whose name ends in '/' is a directory (old tars, and GNU tar).
        if kind == EntryKind::File && path.ends_with(b"/") {
            kind = EntryKind::Dir;
        }
        let size = ext.size.unwrap_or(size);
        if kind.is_header_only() && size > 0 {
            let reason = format!("a {} header claims {size} bytes of data, which such entries never have", kind.describe());
            return Err(malformed(at, entry(), reason));
        }
        let link_target = match kind {
            EntryKind::Symlink | EntryKind::HardLink => {
                Some(ext.linkpath.or(ext.long_link).unwrap_or_else(|| field_bytes(raw.field(LINKNAME)).to_vec()))
            }
            _ => None,
        };
        let mode = number(MODE, "mode")? & 0o7777;
        let uid = match ext.uid {
            Some(uid) => uid,
            None => number(UID, "uid")?,
        };
        let gid = match ext.gid {
            Some(gid) => gid,
            None => number(GID, "gid")?,
        };
        // Owners are 32-bit on every system we write for; larger ones do not fit a header's field.
        for (what, id) in [("uid", uid), ("gid", gid)] {
            if id > u64::from(u32::MAX) {
                return Err(malformed(at, entry(), format!("its {what} {id} is out of range")));
            }
        }
        let mtime = match ext.mtime {
            Some(t) => t,
            None => match raw.number(MTIME) {
                Err(NumberError::Negative) => 0,
                other => other.map_err(|why| malformed(at, entry(), format!("its mtime field {why}")))?,
            },
        };
        let device = match kind {
            EntryKind::CharDevice | EntryKind::BlockDevice if raw.format() != Format::Old => {
                let num = |field, what| -> Result<u32, TarError> {
                    let n = number(field, what)?;
                    u32::try_from(n).map_err(|_| malformed(at, entry(), format!("its {what} number {n} is too large")))
                };
                Some((num(DEVMAJOR, "device major")?, num(DEVMINOR, "device minor")?))
            }
            _ => None,
        };
        let (uname, gname) = match raw.format() {
            Format::Old => (None, None),
            _ => (non_empty(field_bytes(raw.field(UNAME))), non_empty(field_bytes(raw.field(GNAME)))),
        };
        Ok(EntryHeader {
            path,
            link_target,
            kind,
            meta: EntryMeta { mode: mode as u32, uid, gid, uname: ext.uname.or(uname), gname: ext.gname.or(gname), mtime, size },
            xattrs: ext.xattrs,
            device,
        })
    }

    /// A GNU `L` or `K` record: a name, NUL-terminated, read only up to the cap.
    fn read_long_name(&mut self, size: u64, at: u64, entry: Option<String>) -> Result<Vec<u8>, TarError> {
        // The record holds the name and its terminating NUL.
        if size > self.limits.max_name.saturating_add(1) {
            return Err(LimitExceeded { limit: Limit::Name, entry, actual: size.saturating_sub(1), max: self.limits.max_name }.into());
        }
        let mut name = self.read_record(size, entry.clone())?;
        while name.last() == Some(&0) {
            name.pop();
        }
        if name.contains(&0) {
            return Err(malformed(at, entry, format!("the GNU long name {:?} contains a NUL byte", lossy(&name))));
        }
        Ok(name)
    }

    /// A PAX `x` record set, parsed into `ext`.
    fn read_pax(&mut self, size: u64, ext: &mut Extensions, at: u64) -> Result<(), TarError> {
        let total = ext.pax_bytes.saturating_add(size);
        if total > self.limits.max_pax {
            return Err(LimitExceeded { limit: Limit::PaxRecords, entry: ext.name(), actual: total, max: self.limits.max_pax }.into());
        }
        ext.pax_bytes = total;
        let records = self.read_record(size, ext.name())?;
        parse_pax(&records, ext, &self.limits).map_err(|e| match e {
            PaxError::Malformed(reason) => malformed(at, ext.name(), reason),
            PaxError::Sparse => TarError::Unsupported { offset: at, entry: ext.name(), what: "a GNU sparse file (PAX format)" },
            PaxError::Limit(actual) => LimitExceeded { limit: Limit::Name, entry: None, actual, max: self.limits.max_name }.into(),
        })
    }

    /// `size` bytes (already checked against a cap), then the padding after them.
    fn read_record(&mut self, size: u64, entry: Option<String>) -> Result<Vec<u8>, TarError> {
        let len = usize::try_from(size).map_err(|_| TarError::Truncated { offset: self.offset, entry: entry.clone() })?;
        let mut data = vec![0u8; len];
        if self.fill(&mut data)? < len {
            return Err(TarError::Truncated { offset: self.offset, entry });
        }
        self.skip_exact(padding(size), entry)?;
        Ok(data)
    }

    /// Skip what is left of the current entry: its unread data and its padding.
    fn skip_current(&mut self) -> Result<(), TarError> {
        // Apart: a size near 2^64 plus its padding would overflow.
        let (data, padding) = (self.remaining, self.padding);
        self.remaining = 0;
        self.padding = 0;
        if data == 0 && padding == 0 {
            return Ok(());
        }
        let skipped = self.skip_exact(data, None).and_then(|()| self.skip_exact(padding, None));
        skipped.map_err(|e| match e {
            TarError::Truncated { offset, .. } => TarError::Truncated { offset, entry: Some(self.header.display_path()) },
            other => other,
        })
    }

    fn skip_exact(&mut self, n: u64, entry: Option<String>) -> Result<(), TarError> {
        if n == 0 {
            return Ok(());
        }
        if n <= BLOCK as u64 {
            // Padding: no need for (and no cost of) a large buffer.
            let mut buf = [0u8; BLOCK];
            let n = n as usize;
            if self.fill(&mut buf[..n])? < n {
                return Err(TarError::Truncated { offset: self.offset, entry });
            }
            return Ok(());
        }
        let mut buf = [0u8; 8192];
        let mut left = n;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let got = self.fill(&mut buf[..want])?;
            left -= got as u64;
            if got < want {
                return Err(TarError::Truncated { offset: self.offset, entry });
            }
        }
        Ok(())
    }

    /// Fill `buf`, or as much of it as the stream has left.
    fn fill(&mut self, buf: &mut [u8]) -> Result<usize, TarError> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.inner.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(TarError::Io(e)),
            }
        }
        self.offset += filled as u64;
        Ok(filled)
    }
}

fn malformed(offset: u64, entry: Option<String>, reason: impl Into<String>) -> TarError {
    TarError::Malformed { offset, entry, reason: reason.into() }
}

/// Zero bytes up to the next block boundary.
fn padding(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn non_empty(b: &[u8]) -> Option<Vec<u8>> {
    (!b.is_empty()).then(|| b.to_vec())
}

/// A fixed-size text field: up to its first NUL.
fn field_bytes(field: &[u8]) -> &[u8] {
    match field.iter().position(|b| *b == 0) {
        Some(end) => &field[..end],
        None => field,
    }
}

/// A compressed stream's magic, for a clearer message than a checksum mismatch.
fn compression(block: &[u8]) -> Option<&'static str> {
    match block {
        [0x1f, 0x8b, ..] => Some("gzip"),
        [0x28, 0xb5, 0x2f, 0xfd, ..] => Some("zstd"),
        [0xfd, b'7', b'z', b'X', b'Z', 0, ..] => Some("xz"),
        [b'B', b'Z', b'h', ..] => Some("bzip2"),
        [b'P', b'K', 3, 4, ..] => Some("zip"),
        _ => None,
    }
}

/// A header field: its offset and length in the block.
type Field = (usize, usize);
const NAME: Field = (0, 100);
const MODE: Field = (100, 8);
const UID: Field = (108, 8);
const GID: Field = (116, 8);
const SIZE: Field = (124, 12);
const MTIME: Field = (136, 12);
const CHKSUM: Field = (148, 8);
const TYPEFLAG: usize = 156;
const LINKNAME: Field = (157, 100);
const MAGIC: Field = (257, 8);
const UNAME: Field = (265, 32);
const GNAME: Field = (297, 32);
const DEVMAJOR: Field = (329, 8);
const DEVMINOR: Field = (337, 8);
const PREFIX: Field = (345, 155);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Version 7: no magic, a 100-byte name and nothing after the link name.
    Old,
    /// POSIX ustar: a 155-byte prefix extends the name.
    Ustar,
    /// Old GNU: the prefix area holds other fields.
    Gnu,
}

/// One header block.
struct RawHeader<'a>(&'a [u8; BLOCK]);

impl RawHeader<'_> {
    fn field(&self, (at, len): Field) -> &[u8] {
        &self.0[at..at + len]
    }

    fn type_flag(&self) -> u8 {
        self.0[TYPEFLAG]
    }

    fn format(&self) -> Format {
        let magic = self.field(MAGIC);
        if magic == b"ustar  \0" {
            Format::Gnu
        } else if &magic[..6] == b"ustar\0" {
            Format::Ustar
        } else {
            Format::Old
        }
    }

    /// The name field, with the ustar prefix in front when there is one.
    fn path(&self) -> Vec<u8> {
        let name = field_bytes(self.field(NAME));
        let prefix = if self.format() == Format::Ustar { field_bytes(self.field(PREFIX)) } else { &[][..] };
        if prefix.is_empty() {
            name.to_vec()
        } else {
            [prefix, b"/", name].concat()
        }
    }

    /// The sum of the header's bytes with the checksum field read as spaces, unsigned or (as
    /// some old tars compute it) signed, must match the checksum field.
    fn checksum_ok(&self) -> bool {
        let Ok(stored) = parse_number(self.field(CHKSUM)) else { return false };
        let spaces = 8 * u64::from(b' ');
        let unsigned: u64 = self.0.iter().map(|b| u64::from(*b)).sum::<u64>() - self.field(CHKSUM).iter().map(|b| u64::from(*b)).sum::<u64>() + spaces;
        if stored == unsigned {
            return true;
        }
        let signed: i64 = self.0.iter().map(|b| i64::from(*b as i8)).sum::<i64>() - self.field(CHKSUM).iter().map(|b| i64::from(*b as i8)).sum::<i64>()
            + spaces as i64;
        i64::try_from(stored).is_ok_and(|s| s == signed)
    }

    fn number(&self, field: Field) -> Result<u64, NumberError> {
        parse_number(self.field(field))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumberError {
    Invalid,
    Negative,
    TooLarge,
}

impl std::fmt::Display for NumberError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NumberError::Invalid => "is not an octal or base-256 number",
            NumberError::Negative => "is negative",
            NumberError::TooLarge => "is larger than 2^64",
        })
    }
}

/// A numeric field: octal digits after optional spaces, ended by spaces or NULs (all blank
/// reads as 0), or GNU's base-256 (high bit of the first byte set; 0xff starts a negative).
fn parse_number(field: &[u8]) -> Result<u64, NumberError> {
    match field.first() {
        Some(&first) if first & 0x80 != 0 => {
            if first == 0xff {
                return Err(NumberError::Negative);
            }
            let mut value = u64::from(first & 0x7f);
            for b in &field[1..] {
                value = value.checked_mul(256).and_then(|v| v.checked_add(u64::from(*b))).ok_or(NumberError::TooLarge)?;
            }
            Ok(value)
        }
        _ => {
            let start = field.iter().position(|b| *b != b' ').unwrap_or(field.len());
            let digits = field[start..].iter().take_while(|b| (b'0'..=b'7').contains(b)).count();
            if !field[start + digits..].iter().all(|b| *b == b' ' || *b == 0) {
                return Err(NumberError::Invalid);
            }
            field[start..start + digits]
                .iter()
                .try_fold(0u64, |v, d| v.checked_mul(8).and_then(|v| v.checked_add(u64::from(d - b'0'))))
                .ok_or(NumberError::TooLarge)
        }
    }
}

enum PaxError {
    Malformed(String),
    Sparse,
    /// A path or link path of this many bytes, over [`Limits::max_name`].
    Limit(u64),
}

/// Records `"<length> <key>=<value>\n"`, the length counting the whole record.
fn parse_pax(mut data: &[u8], ext: &mut Extensions, limits: &Limits) -> Result<(), PaxError> {
    let bad = |what: &str| PaxError::Malformed(format!("a PAX record {what}"));
    while !data.is_empty() {
        let space = data.iter().position(|b| *b == b' ').ok_or_else(|| bad("has no length"))?;
        let digits = &data[..space];
        if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
            return Err(bad("has no valid length"));
        }
        let len: usize = std::str::from_utf8(digits).ok().and_then(|s| s.parse().ok()).ok_or_else(|| bad("has no valid length"))?;
        if len <= space + 1 || len > data.len() {
            return Err(bad("has a length that does not fit"));
        }
        let record = &data[space + 1..len];
        data = &data[len..];
        let Some((b'\n', kv)) = record.split_last() else { return Err(bad("does not end with a newline")) };
        let eq = kv.iter().position(|b| *b == b'=').ok_or_else(|| bad("has no '='"))?;
        let (key, value) = (&kv[..eq], &kv[eq + 1..]);
        apply_pax(key, value, ext, limits)?;
    }
    Ok(())
}

fn apply_pax(key: &[u8], value: &[u8], ext: &mut Extensions, limits: &Limits) -> Result<(), PaxError> {
    let name = |value: &[u8]| -> Result<Option<Vec<u8>>, PaxError> {
        if value.len() as u64 > limits.max_name {
            return Err(PaxError::Limit(value.len() as u64));
        }
        if value.contains(&0) {
            return Err(PaxError::Malformed(format!("the PAX name {:?} contains a NUL byte", lossy(value))));
        }
        // An empty value cancels the record: the header's own field applies.
        Ok(non_empty(value))
    };
    let decimal = |value: &[u8]| -> Result<Option<u64>, PaxError> {
        if value.is_empty() {
            return Ok(None);
        }
        std::str::from_utf8(value)
            .ok()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse().ok())
            .map(Some)
            .ok_or_else(|| PaxError::Malformed(format!("the PAX {} {:?} is not a number", lossy(key), lossy(value))))
    };
    match key {
        b"path" => ext.path = name(value)?,
        b"linkpath" => ext.linkpath = name(value)?,
        b"size" => ext.size = decimal(value)?,
        b"uid" => ext.uid = decimal(value)?,
        b"gid" => ext.gid = decimal(value)?,
        b"mtime" => ext.mtime = pax_time(value).map_err(|()| PaxError::Malformed(format!("the PAX mtime {:?} is not a time", lossy(value))))?,
        b"uname" => ext.uname = non_empty(value),
        b"gname" => ext.gname = non_empty(value),
        _ if key.starts_with(b"GNU.sparse.") => return Err(PaxError::Sparse),
        _ => {
            if let Some(attr) = key.strip_prefix(b"SCHILY.xattr.").filter(|a| !a.is_empty()) {
                ext.xattrs.push((attr.to_vec(), value.to_vec()));
            }
            // Anything else (atime, ctime, comment, charset…) has no use in a rebuilt header.
        }
    }
    Ok(())
}

/// A PAX time: `[-]seconds[.fraction]`; fractions dropped, negative times read as 0.
fn pax_time(value: &[u8]) -> Result<Option<u64>, ()> {
    if value.is_empty() {
        return Ok(None);
    }
    let (negative, rest) = match value.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, value),
    };
    let (secs, fraction) = match rest.iter().position(|b| *b == b'.') {
        Some(dot) => (&rest[..dot], &rest[dot + 1..]),
        None => (rest, &[][..]),
    };
    if secs.is_empty() || !secs.iter().all(u8::is_ascii_digit) || !fraction.iter().all(u8::is_ascii_digit) {
        return Err(());
    }
    if negative {
        return Ok(Some(0));
    }
    std::str::from_utf8(secs).ok().and_then(|s| s.parse().ok()).map(Some).ok_or(())
}
