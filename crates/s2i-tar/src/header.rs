//! Headers of the entries s2i writes itself (layers, archives, image archives): one place that
//! sets the fields every entry carries.

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

#[cfg(test)]
mod tests {
    #[test]
    fn every_field_is_set_and_the_mode_keeps_only_permission_bits() {
        let h = super::gnu(tar::EntryType::Regular, 0o104755, 1001, 0, 1_700_000_000, 42);
        assert_eq!(h.entry_type(), tar::EntryType::Regular);
        assert_eq!(h.mode().unwrap(), 0o4755);
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap(), h.size().unwrap()), (1001, 0, 1_700_000_000, 42));
    }
}
