//! copy_guarded: what it writes, how it fails, and what real extractors (GNU tar, busybox tar)
//! make of its output, the findings of the security review among them.

mod common;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{header, names_in, require, tree, RawTar};
use s2i_tar::{copy_guarded, CopyError, Guard, GuardOptions, Limits, Owner, RefusalReason, Skipped, Stats, TarError};

fn copy_with(input: &[u8], options: GuardOptions) -> Result<(Vec<u8>, Stats), CopyError> {
    let limits = Limits::default();
    let mut guard = Guard::new(options, &limits);
    let mut out = tar::Builder::new(Vec::new());
    let stats = copy_guarded(input, &mut out, Path::new("artifacts"), &mut guard, &limits)?;
    Ok((out.into_inner().unwrap(), stats))
}

fn copy(input: &[u8]) -> Result<(Vec<u8>, Stats), CopyError> {
    copy_with(input, GuardOptions::default())
}

/// (path, kind, link target, data) of each entry of a tar, as the `tar` crate reads it.
fn entries(tar: &[u8]) -> Vec<(String, tar::EntryType, String, Vec<u8>, u32)> {
    let mut a = tar::Archive::new(tar);
    a.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let target = e.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            (e.path().unwrap().display().to_string(), e.header().entry_type(), target, data, e.header().mode().unwrap())
        })
        .collect()
}

/// Extract `tar` with a real extractor into a fresh directory, `root` inside `outer`.
fn extract(program: &[&str], tar: &[u8]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let outer = dir.path().join("outer");
    std::fs::create_dir(&outer).unwrap();
    let mut child = Command::new(program[0])
        .args(&program[1..])
        .arg(&outer)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(tar).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program:?}: {}", String::from_utf8_lossy(&out.stderr));
    (dir, outer)
}

const GNU_TAR: &[&str] = &["tar", "-xf", "-", "-C"];
const BUSYBOX_TAR: &[&str] = &["busybox", "tar", "-xf", "-", "-C"];

#[test]
fn entries_are_rebuilt_under_the_prefix_and_the_input_drained() {
    let long = format!("deps/{}", "n".repeat(150));
    let mut t = RawTar::new();
    t.dir("./")
        .file("./deps/lib.txt", b"lib")
        .symlink("deps/current", "./lib.txt")
        .symlink("deps/up", "../deps/lib.txt")
        .hardlink("deps/hard", "deps//lib.txt")
        .file(&long, b"long")
        .dir("deps/empty/");
    let mut input = t.finish();
    input.extend_from_slice(&[0u8; 4096]);
    let (out, stats) = copy(&input).unwrap();
    let got: Vec<(String, tar::EntryType, String, Vec<u8>)> = entries(&out).into_iter().map(|(p, k, t, d, _)| (p, k, t, d)).collect();
    use tar::EntryType::*;
    assert_eq!(
        got,
        vec![
            ("artifacts/deps/lib.txt".into(), Regular, String::new(), b"lib".to_vec()),
            ("artifacts/deps/current".into(), Symlink, "lib.txt".into(), vec![]),
            ("artifacts/deps/up".into(), Symlink, "../deps/lib.txt".into(), vec![]),
            ("artifacts/deps/hard".into(), Link, "artifacts/deps/lib.txt".into(), vec![]),
            (format!("artifacts/{long}"), Regular, String::new(), b"long".to_vec()),
            ("artifacts/deps/empty".into(), Directory, String::new(), vec![]),
        ]
    );
    assert_eq!((stats.entries, stats.files, stats.symlinks, stats.hard_links, stats.dirs, stats.bytes), (6, 2, 2, 1, 1, 7));
    assert_eq!((stats.trailing.bytes, stats.trailing.non_zero), (512 + 4096, false));
    assert_eq!(stats.skipped.total(), 0, "the root is not counted as skipped");
}

/// Finding 1: with the old checker, the header of size 0 was copied as it was, followed by the
/// 1024 bytes the PAX record announced: to any extractor that ignores PAX (and to every
/// extractor, once the PAX record was dropped), those bytes were a second entry. Now the header
/// is rebuilt with the size that was read.
#[test]
fn an_entry_hidden_behind_a_pax_size_stays_data() {
    require("tar", "tar");
    require("busybox", "busybox-static");
    let mut hidden = RawTar::new();
    hidden.file("scripts/assemble", b"#!/bin/sh\necho owned\n");
    let hidden = hidden.bytes;
    let mut t = RawTar::new();
    t.pax(&[("size", b"1024")]).header(&header(b"innocent", b'0', 0, b"")).data(&hidden);
    let (out, stats) = copy(&t.finish()).unwrap();
    assert_eq!(names_in(&out), ["artifacts/innocent"]);
    assert_eq!(entries(&out)[0].3, hidden);
    assert_eq!(stats.bytes, 1024);
    for extractor in [GNU_TAR, BUSYBOX_TAR] {
        let (_dir, outer) = extract(extractor, &out);
        assert_eq!(tree(&outer), ["artifacts", "artifacts/innocent"], "{extractor:?}");
        assert_eq!(std::fs::read(outer.join("artifacts/innocent")).unwrap(), hidden);
    }
}

/// Finding 1, second half: a directory or link header with a size had its data passed on.
#[test]
fn directory_and_link_headers_with_data_are_refused() {
    for flag in [b'5', b'2', b'1'] {
        let mut t = RawTar::new();
        t.file("f", b"x").header(&header(b"d", flag, 1024, b"f")).data(&RawTar::new().file("scripts/assemble", b"evil").bytes);
        match copy(&t.finish()) {
            Err(CopyError::Archive(TarError::Malformed { entry: Some(e), reason, .. })) => {
                assert_eq!(e, "d");
                assert!(reason.contains("claims 1024 bytes of data"), "{reason}");
            }
            other => panic!("{:?}: {other:?}", flag as char),
        }
    }
}

/// Finding 2 through the whole copy: the refusal names the entry and the reason.
#[test]
fn order_dependent_link_tricks_are_refused_by_name() {
    let cases: Vec<(RawTar, &str, RefusalReason)> = vec![
        (
            {
                let mut t = RawTar::new();
                t.symlink("x", ".").symlink("x/x/x/x/y", "../../../..").file("x/x/x/x/y/anything", b"owned");
                t
            },
            "x",
            RefusalReason::SymlinkEmpty(".".into()),
        ),
        (
            {
                let mut t = RawTar::new();
                t.symlink("s", "d/e/f/x/../../../..").symlink("d/e/f/x", "../..");
                t
            },
            "s",
            RefusalReason::SymlinkInnerParent("d/e/f/x/../../../..".into()),
        ),
        (
            {
                let mut t = RawTar::new();
                t.file("d/x/f", b"").symlink("d/x", "../..");
                t
            },
            "d/x",
            RefusalReason::ReplacesDirectory("d/x".into()),
        ),
    ];
    for (mut t, entry, reason) in cases {
        match copy(&t.finish()) {
            Err(CopyError::Refused(r)) => {
                assert_eq!((r.entry.as_str(), &r.reason), (entry, &reason));
                assert!(r.to_string().starts_with(&format!("refusing entry {entry:?}: ")), "{r}");
            }
            other => panic!("{entry}: {other:?}"),
        }
    }
}

/// Finding 2: NUL bytes in names used to pass as ordinary characters; extractors cut there.
#[test]
fn nul_bytes_in_names_are_refused() {
    let mut t = RawTar::new();
    t.pax(&[("path", b"scripts/assemble\0.txt")]).file("x", b"");
    assert!(matches!(copy(&t.finish()), Err(CopyError::Archive(TarError::Malformed { .. }))));
    let mut t = RawTar::new();
    t.long(b'K', b"/etc\0safe").symlink("l", "x");
    assert!(matches!(copy(&t.finish()), Err(CopyError::Archive(TarError::Malformed { .. }))));
}

/// Finding 4.
#[test]
fn a_stream_cut_at_a_block_boundary_is_an_error() {
    let mut t = RawTar::new();
    t.file("a", b"aaa");
    match copy(&t.bytes) {
        Err(e @ CopyError::Archive(TarError::Truncated { .. })) => assert!(e.is_untrusted_input()),
        other => panic!("{other:?}"),
    }
    assert!(matches!(copy(&[]), Err(CopyError::Archive(TarError::Empty))));
    // Cut inside a file's data: the file is named.
    let mut t = RawTar::new();
    t.file("big", &[b'b'; 2000]);
    match copy(&t.bytes[..1500]) {
        Err(CopyError::Archive(TarError::Truncated { entry: Some(e), .. })) => assert_eq!(e, "big"),
        other => panic!("{other:?}"),
    }
}

/// Reads `ok` bytes, then fails the way a broken pipe does.
struct Breaks {
    data: Vec<u8>,
    at: usize,
    ok: usize,
}

impl Read for Breaks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at >= self.ok {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "input broke"));
        }
        let n = buf.len().min(self.ok - self.at).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

struct FullDisk(usize);

impl Write for FullDisk {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "output broke"));
        }
        let n = buf.len().min(self.0);
        self.0 -= n;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[test]
fn our_pipe_breaking_is_told_apart_from_a_bad_archive() {
    let mut t = RawTar::new();
    t.file("big", &[b'b'; 100_000]);
    let input = t.finish();
    let limits = Limits::default();
    for ok in [100, 600, 50_000] {
        let mut guard = Guard::new(GuardOptions::default(), &limits);
        let mut out = tar::Builder::new(Vec::new());
        let e = copy_guarded(Breaks { data: input.clone(), at: 0, ok }, &mut out, Path::new("a"), &mut guard, &limits).unwrap_err();
        assert!(matches!(&e, CopyError::Input(io) if io.to_string() == "input broke"), "{ok}: {e:?}");
        assert!(!e.is_untrusted_input());
    }
    for room in [0, 700, 50_000] {
        let mut guard = Guard::new(GuardOptions::default(), &limits);
        let mut out = tar::Builder::new(FullDisk(room));
        let e = copy_guarded(&input[..], &mut out, Path::new("a"), &mut guard, &limits).unwrap_err();
        assert!(matches!(&e, CopyError::Output(io) if io.to_string() == "output broke"), "{room}: {e:?}");
    }
}

#[test]
fn special_files_are_skipped_and_counted() {
    let mut t = RawTar::new();
    t.entry(b"dev/null", b'3', b"").entry(b"dev/sda", b'4', b"").entry(b"pipe", b'6', b"").entry(b"odd", b'Z', b"zz").file("keep", b"k");
    let (out, stats) = copy(&t.finish()).unwrap();
    assert_eq!(names_in(&out), ["artifacts/keep"]);
    assert_eq!((stats.skipped.devices, stats.skipped.fifos, stats.skipped.unknown), (2, 1, 1));
    let examples: Vec<(&str, Skipped)> = stats.skipped_examples.iter().map(|(p, s)| (p.as_str(), *s)).collect();
    assert_eq!(examples, [("dev/null", Skipped::CharDevice), ("dev/sda", Skipped::BlockDevice), ("pipe", Skipped::Fifo), ("odd", Skipped::Unknown(b'Z'))]);
}

#[test]
fn owner_setid_and_modes_are_normalised_in_the_output() {
    let mut t = RawTar::new();
    for (i, mode) in [0o4755u32, 0o2700, 0o6711, 0o4644, 0o2755, 0o4700, 0o600].iter().enumerate() {
        let mut h = header(format!("bin/t{i}").as_bytes(), b'0', 0, b"");
        h.set_mode(*mode);
        h.set_username("someone").unwrap();
        h.set_cksum();
        t.header(&h);
    }
    let mut d = header(b"bin", b'5', 0, b"");
    d.set_mode(0o2700);
    d.set_cksum();
    t.header(&d);
    let input = t.finish();

    let (out, stats) = copy(&input).unwrap();
    let modes: Vec<u32> = entries(&out).iter().map(|e| e.4).collect();
    assert_eq!(modes, [0o755, 0o700, 0o711, 0o644, 0o755, 0o700, 0o600, 0o2700]);
    assert_eq!(stats.setid_stripped, 6);
    assert_eq!(stats.setid_examples, (0..5).map(|i| PathBuf::from(format!("artifacts/bin/t{i}"))).collect::<Vec<_>>());
    let mut a = tar::Archive::new(&out[..]);
    let first = a.entries().unwrap().next().unwrap().unwrap();
    assert_eq!((first.header().uid().unwrap(), first.header().username().unwrap()), (1000, Some("someone")));

    let options = GuardOptions { owner: Some(Owner { uid: 1001, gid: 0 }), strip_setid: true, normalize_modes: true };
    let (out, _) = copy_with(&input, options).unwrap();
    let mut a = tar::Archive::new(&out[..]);
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        let h = e.header();
        assert_eq!((h.uid().unwrap(), h.gid().unwrap(), h.username().unwrap().unwrap_or("")), (1001, 0, ""));
        let expect = if h.entry_type().is_dir() || h.mode().unwrap() & 0o100 != 0 { 0o755 } else { 0o644 };
        assert_eq!(h.mode().unwrap(), expect);
    }
}

#[test]
fn the_prefix_must_be_clean_and_relative() {
    let limits = Limits::default();
    for prefix in ["/tmp", "a/../b", ".."] {
        let mut guard = Guard::new(GuardOptions::default(), &limits);
        let mut out = tar::Builder::new(Vec::new());
        let e = copy_guarded(&RawTar::new().finish()[..], &mut out, Path::new(prefix), &mut guard, &limits).unwrap_err();
        assert!(matches!(e, CopyError::Prefix(_)), "{prefix}: {e:?}");
    }
}

#[test]
fn a_guard_shared_by_two_streams_sees_both() {
    let limits = Limits::default();
    let mut guard = Guard::new(GuardOptions::default(), &limits);
    let mut out = tar::Builder::new(Vec::new());
    let first = RawTar::new().symlink("cache", "other").finish();
    copy_guarded(&first[..], &mut out, Path::new("artifacts"), &mut guard, &limits).unwrap();
    let second = RawTar::new().file("cache/x", b"through the link").finish();
    match copy_guarded(&second[..], &mut out, Path::new("artifacts"), &mut guard, &limits) {
        Err(CopyError::Refused(r)) => assert_eq!(r.reason, RefusalReason::ThroughSymlink("cache".into())),
        other => panic!("{other:?}"),
    }
}

#[test]
fn data_appended_after_the_end_is_drained_and_ignored() {
    let mut t = RawTar::new();
    t.file("a", b"x").end().file("appended", b"y");
    let (out, stats) = copy(&t.finish()).unwrap();
    assert_eq!(names_in(&out), ["artifacts/a"]);
    assert!(stats.trailing.non_zero);
}

/// A benign tree copied through the guard comes out whole from GNU tar and busybox tar.
#[test]
fn real_extractors_unpack_the_copy_as_it_was() {
    require("tar", "tar");
    require("busybox", "busybox-static");
    let long_dir = "l".repeat(120);
    let mut t = RawTar::new();
    t.dir("app/")
        .file("app/main.py", b"print(1)\n")
        .long(b'L', format!("app/{long_dir}/data.bin").as_bytes())
        .file("short-name", b"long file")
        .symlink("app/current", "main.py")
        .long(b'K', format!("../app/{long_dir}/data.bin").as_bytes())
        .symlink("lib/data", "ignored")
        .hardlink("app/again", "app/main.py");
    let (out, _) = copy(&t.finish()).unwrap();
    for extractor in [GNU_TAR, BUSYBOX_TAR] {
        let (_dir, outer) = extract(extractor, &out);
        let root = outer.join("artifacts");
        assert_eq!(std::fs::read(root.join(format!("app/{long_dir}/data.bin"))).unwrap(), b"long file", "{extractor:?}");
        assert_eq!(std::fs::read(root.join("lib/data")).unwrap(), b"long file", "{extractor:?}");
        assert_eq!(std::fs::read_link(root.join("app/current")).unwrap(), Path::new("main.py"));
        assert_eq!(std::fs::read(root.join("app/current")).unwrap(), b"print(1)\n");
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(root.join("app/again")).unwrap().ino(), std::fs::metadata(root.join("app/main.py")).unwrap().ino());
    }
}

/// Names are bytes: long ones that are not UTF-8, and ones of exactly 100 bytes, are written
/// again whole (the `tar` crate cannot put a non-UTF-8 long name in a header by itself).
#[test]
fn long_and_non_utf8_names_are_written_whole() {
    require("tar", "tar");
    let odd: Vec<u8> = [&b"\xff\xfe"[..], &[b'n'; 150]].concat();
    let hundred = "h".repeat(100 - "artifacts/".len());
    let mut t = RawTar::new();
    t.entry(&odd, b'0', b"odd").file(&hundred, b"100");
    t.long(b'L', b"sym").long(b'K', &[&b"\xff"[..], &[b't'; 120]].concat()).symlink("short", "x");
    t.long(b'L', b"hard").long(b'K', &odd).hardlink("short", "x");
    let (out, stats) = copy(&t.finish()).unwrap();
    assert_eq!(stats.entries, 4);
    let mut r = s2i_tar::TarReader::new(&out[..]);
    let mut seen = Vec::new();
    while let Some(e) = r.next_entry().unwrap() {
        seen.push((e.header().path.clone(), e.header().link_target.clone()));
    }
    let under = |p: &[u8]| [&b"artifacts/"[..], p].concat();
    assert_eq!(
        seen,
        [
            (under(&odd), None),
            (under(hundred.as_bytes()), None),
            (under(b"sym"), Some([&b"\xff"[..], &[b't'; 120]].concat())),
            (under(b"hard"), Some(under(&odd))),
        ]
    );
    let (_dir, outer) = extract(GNU_TAR, &out);
    use std::os::unix::ffi::OsStrExt;
    assert_eq!(std::fs::read(outer.join(std::ffi::OsStr::from_bytes(&under(&odd)))).unwrap(), b"odd");
    assert_eq!(std::fs::read(outer.join("artifacts").join(&hundred)).unwrap(), b"100");

    // At the top level (no prefix), where nothing valid comes before the odd bytes.
    let limits = Limits::default();
    let mut guard = Guard::new(GuardOptions::default(), &limits);
    let mut out = tar::Builder::new(Vec::new());
    let input = RawTar::new().entry(&odd, b'0', b"odd").finish();
    copy_guarded(&input[..], &mut out, Path::new(""), &mut guard, &limits).unwrap();
    let out = out.into_inner().unwrap();
    let mut r = s2i_tar::TarReader::new(&out[..]);
    assert_eq!(r.next_entry().unwrap().unwrap().header().path, odd);
}
