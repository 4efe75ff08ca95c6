//! The input stream of a build container: one tar written on a blocking thread straight into a
//! bounded in-memory pipe that the engine copies to the container's stdin. Nothing touches disk.
//!
//! What goes into the stream comes from [`TarPart`]s (a source tree, an archive, the previous
//! image's artifacts, a script held in memory); every entry they write goes through [`TarSink`],
//! which gives it the build's owner, strips setuid and setgid bits and counts it. The writer knows
//! no source kinds: a new kind of input is a new `TarPart`.

use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_util::io::SyncIoBridge;
use tracing::warn;

use crate::report::StreamProgress;

/// How much of the stream may sit in memory between the walk and the engine.
const PIPE_CAPACITY: usize = 256 * 1024;
/// How many stripped paths the warning names.
const STRIPPED_SHOWN: usize = 3;

/// What one stream carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    /// Entries left out (ignore rules, `--exclude`, moved scripts, special files).
    pub left_out: u64,
}

impl WalkStats {
    pub fn add(&mut self, s: WalkStats) {
        self.files += s.files;
        self.dirs += s.dirs;
        self.symlinks += s.symlinks;
        self.bytes += s.bytes;
        self.left_out += s.left_out;
    }
}

/// Who owns everything written into a build's stream (the reference chowns the input to the
/// image's user). Headers carry numbers only, never names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// One piece of the input stream.
pub trait TarPart: Send {
    /// Write the part's entries through `sink`; `sink`'s counts are the stream's.
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()>;
}

/// Where [`TarPart`]s write. Every entry gets the stream's owner and loses setuid/setgid bits.
pub struct TarSink<'w> {
    tar: tar::Builder<Box<dyn Write + Send + 'w>>,
    owner: Owner,
    progress: &'w StreamProgress,
    stats: WalkStats,
    stripped: Vec<String>,
    stripped_count: u64,
    now: u64,
}

impl<'w> TarSink<'w> {
    /// A sink that writes nothing: for reading an untrusted tar through the same checks.
    pub(crate) fn discarding(progress: &'w StreamProgress) -> TarSink<'w> {
        TarSink {
            tar: tar::Builder::new(Box::new(io::sink())),
            owner: Owner::default(),
            progress,
            stats: WalkStats::default(),
            stripped: Vec::new(),
            stripped_count: 0,
            now: 0,
        }
    }

    fn header(&mut self, kind: tar::EntryType, path: &Path, mode: u32, mtime: Option<u64>) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        let mut mode = mode & 0o7777;
        if kind != tar::EntryType::Symlink && mode & 0o6000 != 0 {
            mode &= !0o6000;
            self.stripped_count += 1;
            if self.stripped.len() < STRIPPED_SHOWN {
                self.stripped.push(path.display().to_string());
            }
        }
        h.set_mode(mode);
        h.set_uid(self.owner.uid);
        h.set_gid(self.owner.gid);
        h.set_mtime(mtime.unwrap_or(self.now));
        h.set_size(0);
        h
    }

    /// A directory; `mtime` `None` means now.
    pub fn dir(&mut self, path: &Path, mode: u32, mtime: Option<u64>) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Directory, path, mode, mtime);
        self.tar.append_data(&mut h, path, io::empty())?;
        self.stats.dirs += 1;
        self.progress.add(1, 0);
        Ok(())
    }

    /// A regular file of exactly `size` bytes read from `data`; a reader that ends early is an
    /// error naming the path (the archive must never be left inconsistent).
    pub fn file(&mut self, path: &Path, mode: u32, mtime: Option<u64>, size: u64, data: impl Read) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Regular, path, mode, mtime);
        h.set_size(size);
        let exact = ExactLen { inner: data, remaining: size, path };
        self.tar.append_data(&mut h, path, exact)?;
        self.stats.files += 1;
        self.stats.bytes += size;
        self.progress.add(1, size);
        Ok(())
    }

    pub fn symlink(&mut self, path: &Path, target: &Path, mtime: Option<u64>) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Symlink, path, 0o777, mtime);
        self.tar.append_link(&mut h, path, target)?;
        self.stats.symlinks += 1;
        self.progress.add(1, 0);
        Ok(())
    }

    /// A hard link to `target`, an earlier entry of this stream (its path in the stream).
    pub fn hardlink(&mut self, path: &Path, target: &Path, mode: u32, mtime: Option<u64>) -> io::Result<()> {
        let mut h = self.header(tar::EntryType::Link, path, mode, mtime);
        self.tar.append_link(&mut h, path, target)?;
        self.stats.files += 1;
        self.progress.add(1, 0);
        Ok(())
    }

    /// Count an entry a part chose to leave out.
    pub fn left_out(&mut self) {
        self.stats.left_out += 1;
    }
}

/// Yields exactly the size announced, or fails: a file that shrinks while it is read, or an entry
/// of an archive that ends early, must never leave the output inconsistent.
struct ExactLen<'p, R> {
    inner: R,
    remaining: u64,
    path: &'p Path,
}

impl<R: Read> Read for ExactLen<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 {
            return Ok(0);
        }
        let max = buf.len().min(self.remaining.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..max])?;
        if n == 0 && max > 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} is shorter than its announced size", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

/// A directory entry.
pub struct DirPart {
    pub path: PathBuf,
    pub mode: u32,
}

impl TarPart for DirPart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        sink.dir(&self.path, self.mode, None)
    }
}

/// A small file held in memory (a downloaded or moved script, a generated Dockerfile).
pub struct FilePart {
    pub path: PathBuf,
    pub data: Vec<u8>,
    pub mode: u32,
}

impl TarPart for FilePart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        sink.file(&self.path, self.mode, None, self.data.len() as u64, &self.data[..])
    }
}

/// Shorthands for the parts every stream has.
pub fn dir(path: impl Into<PathBuf>, mode: u32) -> Box<dyn TarPart> {
    Box::new(DirPart { path: path.into(), mode })
}

pub fn file(path: impl Into<PathBuf>, data: Vec<u8>, mode: u32) -> Box<dyn TarPart> {
    Box::new(FilePart { path: path.into(), data, mode })
}

/// The running producer: read `reader`, then await `done` for its outcome.
pub struct InputStream {
    pub reader: FailingReader,
    pub done: StreamDone,
}

/// The producer's outcome, once it has written everything (or failed).
pub struct StreamDone(JoinHandle<io::Result<WalkStats>>);

impl StreamDone {
    /// What was written; a producer that panicked is an I/O error too.
    pub async fn written(self) -> io::Result<WalkStats> {
        match self.0.await {
            Ok(outcome) => outcome,
            Err(e) => Err(io::Error::other(format!("the input stream's writer failed: {e}"))),
        }
    }
}

/// What a stream is written with.
#[derive(Default)]
pub struct StreamOptions {
    pub owner: Owner,
    /// `--save-temp-dir`: the same bytes also go to this file.
    pub tee: Option<PathBuf>,
    /// Counters a reporter may watch.
    pub progress: Arc<StreamProgress>,
}

/// Start writing `parts` as one tar.
pub fn spawn(parts: Vec<Box<dyn TarPart>>, options: StreamOptions) -> InputStream {
    let (writer, reader) = tokio::io::duplex(PIPE_CAPACITY);
    let failure: Arc<Mutex<Option<io::Error>>> = Arc::default();
    let failure_slot = failure.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut bridge = SyncIoBridge::new(writer);
        let result = write_parts(&mut bridge, parts, &options);
        if let Err(e) = &result {
            // Tell the reader before it sees the pipe close, so a truncated tar is never taken as whole.
            *failure_slot.lock().unwrap() = Some(io::Error::new(e.kind(), e.to_string()));
        }
        let closed = bridge.shutdown();
        result.and_then(|stats| closed.map(|()| stats))
    });
    InputStream { reader: FailingReader { inner: reader, failure }, done: StreamDone(done) }
}

fn write_parts(bridge: &mut SyncIoBridge<DuplexStream>, parts: Vec<Box<dyn TarPart>>, options: &StreamOptions) -> io::Result<WalkStats> {
    let tee = options.tee.as_deref().map(std::fs::File::create).transpose()?;
    let out: Box<dyn Write + Send + '_> = Box::new(BufWriter::with_capacity(PIPE_CAPACITY, Tee { main: bridge, copy: tee }));
    let mut sink = TarSink {
        tar: tar::Builder::new(out),
        owner: options.owner,
        progress: &options.progress,
        stats: WalkStats::default(),
        stripped: Vec::new(),
        stripped_count: 0,
        now: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
    };
    for part in parts {
        part.append(&mut sink)?;
    }
    let TarSink { tar, stats, stripped, stripped_count, .. } = sink;
    if stripped_count > 0 {
        let more = if stripped_count > stripped.len() as u64 { ", …" } else { "" };
        warn!(
            "Removed the setuid/setgid bits of {stripped_count} entries streamed into the build ({}{more}): s2i never passes them on",
            stripped.join(", ")
        );
    }
    let mut out = tar.into_inner()?;
    out.flush()?;
    Ok(stats)
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

    async fn read_all(parts: Vec<Box<dyn TarPart>>, owner: Owner) -> (Vec<u8>, io::Result<WalkStats>) {
        let mut s = spawn(parts, StreamOptions { owner, ..Default::default() });
        let mut bytes = Vec::new();
        let read = s.reader.read_to_end(&mut bytes).await;
        let done = s.done.written().await;
        if let Err(e) = read {
            assert!(done.is_err(), "the reader failed ({e}) but the producer did not");
        }
        (bytes, done)
    }

    fn listing(bytes: &[u8]) -> Vec<(String, u32, u64, u64)> {
        let mut a = tar::Archive::new(bytes);
        a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let h = e.header();
                (e.path().unwrap().to_string_lossy().into_owned(), h.mode().unwrap(), h.uid().unwrap(), h.gid().unwrap())
            })
            .collect()
    }

    #[tokio::test]
    async fn parts_become_one_tar_owned_by_the_build_user() {
        let parts = vec![dir("scripts", 0o755), file("scripts/assemble", b"#!/bin/sh\necho hi\n".to_vec(), 0o755)];
        let (bytes, done) = read_all(parts, Owner { uid: 1001, gid: 0 }).await;
        let stats = done.unwrap();
        assert_eq!((stats.dirs, stats.files, stats.bytes), (1, 1, 18));
        assert_eq!(
            listing(&bytes),
            vec![("scripts".into(), 0o755, 1001, 0), ("scripts/assemble".into(), 0o755, 1001, 0)]
        );
    }

    #[tokio::test]
    async fn setuid_and_setgid_bits_never_pass() {
        let parts = vec![file("bin/su", b"x".to_vec(), 0o4755), file("bin/wall", b"y".to_vec(), 0o2755), dir("shared", 0o2775)];
        let (bytes, done) = read_all(parts, Owner::default()).await;
        done.unwrap();
        let modes: Vec<u32> = listing(&bytes).into_iter().map(|(_, m, _, _)| m).collect();
        assert_eq!(modes, vec![0o755, 0o755, 0o775]);
    }

    struct Failing;
    impl TarPart for Failing {
        fn append(self: Box<Self>, _sink: &mut TarSink<'_>) -> io::Result<()> {
            Err(io::Error::other("the walk failed"))
        }
    }

    #[tokio::test]
    async fn a_failing_part_is_an_error_for_the_reader_not_an_end_of_stream() {
        let mut s = spawn(vec![dir("src", 0o755), Box::new(Failing)], StreamOptions::default());
        let mut bytes = Vec::new();
        let read = s.reader.read_to_end(&mut bytes).await;
        assert!(read.is_err(), "the reader must see the failure");
        assert!(s.done.written().await.is_err());
    }

    struct Short;
    impl TarPart for Short {
        fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
            sink.file(Path::new("f"), 0o644, None, 10, &b"abc"[..])
        }
    }

    #[tokio::test]
    async fn a_file_shorter_than_announced_fails_the_stream() {
        let (_, done) = read_all(vec![Box::new(Short)], Owner::default()).await;
        let err = done.unwrap_err();
        assert!(err.to_string().contains("shorter than its announced size"), "{err}");
    }
}
