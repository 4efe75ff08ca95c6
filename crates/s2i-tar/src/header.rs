//! Headers of the entries s2i writes itself (layers, archives, image archives): one place that
//! sets the fields every entry carries, and the reader that holds a file's data to the size its
//! header states.

use std::io::{self, Read};

/// A header of `kind` with `mode` (permission bits only), owner, mtime and size set; its path is
/// the caller's to set (through `tar::Builder`, which writes long names). `base` is the format:
/// `tar::Header::new_gnu()` or `new_ustar()`.
pub fn header(mut base: tar::Header, kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) -> tar::Header {
    base.set_entry_type(kind);
    base.set_mode(mode & 0o7777);
    base.set_uid(uid);
    base.set_gid(gid);
    base.set_mtime(mtime);
    base.set_size(size);
    base
}

/// [`header`] in the GNU format (long names and large numbers as GNU tar writes them).
pub fn gnu(kind: tar::EntryType, mode: u32, uid: u64, gid: u64, mtime: u64, size: u64) -> tar::Header {
    header(tar::Header::new_gnu(), kind, mode, uid, gid, mtime, size)
}

/// Reads exactly the `size` a header states of a file being archived: a file that shrank while it
/// was read fails rather than shifting every later entry; one that grew is cut at that size.
pub struct ExactReader<R> {
    inner: R,
    left: u64,
}

impl<R: Read> ExactReader<R> {
    pub fn new(inner: R, size: u64) -> Self {
        ExactReader { inner, left: size }
    }
}

impl<R: Read> Read for ExactReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_is_set_and_the_mode_keeps_only_permission_bits() {
        let h = super::gnu(tar::EntryType::Regular, 0o104755, 1001, 0, 1_700_000_000, 42);
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(h.mode().unwrap(), 0o4755);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap(), h.size().unwrap()), (1001, 0, 1_700_000_000, 42));
    }

    #[test]
    fn exact_reader_cuts_what_grew_and_fails_on_what_shrank() {
        use std::io::Read;
        let mut out = Vec::new();
        super::ExactReader::new(&b"hello world"[..], 5).read_to_end(&mut out).unwrap();
        assert_eq!(out, b"hello");
        let err = super::ExactReader::new(&b"hi"[..], 5).read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}
