//! Tar streams that come out of containers and go into another one: the previous image's
//! save-artifacts output (into `artifacts/` of the next build) and files copied from the builder
//! to the runtime container. Both are untrusted; every entry is checked and written again through
//! the input stream's [`TarSink`], never passed through as raw bytes.

use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use s2i_engine::{ContainerInput, RunningOutput};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::SyncIoBridge;
use s2i_tar::{CleanKind, Guard, GuardError, GuardOptions, Skipped, TarError, TarReader, Verdict};
use tracing::{trace, warn};

use crate::limits::Limits;
use crate::tar_stream::{TarPart, TarSink};

/// The save-artifacts side of a stream failed: its script exited non-zero, went quiet, or its tar
/// was unusable. The build then goes on clean.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct ArtifactsFailed {
    pub reason: String,
    #[source]
    pub cause: Option<io::Error>,
}

/// The [`ArtifactsFailed`] inside an I/O error, if that is what it is.
pub fn as_artifacts_failure(e: &io::Error) -> Option<&ArtifactsFailed> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<ArtifactsFailed>())
}

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
#[error("refusing entry {entry:?}: {reason}")]
pub struct UnsafeEntry {
    pub entry: String,
    pub reason: String,
}

/// The previous image's save-artifacts output, checked and written under `prefix`; the script
/// must exit 0, and may go no longer than `idle` without writing (or, once its tar is done,
/// without exiting).
pub struct ArtifactsPart {
    pub prefix: PathBuf,
    pub run: RunningOutput,
    pub limits: Limits,
}

impl TarPart for ArtifactsPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        let fail = |reason: String, cause: Option<io::Error>| io::Error::other(ArtifactsFailed { reason, cause });
        let idle = self.limits.idle_time;
        let reader = SyncIoBridge::new(IdleLimit::new(self.run.stdout, idle));
        let copied = copy_checked(reader, sink, &self.prefix, false, &self.limits);
        // A refused or broken stream is the reason, whatever the script's status says after its
        // reader went away (it then fails writing to a closed pipe).
        if let Err(e) = &copied {
            if is_untrusted(e) {
                let e = copied.unwrap_err();
                return Err(fail(format!("its output is not a usable tar: {e}"), Some(e)));
            }
        }
        let exit = tokio::runtime::Handle::current().block_on(tokio::time::timeout(idle, self.run.exit));
        // The script's status says more than a tar it left half-written.
        let code = match exit {
            Ok(Ok(code)) => code,
            Ok(Err(e)) => return Err(fail(format!("save-artifacts could not be run to its end: {e}"), None)),
            Err(_) => return Err(fail(format!("save-artifacts did not exit {} after its output ended", show(idle)), None)),
        };
        if code != 0 {
            return Err(fail(format!("save-artifacts exited with status {code}"), None));
        }
        copied.map_err(|e| {
            let reason = if e.kind() == io::ErrorKind::TimedOut {
                e.to_string()
            } else {
                format!("its output is not a usable tar: {e}")
            };
            fail(reason, Some(e))
        })
    }
}

/// The artifacts a previous build kept in the cache directory (`--cache-dir`): the tar its
/// save-artifacts wrote, checked again as it is written under `prefix`. A tar that cannot be used
/// fails as [`ArtifactsFailed`]: the build then goes on clean.
pub struct CachedPart {
    pub prefix: PathBuf,
    pub path: PathBuf,
    pub limits: Limits,
}

impl TarPart for CachedPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        let fail = |e: io::Error| io::Error::other(ArtifactsFailed { reason: format!("the cached artifacts {} are not a usable tar: {e}", self.path.display()), cause: Some(e) });
        let file = open_cached(&self.path).map_err(fail)?;
        copy_checked(io::BufReader::new(file), sink, &self.prefix, false, &self.limits).map_err(fail)
    }
}

/// Open a cached tar: a regular file, never through a symlink (the cache is a shared volume),
/// and nothing else is ever opened: the type is read on an `O_PATH` handle first (a FIFO planted
/// there would otherwise block the open forever), then that same inode is opened.
pub fn open_cached(path: &Path) -> io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::OpenOptionsExt;
    let handle = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_PATH | libc::O_NOFOLLOW).open(path)?;
    if !handle.metadata()?.is_file() {
        return Err(io::Error::new(io::ErrorKind::InvalidData, "not a regular file"));
    }
    std::fs::File::open(format!("/proc/self/fd/{}", handle.as_raw_fd()))
}

/// Read a cached tar to its end through the same checks as when it is used, writing nothing:
/// a stale or corrupt cache is found before any script runs (the build is then clean).
pub fn check_cached(path: &Path, limits: &Limits) -> io::Result<()> {
    let file = open_cached(path)?;
    let progress = crate::report::StreamProgress::default();
    let mut sink = TarSink::discarding(&progress);
    copy_checked(io::BufReader::new(file), &mut sink, Path::new("artifacts"), false, limits)
}

/// A tar copied out of a container, checked, written under `prefix` with modes normalised.
pub struct CopiedPart {
    pub prefix: PathBuf,
    pub tar: ContainerInput,
    pub limits: Limits,
}

impl TarPart for CopiedPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        copy_checked(SyncIoBridge::new(self.tar), sink, &self.prefix, true, &self.limits)
    }
}

fn show(d: Duration) -> String {
    format!("within {} s (S2I_LIMIT_IDLE_TIME)", d.as_secs())
}

/// A reader that fails with `TimedOut` when its inner reader gives nothing for `idle`.
struct IdleLimit<R> {
    inner: R,
    idle: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<R> IdleLimit<R> {
    fn new(inner: R, idle: Duration) -> Self {
        IdleLimit { inner, idle, timer: Box::pin(tokio::time::sleep(idle)) }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for IdleLimit<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(r) => {
                let deadline = tokio::time::Instant::now() + this.idle;
                this.timer.as_mut().reset(deadline);
                Poll::Ready(r)
            }
            Poll::Pending => match this.timer.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("save-artifacts wrote nothing {}", show(this.idle)),
                ))),
                Poll::Pending => Poll::Pending,
            },
        }
    }
}

/// Copy every entry of the tar read from `input` into `sink` under `prefix`, through the guard of
/// `s2i-tar` (headers rebuilt from what was checked; nothing passes as raw bytes). The input is
/// drained to its end (tar writers pad their output, and the writer must not block on a full
/// pipe). With `normalize_modes`, directories become 0755 and files 0755 or 0644. An empty input
/// is no entries.
fn copy_checked<R: io::Read>(input: R, sink: &mut TarSink<'_>, prefix: &Path, normalize_modes: bool, limits: &Limits) -> io::Result<()> {
    let tar_limits = limits.tar();
    let options = GuardOptions { owner: None, strip_setid: true, normalize_modes };
    let mut guard = Guard::new(options, &tar_limits);
    let mut reader = TarReader::with_limits(input, tar_limits);
    let tar_error = |e: TarError| match e {
        TarError::Io(e) => e,
        TarError::Limit(l) => io::Error::other(Untrusted(limits.tar_limit_message(&l))),
        other => io::Error::other(Untrusted(other.to_string())),
    };
    loop {
        let mut entry = match reader.next_entry() {
            Ok(Some(entry)) => entry,
            Ok(None) => break,
            Err(TarError::Empty) => return Ok(()),
            Err(e) => return Err(tar_error(e)),
        };
        let clean = match guard.check(entry.header()) {
            Ok(Verdict::Accept(clean)) => clean,
            Ok(Verdict::Skip(Skipped::Root)) => continue,
            Ok(Verdict::Skip(why)) => {
                warn!("Skipping {} ({why}) in the archive", entry.header().display_path());
                sink.left_out();
                continue;
            }
            Err(GuardError::Refused(r)) => return Err(io::Error::other(UnsafeEntry { entry: r.entry, reason: r.reason.to_string() })),
            Err(GuardError::Limit(l)) => return Err(io::Error::other(Untrusted(limits.tar_limit_message(&l)))),
        };
        let name = prefix.join(&clean.path);
        let mtime = Some(clean.meta.mtime);
        match &clean.kind {
            CleanKind::Dir => sink.dir(&name, clean.meta.mode, mtime)?,
            CleanKind::File => sink.file(&name, clean.meta.mode, mtime, clean.meta.size, &mut entry)?,
            CleanKind::Symlink { target } => sink.symlink(&name, target, mtime)?,
            CleanKind::HardLink { target } => sink.hardlink(&name, &prefix.join(target), clean.meta.mode, mtime)?,
        }
        trace!("A {}", name.display());
    }
    reader.drain().map_err(tar_error)?;
    Ok(())
}

/// An untrusted stream that cannot be read (malformed, cut short, over a limit).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Untrusted(pub String);

/// Whether an I/O error of a copy says the input was hostile or broken (not our own pipe).
pub fn is_untrusted(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<UnsafeEntry>() || inner.is::<Untrusted>())
}


#[cfg(test)]
mod tests {

    #[test]
    fn a_cache_entry_that_is_a_fifo_or_a_link_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("entry.tar");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Opening a FIFO for reading blocks until a writer comes: this returns at once.
        let e = super::open_cached(&fifo).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData, "{e}");
        let real = d.path().join("real.tar");
        std::fs::write(&real, b"").unwrap();
        let link = d.path().join("link.tar");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(super::open_cached(&link).is_err(), "a symlink is not followed");
        assert!(super::open_cached(&real).is_ok());
    }
    use super::*;
    use tokio::io::AsyncReadExt;

    /// The archive of finding 1: a PAX record says size=1024, the ustar header says 0, and the
    /// 1024 bytes that follow are a header and data for `scripts/assemble`. An extractor that
    /// ignores the PAX size would unpack that hidden entry.
    fn hiding_archive() -> Vec<u8> {
        let mut hidden = tar::Header::new_ustar();
        hidden.set_path("scripts/assemble").unwrap();
        hidden.set_size(9);
        hidden.set_mode(0o755);
        hidden.set_cksum();
        let mut payload = hidden.as_bytes().to_vec();
        payload.extend_from_slice(b"#!/bin/sh");
        payload.resize(1024, 0);

        let record = "13 size=1024\n";
        let mut pax = tar::Header::new_ustar();
        pax.set_path("PaxHeader").unwrap();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(record.len() as u64);
        pax.set_cksum();
        let mut out = pax.as_bytes().to_vec();
        out.extend_from_slice(record.as_bytes());
        out.resize(1024, 0);
        let mut entry = tar::Header::new_ustar();
        entry.set_path("cache/innocent").unwrap();
        entry.set_size(0);
        entry.set_mode(0o644);
        entry.set_cksum();
        out.extend_from_slice(entry.as_bytes());
        out.extend_from_slice(&payload);
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    /// The entry names an extractor that ignores PAX records sees: headers walked by their ustar
    /// size field alone (as some busybox versions do).
    fn header_names(bytes: &[u8]) -> Vec<String> {
        let mut names = Vec::new();
        let mut pos = 0;
        while pos + 512 <= bytes.len() {
            let block = &bytes[pos..pos + 512];
            if block.iter().all(|b| *b == 0) {
                break;
            }
            let name = String::from_utf8_lossy(&block[..100]).trim_end_matches('\0').to_string();
            let size_field = String::from_utf8_lossy(&block[124..136]).trim_matches(|c: char| c == '\0' || c == ' ').to_string();
            let size = u64::from_str_radix(&size_field, 8).unwrap_or(0) as usize;
            if block[156] != b'x' && block[156] != b'g' {
                names.push(name);
            }
            pos += 512 + size.div_ceil(512) * 512;
        }
        names
    }

    #[tokio::test]
    async fn a_pax_size_cannot_hide_an_entry_from_what_is_passed_on() {
        let input = hiding_archive();
        assert!(header_names(&input).contains(&"scripts/assemble".to_string()), "the attack is in the input");
        let part = CopiedPart { prefix: PathBuf::from("artifacts"), tar: Box::new(std::io::Cursor::new(input)), limits: Limits::default() };
        let mut s = crate::tar_stream::spawn(vec![Box::new(part)], Default::default());
        let mut out = Vec::new();
        s.reader.read_to_end(&mut out).await.unwrap();
        s.done.written().await.unwrap();
        // Even an extractor that ignores PAX sizes sees only the re-prefixed entry.
        assert_eq!(header_names(&out), vec!["artifacts/cache/innocent".to_string()]);
        // What the PAX size said is the entry's content, under its own (re-prefixed) name.
        let mut a = tar::Archive::new(&out[..]);
        let entries: Vec<(String, u64)> = a.entries().unwrap().map(|e| { let e = e.unwrap(); (e.path().unwrap().display().to_string(), e.size()) }).collect();
        assert_eq!(entries, vec![("artifacts/cache/innocent".to_string(), 1024)]);
    }

    #[tokio::test]
    async fn a_refused_entry_is_named_and_an_empty_stream_is_no_artifacts() {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "x", "/etc").unwrap();
        let bytes = b.into_inner().unwrap();
        let part = CopiedPart { prefix: PathBuf::from("a"), tar: Box::new(std::io::Cursor::new(bytes)), limits: Limits::default() };
        let mut s = crate::tar_stream::spawn(vec![Box::new(part)], Default::default());
        let mut out = Vec::new();
        let _ = s.reader.read_to_end(&mut out).await;
        let err = s.done.written().await.unwrap_err();
        assert!(err.to_string().contains("\"x\"") && err.to_string().contains("absolute"), "{err}");

        let part = CopiedPart { prefix: PathBuf::from("a"), tar: Box::new(std::io::Cursor::new(Vec::new())), limits: Limits::default() };
        let mut s = crate::tar_stream::spawn(vec![Box::new(part)], Default::default());
        s.reader.read_to_end(&mut out).await.unwrap();
        assert_eq!(s.done.written().await.unwrap().files, 0);
    }
}
