//! Stopping the engine's blocking work. Unpacking a layer, copying files into or out of a
//! container, a commit or an image archive runs on a blocking thread, which a dropped future does
//! not stop: after an interruption it would go on for as long as the work takes, holding the
//! process (and what it was making) well past the clean-up. Such work is handed a [`Cancel`] and
//! checks it between tar entries and before every read, so that it ends within a read once the
//! engine is told to remove what it made, and removes its own temp files and directories on the
//! way out.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Whether the work it was handed to should stop. Cloning it is cheap.
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    /// A counter that the canceller moves, and its value when the work started: work is
    /// cancelled once the counter has moved (later work gets the new value and runs).
    epoch: Option<(Arc<AtomicU64>, u64)>,
}

/// The error of work that stopped because it was cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("stopped: the engine is removing what it made (an interruption)")]
pub struct Cancelled;

impl Cancel {
    /// For work that nobody stops.
    pub fn never() -> Cancel {
        Cancel { epoch: None }
    }

    /// Cancelled as soon as `epoch` no longer holds the value it holds now.
    pub fn when_moved(epoch: &Arc<AtomicU64>) -> Cancel {
        Cancel { epoch: Some((epoch.clone(), epoch.load(Ordering::SeqCst))) }
    }

    pub fn is_cancelled(&self) -> bool {
        self.epoch.as_ref().is_some_and(|(counter, start)| counter.load(Ordering::SeqCst) != *start)
    }

    pub fn check(&self) -> Result<(), Cancelled> {
        if self.is_cancelled() {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// `inner`, each read failing once the work is cancelled.
    pub fn reader<R: Read>(&self, inner: R) -> CancelReader<R> {
        CancelReader { inner, cancel: self.clone() }
    }
}

impl From<Cancelled> for io::Error {
    fn from(c: Cancelled) -> io::Error {
        // Not `ErrorKind::Interrupted`: `io::copy` and `read_to_end` retry those.
        io::Error::other(c)
    }
}

/// See [`Cancel::reader`].
pub struct CancelReader<R> {
    inner: R,
    cancel: Cancel,
}

impl<R> CancelReader<R> {
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> Read for CancelReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.cancel.check()?;
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn work_started_before_the_counter_moves_is_cancelled_and_later_work_is_not() {
        let epoch = Arc::new(AtomicU64::new(0));
        let early = Cancel::when_moved(&epoch);
        let mut reader = early.reader(&b"abc"[..]);
        let mut buf = [0u8; 1];
        assert_eq!(reader.read(&mut buf).unwrap(), 1);
        epoch.fetch_add(1, Ordering::SeqCst);
        assert!(early.is_cancelled());
        let err = io::copy(&mut reader, &mut io::sink()).unwrap_err();
        assert!(err.get_ref().is_some_and(|e| e.is::<Cancelled>()), "{err}");
        assert_eq!(early.check(), Err(Cancelled));
        let later = Cancel::when_moved(&epoch);
        assert!(!later.is_cancelled());
        assert!(!Cancel::never().is_cancelled());
    }
}
