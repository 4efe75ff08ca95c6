//! Relays a build container's output line by line (stdout muted with `--quiet`) and keeps the tail
//! of its stderr for the error message if the script fails.

use std::collections::VecDeque;
use std::sync::Arc;

use s2i_engine::{OutputSink, OutputStream};

/// Where container output lines go; shared by every container of a build.
pub type OutputFn = Arc<dyn Fn(OutputStream, &[u8]) + Send + Sync>;

/// How many stderr lines an error message quotes.
const TAIL_LINES: usize = 8;
/// Longest partial line kept before it is passed on anyway.
const MAX_LINE: usize = 64 * 1024;

pub struct ContainerLog {
    downstream: OutputFn,
    quiet: bool,
    partial: [Vec<u8>; 2],
    tail: VecDeque<String>,
}

impl ContainerLog {
    pub fn new(downstream: OutputFn, quiet: bool) -> Self {
        ContainerLog { downstream, quiet, partial: [Vec::new(), Vec::new()], tail: VecDeque::new() }
    }

    fn emit(&mut self, stream: OutputStream, line: &[u8]) {
        if stream == OutputStream::Stderr {
            if self.tail.len() == TAIL_LINES {
                self.tail.pop_front();
            }
            self.tail.push_back(String::from_utf8_lossy(line).trim_end().to_string());
        }
        if !(self.quiet && stream == OutputStream::Stdout) {
            (self.downstream)(stream, line);
        }
    }

    /// Pass on what is left of unfinished lines; returns the stderr tail.
    pub fn finish(mut self) -> String {
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

    #[test]
    fn splits_lines_across_chunks_mutes_stdout_when_quiet_and_keeps_a_tail() {
        let seen: Arc<std::sync::Mutex<Vec<(OutputStream, String)>>> = Arc::default();
        let record = seen.clone();
        let sink: OutputFn = Arc::new(move |s, d| record.lock().unwrap().push((s, String::from_utf8_lossy(d).into_owned())));
        let mut log = ContainerLog::new(sink, true);
        log.output(OutputStream::Stdout, b"hidden\n");
        log.output(OutputStream::Stderr, b"err one\nerr t");
        log.output(OutputStream::Stderr, b"wo\n");
        for i in 0..10 {
            log.output(OutputStream::Stderr, format!("line {i}\n").as_bytes());
        }
        log.output(OutputStream::Stderr, b"no newline");
        let tail = log.finish();
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0], (OutputStream::Stderr, "err one".into()));
        assert_eq!(seen[1], (OutputStream::Stderr, "err two".into()));
        assert!(seen.iter().all(|(s, _)| *s == OutputStream::Stderr));
        assert_eq!(seen.last().unwrap().1, "no newline");
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.ends_with("line 9\nno newline"), "{tail}");
    }
}
