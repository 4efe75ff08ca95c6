//! A gzip writer that compresses on several threads, for new layers.
//!
//! Deflate at level 1 is most of the CPU time of a commit (a 500 MB layer: about 3 s of one core
//! against 0.3 s for each of its two digests), so the stream is cut into blocks of [`BLOCK`]
//! bytes, each block deflated on its own by a worker thread and the results written in order. A
//! block that is not the last ends with a sync flush (an empty stored block), so the blocks join
//! into one deflate stream: one gzip member, as any decompressor reads it. A block starts with an
//! empty window, so the output depends on the input alone, never on the number of threads or
//! their timing: the same layer gets the same digest.
//!
//! At most `threads + 1` blocks are in flight (each held once uncompressed and once compressed),
//! so memory stays bounded (about 3 MiB with two threads) whatever the layer's size.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The uncompressed size of a block.
pub(crate) const BLOCK: usize = 512 << 10;

type Reply = io::Result<Vec<u8>>;

struct Job {
    data: Vec<u8>,
    last: bool,
    reply: SyncSender<Reply>,
}

pub(crate) struct ParallelGz<W: Write> {
    inner: Option<W>,
    buf: Vec<u8>,
    crc: Crc,
    jobs: Option<SyncSender<Job>>,
    /// The replies of the blocks sent to the workers, in stream order.
    pending: VecDeque<Receiver<Reply>>,
    max_pending: usize,
    workers: Vec<JoinHandle<()>>,
}

/// How many threads compress: the CPUs this process may use (its cgroup's quota counts), at most
/// four; one is still a thread of its own, beside the one that makes the tar.
pub(crate) fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).clamp(1, 4)
}

impl<W: Write> ParallelGz<W> {
    pub(crate) fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<Self> {
        // No name, no mtime (0), "fastest" (4) or "best" (2) in XFL, unknown OS (255).
        let xfl = if level.level() <= 1 { 4 } else if level.level() >= 9 { 2 } else { 0 };
        inner.write_all(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, xfl, 255])?;
        let threads = threads.max(1);
        let (jobs, queue) = sync_channel::<Job>(threads);
        let queue = Arc::new(Mutex::new(queue));
        let mut workers = Vec::with_capacity(threads);
        for i in 0..threads {
            let queue = queue.clone();
            let worker = std::thread::Builder::new().name(format!("s2i-gzip-{i}")).spawn(move || {
                let mut deflate = Compress::new(level, false);
                loop {
                    // The lock is held while waiting only: one worker takes the next block.
                    let job = match queue.lock() {
                        Ok(q) => match q.recv() {
                            Ok(job) => job,
                            Err(_) => return,
                        },
                        Err(_) => return,
                    };
                    let out = deflate_block(&mut deflate, &job.data, job.last);
                    // The writer may have given up (an error, or dropped): nothing waits then.
                    let _ = job.reply.send(out);
                }
            })?;
            workers.push(worker);
        }
        Ok(ParallelGz {
            inner: Some(inner),
            buf: Vec::with_capacity(BLOCK),
            crc: Crc::new(),
            jobs: Some(jobs),
            pending: VecDeque::new(),
            max_pending: threads + 1,
            workers,
        })
    }

    fn inner(&mut self) -> &mut W {
        self.inner.as_mut().expect("the writer is there until finish")
    }

    /// Writes the oldest block's compressed bytes (waiting for them).
    fn write_oldest(&mut self) -> io::Result<()> {
        let Some(reply) = self.pending.pop_front() else { return Ok(()) };
        let out = reply.recv().map_err(|_| io::Error::other("a compression thread ended"))??;
        self.inner().write_all(&out)
    }

    fn send(&mut self, last: bool) -> io::Result<()> {
        while self.pending.len() >= self.max_pending {
            self.write_oldest()?;
        }
        let data = std::mem::replace(&mut self.buf, if last { Vec::new() } else { Vec::with_capacity(BLOCK) });
        let (reply, answer) = sync_channel(1);
        let jobs = self.jobs.as_ref().ok_or_else(|| io::Error::other("the gzip stream was finished"))?;
        jobs.send(Job { data, last, reply }).map_err(|_| io::Error::other("the compression threads ended"))?;
        self.pending.push_back(answer);
        Ok(())
    }

    /// Ends the stream (the last block, the gzip trailer) and returns the inner writer.
    pub(crate) fn finish(mut self) -> io::Result<W> {
        self.send(true)?;
        while !self.pending.is_empty() {
            self.write_oldest()?;
        }
        let (crc, len) = (self.crc.sum(), self.crc.amount());
        let mut trailer = [0u8; 8];
        trailer[..4].copy_from_slice(&crc.to_le_bytes());
        trailer[4..].copy_from_slice(&len.to_le_bytes());
        self.inner().write_all(&trailer)?;
        self.stop();
        Ok(self.inner.take().expect("the writer is there until finish"))
    }

    fn stop(&mut self) {
        self.jobs = None;
        self.pending.clear();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl<W: Write> Write for ParallelGz<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(BLOCK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        self.crc.update(&data[..n]);
        if self.buf.len() == BLOCK {
            self.send(false)?;
        }
        Ok(n)
    }

    /// Writes the blocks that are done; a partial block stays until it is full (a flush that cut
    /// it would change the stream, and the digest with it).
    fn flush(&mut self) -> io::Result<()> {
        while self.pending.front().is_some() {
            self.write_oldest()?;
        }
        self.inner().flush()
    }
}

impl<W: Write> Drop for ParallelGz<W> {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One block, deflated from an empty window; ended by a sync flush, or as the stream's end.
fn deflate_block(deflate: &mut Compress, data: &[u8], last: bool) -> Reply {
    deflate.reset();
    let flush = if last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(data.len() + data.len() / 64 + 64);
    loop {
        let done_in = deflate.total_in() as usize;
        let status = deflate.compress_vec(&data[done_in..], &mut out, flush).map_err(io::Error::other)?;
        let consumed = deflate.total_in() as usize == data.len();
        let room_left = out.len() < out.capacity();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete once all the input is in and it stopped short of the end
            // of the output buffer.
            Status::Ok | Status::BufError if !last && consumed && room_left => return Ok(out),
            _ => out.reserve(out.capacity().max(4096)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn random(n: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Half random, half text: blocks that deflate stores and blocks it compresses.
    fn mixed(n: usize) -> Vec<u8> {
        let text = b"the quick brown fox jumps over the lazy dog; ".repeat(n / 90 + 1);
        let mut v = random(n / 2, 7);
        v.extend_from_slice(&text[..n - n / 2]);
        v
    }

    fn compress(data: &[u8], threads: usize, chunk: usize) -> Vec<u8> {
        let mut gz = ParallelGz::new(Vec::new(), Compression::fast(), threads).unwrap();
        for c in data.chunks(chunk.max(1)) {
            gz.write_all(c).unwrap();
        }
        gz.finish().unwrap()
    }

    #[test]
    fn one_gzip_member_that_decompresses_to_the_input() {
        for n in [0, 1, 100, BLOCK - 1, BLOCK, BLOCK + 1, 3 * BLOCK + 17] {
            let data = mixed(n);
            let gz = compress(&data, 2, 10_000);
            // A single-member decoder: the blocks must form one deflate stream, not several members.
            let mut back = Vec::new();
            flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
            assert!(back == data, "{n} bytes did not come back");
            assert_eq!(&gz[gz.len() - 4..], &(n as u32).to_le_bytes(), "ISIZE of {n} bytes");
        }
    }

    #[test]
    fn the_output_depends_on_the_input_alone() {
        let data = mixed(5 * BLOCK + 1234);
        let one = compress(&data, 1, 4096);
        for (threads, chunk) in [(2, 1), (2, BLOCK), (3, 777_777), (4, 65536)] {
            assert!(compress(&data, threads, chunk) == one, "{threads} threads, writes of {chunk}");
        }
        // And it compresses what can be compressed.
        let text = b"abcdefgh".repeat(BLOCK);
        assert!(compress(&text, 2, 65536).len() < text.len() / 50);
    }

    #[test]
    fn the_system_gzip_reads_it() {
        let data = mixed(2 * BLOCK + 5);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.gz");
        std::fs::write(&path, compress(&data, 2, 8192)).unwrap();
        let out = std::process::Command::new("gzip").arg("-dc").arg(&path).output().expect("gzip is installed");
        assert!(out.status.success(), "gzip: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stdout == data);
    }

    struct FailAfter(usize);
    impl Write for FailAfter {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if self.0 < b.len() {
                return Err(io::Error::other("disk full"));
            }
            self.0 -= b.len();
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn an_error_of_the_writer_is_returned_and_the_threads_end() {
        let data = random(6 * BLOCK, 3);
        let mut gz = ParallelGz::new(FailAfter(BLOCK), Compression::fast(), 2).unwrap();
        let err = data.chunks(65536).try_for_each(|c| gz.write_all(c)).and_then(|_| gz.finish().map(|_| ()));
        assert_eq!(err.unwrap_err().to_string(), "disk full");
        // Dropped half-way: the workers end (the test would hang on join otherwise).
        let mut gz = ParallelGz::new(Vec::new(), Compression::fast(), 3).unwrap();
        gz.write_all(&data).unwrap();
        drop(gz);
    }
}
