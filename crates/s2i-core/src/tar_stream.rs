//! The input stream of a build container: a tar written on a blocking thread straight into a
//! bounded in-memory pipe that the engine copies to the container's stdin. Nothing touches disk.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;

use s2i_engine::RunningOutput;

use crate::source::{ArchiveStream, SourceTree, WalkStats};

/// How much of the stream may sit in memory between the walk and the engine.
const PIPE_CAPACITY: usize = 256 * 1024;

/// One piece of the input tar.
pub enum Part {
    /// A directory entry (`scripts`, `src`).
    Dir { path: String, mode: u32 },
    /// A small file held in memory (a downloaded or moved script).
    File { path: String, data: Vec<u8>, mode: u32 },
    /// A source tree walked into the stream under `prefix`.
    Tree { prefix: String, tree: Arc<SourceTree> },
    /// Another tar stream (a previous image's save-artifacts output), its entries checked and
    /// re-prefixed; `exit` must then report 0 or the stream fails with [`ArtifactsFailed`].
    Checked { prefix: String, run: RunningOutput },
    /// A tar copied out of a container, checked and re-prefixed, modes normalised.
    Copied { prefix: String, tar: s2i_engine::ContainerInput },
    /// A source archive's entries, checked and re-prefixed under `prefix` as they pass.
    Archive { prefix: String, archive: ArchiveStream },
}

/// The save-artifacts side of a stream failed: its script exited non-zero or its tar was unusable.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ArtifactsFailed(pub String);

/// The [`ArtifactsFailed`] inside an I/O error, if that is what it is.
pub fn as_artifacts_failure(e: &io::Error) -> Option<&ArtifactsFailed> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<ArtifactsFailed>())
}

/// The running producer: read `reader`, then await `done` for its outcome.
pub struct InputStream {
    pub reader: FailingReader,
    pub done: JoinHandle<io::Result<WalkStats>>,
}

/// Start writing `parts` as one tar. With `tee`, the same bytes also go to that file
/// (`--save-temp-dir` keeps what the container was fed).
pub fn spawn(parts: Vec<Part>, tee: Option<PathBuf>) -> InputStream {
    let (writer, reader) = tokio::io::duplex(PIPE_CAPACITY);
    let failure: Arc<Mutex<Option<io::Error>>> = Arc::default();
    let failure_slot = failure.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut bridge = SyncIoBridge::new(writer);
        let result = write_parts(&mut bridge, parts, tee.as_deref());
        if let Err(e) = &result {
            // Tell the reader before it sees the pipe close, so a truncated tar is never taken as whole.
            *failure_slot.lock().unwrap() = Some(io::Error::new(e.kind(), e.to_string()));
        }
        let closed = bridge.shutdown();
        result.and_then(|stats| closed.map(|()| stats))
    });
    InputStream { reader: FailingReader { inner: reader, failure }, done }
}

fn write_parts(bridge: &mut SyncIoBridge<DuplexStream>, parts: Vec<Part>, tee: Option<&Path>) -> io::Result<WalkStats> {
    let tee = tee.map(std::fs::File::create).transpose()?;
    let out = BufWriter::with_capacity(PIPE_CAPACITY, Tee { main: bridge, copy: tee });
    let mut tar = tar::Builder::new(out);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut stats = WalkStats::default();
    for part in parts {
        match part {
            Part::Dir { path, mode } => {
                let mut h = synthetic_header(tar::EntryType::Directory, mode, 0, now);
                tar.append_data(&mut h, &path, io::empty())?;
            }
            Part::File { path, data, mode } => {
                let mut h = synthetic_header(tar::EntryType::Regular, mode, data.len() as u64, now);
                tar.append_data(&mut h, &path, &data[..])?;
            }
            Part::Checked { prefix, run } => {
                let reader = SyncIoBridge::new(run.stdout);
                let copied = crate::archive_check::copy_checked(reader, &mut tar, Path::new(&prefix), false);
                let fail = |why: String| io::Error::other(ArtifactsFailed(why));
                let exit = tokio::runtime::Handle::current().block_on(run.exit);
                // The script's status says more than a tar it left half-written.
                let code = exit.map_err(|e| fail(e.to_string()))?;
                if code != 0 {
                    return Err(fail(format!("save-artifacts exited with status {code}")));
                }
                let c = copied.map_err(|e| fail(format!("its output is not a usable tar: {e}")))?;
                stats.files += c.entries;
                stats.bytes += c.bytes;
            }
            Part::Copied { prefix, tar: input } => {
                let c = crate::archive_check::copy_checked(SyncIoBridge::new(input), &mut tar, Path::new(&prefix), true)?;
                stats.files += c.entries;
                stats.bytes += c.bytes;
            }
            Part::Tree { prefix, tree } => stats.add(tree.append_to(&mut tar, Path::new(&prefix))?),
            Part::Archive { prefix, archive } => stats.add(archive.append_to(&mut tar, Path::new(&prefix))?),
        }
    }
    let mut out = tar.into_inner()?;
    out.flush()?;
    Ok(stats)
}

fn synthetic_header(kind: tar::EntryType, mode: u32, size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

struct Tee<W> {
    main: W,
    copy: Option<std::fs::File>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.main.write(buf)?;
        if let Some(c) = &mut self.copy {
            c.write_all(&buf[..n])?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.main.flush()
    }
}

/// The reading end: reports the producer's failure instead of a clean end of stream.
pub struct FailingReader {
    inner: DuplexStream,
    failure: Arc<Mutex<Option<io::Error>>>,
}

impl AsyncRead for FailingReader {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) if buf.filled().len() == before && buf.remaining() > 0 => {
                match self.failure.lock().unwrap().take() {
                    Some(e) => Poll::Ready(Err(e)),
                    None => Poll::Ready(Ok(())),
                }
            }
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn parts_become_one_tar() {
        let parts = vec![
            Part::Dir { path: "scripts".into(), mode: 0o755 },
            Part::File { path: "scripts/assemble".into(), data: b"#!/bin/sh\necho hi\n".to_vec(), mode: 0o755 },
        ];
        let mut s = spawn(parts, None);
        let mut bytes = Vec::new();
        s.reader.read_to_end(&mut bytes).await.unwrap();
        s.done.await.unwrap().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let entries: Vec<(String, u32)> = a
            .entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.path().unwrap().to_string_lossy().into_owned(), e.header().mode().unwrap())
            })
            .collect();
        assert_eq!(entries, vec![("scripts".into(), 0o755), ("scripts/assemble".into(), 0o755)]);
    }

    #[tokio::test]
    async fn a_failing_walk_is_an_error_for_the_reader_not_an_end_of_stream() {
        let tree = SourceTree {
            root: PathBuf::from("/nonexistent/s2i/source"),
            ignore: Default::default(),
            exclude: None,
            keep_symlinks: false,
            skip: Default::default(),
            world_writable: false,
        };
        let mut s = spawn(vec![Part::Tree { prefix: "src".into(), tree: Arc::new(tree) }], None);
        let mut bytes = Vec::new();
        let read = s.reader.read_to_end(&mut bytes).await;
        assert!(read.is_err(), "the reader must see the failure");
        assert!(s.done.await.unwrap().is_err());
    }
}

#[cfg(test)]
mod checked_tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn running(tar: Vec<u8>, code: i64) -> RunningOutput {
        RunningOutput { stdout: Box::new(std::io::Cursor::new(tar)), exit: Box::pin(async move { Ok(code) }) }
    }

    fn one_file_tar() -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o644);
        b.append_data(&mut h, "cache/x", &b"abc"[..]).unwrap();
        b.into_inner().unwrap()
    }

    #[tokio::test]
    async fn artifacts_are_streamed_under_their_prefix() {
        let mut s = spawn(vec![Part::Checked { prefix: "artifacts".into(), run: running(one_file_tar(), 0) }], None);
        let mut bytes = Vec::new();
        s.reader.read_to_end(&mut bytes).await.unwrap();
        s.done.await.unwrap().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let names: Vec<String> = a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
        assert_eq!(names, ["artifacts/cache/x"]);
    }

    #[tokio::test]
    async fn a_failing_save_artifacts_fails_the_stream() {
        let mut s = spawn(vec![Part::Checked { prefix: "artifacts".into(), run: running(one_file_tar(), 3) }], None);
        let mut bytes = Vec::new();
        assert!(s.reader.read_to_end(&mut bytes).await.is_err());
        let err = s.done.await.unwrap().unwrap_err();
        assert_eq!(as_artifacts_failure(&err).unwrap().0, "save-artifacts exited with status 3");
    }
}
