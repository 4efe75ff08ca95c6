//! Reading layer tars (and image archives) through `s2i-tar`'s bounded reader: every header and
//! extension record is capped (a hostile layer cannot make us allocate what its GNU long-name or
//! PAX header claims), sparse and multi-volume entries are refused, and an archive must end with
//! its end-of-archive marker.

use std::io::Read;

use s2i_tar::{EntryKind, TarError, TarReader};

use super::error::{ImageError, Result};

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    HardLink,
    Char,
    Block,
    Fifo,
    /// Anything else: skipped with a warning.
    Unknown(u8),
}

/// One entry's header, as parsed (PAX records and GNU long names applied).
#[derive(Debug, Clone)]
pub struct EntryHeader {
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub size: u64,
    pub dev_major: u32,
    pub dev_minor: u32,
    /// `SCHILY.xattr.NAME` records.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl EntryHeader {
    pub fn display_path(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

fn kind_of(k: EntryKind) -> Kind {
    match k {
        EntryKind::File => Kind::File,
        EntryKind::Dir => Kind::Dir,
        EntryKind::Symlink => Kind::Symlink,
        EntryKind::HardLink => Kind::HardLink,
        EntryKind::CharDevice => Kind::Char,
        EntryKind::BlockDevice => Kind::Block,
        EntryKind::Fifo => Kind::Fifo,
        EntryKind::Unknown(t) => Kind::Unknown(t),
    }
}

/// Calls `each` with every entry of the tar `input` and a reader of exactly its data, in stream
/// order; returns `input` positioned after the end-of-archive marker. `what` names the stream in
/// errors.
pub fn for_each_entry<R: Read>(
    input: R,
    what: &str,
    mut each: impl FnMut(&EntryHeader, &mut dyn Read) -> Result<()>,
) -> Result<R> {
    let tar_err = |e: TarError| ImageError::Tar { what: what.to_string(), source: e };
    let mut reader = TarReader::new(input);
    while let Some(mut entry) = reader.next_entry().map_err(tar_err)? {
        let h = entry.header();
        let (dev_major, dev_minor) = h.device.unwrap_or((0, 0));
        let header = EntryHeader {
            path: h.path.clone(),
            link: h.link_target.clone(),
            kind: kind_of(h.kind),
            mode: h.meta.mode,
            uid: h.meta.uid,
            gid: h.meta.gid,
            mtime: h.meta.mtime,
            size: h.meta.size,
            dev_major,
            dev_minor,
            // A name that is not UTF-8 matches none of the namespaces an unpack keeps.
            xattrs: h.xattrs.iter().map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone())).collect(),
        };
        each(&header, &mut entry)?;
    }
    Ok(reader.into_inner())
}
