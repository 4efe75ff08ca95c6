//! The reader on hand-made archives (hostile ones included), archives written by GNU tar and
//! busybox in every format they have, and records that claim gigabytes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read};
use std::path::Path;
use std::process::Command;

use common::{header, pax_record, require, RawTar, BLOCK};
use s2i_tar::{EntryHeader, EntryKind, Limit, LimitExceeded, Limits, TarError, TarReader};

/// Every entry: its header and its data.
fn read_all(bytes: &[u8]) -> Result<Vec<(EntryHeader, Vec<u8>)>, TarError> {
    read_all_with(bytes, Limits::default())
}

fn read_all_with(bytes: &[u8], limits: Limits) -> Result<Vec<(EntryHeader, Vec<u8>)>, TarError> {
    let mut r = TarReader::with_limits(bytes, limits);
    let mut out = Vec::new();
    while let Some(mut e) = r.next_entry()? {
        let mut data = Vec::new();
        e.read_to_end(&mut data).map_err(|e| match e.into_inner().map(|i| i.downcast::<TarError>()) {
            Some(Ok(t)) => *t,
            other => panic!("not a tar error: {other:?}"),
        })?;
        out.push((e.header().clone(), data));
    }
    Ok(out)
}

fn names(entries: &[(EntryHeader, Vec<u8>)]) -> Vec<String> {
    entries.iter().map(|(h, _)| h.display_path()).collect()
}

fn err_text(r: Result<Vec<(EntryHeader, Vec<u8>)>, TarError>) -> (TarError, String) {
    let e = r.expect_err("the archive must be refused");
    let text = e.to_string();
    (e, text)
}

#[test]
fn archives_from_tar_builder_read_back() {
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o4755);
    h.set_uid(1001);
    h.set_gid(1002);
    h.set_mtime(1_600_000_000);
    h.set_username("app").unwrap();
    b.append_data(&mut h, "dir/file.txt", &b"hello"[..]).unwrap();
    let long = format!("dir/{}", "n".repeat(150));
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    b.append_data(&mut h, &long, &b"abc"[..]).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    let far = format!("../{}", "t".repeat(200));
    b.append_link(&mut h, "dir/link", &far).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Link);
    b.append_link(&mut h, "dir/hard", "dir/file.txt").unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    b.append_data(&mut h, "dir/sub/", io::empty()).unwrap();
    let bytes = b.into_inner().unwrap();

    let entries = read_all(&bytes).unwrap();
    assert_eq!(names(&entries), ["dir/file.txt", long.as_str(), "dir/link", "dir/hard", "dir/sub/"]);
    let (file, data) = &entries[0];
    assert_eq!((file.kind, file.meta.mode, file.meta.uid, file.meta.gid, file.meta.mtime, file.meta.size), (EntryKind::File, 0o4755, 1001, 1002, 1_600_000_000, 5));
    assert_eq!(file.meta.uname.as_deref(), Some(&b"app"[..]));
    assert_eq!(data, b"hello");
    assert_eq!(entries[1].1, b"abc");
    assert_eq!((entries[2].0.kind, entries[2].0.link_target.as_deref()), (EntryKind::Symlink, Some(far.as_bytes())));
    assert_eq!((entries[3].0.kind, entries[3].0.link_target.as_deref()), (EntryKind::HardLink, Some(&b"dir/file.txt"[..])));
    assert_eq!(entries[4].0.kind, EntryKind::Dir);
}

/// Finding 1: a PAX `size` of 1024 on a header that says 0, then 1024 bytes that are a header and
/// data for scripts/assemble. The entry's data is those 1024 bytes: no second entry appears.
#[test]
fn a_pax_size_owns_the_bytes_that_follow_even_when_they_look_like_a_header() {
    let mut hidden = RawTar::new();
    hidden.file("scripts/assemble", b"#!/bin/sh\nevil\n");
    let hidden = hidden.bytes;
    assert_eq!(hidden.len(), 1024);
    let mut t = RawTar::new();
    t.pax(&[("size", b"1024")]).header(&header(b"innocent", b'0', 0, b"")).block(hidden[..512].try_into().unwrap());
    t.block(hidden[512..].try_into().unwrap());
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!(names(&entries), ["innocent"]);
    assert_eq!(entries[0].0.meta.size, 1024);
    assert_eq!(entries[0].1, hidden);
}

#[test]
fn headers_that_never_carry_data_must_not_claim_any() {
    for (flag, what) in [(b'5', "directory"), (b'2', "symlink"), (b'1', "hard link"), (b'6', "fifo")] {
        let mut t = RawTar::new();
        t.header(&header(b"x", flag, 512, b"target")).data(&[b'A'; 512]);
        let (_, text) = err_text(read_all(&t.finish()));
        assert!(text.contains(&format!("a {what} header claims 512 bytes of data")), "{text}");
        // Through a PAX size too.
        let mut t = RawTar::new();
        t.pax(&[("size", b"512")]).header(&header(b"x", flag, 0, b"target")).data(&[b'A'; 512]);
        let (_, text) = err_text(read_all(&t.finish()));
        assert!(text.contains("claims 512 bytes"), "{text}");
    }
}

#[test]
fn nul_bytes_in_long_names_and_pax_names_are_errors() {
    let mut t = RawTar::new();
    t.long(b'L', b"scripts/assemble\0.txt").file("short", b"");
    let (_, text) = err_text(read_all(&t.finish()));
    assert!(text.contains("contains a NUL byte"), "{text}");

    let mut t = RawTar::new();
    t.long(b'K', b"../../etc\0x").symlink("l", "x");
    let (_, text) = err_text(read_all(&t.finish()));
    assert!(text.contains("contains a NUL byte"), "{text}");

    for key in ["path", "linkpath"] {
        let mut t = RawTar::new();
        t.pax(&[(key, b"a\0b")]).symlink("l", "t");
        let (_, text) = err_text(read_all(&t.finish()));
        assert!(text.contains("contains a NUL byte"), "{key}: {text}");
    }

    // The NUL that ends a GNU long name is its terminator, not part of it.
    let name = "d/".repeat(80) + "f";
    let mut t = RawTar::new();
    t.long(b'L', name.as_bytes()).file("short", b"x");
    assert_eq!(names(&read_all(&t.finish()).unwrap()), [name]);
}

#[test]
fn records_over_a_limit_are_refused_with_the_limit_named() {
    let limits = Limits { max_name: 100, max_pax: 200, max_paths: 10 };
    let mut t = RawTar::new();
    t.long(b'L', &[b'a'; 101]).file("x", b"");
    match read_all_with(&t.finish(), limits) {
        Err(TarError::Limit(LimitExceeded { limit: Limit::Name, actual: 101, max: 100, .. })) => {}
        other => panic!("{other:?}"),
    }
    let mut t = RawTar::new();
    t.pax(&[("path", &[b'a'; 101])]).file("x", b"");
    let e = read_all_with(&t.finish(), limits).unwrap_err();
    assert!(matches!(e, TarError::Limit(LimitExceeded { limit: Limit::Name, .. })), "{e:?}");
    assert!(e.to_string().contains("raise s2i_tar::Limits::max_name"), "{e}");

    // Two record sets before one entry count together.
    let mut t = RawTar::new();
    t.pax(&[("comment", &[b'c'; 120])]).pax(&[("comment", &[b'c'; 120])]).file("x", b"");
    let e = read_all_with(&t.finish(), limits).unwrap_err();
    assert!(matches!(e, TarError::Limit(LimitExceeded { limit: Limit::PaxRecords, .. })), "{e:?}");
    assert!(e.to_string().contains("over the limit of 200 bytes; raise s2i_tar::Limits::max_pax"), "{e}");

    // A global record is read within the cap and ignored.
    let mut t = RawTar::new();
    t.header(&header(b"g", b'g', 300, b"")).data(&[b'g'; 300]).file("x", b"");
    assert!(matches!(read_all_with(&t.bytes, limits), Err(TarError::Limit(LimitExceeded { limit: Limit::PaxRecords, .. }))));
    let mut t = RawTar::new();
    let global = pax_record("path", b"ignored");
    t.header(&header(b"g", b'g', global.len() as u64, b"")).data(&global).file("x", b"data");
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!(names(&entries), ["x"]);
    assert_eq!(entries[0].1, b"data");
}

#[test]
fn pax_records_apply_to_the_next_entry_only() {
    let mut t = RawTar::new();
    t.pax(&[
        ("path", b"long/path/name"),
        ("uid", b"123456789"),
        ("gid", b"42"),
        ("mtime", b"1700000000.123456"),
        ("uname", b"builder"),
        ("SCHILY.xattr.user.note", b"v\0binary"),
        ("atime", b"1"),
    ])
    .file("short", b"one")
    .file("second", b"two");
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!(names(&entries), ["long/path/name", "second"]);
    let h = &entries[0].0;
    assert_eq!((h.meta.uid, h.meta.gid, h.meta.mtime), (123456789, 42, 1_700_000_000));
    assert_eq!(h.meta.uname.as_deref(), Some(&b"builder"[..]));
    assert_eq!(h.xattrs, vec![(b"user.note".to_vec(), b"v\0binary".to_vec())]);
    assert_eq!((entries[1].0.meta.uid, entries[1].0.xattrs.len()), (1000, 0));

    // A negative time reads as 0; an empty value cancels the record.
    let mut t = RawTar::new();
    t.pax(&[("mtime", b"-5.5"), ("path", b"")]).file("named", b"");
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!((names(&entries), entries[0].0.meta.mtime), (vec!["named".to_string()], 0));
}

#[test]
fn malformed_pax_records_are_errors() {
    for records in [&b"10 path\n"[..], b"99 path=x\n", b"x path=y\n", b"8 path=y", b"11 size=12a\n"] {
        let mut t = RawTar::new();
        t.header(&header(b"x", b'x', records.len() as u64, b"")).data(records).file("f", b"");
        let (e, text) = err_text(read_all(&t.finish()));
        assert!(matches!(e, TarError::Malformed { .. }), "{:?}: {e:?}", String::from_utf8_lossy(records));
        assert!(text.contains("PAX"), "{text}");
    }
    // Records with no entry after them.
    let mut t = RawTar::new();
    t.pax(&[("path", b"x")]);
    let (_, text) = err_text(read_all(&t.finish()));
    assert!(text.contains("not followed by an entry"), "{text}");
}

/// Finding 4: a tar cut at a block boundary, with no end-of-archive marker, is not complete.
#[test]
fn an_archive_without_its_end_marker_is_truncated() {
    let mut t = RawTar::new();
    t.file("a", b"aaa").file("b", &[b'b'; 600]);
    let whole = t.bytes.clone();
    let (e, text) = err_text(read_all(&whole));
    assert!(matches!(e, TarError::Truncated { entry: None, .. }), "{e:?}");
    assert!(text.contains("cut short") && text.contains("before its end-of-archive marker"), "{text}");

    // Cut inside b's data: named, whether its data is read or skipped.
    let cut = &whole[..512 + 512 + 512 + 100];
    let (e, text) = err_text(read_all(cut));
    assert!(matches!(&e, TarError::Truncated { entry: Some(n), .. } if n == "b"), "{e:?}");
    assert!(text.contains("(entry \"b\")"), "{text}");
    let mut r = TarReader::new(cut);
    while let Ok(Some(_)) = r.next_entry() {}
    assert!(matches!(r.next_entry(), Err(TarError::Malformed { .. })), "the reader stays failed");
    let mut r = TarReader::new(cut);
    r.next_entry().unwrap().unwrap();
    r.next_entry().unwrap().unwrap();
    assert!(matches!(r.next_entry(), Err(TarError::Truncated { entry: Some(n), .. }) if n == "b"));

    // Cut inside a header.
    assert!(matches!(read_all(&whole[..1024 + 100]), Err(TarError::Truncated { entry: None, .. })));
    assert!(matches!(read_all(&[]), Err(TarError::Empty)));

    // One zero block is a complete end, as for GNU tar.
    let mut one = whole.clone();
    one.extend_from_slice(&[0; BLOCK]);
    assert_eq!(names(&read_all(&one).unwrap()), ["a", "b"]);
}

#[test]
fn what_follows_the_end_is_drained_and_reported() {
    let mut t = RawTar::new();
    t.file("a", b"x");
    let mut bytes = t.finish();
    bytes.extend_from_slice(&[0; 8192]);
    let mut r = TarReader::new(&bytes[..]);
    while r.next_entry().unwrap().is_some() {}
    let d = r.drain().unwrap();
    assert_eq!((d.bytes, d.non_zero), (512 + 8192, false));
    assert_eq!(r.offset(), bytes.len() as u64);

    let mut t = RawTar::new();
    t.file("a", b"x").end().file("appended", b"y");
    let bytes = t.finish();
    let mut r = TarReader::new(&bytes[..]);
    assert_eq!(r.next_entry().unwrap().unwrap().header().display_path(), "a");
    assert!(r.next_entry().unwrap().is_none());
    assert!(r.drain().unwrap().non_zero);
}

#[test]
fn bad_checksums_and_compressed_input_are_named() {
    let mut t = RawTar::new();
    t.file("a", b"x");
    let mut bytes = t.finish();
    bytes[10] ^= 1;
    let (_, text) = err_text(read_all(&bytes));
    assert!(text.contains("checksum does not match"), "{text}");

    let mut gz = flate(&RawTar::new().file("a", b"x").finish());
    gz.resize(4096, 0);
    let (_, text) = err_text(read_all(&gz));
    assert!(text.contains("not a tar archive but gzip data"), "{text}");
}

/// A gzip member with stored (uncompressed) blocks: enough for the magic test, no dependency.
fn flate(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    out.extend_from_slice(&data[..data.len().min(100)]);
    out
}

#[test]
fn old_signed_checksums_are_accepted() {
    let mut h = header(b"caf\xc3\xa9", b'0', 0, b"");
    let bytes = h.as_mut_bytes();
    let signed: i64 = bytes.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { i64::from(*b as i8) }).sum();
    bytes[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
    let mut t = RawTar::new();
    t.header(&h);
    assert_eq!(names(&read_all(&t.finish()).unwrap()), ["café"]);
}

#[test]
fn sparse_and_multi_volume_entries_are_unsupported() {
    for (flag, what) in [(b'S', "a GNU sparse file"), (b'M', "a multi-volume continuation")] {
        let mut t = RawTar::new();
        t.header(&header(b"big", flag, 0, b""));
        let (e, text) = err_text(read_all(&t.finish()));
        assert!(matches!(e, TarError::Unsupported { .. }), "{e:?}");
        assert!(text.contains(what) && text.contains("\"big\""), "{text}");
    }
    let mut t = RawTar::new();
    t.pax(&[("GNU.sparse.major", b"1"), ("GNU.sparse.minor", b"0")]).file("GNUSparseFile.0/big", b"");
    let (_, text) = err_text(read_all(&t.finish()));
    assert!(text.contains("GNU sparse file (PAX format)"), "{text}");
}

#[test]
fn unknown_types_are_reported_and_their_data_skipped() {
    let mut t = RawTar::new();
    t.entry(b"odd", b'Z', &[b'z'; 700]).entry(b"dump", b'D', b"").file("after", b"ok");
    let entries = read_all(&t.finish()).unwrap();
    let kinds: Vec<EntryKind> = entries.iter().map(|(h, _)| h.kind).collect();
    assert_eq!(kinds, [EntryKind::Unknown(b'Z'), EntryKind::Unknown(b'D'), EntryKind::File]);
    assert_eq!(entries[2].1, b"ok");
}

#[test]
fn numbers_in_base_256_and_old_and_ustar_headers() {
    // Base-256 size (over 8 GiB would not fit octal) and uid, written by tar itself.
    let mut h = tar::Header::new_gnu();
    h.set_uid(0o7777777 + 10);
    h.set_size(3);
    h.set_path("big-uid").unwrap();
    h.set_cksum();
    assert!(h.as_old().uid[0] & 0x80 != 0, "the uid must be base-256");
    let mut t = RawTar::new();
    t.header(&h).data(b"abc");
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!((entries[0].0.meta.uid, &entries[0].1[..]), (0o7777777 + 10, &b"abc"[..]));

    // An owner beyond 32 bits cannot be written again: malformed.
    let mut t = RawTar::new();
    t.pax(&[("uid", b"4294967296")]).file("x", b"");
    let (_, text) = err_text(read_all(&t.finish()));
    assert!(text.contains("its uid 4294967296 is out of range"), "{text}");

    // A negative base-256 size is malformed.
    let mut h = header(b"neg", b'0', 0, b"");
    h.as_old_mut().size = [0xff; 12];
    h.set_cksum();
    let (_, text) = err_text(read_all(&RawTar::new().header(&h).finish()));
    assert!(text.contains("size field is negative"), "{text}");

    // A size field with garbage after the digits.
    let mut h = header(b"junk", b'0', 0, b"");
    h.as_old_mut().size = *b"0000000001x\0";
    h.set_cksum();
    let (_, text) = err_text(read_all(&RawTar::new().header(&h).finish()));
    assert!(text.contains("size field is not an octal"), "{text}");

    // ustar: the prefix goes in front; old (v7): no magic, no prefix.
    let mut h = tar::Header::new_ustar();
    let dir = "p".repeat(120);
    h.set_path(format!("{dir}/name")).unwrap();
    h.set_size(0);
    h.set_cksum();
    let mut o = tar::Header::new_old();
    o.as_old_mut().name[..7].copy_from_slice(b"old-dir");
    o.set_entry_type(tar::EntryType::Regular);
    o.as_old_mut().name[7] = b'/';
    o.set_size(0);
    o.set_cksum();
    let entries = read_all(&RawTar::new().header(&h).header(&o).finish()).unwrap();
    assert_eq!(names(&entries), [format!("{dir}/name"), "old-dir/".into()]);
    // A regular-file header whose name ends in '/' is a directory.
    assert_eq!(entries[1].0.kind, EntryKind::Dir);
}

#[test]
fn device_numbers_are_read() {
    let mut h = header(b"dev/null", b'3', 0, b"");
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_cksum();
    let entries = read_all(&RawTar::new().header(&h).finish()).unwrap();
    assert_eq!((entries[0].0.kind, entries[0].0.device), (EntryKind::CharDevice, Some((1, 3))));
}

/// Real writers: GNU tar in each of its formats and busybox tar, over a tree with long names,
/// long link targets, a hard link, a symlink and an empty directory.
#[test]
fn archives_written_by_gnu_tar_and_busybox_read_back() {
    require("tar", "tar");
    require("busybox", "busybox-static");
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let deep = src.join("d".repeat(90)).join("e".repeat(90));
    std::fs::create_dir_all(&deep).unwrap();
    std::fs::create_dir_all(src.join("empty")).unwrap();
    std::fs::write(deep.join("f".repeat(60)), b"deep data").unwrap();
    std::fs::write(src.join("plain"), b"plain data").unwrap();
    std::fs::hard_link(src.join("plain"), src.join("hard")).unwrap();
    std::os::unix::fs::symlink(format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "f".repeat(60)), src.join("link")).unwrap();
    let expect_long = format!("{}/{}/{}", "d".repeat(90), "e".repeat(90), "f".repeat(60));

    let mut runs: Vec<(String, Vec<u8>)> = Vec::new();
    // (ustar cannot hold these names; its prefix field is tested with tar::Header above.)
    for format in ["gnu", "oldgnu", "pax"] {
        let out = Command::new("tar").args(["--format", format, "--sort=name", "-cf", "-", "-C"]).arg(&src).arg(".").output().unwrap();
        assert!(out.status.success(), "tar --format {format}: {}", String::from_utf8_lossy(&out.stderr));
        runs.push((format!("GNU tar --format {format}"), out.stdout));
    }
    let out = Command::new("busybox").args(["tar", "-cf", "-", "-C"]).arg(&src).arg(".").output().unwrap();
    assert!(out.status.success(), "busybox tar: {}", String::from_utf8_lossy(&out.stderr));
    runs.push(("busybox tar".into(), out.stdout));

    for (what, bytes) in runs {
        let entries = read_all(&bytes).unwrap_or_else(|e| panic!("{what}: {e}"));
        let find = |name: &str| {
            entries
                .iter()
                .find(|(h, _)| h.display_path().trim_start_matches("./").trim_end_matches('/') == name)
                .unwrap_or_else(|| panic!("{what}: no {name:?} in {:?}", names(&entries)))
        };
        assert_eq!(find(&expect_long).1, b"deep data", "{what}");
        assert_eq!(find("empty").0.kind, EntryKind::Dir, "{what}");
        // Whichever of the two names comes first holds the data; the other links to it.
        let (first, second) = if find("hard").0.kind == EntryKind::HardLink { ("plain", "hard") } else { ("hard", "plain") };
        assert_eq!(find(first).1, b"plain data", "{what}");
        let link = &find(second).0;
        assert_eq!(link.kind, EntryKind::HardLink, "{what}");
        assert_eq!(link.link_target.as_deref().map(|t| t.strip_prefix(b"./").unwrap_or(t)), Some(first.as_bytes()), "{what}");
        let link = find("link");
        assert_eq!((link.0.kind, link.0.link_target.as_deref()), (EntryKind::Symlink, Some(expect_long.as_bytes())), "{what}");
    }
}

// ---------------------------------------------------------------------------------------------
// Memory: a record claiming gigabytes fails at once, without allocating it.

thread_local! {
    /// Bytes allocated by this thread (tests run on threads of their own).
    static ALLOCATED: Cell<u64> = const { Cell::new(0) };
}

struct Counting;

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + layout.size() as u64));
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATED.try_with(|a| a.set(a.get() + new_size as u64));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A header, then as many bytes as anyone asks for, made on the fly; counts what was read.
struct Lazy {
    header: Vec<u8>,
    served: u64,
}

impl Read for Lazy {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.served as usize;
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.header.get(at + i).copied().unwrap_or(b'a');
        }
        self.served += buf.len() as u64;
        Ok(buf.len())
    }
}

#[test]
fn records_claiming_8_gib_fail_fast_without_allocating() {
    const EIGHT_GIB: u64 = 8 << 30;
    for (flag, limit) in [(b'L', Limit::Name), (b'K', Limit::Name), (b'x', Limit::PaxRecords), (b'g', Limit::PaxRecords)] {
        let h = header(b"././@LongLink", flag, EIGHT_GIB, b"");
        let mut input = Lazy { header: h.as_bytes().to_vec(), served: 0 };
        let before = ALLOCATED.with(Cell::get);
        let mut r = TarReader::new(&mut input);
        let err = r.next_entry().err().expect("must fail");
        let allocated = ALLOCATED.with(Cell::get) - before;
        match &err {
            TarError::Limit(l) => assert_eq!((l.limit, l.actual >= EIGHT_GIB - 1), (limit, true), "{:?}: {err}", flag as char),
            other => panic!("{:?}: {other}", flag as char),
        }
        assert!(allocated < 64 * 1024, "{:?}: {allocated} bytes allocated", flag as char);
        assert_eq!(input.served, BLOCK as u64, "{:?}: only the header is read", flag as char);
    }
    // The same name in a file that really is big: its data is streamed, never held.
    let h = header(b"big-file", b'0', EIGHT_GIB, b"");
    let mut input = Lazy { header: h.as_bytes().to_vec(), served: 0 };
    let before = ALLOCATED.with(Cell::get);
    let mut r = TarReader::new(&mut input);
    let mut e = r.next_entry().unwrap().unwrap();
    let mut buf = [0u8; 65536];
    for _ in 0..64 {
        e.read_exact(&mut buf).unwrap();
    }
    assert!(ALLOCATED.with(Cell::get) - before < 64 * 1024);
}

#[test]
fn entry_paths_are_unix_paths() {
    let mut t = RawTar::new();
    t.file("a/b\\c", b"");
    let entries = read_all(&t.finish()).unwrap();
    assert_eq!(entries[0].0.path(), Path::new("a/b\\c"));
}

/// A size of 2^64 − 1 (base-256) is a valid claim; skipping it must not overflow.
#[test]
fn the_largest_size_is_skipped_without_overflow() {
    let mut h = header(b"huge", b'0', 0, b"");
    h.as_old_mut().size = [0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
    h.set_cksum();
    let mut t = RawTar::new();
    t.header(&h).data(&[b'd'; 100]);
    let mut r = TarReader::new(&t.bytes[..]);
    assert_eq!(r.next_entry().unwrap().unwrap().header().meta.size, u64::MAX);
    match r.next_entry() {
        Err(TarError::Truncated { entry: Some(e), .. }) => assert_eq!(e, "huge"),
        other => panic!("{:?}", other.map(|e| e.map(|e| e.header().clone()))),
    }
    // A global record as large, with its cap raised as far as it goes.
    let mut g = header(b"g", b'g', 0, b"");
    g.as_old_mut().size = h.as_old().size;
    g.set_cksum();
    let bytes = RawTar::new().header(&g).bytes.clone();
    let limits = Limits { max_pax: u64::MAX, ..Limits::default() };
    assert!(matches!(TarReader::with_limits(&bytes[..], limits).next_entry(), Err(TarError::Truncated { .. })));
}
