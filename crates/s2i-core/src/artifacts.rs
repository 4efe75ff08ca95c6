//! Tar streams that come out of containers and go into another one: the previous image's
//! save-artifacts output (into `artifacts/` of the next build) and files copied from the builder
//! to the runtime container. Both are untrusted; every entry is checked and written again through
//! the input stream's [`TarSink`], never passed through as raw bytes.

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use s2i_engine::{ContainerInput, RunningOutput};
use tokio::io::{AsyncRead, ReadBuf};
use tokio_util::io::SyncIoBridge;
use tracing::{trace, warn};

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
    pub idle: Duration,
}

impl TarPart for ArtifactsPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        let fail = |reason: String, cause: Option<io::Error>| io::Error::other(ArtifactsFailed { reason, cause });
        let idle = self.idle;
        let reader = SyncIoBridge::new(IdleLimit::new(self.run.stdout, idle));
        let copied = copy_checked(reader, sink, &self.prefix, false);
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

/// A tar copied out of a container, checked, written under `prefix` with modes normalised.
pub struct CopiedPart {
    pub prefix: PathBuf,
    pub tar: ContainerInput,
}

impl TarPart for CopiedPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        copy_checked(SyncIoBridge::new(self.tar), sink, &self.prefix, true)
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

/// A relative, normalised path inside the root, or why not. `.` components are dropped.
fn safe_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it climbs out with '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute"),
        }
    }
    Ok(out)
}

/// Where a symlink at `rel` pointing at `target` leads, if it stays inside the root.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// Copy every entry of the tar read from `input` into `sink` under `prefix`, checked as above.
/// The input is drained to its end (tar writers pad their output, and the writer must not block
/// on a full pipe). With `normalize_modes`, directories become 0755 and files 0755 or 0644.
fn copy_checked<R: io::Read>(input: R, sink: &mut TarSink<'_>, prefix: &Path, normalize_modes: bool) -> io::Result<()> {
    let mut archive = tar::Archive::new(input);
    let refuse = |entry: &Path, reason: &str| io::Error::other(UnsafeEntry { entry: entry.display().to_string(), reason: reason.to_string() });
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw).map_err(|reason| refuse(&raw, reason))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let mut mode = entry.header().mode()?;
        if normalize_modes {
            mode = if kind.is_dir() || mode & 0o100 != 0 { 0o755 } else { 0o644 };
        }
        let mtime = Some(entry.header().mtime()?);
        let name = prefix.join(&rel);
        match kind {
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.ok_or_else(|| refuse(&raw, "a link without a target"))?.into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(refuse(&raw, "it is a link that leads out of the tree"));
                }
                sink.symlink(&name, &target, mtime)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name()?.ok_or_else(|| refuse(&raw, "a link without a target"))?.into_owned();
                let target = safe_relative(&target).map_err(|_| refuse(&raw, "it is a hard link to a file outside the tree"))?;
                sink.hardlink(&name, &prefix.join(target), mode, mtime)?;
            }
            tar::EntryType::Directory => sink.dir(&name, mode, mtime)?,
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let size = entry.size();
                sink.file(&name, mode, mtime, size, &mut entry)?;
            }
            other => {
                warn!("Skipping {} in the archive: unsupported entry type {other:?}", raw.display());
                sink.left_out();
                continue;
            }
        }
        trace!("A {}", name.display());
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(())
}

/// The refusal inside an I/O error, if that is what it is.
pub fn as_unsafe_entry(e: &io::Error) -> Option<&UnsafeEntry> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<UnsafeEntry>())
}
