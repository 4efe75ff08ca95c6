//! Reading layer tars, behind one function so that the `tar` crate can be swapped for
//! `s2i-tar`'s bounded reader when it lands (the `tar` crate reads GNU long names and PAX records
//! whole, so a hostile layer can make it allocate; the caps belong in that reader).

use std::io::Read;

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
    /// PAX global headers and the like: metadata for the reader, nothing to create.
    Meta,
    /// GNU sparse files and multi-volume continuations, which no image writer produces.
    Unsupported(u8),
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

fn kind_of(t: tar::EntryType) -> Kind {
    use tar::EntryType as T;
    match t {
        T::Regular | T::Continuous => Kind::File,
        T::Directory => Kind::Dir,
        T::Symlink => Kind::Symlink,
        T::Link => Kind::HardLink,
        T::Char => Kind::Char,
        T::Block => Kind::Block,
        T::Fifo => Kind::Fifo,
        T::XGlobalHeader => Kind::Meta,
        T::GNUSparse => Kind::Unsupported(b'S'),
        other => match other.as_byte() {
            b'M' | b'V' => Kind::Unsupported(other.as_byte()),
            b => Kind::Unknown(b),
        },
    }
}

/// Calls `each` with every entry of the tar `input` and a reader of exactly its data, in stream
/// order; returns `input` positioned after the end-of-archive blocks. `what` names the stream in
/// errors.
pub fn for_each_entry<R: Read>(
    input: R,
    what: &str,
    mut each: impl FnMut(&EntryHeader, &mut dyn Read) -> Result<()>,
) -> Result<R> {
    let stream_err = |source: std::io::Error| ImageError::Stream { what: what.to_string(), source };
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().map_err(stream_err)? {
        let mut entry = entry.map_err(stream_err)?;
        let mut xattrs = Vec::new();
        if let Some(pax) = entry.pax_extensions().map_err(stream_err)? {
            for ext in pax {
                let ext = ext.map_err(stream_err)?;
                if let Some(name) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                    xattrs.push((String::from_utf8_lossy(name).into_owned(), ext.value_bytes().to_vec()));
                }
            }
        }
        let h = entry.header();
        let header = EntryHeader {
            path: entry.path_bytes().into_owned(),
            link: entry.link_name_bytes().map(|l| l.into_owned()),
            kind: kind_of(h.entry_type()),
            mode: h.mode().map_err(stream_err)?,
            uid: h.uid().map_err(stream_err)?,
            gid: h.gid().map_err(stream_err)?,
            mtime: h.mtime().unwrap_or(0),
            size: entry.size(),
            dev_major: h.device_major().ok().flatten().unwrap_or(0),
            dev_minor: h.device_minor().ok().flatten().unwrap_or(0),
            xattrs,
        };
        each(&header, &mut entry)?;
    }
    Ok(archive.into_inner())
}
