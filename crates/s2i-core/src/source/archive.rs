//! Archive sources: `.tar`, `.tar.gz`/`.tgz` and `.zip`. Nothing is unpacked on the host: a first
//! pass checks every entry and reads the few files the pipeline needs before the container exists
//! (`.s2i/bin/*`, `.sti/bin/*`, `.s2i/environment`, `.s2iignore`); the second pass re-prefixes the
//! entries under `src/` straight into the container's input tar, checking them again as they pass.
//!
//! An entry is refused (the whole build fails, naming it) when it would land outside the source
//! root: an absolute path, a `..` component, a symlink whose target is absolute or climbs out, an
//! entry whose path goes through a symlink, a hard link to something outside.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use regex::Regex;
use tracing::{trace, warn};

use super::spec::ArchiveFormat;
use crate::error::{BuildError, Result};
use crate::ignore::IgnoreRules;
use crate::tar_stream::{TarPart, TarSink};

/// Files of the application root the pipeline reads before streaming; bigger ones are refused.
const MAX_META_FILE: u64 = 16 * 1024 * 1024;

/// An archive on the host (given, or downloaded), and the part of it that is the application.
#[derive(Debug, Clone)]
pub struct ArchiveSource {
    pub path: PathBuf,
    pub format: ArchiveFormat,
    /// How the user named it, for messages.
    pub display: String,
    /// `--context-dir`, cleaned (`a/b`), or `None` for the whole archive.
    pub context: Option<String>,
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

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink(String),
    Hardlink(String),
    /// Pax/GNU bookkeeping entries: nothing to write.
    Meta,
    Special(&'static str),
}

struct Entry<'a> {
    name: String,
    kind: Kind,
    mode: u32,
    mtime: u64,
    size: u64,
    data: &'a mut dyn Read,
}

/// Call `f` with every entry of the archive, in archive order.
fn for_each_entry(src: &ArchiveSource, f: &mut dyn FnMut(Entry<'_>) -> io::Result<()>) -> io::Result<()> {
    let file = File::open(&src.path)?;
    match src.format {
        ArchiveFormat::Tar => tar_entries(BufReader::new(file), f),
        ArchiveFormat::TarGz => tar_entries(flate2::read::MultiGzDecoder::new(BufReader::new(file)), f),
        ArchiveFormat::Zip => zip_entries(file, f),
    }
}

fn tar_entries<R: Read>(reader: R, f: &mut dyn FnMut(Entry<'_>) -> io::Result<()>) -> io::Result<()> {
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let header = entry.header();
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let kind = match header.entry_type() {
            tar::EntryType::Regular | tar::EntryType::Continuous => Kind::File,
            tar::EntryType::Directory => Kind::Dir,
            tar::EntryType::Symlink => Kind::Symlink(entry.link_name_bytes().map(|b| text(&b)).unwrap_or_default()),
            tar::EntryType::Link => Kind::Hardlink(entry.link_name_bytes().map(|b| text(&b)).unwrap_or_default()),
            tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink => Kind::Meta,
            tar::EntryType::Char | tar::EntryType::Block => Kind::Special("device"),
            tar::EntryType::Fifo => Kind::Special("fifo"),
            _ => Kind::Special("unsupported entry type"),
        };
        let mode = header.mode().unwrap_or(0o644);
        let mtime = header.mtime().unwrap_or(0);
        let size = entry.size();
        let name = text(&entry.path_bytes());
        f(Entry { name, kind, mode, mtime, size, data: &mut entry })?;
    }
    Ok(())
}

fn zip_entries(file: File, f: &mut dyn FnMut(Entry<'_>) -> io::Result<()>) -> io::Result<()> {
    let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(zip_error)?;
    for i in 0..archive.len() {
        let mut zf = archive.by_index(i).map_err(zip_error)?;
        let name = zf.name().to_string();
        let unix_mode = zf.unix_mode();
        let is_link = unix_mode.is_some_and(|m| m & 0o170000 == 0o120000);
        let mtime = zf.last_modified().map(dos_time_to_unix).unwrap_or(0);
        let size = zf.size();
        let (kind, mode) = if zf.is_dir() {
            (Kind::Dir, unix_mode.map_or(0o755, |m| m & 0o7777))
        } else if is_link {
            let mut target = String::new();
            (&mut zf).take(4096).read_to_string(&mut target)?;
            (Kind::Symlink(target), 0o777)
        } else {
            (Kind::File, unix_mode.map_or(0o644, |m| m & 0o7777))
        };
        f(Entry { name, kind, mode, mtime, size, data: &mut zf })?;
    }
    Ok(())
}

fn zip_error(e: zip::result::ZipError) -> io::Error {
    match e {
        zip::result::ZipError::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other.to_string()),
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

/// Clean an entry name: `./` prefixes, empty and `.` components go; `None` for the root itself.
/// Absolute names and `..` are refused.
fn clean_name(raw: &str) -> std::result::Result<Option<String>, String> {
    if raw.starts_with('/') {
        return Err("its path is absolute".into());
    }
    let mut parts = Vec::new();
    for part in raw.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("its path climbs out with ..".into()),
            p => parts.push(p),
        }
    }
    Ok(if parts.is_empty() { None } else { Some(parts.join("/")) })
}

/// Remembers the symlinks seen so far, to refuse entries that go through one.
#[derive(Default)]
struct Checker {
    symlinks: HashSet<String>,
}

impl Checker {
    /// Check one entry (its cleaned name) against the root it will be extracted into.
    fn check(&mut self, name: &str, kind: &Kind) -> std::result::Result<(), String> {
        if let Some(link) = self.symlink_ancestor(name) {
            return Err(format!("its path goes through the symlink {link:?}"));
        }
        match kind {
            Kind::Symlink(target) => {
                self.check_link_target(name, target)?;
                self.symlinks.insert(name.to_string());
            }
            Kind::Hardlink(target) => {
                let target_name = match clean_name(target) {
                    Ok(Some(t)) => t,
                    _ => return Err(format!("it is a hard link to {target:?}, outside the archive")),
                };
                if let Some(link) = self.symlink_ancestor(&target_name) {
                    return Err(format!("it is a hard link through the symlink {link:?}"));
                }
            }
            _ => {
                // A directory or file entry of the same name replaces the link.
                self.symlinks.remove(name);
            }
        }
        Ok(())
    }

    /// The nearest proper ancestor of `name` that is a symlink.
    fn symlink_ancestor(&self, name: &str) -> Option<String> {
        let mut prefix = String::new();
        let parts: Vec<&str> = name.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(part);
            if self.symlinks.contains(&prefix) {
                return Some(prefix);
            }
        }
        None
    }

    /// A link target must be relative and, resolved from the link's directory, stay inside.
    fn check_link_target(&self, name: &str, target: &str) -> std::result::Result<(), String> {
        if target.starts_with('/') {
            return Err(format!("it is a symlink to the absolute path {target:?}"));
        }
        let mut path: Vec<&str> = name.split('/').collect();
        path.pop();
        let parts: Vec<&str> = target.split('/').filter(|p| !p.is_empty() && *p != ".").collect();
        for (i, part) in parts.iter().enumerate() {
            if *part == ".." {
                if path.pop().is_none() {
                    return Err(format!("it is a symlink to {target:?}, which leaves the archive"));
                }
                continue;
            }
            path.push(part);
            if i + 1 < parts.len() && self.symlinks.contains(&path.join("/")) {
                return Err(format!("it is a symlink to {target:?}, which goes through another symlink"));
            }
        }
        Ok(())
    }
}

/// An entry name relative to the application root, or `None` when it is outside `--context-dir`.
fn in_context<'a>(name: &'a str, context: Option<&str>) -> Option<&'a str> {
    match context {
        None => Some(name),
        Some(ctx) => name.strip_prefix(ctx).and_then(|rest| rest.strip_prefix('/')),
    }
}

/// The first pass: check every entry, copy the files the pipeline reads before streaming into
/// `meta_dir` (the stand-in application root), and make sure `--context-dir` exists.
pub(crate) fn first_pass(src: &ArchiveSource, meta_dir: &Path, cancelled: &AtomicBool) -> Result<()> {
    let mut refused: Option<(String, String)> = None;
    let mut archive_checker = Checker::default();
    let mut context_checker = Checker::default();
    let mut context_seen = src.context.is_none();
    let outcome = for_each_entry(src, &mut |entry| {
        if cancelled.load(Ordering::Relaxed) {
            return Err(io::Error::new(io::ErrorKind::Interrupted, "interrupted"));
        }
        if refused.is_some() || entry.kind == Kind::Meta {
            return Ok(());
        }
        let name = match clean_name(&entry.name) {
            Ok(Some(n)) => n,
            Ok(None) => return Ok(()),
            Err(reason) => {
                refused = Some((entry.name.clone(), reason));
                return Ok(());
            }
        };
        if let Err(reason) = archive_checker.check(&name, &entry.kind) {
            refused = Some((entry.name.clone(), reason));
            return Ok(());
        }
        if let Some(ctx) = &src.context {
            if name == *ctx || name.starts_with(&format!("{ctx}/")) {
                context_seen = true;
            }
        }
        let Some(rel) = in_context(&name, src.context.as_deref()) else { return Ok(()) };
        if let Err(reason) = context_check(&mut context_checker, rel, &entry.kind, src.context.as_deref()) {
            refused = Some((entry.name.clone(), reason));
            return Ok(());
        }
        if entry.kind == Kind::File && is_meta_file(rel) {
            if entry.size > MAX_META_FILE {
                return Err(io::Error::other(format!("{rel} is bigger than 16 MiB")));
            }
            let dest = meta_dir.join(rel);
            if let Some(parent) = dest.parent() {
                fs::create_dir_all(parent)?;
            }
            let mut out = File::create(&dest)?;
            io::copy(&mut entry.data.take(MAX_META_FILE), &mut out)?;
            fs::set_permissions(&dest, fs::Permissions::from_mode(entry.mode & 0o777))?;
        }
        Ok(())
    });
    if let Some((entry, reason)) = refused {
        return Err(BuildError::UnsafeArchiveEntry { archive: src.display.clone(), entry, reason });
    }
    outcome.map_err(|e| BuildError::ArchiveUnreadable { archive: src.display.clone(), reason: e.to_string() })?;
    if !context_seen {
        let dir = src.context.clone().unwrap_or_default();
        return Err(BuildError::ContextDirNotFound { dir, source_root: PathBuf::from(&src.display) });
    }
    Ok(())
}

/// Inside `--context-dir` the context is the root: links must stay inside it too, and hard links
/// must point at entries inside it.
fn context_check(checker: &mut Checker, rel: &str, kind: &Kind, context: Option<&str>) -> std::result::Result<(), String> {
    let Some(ctx) = context else { return Ok(()) };
    let kind = match kind {
        Kind::Hardlink(target) => match clean_name(target).ok().flatten().as_deref().and_then(|t| in_context(t, Some(ctx))) {
            Some(t) => Kind::Hardlink(t.to_string()),
            None => return Err(format!("it is a hard link to {target:?}, outside --context-dir {ctx}")),
        },
        Kind::Symlink(_) => kind.clone(),
        _ => kind.clone(),
    };
    checker.check(rel, &kind).map_err(|r| format!("{r} (relative to --context-dir {ctx})"))
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
        let mut archive_checker = Checker::default();
        let mut context_checker = Checker::default();
        let ctx = self.source.context.as_deref();
        let display = &self.source.display;
        let refuse = |entry: &str, reason: String| {
            io::Error::new(io::ErrorKind::InvalidData, format!("archive {display}: refusing entry {entry:?}: {reason}"))
        };
        for_each_entry(&self.source, &mut |entry| {
            if entry.kind == Kind::Meta {
                return Ok(());
            }
            let Some(name) = clean_name(&entry.name).map_err(|r| refuse(&entry.name, r))? else { return Ok(()) };
            archive_checker.check(&name, &entry.kind).map_err(|r| refuse(&entry.name, r))?;
            let Some(rel) = in_context(&name, ctx) else { return Ok(()) };
            context_check(&mut context_checker, rel, &entry.kind, ctx).map_err(|r| refuse(&entry.name, r))?;
            if self.left_out(&name, rel) {
                sink.left_out();
                return Ok(());
            }
            let path = prefix.join(rel);
            let mtime = Some(entry.mtime);
            match &entry.kind {
                Kind::Dir => sink.dir(&path, entry.mode, mtime)?,
                Kind::File => sink.file(&path, entry.mode, mtime, entry.size, entry.data)?,
                Kind::Symlink(target) => sink.symlink(&path, Path::new(target), mtime)?,
                Kind::Hardlink(target) => {
                    let target = clean_name(target).ok().flatten().unwrap_or_default();
                    let target_rel = in_context(&target, ctx).unwrap_or(&target);
                    sink.hardlink(&path, &prefix.join(target_rel), entry.mode, mtime)?;
                }
                Kind::Special(what) => {
                    warn!("Skipping special file {} ({what}) in {}", entry.name, self.source.display);
                    sink.left_out();
                    return Ok(());
                }
                Kind::Meta => {}
            }
            trace!("A {}", path.display());
            Ok(())
        })
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

    fn check_all(entries: &[(&str, Kind)]) -> std::result::Result<(), (String, String)> {
        let mut c = Checker::default();
        for (raw, kind) in entries {
            let name = match clean_name(raw) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                Err(r) => return Err((raw.to_string(), r)),
            };
            c.check(&name, kind).map_err(|r| (raw.to_string(), r))?;
        }
        Ok(())
    }

    #[test]
    fn names_are_cleaned_and_escapes_refused() {
        assert_eq!(clean_name("./a//b/./c/").unwrap(), Some("a/b/c".into()));
        assert_eq!(clean_name("./").unwrap(), None);
        assert!(clean_name("/etc/passwd").unwrap_err().contains("absolute"));
        assert!(clean_name("../evil").unwrap_err().contains(".."));
        assert!(clean_name("a/../../evil").is_err());
        assert!(clean_name("a/..").is_err());
    }

    #[test]
    fn symlinks_must_stay_inside_and_never_be_gone_through() {
        let link = |t: &str| Kind::Symlink(t.into());
        assert!(check_all(&[("a/b", link("../c")), ("a/c", link("d/e"))]).is_ok());
        let (entry, reason) = check_all(&[("etc", link("/etc"))]).unwrap_err();
        assert_eq!(entry, "etc");
        assert!(reason.contains("absolute"), "{reason}");
        let (_, reason) = check_all(&[("a/b", link("../../x"))]).unwrap_err();
        assert!(reason.contains("leaves the archive"), "{reason}");
        let (entry, reason) = check_all(&[("d", link("sub")), ("d/passwd", Kind::File)]).unwrap_err();
        assert_eq!(entry, "d/passwd");
        assert!(reason.contains("through the symlink \"d\""), "{reason}");
        let (_, reason) = check_all(&[("x", link(".")), ("s", link("x/.."))]).unwrap_err();
        assert!(reason.contains("another symlink"), "{reason}");
        assert!(check_all(&[("h", Kind::Hardlink("../x".into()))]).is_err());
        assert!(check_all(&[("f", Kind::File), ("h", Kind::Hardlink("f".into()))]).is_ok());
    }

    #[test]
    fn context_dirs_select_and_reroot_entries() {
        assert_eq!(in_context("app/x", Some("app")), Some("x"));
        assert_eq!(in_context("app", Some("app")), None);
        assert_eq!(in_context("apple/x", Some("app")), None);
        assert_eq!(in_context("x", None), Some("x"));
        let mut c = Checker::default();
        assert!(context_check(&mut c, "l", &Kind::Symlink("../other".into()), Some("app")).is_err());
        assert!(context_check(&mut c, "h", &Kind::Hardlink("other/f".into()), Some("app")).is_err());
        assert!(context_check(&mut c, "h", &Kind::Hardlink("app/f".into()), Some("app")).is_ok());
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
        let path = d.path().join("app.tar");
        fs::write(
            &path,
            tar_bytes(&[
                ("other/x", b"x"),
                ("app/.s2i/bin/assemble", b"#!/bin/sh\n"),
                ("app/.s2i/environment", b"A=1\n"),
                ("app/.s2iignore", b"*.log\n"),
                ("app/main.py", b"print(1)\n"),
                ("app/debug.log", b"noise"),
                ("app/.git/config", b"[core]"),
            ]),
        )
        .unwrap();
        let src = ArchiveSource { path, format: ArchiveFormat::Tar, display: "app.tar".into(), context: Some("app".into()) };
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
            (bytes, s.done.result().await.unwrap())
        });
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> =
            a.entries().unwrap().map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, vec!["src/.s2i/environment", "src/.s2iignore", "src/main.py"]);
        assert_eq!(stats.left_out, 3);

        let missing = ArchiveSource { context: Some("nope".into()), ..src };
        assert!(matches!(first_pass(&missing, &d.path().join("m2"), &AtomicBool::new(false)), Err(BuildError::ContextDirNotFound { .. })));
    }

    #[test]
    fn a_hostile_tar_is_refused_in_the_first_pass() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("evil.tar");
        let mut raw = tar_bytes(&[("ok", b"fine")]);
        // tar::Builder refuses `..`, so write the name into a header by hand.
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..7].copy_from_slice(b"../evil");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        raw.truncate(raw.len() - 1024);
        raw.extend_from_slice(h.as_bytes());
        raw.extend_from_slice(&[0u8; 1024]);
        fs::write(&path, raw).unwrap();
        let src = ArchiveSource { path, format: ArchiveFormat::Tar, display: "evil.tar".into(), context: None };
        match first_pass(&src, &d.path().join("meta"), &AtomicBool::new(false)) {
            Err(BuildError::UnsafeArchiveEntry { entry, .. }) => assert_eq!(entry, "../evil"),
            other => panic!("{other:?}"),
        }
    }
}
