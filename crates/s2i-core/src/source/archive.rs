//! Archive sources: `.tar`, `.tar.gz`/`.tgz` and `.zip`. Nothing is unpacked on the host: a first
//! pass checks every entry and reads the few files the pipeline needs before the container exists
//! (`.s2i/bin/*`, `.sti/bin/*`, `.s2i/environment`, `.s2iignore`); the second pass writes the
//! entries under `src/` straight into the container's input stream, checked again as they pass.
//!
//! Tars are read with the bounded reader of `s2i-tar`, and every entry (a zip's too) goes through
//! its guard, whose rules keep every path and link inside the source root whatever the entry
//! order: no absolute paths, no `..`, no link that leaves the root, nothing through a symlink.
//! With `--context-dir`, a second guard checks the entries re-rooted at the context.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use regex::Regex;
use s2i_tar::{CleanEntry, CleanKind, EntryHeader, EntryKind, Guard, GuardError, GuardOptions, Skipped, TarError, TarReader, Verdict};
use tracing::{trace, warn};

use crate::config::ArchiveFormat;
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::limits::Limits;
use crate::tar_stream::{TarPart, TarSink};

/// An archive on the host (given, or downloaded), and the part of it that is the application.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    pub path: PathBuf,
    pub format: ArchiveFormat,
    /// How the user named it, for messages.
    pub display: String,
    /// `--context-dir`, cleaned (`a/b`), or `None` for the whole archive.
    pub context: Option<String>,
    pub limits: Limits,
}

/// What the second pass needs to write the application into the input tar.
#[derive(Debug)]
pub struct ArchiveStream {
    pub source: ArchiveSource,
    pub ignore: IgnoreRules,
    /// Matched against each entry's path inside the archive.
    pub exclude: Option<Regex>,
    /// Paths relative to the application root that are left out (scripts moved to `scripts/`).
    pub skip: HashSet<PathBuf>,
}

/// One entry that passed the guards, re-rooted at the application root.
struct Checked<'a> {
    /// Its path inside the archive (for `--exclude`).
    name: String,
    /// Path and link target relative to the application root.
    clean: CleanEntry,
    data: &'a mut dyn Read,
}

/// What went wrong reading an archive, as the two passes report it.
enum Failure {
    Refused { entry: String, reason: String },
    Unreadable(String),
    Io(io::Error),
}

impl Failure {
    fn into_build_error(self, src: &ArchiveSource) -> BuildError {
        match self {
            Failure::Refused { entry, reason } => BuildError::UnsafeArchiveEntry { archive: src.display.clone(), entry, reason },
            Failure::Unreadable(reason) => BuildError::ArchiveUnreadable { archive: src.display.clone(), reason },
            Failure::Io(e) => BuildError::ArchiveUnreadable { archive: src.display.clone(), reason: e.to_string() },
        }
    }

    /// For the stream's writer: an I/O error that carries the build error.
    fn into_io(self, src: &ArchiveSource) -> io::Error {
        match self {
            Failure::Io(e) => e,
            other => io::Error::new(io::ErrorKind::InvalidData, other.into_build_error(src).to_string()),
        }
    }
}

impl From<io::Error> for Failure {
    fn from(e: io::Error) -> Self {
        Failure::Io(e)
    }
}

fn guard_failure(e: GuardError, limits: &Limits) -> Failure {
    match e {
        GuardError::Refused(r) => Failure::Refused { entry: r.entry, reason: r.reason.to_string() },
        GuardError::Limit(l) => Failure::Unreadable(limits.tar_limit_message(&l)),
    }
}

fn tar_failure(e: TarError, limits: &Limits) -> Failure {
    match e {
        TarError::Io(e) => Failure::Io(e),
        TarError::Limit(l) => Failure::Unreadable(limits.tar_limit_message(&l)),
        other => Failure::Unreadable(other.to_string()),
    }
}

/// The entry re-rooted at `--context-dir`: `None` outside it (and for the context itself).
fn rerooted(header: &EntryHeader, clean: &CleanEntry, context: &str) -> std::result::Result<Option<EntryHeader>, Failure> {
    let Ok(rel) = clean.path.strip_prefix(context) else { return Ok(None) };
    if rel.as_os_str().is_empty() {
        return Ok(None);
    }
    let mut h = header.clone();
    h.path = rel.as_os_str().as_encoded_bytes().to_vec();
    if let CleanKind::HardLink { target } = &clean.kind {
        match target.strip_prefix(context) {
            Ok(t) if !t.as_os_str().is_empty() => h.link_target = Some(t.as_os_str().as_encoded_bytes().to_vec()),
            _ => {
                return Err(Failure::Refused {
                    entry: header.display_path(),
                    reason: format!("it is a hard link to {:?}, outside --context-dir {context}", target.display()),
                })
            }
        }
    }
    Ok(Some(h))
}

/// Read the archive and call `f` with every entry that passes both guards, in archive order.
/// Special files are skipped with a warning (`on_skip` counts them).
/// Returns whether `--context-dir` (if any) was found in the archive.
fn for_each_checked(
    src: &ArchiveSource,
    cancelled: &AtomicBool,
    f: &mut dyn FnMut(Checked<'_>) -> std::result::Result<(), Failure>,
    on_skip: &mut dyn FnMut(),
) -> std::result::Result<bool, Failure> {
    let mut context_seen = src.context.is_none();
    let limits = src.limits.tar();
    let options = GuardOptions { owner: None, strip_setid: false, normalize_modes: false };
    let mut archive_guard = Guard::new(options.clone(), &limits);
    let mut context_guard = Guard::new(options, &limits);
    let mut each = |header: &EntryHeader, data: &mut dyn Read| -> std::result::Result<(), Failure> {
        if cancelled.load(Ordering::Relaxed) {
            return Err(Failure::Io(io::Error::new(io::ErrorKind::Interrupted, "interrupted")));
        }
        let clean = match archive_guard.check(header).map_err(|e| guard_failure(e, &src.limits))? {
            Verdict::Accept(clean) => clean,
            Verdict::Skip(Skipped::Root) => return Ok(()),
            Verdict::Skip(why) => {
                warn!("Skipping {} ({why}) in {}", header.display_path(), src.display);
                on_skip();
                return Ok(());
            }
        };
        let name = clean.path.to_string_lossy().into_owned();
        let clean = match &src.context {
            None => clean,
            Some(ctx) => {
                if clean.path.starts_with(ctx) {
                    context_seen = true;
                }
                let Some(h) = rerooted(header, &clean, ctx)? else { return Ok(()) };
                match context_guard.check(&h).map_err(|e| match guard_failure(e, &src.limits) {
                    Failure::Refused { entry, reason } => Failure::Refused { entry, reason: format!("{reason} (relative to --context-dir {ctx})") },
                    other => other,
                })? {
                    Verdict::Accept(clean) => clean,
                    Verdict::Skip(_) => return Ok(()),
                }
            }
        };
        f(Checked { name, clean, data })
    };
    let file = File::open(&src.path)?;
    match src.format {
        ArchiveFormat::Tar => tar_entries(BufReader::new(file), &limits, &src.limits, &mut each)?,
        ArchiveFormat::TarGz => tar_entries(flate2::read::MultiGzDecoder::new(BufReader::new(file)), &limits, &src.limits, &mut each)?,
        ArchiveFormat::Zip => zip_entries(file, &mut each)?,
    }
    Ok(context_seen)
}

type EachEntry<'a> = dyn FnMut(&EntryHeader, &mut dyn Read) -> std::result::Result<(), Failure> + 'a;

fn tar_entries<R: Read>(reader: R, tar: &s2i_tar::Limits, limits: &Limits, f: &mut EachEntry<'_>) -> std::result::Result<(), Failure> {
    let mut archive = TarReader::with_limits(reader, *tar);
    while let Some(mut entry) = archive.next_entry().map_err(|e| tar_failure(e, limits))? {
        let header = entry.header().clone();
        f(&header, &mut entry)?;
    }
    archive.drain().map_err(|e| tar_failure(e, limits))?;
    Ok(())
}

fn zip_entries(file: File, f: &mut EachEntry<'_>) -> std::result::Result<(), Failure> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    for i in 0..archive.len() {
        let mut zf = archive.by_index(i).map_err(zip_error)?;
        let unix_mode = zf.unix_mode();
        let is_link = unix_mode.is_some_and(|m| m & 0o170000 == 0o120000);
        let mut header = EntryHeader::new(zf.name().as_bytes().to_vec(), EntryKind::File);
        header.meta.mtime = zf.last_modified().map(dos_time_to_unix).unwrap_or(0);
        header.meta.size = zf.size();
        if zf.is_dir() {
            header.kind = EntryKind::Dir;
            header.meta.mode = unix_mode.map_or(0o755, |m| m & 0o7777);
            header.meta.size = 0;
        } else if is_link {
            let mut target = Vec::new();
            (&mut zf).take(4096).read_to_end(&mut target)?;
            header.kind = EntryKind::Symlink;
            header.link_target = Some(target);
            header.meta.mode = 0o777;
            header.meta.size = 0;
        } else {
            header.meta.mode = unix_mode.map_or(0o644, |m| m & 0o7777);
        }
        f(&header, &mut zf)?;
    }
    Ok(())
}

fn zip_error(e: zip::result::ZipError) -> Failure {
    match e {
        zip::result::ZipError::Io(e) => Failure::Io(e),
        other => Failure::Unreadable(other.to_string()),
    }
}

/// A zip's MS-DOS local time, taken as UTC.
fn dos_time_to_unix(t: zip::DateTime) -> u64 {
    let (y, m, d) = (t.year() as i64, t.month() as i64, t.day() as i64);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + t.hour() as i64 * 3600 + t.minute() as i64 * 60 + t.second() as i64;
    secs.max(0) as u64
}

/// An entry name relative to the application root, or `None` when it is outside `--context-dir`.
/// The first pass: check every entry, copy the files the pipeline reads before streaming into
/// `meta_dir` (the stand-in application root), and make sure `--context-dir` exists.
pub(crate) fn first_pass(src: &ArchiveSource, meta_dir: &Path, cancelled: &AtomicBool) -> Result<()> {
    let outcome = for_each_checked(
        src,
        cancelled,
        &mut |entry| {
            let rel = entry.clean.path.to_string_lossy().into_owned();
            if entry.clean.kind == CleanKind::File && is_meta_file(&rel) {
                if entry.clean.meta.size > src.limits.file_size {
                    return Err(Failure::Unreadable(src.limits.exceeded(crate::limits::Limit::FileSize, rel).to_string()));
                }
                let dest = meta_dir.join(&rel);
                if let Some(parent) = dest.parent() {
                    fs::create_dir_all(parent)?;
                }
                let mut out = File::create(&dest)?;
                io::copy(&mut entry.data.take(src.limits.file_size), &mut out)?;
                fs::set_permissions(&dest, fs::Permissions::from_mode(entry.clean.meta.mode & 0o777))?;
            }
            Ok(())
        },
        &mut || {},
    );
    let context_seen = outcome.map_err(|f| f.into_build_error(src))?;
    if !context_seen {
        let dir = src.context.clone().unwrap_or_default();
        return Err(BuildError::ContextDirNotFound { dir, source_root: PathBuf::from(&src.display) });
    }
    Ok(())
}

fn is_meta_file(rel: &str) -> bool {
    if rel == crate::ignore::IGNORE_FILE || rel == ".s2i/environment" {
        return true;
    }
    [".s2i/bin/", ".sti/bin/"].iter().any(|d| rel.strip_prefix(d).is_some_and(|n| !n.is_empty() && !n.contains('/')))
}

impl ArchiveStream {
    /// The second pass, as a stream part: the application's entries under `prefix/`.
    pub fn part(self, prefix: impl Into<PathBuf>) -> Box<dyn TarPart> {
        Box::new(ArchivePart { stream: self, prefix: prefix.into() })
    }

    fn append(&self, sink: &mut TarSink<'_>, prefix: &Path) -> io::Result<()> {
        let never = AtomicBool::new(false);
        let mut skipped = 0u64;
        let outcome = for_each_checked(
            &self.source,
            &never,
            &mut |entry| {
                let rel = entry.clean.path.to_string_lossy().into_owned();
                if self.left_out(&entry.name, &rel) {
                    sink.left_out();
                    return Ok(());
                }
                let path = prefix.join(&entry.clean.path);
                let (mode, mtime) = (entry.clean.meta.mode, Some(entry.clean.meta.mtime));
                match &entry.clean.kind {
                    CleanKind::Dir => sink.dir(&path, mode, mtime)?,
                    CleanKind::File => sink.file(&path, mode, mtime, entry.clean.meta.size, entry.data)?,
                    CleanKind::Symlink { target } => sink.symlink(&path, target, mtime)?,
                    CleanKind::HardLink { target } => sink.hardlink(&path, &prefix.join(target), mode, mtime)?,
                }
                trace!("A {}", path.display());
                Ok(())
            },
            &mut || skipped += 1,
        );
        for _ in 0..skipped {
            sink.left_out();
        }
        outcome.map(|_| ()).map_err(|f| f.into_io(&self.source))
    }

    /// `.s2iignore` (a matched directory takes everything below it), `--exclude`, moved scripts.
    fn left_out(&self, name: &str, rel: &str) -> bool {
        if self.skip.contains(Path::new(rel)) {
            return true;
        }
        if let Some(re) = &self.exclude {
            if re.is_match(name) {
                return true;
            }
        }
        if !self.ignore.is_empty() {
            let mut prefix = String::new();
            for part in rel.split('/') {
                if !prefix.is_empty() {
                    prefix.push('/');
                }
                prefix.push_str(part);
                if self.ignore.is_ignored(&prefix) {
                    return true;
                }
            }
        }
        false
    }
}

struct ArchivePart {
    stream: ArchiveStream,
    prefix: PathBuf,
}

impl TarPart for ArchivePart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        self.stream.append(sink, &self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An entry name relative to the application root, or `None` when it is outside `--context-dir`.
    fn in_context<'a>(name: &'a str, context: Option<&str>) -> Option<&'a str> {
        match context {
            None => Some(name),
            Some(ctx) => name.strip_prefix(ctx).and_then(|rest| rest.strip_prefix('/')),
        }
    }

    fn raw_entry(name: &str, kind: tar::EntryType, target: Option<&str>, data: &[u8]) -> Vec<u8> {
        // tar::Builder refuses hostile names, so the header's bytes are written by hand.
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(t) = target {
            h.as_old_mut().linkname[..t.len()].copy_from_slice(t.as_bytes());
        }
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    fn archive_of(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut out: Vec<u8> = entries.concat();
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    fn source(d: &Path, bytes: Vec<u8>, context: Option<&str>) -> ArchiveSource {
        let path = d.join("a.tar");
        fs::write(&path, bytes).unwrap();
        ArchiveSource { path, format: ArchiveFormat::Tar, display: "a.tar".into(), context: context.map(Into::into), limits: Limits::default() }
    }

    fn refusal(entries: &[Vec<u8>]) -> (String, String) {
        let d = tempfile::tempdir().unwrap();
        match first_pass(&source(d.path(), archive_of(entries), None), &d.path().join("meta"), &AtomicBool::new(false)) {
            Err(BuildError::UnsafeArchiveEntry { entry, reason, .. }) => (entry, reason),
            other => panic!("{other:?}"),
        }
    }

    use tar::EntryType::{Directory as D, Link as H, Regular as F, Symlink as L};

    #[test]
    fn escapes_are_refused_by_name() {
        let (entry, reason) = refusal(&[raw_entry("/etc/passwd", F, None, b"x")]);
        assert_eq!(entry, "/etc/passwd");
        assert!(reason.contains("absolute"), "{reason}");
        assert!(refusal(&[raw_entry("../evil", F, None, b"x")]).1.contains(".."));
        assert!(refusal(&[raw_entry("a/../../evil", F, None, b"x")]).1.contains(".."));
        let (entry, reason) = refusal(&[raw_entry("etc", L, Some("/etc"), b"")]);
        assert_eq!(entry, "etc");
        assert!(reason.contains("absolute"), "{reason}");
        assert!(refusal(&[raw_entry("a/b", L, Some("../../x"), b"")]).1.contains("out of the tree"));
        let (entry, reason) = refusal(&[raw_entry("d", L, Some("sub"), b""), raw_entry("d/passwd", F, None, b"x")]);
        assert_eq!(entry, "d/passwd");
        assert!(reason.contains("through the symlink \"d\""), "{reason}");
        assert!(refusal(&[raw_entry("h", H, Some("../x"), b"")]).1.contains(".."));
    }

    #[test]
    fn link_checks_do_not_depend_on_entry_order() {
        // The hole the old checker had: a link whose target goes through a later link.
        let (_, reason) = refusal(&[raw_entry("s", L, Some("d/e/f/x/../../../.."), b""), raw_entry("d/e/f/x", L, Some("../.."), b"")]);
        assert!(reason.contains("'..' after a name"), "{reason}");
        // And an entry written under a path that only later turns out to be a link.
        let (entry, _) = refusal(&[raw_entry("x/y", F, None, b"y"), raw_entry("x", L, Some("."), b"")]);
        assert_eq!(entry, "x");
        let d = tempfile::tempdir().unwrap();
        let ok = archive_of(&[raw_entry("a", D, None, b""), raw_entry("a/b", L, Some("../c"), b""), raw_entry("c", F, None, b"c")]);
        first_pass(&source(d.path(), ok, None), &d.path().join("m"), &AtomicBool::new(false)).unwrap();
    }

    #[test]
    fn a_tar_cut_at_a_block_boundary_is_not_taken_as_whole() {
        let d = tempfile::tempdir().unwrap();
        let cut = raw_entry("a", F, None, b"data");
        match first_pass(&source(d.path(), cut, None), &d.path().join("m"), &AtomicBool::new(false)) {
            Err(BuildError::ArchiveUnreadable { reason, .. }) => assert!(reason.contains("cut short"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn context_dirs_select_and_reroot_entries() {
        assert_eq!(in_context("app/x", Some("app")), Some("x"));
        assert_eq!(in_context("app", Some("app")), None);
        assert_eq!(in_context("apple/x", Some("app")), None);
        assert_eq!(in_context("x", None), Some("x"));
        let d = tempfile::tempdir().unwrap();
        let run = |entries: &[Vec<u8>]| first_pass(&source(d.path(), archive_of(entries), Some("app")), &d.path().join("m"), &AtomicBool::new(false));
        assert!(matches!(run(&[raw_entry("app/l", L, Some("../other"), b"")]), Err(BuildError::UnsafeArchiveEntry { .. })));
        assert!(matches!(run(&[raw_entry("other/f", F, None, b""), raw_entry("app/h", H, Some("other/f"), b"")]), Err(BuildError::UnsafeArchiveEntry { .. })));
        assert!(run(&[raw_entry("app/f", F, None, b""), raw_entry("app/h", H, Some("app/f"), b"")]).is_ok());
    }

    #[test]
    fn meta_files_are_the_ones_the_pipeline_reads() {
        assert!(is_meta_file(".s2i/bin/assemble"));
        assert!(is_meta_file(".sti/bin/run"));
        assert!(is_meta_file(".s2i/environment"));
        assert!(is_meta_file(".s2iignore"));
        assert!(!is_meta_file(".s2i/bin/sub/x"));
        assert!(!is_meta_file("app.py"));
    }

    #[test]
    fn zip_times_become_unix_seconds() {
        let t = zip::DateTime::from_date_and_time(2024, 3, 1, 12, 30, 10).unwrap();
        assert_eq!(dos_time_to_unix(t), 1709296210);
    }

    fn tar_bytes(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn both_passes_on_a_tar_with_a_context_dir() {
        let d = tempfile::tempdir().unwrap();
        let src = source(
            d.path(),
            tar_bytes(&[
                ("other/x", b"x"),
                ("app/.s2i/bin/assemble", b"#!/bin/sh\n"),
                ("app/.s2i/environment", b"A=1\n"),
                ("app/.s2iignore", b"*.log\n"),
                ("app/main.py", b"print(1)\n"),
                ("app/debug.log", b"noise"),
                ("app/.git/config", b"[core]"),
            ]),
            Some("app"),
        );
        let meta = d.path().join("meta");
        first_pass(&src, &meta, &AtomicBool::new(false)).unwrap();
        assert_eq!(fs::read_to_string(meta.join(".s2i/environment")).unwrap(), "A=1\n");
        assert!(meta.join(".s2i/bin/assemble").is_file());
        assert!(!meta.join("main.py").exists());

        let stream = ArchiveStream {
            source: src.clone(),
            ignore: IgnoreRules::load(&meta, &Default::default()).unwrap(),
            exclude: Some(Regex::new(super::super::tree::DEFAULT_EXCLUDE).unwrap()),
            skip: [PathBuf::from(".s2i/bin/assemble")].into_iter().collect(),
        };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (bytes, stats) = rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut s = crate::tar_stream::spawn(vec![stream.part("src")], Default::default());
            let mut bytes = Vec::new();
            s.reader.read_to_end(&mut bytes).await.unwrap();
            (bytes, s.done.written().await.unwrap())
        });
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["src/.s2i/environment", "src/.s2iignore", "src/main.py"]);
        assert_eq!(stats.left_out, 3);

        let missing = ArchiveSource { context: Some("nope".into()), ..src };
        assert!(matches!(first_pass(&missing, &d.path().join("m2"), &AtomicBool::new(false)), Err(BuildError::ContextDirNotFound { .. })));
    }
}
