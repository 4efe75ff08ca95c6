//! What a build tells the person or tool that runs it, besides log lines (which go through
//! `tracing`): the scripts' output, phases as they start and end, the source streaming, pulls and
//! pushes. The library never writes to the terminal; the binary implements [`Reporter`] in one
//! place and decides what a terminal, a pipe or `--output=json` gets.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use s2i_engine::{OutputSink, OutputStream, Progress};

/// A stage of a build, as reported and timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Phase {
    /// Getting (inspecting, or pulling) the builder image.
    BuilderImage,
    /// Cloning, downloading or checking the source.
    Source,
    /// Finding and fetching the scripts.
    Scripts,
    /// Running assemble with the source streamed in.
    Assemble,
    /// Committing the result.
    Commit,
    /// Getting the runtime image.
    RuntimeImage,
    /// Moving the artifacts into the runtime image and running assemble-runtime.
    Runtime,
    /// Building FROM an ONBUILD builder.
    Onbuild,
    /// Building the generated Dockerfile with the engine's builder.
    ImageBuild,
    /// Pushing the result to its registry.
    Push,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::BuilderImage => "builder image",
            Phase::Source => "source",
            Phase::Scripts => "scripts",
            Phase::Assemble => "assemble",
            Phase::Commit => "commit",
            Phase::RuntimeImage => "runtime image",
            Phase::Runtime => "runtime",
            Phase::Onbuild => "onbuild",
            Phase::ImageBuild => "image build",
            Phase::Push => "push",
        }
    }
}

/// Whether a transfer pulls or pushes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    Pull,
    Push,
}

/// Counters of the input stream, updated by the tar writer as entries go out; a reporter may read
/// them at any time (a live line on a terminal).
#[derive(Debug, Default)]
pub struct StreamProgress {
    files: AtomicU64,
    bytes: AtomicU64,
}

impl StreamProgress {
    pub fn add(&self, files: u64, bytes: u64) {
        self.files.fetch_add(files, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    /// (entries, bytes) so far.
    pub fn get(&self) -> (u64, u64) {
        (self.files.load(Ordering::Relaxed), self.bytes.load(Ordering::Relaxed))
    }
}

/// Receives everything a build reports. Every method but [`Reporter::container_output`] has a
/// default that ignores the event.
pub trait Reporter: Send + Sync {
    /// One line a build container printed (a script's output), without its newline.
    fn container_output(&self, stream: OutputStream, line: &[u8]);

    fn phase_started(&self, _phase: Phase) {}

    fn phase_finished(&self, _phase: Phase, _took: Duration) {}

    /// The input stream of a container started; `progress` counts what went out so far.
    fn streaming(&self, _progress: Arc<StreamProgress>) {}

    /// The input stream is done (whatever the outcome).
    fn streamed(&self) {}

    /// A pull or push of `image` starts.
    fn transfer_started(&self, _kind: Transfer, _image: &str) {}

    /// A pull or push of `image` moved on.
    fn transfer(&self, _kind: Transfer, _image: &str, _event: Progress<'_>) {}

    /// A pull or push of `image` ended, well or not.
    fn transfer_finished(&self, _kind: Transfer, _image: &str, _ok: bool) {}
}

/// A reporter that drops everything (library callers that want only the result).
pub struct Silent;

impl Reporter for Silent {
    fn container_output(&self, _stream: OutputStream, _line: &[u8]) {}
}

/// How many stderr lines an error message quotes.
const TAIL_LINES: usize = 8;
/// Longest partial line kept before it is passed on anyway.
const MAX_LINE: usize = 64 * 1024;

/// Splits a container's output into lines for the reporter (stdout muted with `--quiet`) and keeps
/// the tail of its stderr for the error message if the script fails.
pub struct ContainerLog {
    reporter: Arc<dyn Reporter>,
    quiet: bool,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl ContainerLog {
    pub fn new(reporter: Arc<dyn Reporter>, quiet: bool) -> Self {
        ContainerLog { reporter, quiet, partial: [Vec::new(), Vec::new()], tail: VecDeque::new() }
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        if stream == OutputStream::Stderr {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(String::from_utf8_lossy(line).trim_end().to_string());
        }
        if !(self.quiet && stream == OutputStream::Stdout) {
            self.reporter.container_output(stream, line);
        }
    }

    /// Pass on what is left of unfinished lines; returns the stderr tail.
    pub fn into_stderr_tail(mut self) -> String {
        self.flush();
        self.tail.iter().filter(|l| !l.is_empty()).cloned().collect::<Vec<_>>().join("\n")
    }

    fn flush(&mut self) {
        for (i, stream) in [OutputStream::Stdout, OutputStream::Stderr].into_iter().enumerate() {
            let rest = std::mem::take(&mut self.partial[i]);
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }
}

impl Drop for ContainerLog {
    fn drop(&mut self) {
        self.flush();
    }
}

impl OutputSink for ContainerLog {
    fn output(&mut self, stream: OutputStream, data: &[u8]) {
        let i = if stream == OutputStream::Stdout { 0 } else { 1 };
        let mut buf = std::mem::take(&mut self.partial[i]);
        buf.extend_from_slice(data);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            self.emit(stream, &buf[start..end]);
            start = end + 1;
        }
        buf.drain(..start);
        if buf.len() > MAX_LINE {
            self.emit(stream, &buf);
            buf.clear();
        }
        self.partial[i] = buf;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<(OutputStream, String)>>);

    impl Reporter for Recorder {
        fn container_output(&self, stream: OutputStream, line: &[u8]) {
            self.0.lock().unwrap().push((stream, String::from_utf8_lossy(line).into_owned()));
        }
    }

    #[test]
    fn splits_lines_across_chunks_mutes_stdout_when_quiet_and_keeps_a_tail() {
        let seen = Arc::new(Recorder::default());
        let mut log = ContainerLog::new(seen.clone(), true);
        log.output(OutputStream::Stdout, b"hidden\n");
        log.output(OutputStream::Stderr, b"err one\nerr t");
        log.output(OutputStream::Stderr, b"wo\n");
        for i in 0..10 {
            log.output(OutputStream::Stderr, format!("line {i}\n").as_bytes());
        }
        log.output(OutputStream::Stderr, b"no newline");
        let tail = log.into_stderr_tail();
        let seen = seen.0.lock().unwrap();
        assert_eq!(seen[0], (OutputStream::Stderr, "err one".into()));
        assert_eq!(seen[1], (OutputStream::Stderr, "err two".into()));
        assert!(seen.iter().all(|(s, _)| *s == OutputStream::Stderr));
        assert_eq!(seen.last().unwrap().1, "no newline");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.ends_with("line 9\nno newline"), "{tail}");
    }

    #[test]
    fn stream_progress_adds_up() {
        let p = StreamProgress::default();
        p.add(1, 10);
        p.add(2, 5);
        assert_eq!(p.get(), (3, 15));
    }
}
