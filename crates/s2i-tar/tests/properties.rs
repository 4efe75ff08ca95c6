//! Property tests.
//!
//! (a) archives written by `tar::Builder` read back identically;
//! (b) random mutations of valid archives never panic the reader or the copy, and whatever the
//!     copy accepts is a well-formed tar;
//! (c) generated hostile archives (symlinks, hard links, `..`, `.`, absolute paths, long names,
//!     PAX records) go through the guard, and everything accepted, unpacked by a model of a
//!     POSIX extractor, resolves inside the root; a subset is unpacked by GNU tar and busybox.
//!
//! Each runs a few thousand cases by default. A million per property, in release mode:
//!
//! ```sh
//! PROPTEST_CASES=1000000 cargo test -p s2i-tar --release --test properties
//! ```
//!
//! The real-extractor property spawns processes and runs `S2I_TAR_EXTRACTOR_CASES` cases
//! (default 32) whatever `PROPTEST_CASES` says.

mod common;

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{header, pax_record, require, Model, RawTar};
use proptest::prelude::*;
use proptest::test_runner::Config;
use s2i_tar::{copy_guarded, CopyError, EntryHeader, Guard, GuardOptions, Limits, Skipped, TarReader, Verdict};

/// `default` cases unless PROPTEST_CASES says otherwise.
fn config(default: u32) -> Config {
    let mut c = Config::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        c.cases = default;
    }
    c.failure_persistence = None;
    c
}

// ---------------------------------------------------------------------------------------------
// (a) Round trip.

#[derive(Debug, Clone)]
enum Built {
    File { data: Vec<u8> },
    Dir,
    Symlink { target: String },
    HardLink { target: String },
}

#[derive(Debug, Clone)]
struct BuiltEntry {
    path: String,
    what: Built,
    mode: u32,
    uid: u64,
    mtime: u64,
    ustar: bool,
    /// Give the path as a PAX record instead of letting the builder choose.
    pax_path: bool,
    xattrs: Vec<(String, Vec<u8>)>,
}

fn clean_path() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_-][a-zA-Z0-9._-]{0,60}", 1..5).prop_map(|c| c.join("/"))
}

fn built_entry() -> impl Strategy<Value = BuiltEntry> {
    let what = prop_oneof![
        4 => prop::collection::vec(any::<u8>(), 0..1500).prop_map(|data| Built::File { data }),
        1 => Just(Built::Dir),
        // tar::Builder drops `.` components of targets itself, so only clean ones round-trip.
        2 => (0usize..3, prop::collection::vec("[a-z][a-z.]{0,69}", 1..5))
            .prop_map(|(ups, c)| Built::Symlink { target: format!("{}{}", "../".repeat(ups), c.join("/")) }),
        1 => clean_path().prop_map(|target| Built::HardLink { target }),
    ];
    (
        clean_path(),
        what,
        0u32..0o10000,
        prop_oneof![0u64..70_000, 0u64..=u64::from(u32::MAX)],
        prop_oneof![0u64..2_000_000_000, 0u64..(1 << 40)],
        any::<bool>(),
        prop::bool::weighted(0.2),
        prop::collection::vec(("user\\.[a-z]{1,10}", prop::collection::vec(any::<u8>(), 0..40)), 0..3),
    )
        .prop_map(|(path, what, mode, uid, mtime, ustar, pax_path, xattrs)| BuiltEntry { path, what, mode, uid, mtime, ustar, pax_path, xattrs })
}

fn build(entries: &[BuiltEntry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut pax: Vec<(&str, &[u8])> = Vec::new();
        let xattr_keys: Vec<String> = e.xattrs.iter().map(|(k, _)| format!("SCHILY.xattr.{k}")).collect();
        for (key, (_, value)) in xattr_keys.iter().zip(&e.xattrs) {
            pax.push((key, value));
        }
        if e.pax_path {
            pax.push(("path", e.path.as_bytes()));
        }
        if !pax.is_empty() {
            b.append_pax_extensions(pax).unwrap();
        }
        let path = if e.pax_path { "pax-name-in-header" } else { e.path.as_str() };
        let mut h = if e.ustar { tar::Header::new_ustar() } else { tar::Header::new_gnu() };
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.uid / 2);
        h.set_mtime(e.mtime);
        match &e.what {
            Built::File { data } => {
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, &data[..]).unwrap();
            }
            Built::Dir => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                b.append_data(&mut h, path, std::io::empty()).unwrap();
            }
            Built::Symlink { target } | Built::HardLink { target } => {
                let kind = if matches!(e.what, Built::Symlink { .. }) { tar::EntryType::Symlink } else { tar::EntryType::Link };
                h.set_entry_type(kind);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

proptest! {
    #![proptest_config(config(1500))]

    #[test]
    fn archives_written_by_tar_builder_read_back_identically(entries in prop::collection::vec(built_entry(), 0..12)) {
        let bytes = build(&entries);
        let mut r = TarReader::new(&bytes[..]);
        for e in &entries {
            let mut entry = r.next_entry().unwrap().expect("an entry");
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            let h = entry.header();
            prop_assert_eq!(h.display_path(), e.path.clone());
            prop_assert_eq!((h.meta.mode, h.meta.uid, h.meta.gid, h.meta.mtime), (e.mode, e.uid, e.uid / 2, e.mtime));
            let xattrs: Vec<(Vec<u8>, Vec<u8>)> = e.xattrs.iter().map(|(k, v)| (k.as_bytes().to_vec(), v.clone())).collect();
            prop_assert_eq!(&h.xattrs, &xattrs);
            match &e.what {
                Built::File { data: expected } => {
                    prop_assert_eq!(h.kind, s2i_tar::EntryKind::File);
                    prop_assert_eq!(&data, expected);
                    prop_assert_eq!(h.meta.size, expected.len() as u64);
                }
                Built::Dir => prop_assert_eq!(h.kind, s2i_tar::EntryKind::Dir),
                Built::Symlink { target } => {
                    prop_assert_eq!(h.kind, s2i_tar::EntryKind::Symlink);
                    prop_assert_eq!(h.link_target.as_deref(), Some(target.as_bytes()));
                }
                Built::HardLink { target } => {
                    prop_assert_eq!(h.kind, s2i_tar::EntryKind::HardLink);
                    prop_assert_eq!(h.link_target.as_deref(), Some(target.as_bytes()));
                }
            }
        }
        prop_assert!(r.next_entry().unwrap().is_none());
        prop_assert_eq!(r.drain().unwrap().non_zero, false);
    }
}

// ---------------------------------------------------------------------------------------------
// (b) Mutations.

#[derive(Debug, Clone)]
enum Mutation {
    Set { at: usize, byte: u8 },
    /// Write a number-ish text into a header field's place.
    Text { at: usize, text: String },
    Truncate { at: usize },
    Insert { at: usize, bytes: Vec<u8> },
    /// Raw bytes into a numeric field (mode, uid, gid, size, mtime, checksum) of a header.
    Field { header: prop::sample::Index, field: (usize, usize), bytes: Vec<u8> },
}

/// Values for a numeric field: octal text, GNU base-256 (positive or negative), extremes.
fn field_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        "[0-7 ]{0,12}".prop_map(String::into_bytes),
        (prop_oneof![Just(0x80u8), Just(0xffu8)], prop::collection::vec(any::<u8>(), 11)).prop_map(|(first, rest)| [vec![first], rest].concat()),
        Just(vec![0x80, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]),
        Just(vec![0xff; 12]),
        Just(b"77777777777\0".to_vec()),
        prop::collection::vec(any::<u8>(), 0..12),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        6 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Set { at, byte }),
        2 => (any::<usize>(), "[0-7 ]{1,12}|[0-9]{1,4} [a-z]{1,8}=[a-z./]{0,8}\n").prop_map(|(at, text)| Mutation::Text { at, text }),
        1 => any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<usize>(), prop::collection::vec(any::<u8>(), 1..600)).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        4 => (any::<prop::sample::Index>(), prop::sample::select(vec![(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (148, 8)]), field_bytes())
            .prop_map(|(header, field, bytes)| Mutation::Field { header, field, bytes }),
    ]
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation], fix_checksums: bool) -> Vec<u8> {
    if bytes.is_empty() {
        return bytes;
    }
    let headers: Vec<usize> = (0..bytes.len() / 512).map(|i| i * 512).filter(|at| checksum_ok(&bytes[*at..*at + 512])).collect();
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set { at, byte } => {
                let at = at % len;
                if at < bytes.len() {
                    bytes[at] = *byte;
                }
            }
            Mutation::Text { at, text } => {
                let at = at % len;
                let end = (at + text.len()).min(bytes.len());
                bytes[at..end].copy_from_slice(&text.as_bytes()[..end - at]);
            }
            Mutation::Truncate { at } => bytes.truncate(at % len),
            Mutation::Insert { at, bytes: new } => {
                let at = at % len;
                bytes.splice(at..at, new.iter().copied());
            }
            Mutation::Field { header, field: (offset, width), bytes: value } => {
                if headers.is_empty() {
                    continue;
                }
                let at = headers[header.index(headers.len())] + offset;
                if at + width <= bytes.len() {
                    let mut field = vec![0u8; *width];
                    let n = value.len().min(*width);
                    field[..n].copy_from_slice(&value[..n]);
                    bytes[at..at + width].copy_from_slice(&field);
                }
            }
        }
    }
    if fix_checksums {
        for at in headers {
            if at + 512 <= bytes.len() {
                let mut h = tar::Header::new_old();
                h.as_mut_bytes().copy_from_slice(&bytes[at..at + 512]);
                h.set_cksum();
                bytes[at..at + 512].copy_from_slice(h.as_bytes());
            }
        }
    }
    bytes
}

fn checksum_ok(block: &[u8]) -> bool {
    let h = tar::Header::from_byte_slice(block);
    let sum: u32 = block.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { u32::from(*b) }).sum();
    block.iter().any(|b| *b != 0) && h.cksum().is_ok_and(|c| c == sum)
}

/// Read everything, the data of the entries `read_data` picks (by position) included, the
/// others' skipped; the outcome does not matter, only that it comes.
fn read_through(bytes: &[u8], read_data: &[bool]) {
    let mut r = TarReader::new(bytes);
    for i in 0.. {
        match r.next_entry() {
            Ok(Some(mut e)) => {
                let mut sink = Vec::new();
                if read_data.get(i % read_data.len().max(1)).copied().unwrap_or(true) && e.read_to_end(&mut sink).is_err() {
                    return;
                }
            }
            Ok(None) => {
                let _ = r.drain();
                return;
            }
            Err(_) => return,
        }
    }
}

/// Copy through a fresh guard; on success the output must be a tar our reader takes whole,
/// every path under the prefix.
fn copy_and_reread(bytes: &[u8]) -> Result<Vec<u8>, TestCaseError> {
    let limits = Limits::default();
    let mut guard = Guard::new(GuardOptions::default(), &limits);
    let mut out = tar::Builder::new(Vec::new());
    let copied = copy_guarded(bytes, &mut out, Path::new("artifacts"), &mut guard, &limits);
    let out = out.into_inner().unwrap();
    if copied.is_ok() {
        let mut r = TarReader::new(&out[..]);
        while let Some(mut e) = r.next_entry().map_err(|e| TestCaseError::fail(format!("our own output: {e}")))? {
            prop_assert!(e.header().path().starts_with("artifacts"), "{}", e.header().display_path());
            let mut sink = Vec::new();
            e.read_to_end(&mut sink).map_err(|e| TestCaseError::fail(format!("our own output: {e}")))?;
        }
    }
    Ok(out)
}

proptest! {
    #![proptest_config(config(3000))]

    #[test]
    fn mutated_archives_never_panic(
        entries in prop::collection::vec(built_entry(), 1..6),
        mutations in prop::collection::vec(mutation(), 1..6),
        fix in any::<bool>(),
        read_data in prop::collection::vec(any::<bool>(), 1..4),
    ) {
        let bytes = mutate(build(&entries), &mutations, fix);
        read_through(&bytes, &read_data);
        copy_and_reread(&bytes)?;
    }
}

// ---------------------------------------------------------------------------------------------
// (c) Hostile archives through the guard.

#[derive(Debug, Clone, Copy)]
enum Enc {
    Header,
    Gnu,
    Pax,
}

#[derive(Debug, Clone)]
struct Hostile {
    flag: u8,
    path: String,
    target: String,
    data: usize,
    mode: u32,
    path_enc: Enc,
    target_enc: Enc,
}

const LONG: &str = "LLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLLL";

fn component() -> impl Strategy<Value = &'static str> {
    prop_oneof![5 => Just("a"), 5 => Just("b"), 3 => Just("c"), 2 => Just(".."), 2 => Just("."), 1 => Just(""), 1 => Just(LONG), 1 => Just("n\0l")]
}

/// `/` in front with `abs`, components joined; the absolute prefix is filled in later.
fn hostile_path(max: usize) -> impl Strategy<Value = String> {
    (prop::bool::weighted(0.08), prop::collection::vec(component(), 0..max), prop::bool::weighted(0.1))
        .prop_map(|(abs, comps, slash)| format!("{}{}{}", if abs { "/ABS/" } else { "" }, comps.join("/"), if slash { "/" } else { "" }))
}

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![3 => Just(Enc::Header), 1 => Just(Enc::Gnu), 1 => Just(Enc::Pax)]
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let flag = prop_oneof![4 => Just(b'0'), 3 => Just(b'5'), 4 => Just(b'2'), 2 => Just(b'1'), 1 => Just(b'6'), 1 => Just(b'7')];
    (flag, hostile_path(5), hostile_path(6), 0usize..700, prop_oneof![Just(0o644u32), Just(0o4755), Just(0o2700), Just(0o7777)], enc(), enc())
        .prop_map(|(flag, path, target, data, mode, path_enc, target_enc)| Hostile { flag, path, target, data, mode, path_enc, target_enc })
}

/// Entries that build on each other, as attacks do: a path may extend part of an earlier one,
/// a hard link may point at an earlier path, a symlink may climb a chosen number of levels.
fn hostile_list(max: usize) -> impl Strategy<Value = Vec<Hostile>> {
    use prop::sample::Index;
    let spec = (hostile(), prop::bool::weighted(0.6), any::<Index>(), 0usize..5, prop::bool::weighted(0.5), 0usize..4, prop::bool::weighted(0.7), any::<Index>());
    prop::collection::vec(spec, 1..max).prop_map(|specs| {
        let mut out: Vec<Hostile> = Vec::new();
        for (mut h, reuse, pick, keep, climb, ups, link_earlier, target_pick) in specs {
            if reuse && !out.is_empty() {
                let base: Vec<&str> = out[pick.index(out.len())].path.split('/').collect();
                let prefix = base[..keep.min(base.len())].join("/");
                // Half the time the earlier path itself (another kind at the same place).
                h.path = if keep % 2 == 0 && !prefix.is_empty() { prefix } else { format!("{prefix}/{}", h.path) };
            }
            if h.flag == b'2' && climb {
                // Climb to about as far as the link's own depth allows: one less, exactly, one more.
                let depth = h.path.split('/').filter(|c| !c.is_empty() && *c != ".").count().saturating_sub(1);
                let name = if ups == 3 { h.target.rsplit('/').next().unwrap_or("").to_string() } else { String::new() };
                h.target = format!("{}{name}", "../".repeat((depth + ups % 3).saturating_sub(1)));
            }
            if h.flag == b'1' && link_earlier && !out.is_empty() {
                h.target = out[target_pick.index(out.len())].path.clone();
            }
            out.push(h);
        }
        out
    })
}

/// Write the entries as a tar, absolute names put under `abs` (a directory of the test's own).
fn materialize(entries: &[&Hostile], abs: &str) -> Vec<u8> {
    let mut t = RawTar::new();
    for e in entries {
        let path = e.path.replace("/ABS/", abs);
        let target = e.target.replace("/ABS/", abs);
        let is_link = matches!(e.flag, b'1' | b'2');
        let mut pax: Vec<u8> = Vec::new();
        let mut name_in_header = path.as_bytes();
        let mut link_in_header = if is_link { target.as_bytes() } else { &b""[..] };
        let path_enc = if path.len() > 100 && matches!(e.path_enc, Enc::Header) { Enc::Gnu } else { e.path_enc };
        match path_enc {
            Enc::Header => {}
            Enc::Gnu => {
                t.long(b'L', path.as_bytes());
                name_in_header = b"gnu-long-name";
            }
            Enc::Pax => {
                pax.extend(pax_record("path", path.as_bytes()));
                name_in_header = b"pax-name";
            }
        }
        if is_link {
            let target_enc = if target.len() > 100 && matches!(e.target_enc, Enc::Header) { Enc::Gnu } else { e.target_enc };
            match target_enc {
                Enc::Header => {}
                Enc::Gnu => {
                    t.long(b'K', target.as_bytes());
                    link_in_header = b"gnu-long-link";
                }
                Enc::Pax => {
                    pax.extend(pax_record("linkpath", target.as_bytes()));
                    link_in_header = b"pax-link";
                }
            }
        }
        if !pax.is_empty() {
            t.header(&header(b"PaxHeaders/x", b'x', pax.len() as u64, b"")).data(&pax);
        }
        let size = if matches!(e.flag, b'0' | b'7') { e.data } else { 0 };
        let mut h = header(name_in_header, e.flag, size as u64, link_in_header);
        h.set_mode(e.mode);
        h.set_cksum();
        t.header(&h).data(&vec![b'd'; size]);
    }
    t.finish()
}

/// The entries a guard accepts or skips when refused ones are left out (a refusal leaves no
/// trace in the guard, so the rest is checked as if they were never there), and how many of
/// them were the root directory itself (accepted, but neither written nor counted).
fn survivors<'a>(entries: &'a [Hostile], abs: &str) -> (Vec<&'a Hostile>, u64) {
    let limits = Limits::default();
    let mut guard = Guard::new(GuardOptions::default(), &limits);
    let mut kept = Vec::new();
    let mut roots = 0;
    for e in entries {
        let bytes = materialize(&[e], abs);
        let mut r = TarReader::new(&bytes[..]);
        let header: EntryHeader = match r.next_entry() {
            Ok(Some(entry)) => entry.header().clone(),
            _ => continue,
        };
        match guard.check(&header) {
            Ok(Verdict::Skip(Skipped::Root)) => {
                roots += 1;
                kept.push(e);
            }
            Ok(_) => kept.push(e),
            Err(_) => {}
        }
    }
    (kept, roots)
}

fn guarded_copy(input: &[u8]) -> (Result<s2i_tar::Stats, CopyError>, Vec<u8>) {
    let limits = Limits::default();
    let mut guard = Guard::new(GuardOptions::default(), &limits);
    let mut out = tar::Builder::new(Vec::new());
    let copied = copy_guarded(input, &mut out, Path::new("artifacts"), &mut guard, &limits);
    out.finish().unwrap();
    (copied, out.into_inner().unwrap())
}

fn model_escapes(output: &[u8]) -> Vec<String> {
    let mut model = Model::new("artifacts");
    model.extract_tar(output);
    model.escapes
}

proptest! {
    #![proptest_config(config(3000))]

    /// Hostile archives as they come: the copy stops at the first refusal. What it wrote before
    /// (a container may already have unpacked it) must be safe too.
    #[test]
    fn hostile_archives_never_escape_even_when_cut_at_a_refusal(entries in hostile_list(16)) {
        let refs: Vec<&Hostile> = entries.iter().collect();
        let (_, output) = guarded_copy(&materialize(&refs, "/ABS/"));
        let escapes = model_escapes(&output);
        prop_assert!(escapes.is_empty(), "{:?}", escapes);
    }

    /// Only what the guard accepts, so that long runs of links and files get through.
    #[test]
    fn accepted_entries_never_escape(entries in hostile_list(24)) {
        let (kept, roots) = survivors(&entries, "/ABS/");
        let (copied, output) = guarded_copy(&materialize(&kept, "/ABS/"));
        let stats = copied.map_err(|e| TestCaseError::fail(format!("a sequence the guard accepted one by one was refused whole: {e}")))?;
        prop_assert_eq!(stats.entries + stats.skipped.total() + roots, kept.len() as u64);
        let escapes = model_escapes(&output);
        prop_assert!(escapes.is_empty(), "{:?}", escapes);
    }
}

// ---------------------------------------------------------------------------------------------
// (c), with real extractors: GNU tar in a directory 16 levels down a sandbox (deeper than any
// climb the generator can write), busybox tar chrooted into the sandbox.

fn extractor_cases() -> u32 {
    std::env::var("S2I_TAR_EXTRACTOR_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(32)
}

/// Run an extractor on `tar`; its own errors (an entry it cannot make) are not ours to judge,
/// but failing to run at all is.
fn run_extractor(mut cmd: Command, tar: &[u8]) {
    let mut child = cmd.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Extractors may stop reading at an error of their own: a broken pipe is not ours to judge.
    let _ = child.stdin.take().unwrap().write_all(tar);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("chroot:"), "{cmd:?} could not run (this test must run as root, for chroot): {stderr}");
}

/// Every path under `sandbox` must be inside `root` or on the way to it, and every symlink
/// under `root` must resolve (or dangle) inside it.
fn check_sandbox(sandbox: &Path, root: &Path) -> Result<(), String> {
    if !root.exists() {
        return match common::tree(sandbox).iter().find(|p| !root.starts_with(sandbox.join(p))) {
            Some(p) => Err(format!("{p} was created outside the root")),
            None => Ok(()),
        };
    }
    for path in common::tree(sandbox) {
        let full = sandbox.join(&path);
        if !(full.starts_with(root) || root.starts_with(&full)) {
            return Err(format!("{} was created outside the root", full.display()));
        }
    }
    for path in common::tree(root) {
        let full = root.join(&path);
        if !full.symlink_metadata().unwrap().file_type().is_symlink() {
            continue;
        }
        let resolved = match std::fs::canonicalize(&full) {
            Ok(p) => p,
            // Dangling: where its target would be, read lexically from its real parent.
            Err(_) => {
                let mut p = std::fs::canonicalize(full.parent().unwrap()).unwrap();
                for c in std::fs::read_link(&full).unwrap().components() {
                    match c {
                        std::path::Component::ParentDir => {
                            p.pop();
                        }
                        std::path::Component::Normal(n) => p.push(n),
                        std::path::Component::RootDir => p = PathBuf::from("/"),
                        _ => {}
                    }
                }
                p
            }
        };
        if !resolved.starts_with(std::fs::canonicalize(root).unwrap()) {
            return Err(format!("{} resolves to {}", full.display(), resolved.display()));
        }
    }
    Ok(())
}

#[test]
fn accepted_entries_never_escape_real_extractors() {
    require("tar", "tar");
    require("busybox", "busybox-static");
    let busybox = which("busybox");
    // Once, up front: chroot needs root, and a property that cannot run must say so, not pass.
    let probe = tempfile::tempdir().unwrap();
    std::fs::create_dir(probe.path().join("bin")).unwrap();
    std::fs::copy(&busybox, probe.path().join("bin/busybox")).unwrap();
    let ran = Command::new("chroot").arg(probe.path()).args(["/bin/busybox", "true"]).output().unwrap();
    assert!(ran.status.success(), "chroot into a directory failed (this test must run as root): {}", String::from_utf8_lossy(&ran.stderr));
    drop(probe);
    // Paths each extractor made over all cases: a run where they made nothing proves nothing.
    let made = std::cell::Cell::new((0usize, 0usize));
    let mut runner = proptest::test_runner::TestRunner::new(Config { cases: extractor_cases(), failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&hostile_list(24), |entries| {
        let sandbox = tempfile::tempdir().unwrap();
        let sandbox_path = std::fs::canonicalize(sandbox.path()).unwrap();
        let abs = format!("{}/abs/", sandbox_path.display());
        let (kept, _) = survivors(&entries, &abs);
        let (copied, output) = guarded_copy(&materialize(&kept, &abs));
        copied.map_err(|e| TestCaseError::fail(e.to_string()))?;

        let deep: PathBuf = (0..16).map(|i| format!("d{i}")).collect();
        let outer = sandbox_path.join(&deep).join("outer");
        std::fs::create_dir_all(&outer).unwrap();
        let mut gnu = Command::new("tar");
        gnu.args(["-xf", "-", "-C"]).arg(&outer);
        run_extractor(gnu, &output);
        check_sandbox(&sandbox_path, &outer.join("artifacts")).map_err(|e| TestCaseError::fail(format!("GNU tar: {e}")))?;
        let gnu_made = common::tree(&outer).len();

        let jail = sandbox_path.join("jail");
        let inner: PathBuf = (0..16).map(|i| format!("d{i}")).collect::<PathBuf>().join("outer");
        std::fs::create_dir_all(jail.join(&inner)).unwrap();
        std::fs::create_dir_all(jail.join("bin")).unwrap();
        std::fs::copy(&busybox, jail.join("bin/busybox")).unwrap();
        let mut bb = Command::new("chroot");
        bb.arg(&jail).args(["/bin/busybox", "tar", "-xf", "-", "-C"]).arg(Path::new("/").join(&inner));
        run_extractor(bb, &output);
        std::fs::remove_file(jail.join("bin/busybox")).unwrap();
        std::fs::remove_dir(jail.join("bin")).unwrap();
        check_sandbox(&jail, &jail.join(&inner).join("artifacts")).map_err(|e| TestCaseError::fail(format!("busybox tar: {e}")))?;
        let (gnu, bb) = made.get();
        made.set((gnu + gnu_made, bb + common::tree(&jail.join(&inner)).len()));
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{e}");
    }
    let (gnu, bb) = made.get();
    assert!(gnu > 0 && bb > 0, "the extractors made nothing (GNU tar {gnu} paths, busybox {bb}): the property was not tested");
}

fn which(program: &str) -> PathBuf {
    let out = Command::new("sh").args(["-c", &format!("command -v {program}")]).output().unwrap();
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    assert!(path.is_absolute(), "{program} not found on PATH");
    // The chroot needs a binary that runs without libraries.
    let file = Command::new("sh").args(["-c", &format!("ldd {} 2>&1", path.display())]).output().unwrap();
    let ldd = String::from_utf8_lossy(&file.stdout);
    assert!(ldd.contains("not a dynamic executable") || ldd.contains("statically linked"), "{} must be static (busybox-static): {ldd}", path.display());
    path
}

/// The model is the oracle of (c): it must see escapes that a guard would have to stop.
#[test]
fn the_model_extractor_sees_escapes() {
    let escaping: Vec<(&str, RawTar)> = vec![
        ("a link climbing out", {
            let mut t = RawTar::new();
            t.symlink("artifacts/l", "../..");
            t
        }),
        ("a file written through a link to the parent", {
            let mut t = RawTar::new();
            t.symlink("artifacts/up", "..").file("artifacts/up/owned", b"");
            t
        }),
        ("finding 2a: x -> . then a deep link", {
            let mut t = RawTar::new();
            t.symlink("artifacts/x", ".").symlink("artifacts/x/x/x/x/y", "../../../..").file("artifacts/x/x/x/x/y/anything", b"");
            t
        }),
        ("finding 2b: .. after a name through a later link", {
            let mut t = RawTar::new();
            t.symlink("artifacts/s", "d/e/f/x/../../../..").dir("artifacts/d/e/f").symlink("artifacts/d/e/f/x", "../..");
            t
        }),
        ("an absolute link", {
            let mut t = RawTar::new();
            t.symlink("artifacts/etc", "/etc");
            t
        }),
        ("a hard link to a link, carried to where it means something else", {
            let mut t = RawTar::new();
            t.symlink("artifacts/a/b/l", "../../x").hardlink("artifacts/h", "artifacts/a/b/l");
            t
        }),
        ("a directory entry over a link to a directory keeps the link", {
            let mut t = RawTar::new();
            t.dir("artifacts/d").symlink("artifacts/up", "..").dir("artifacts/up").file("artifacts/up/x", b"");
            t
        }),
    ];
    for (what, mut t) in escaping {
        assert!(!model_escapes(&t.finish()).is_empty(), "the model missed: {what}");
    }
    let mut safe = RawTar::new();
    safe.dir("artifacts/a/b").symlink("artifacts/a/b/l", "../../c").symlink("artifacts/a/up", "..").file("artifacts/c", b"");
    assert_eq!(model_escapes(&safe.finish()), Vec::<String>::new());
}
