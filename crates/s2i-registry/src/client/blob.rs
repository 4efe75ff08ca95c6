//! Blobs as streams: a download verified against its digest and size as it goes, with an idle
//! timeout; the digest of bytes held in memory.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::Stream;
use sha2::{Digest as _, Sha256};
use tokio::time::Sleep;

use super::error::RegistryError;
use super::{Limits, IDLE_TIMEOUT_ENV};

/// The hex part of a `sha256:` digest, checked; other algorithms are refused (registries and
/// engines in use only make sha256).
pub(crate) fn sha256_hex(digest: &str) -> Option<&str> {
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))).then_some(hex)
}

type Body = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// A blob's bytes as they arrive. It ends with an error (never a short or altered success) when
/// the content does not match the digest or size it was asked by, or when the registry stops
/// sending for longer than the idle timeout: consumers must discard what they wrote on an error,
/// including one that comes after the last chunk.
///
/// Errors are `std::io::Error`s wrapping a [`RegistryError`] (`get_ref()` and downcast to see it),
/// so the stream plugs into `tokio_util::io::StreamReader`.
pub struct BlobStream {
    body: Body,
    hasher: Sha256,
    expected: String,
    size: u64,
    seen: u64,
    registry: String,
    limits: Limits,
    idle_timer: Pin<Box<Sleep>>,
    done: bool,
}

impl BlobStream {
    pub(crate) fn new(body: Body, expected: &str, size: u64, registry: &str, limits: &Limits) -> BlobStream {
        BlobStream {
            body,
            hasher: Sha256::new(),
            expected: expected.to_string(),
            size,
            seen: 0,
            registry: registry.to_string(),
            limits: *limits,
            idle_timer: Box::pin(tokio::time::sleep(limits.idle_timeout)),
            done: false,
        }
    }

    /// The blob's size, as its descriptor states it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stream as an `AsyncRead`.
    pub fn into_reader(self) -> tokio_util::io::StreamReader<BlobStream, Bytes> {
        tokio_util::io::StreamReader::new(self)
    }

    fn fail(&mut self, err: RegistryError) -> Poll<Option<std::io::Result<Bytes>>> {
        self.done = true;
        Poll::Ready(Some(Err(std::io::Error::other(err))))
    }

    fn mismatch(&self, detail: String) -> RegistryError {
        RegistryError::DigestMismatch {
            registry: self.registry.clone(),
            what: format!("blob {}", self.expected),
            expected: self.expected.clone(),
            detail,
        }
    }
}

impl Stream for BlobStream {
    type Item = std::io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        match self.body.as_mut().poll_next(cx) {
            Poll::Pending => {
                if self.idle_timer.as_mut().poll(cx).is_ready() {
                    let err = RegistryError::Timeout {
                        registry: self.registry.clone(),
                        what: "stopped sending a blob",
                        limit: "idle timeout",
                        after: self.limits.idle_timeout,
                        env: IDLE_TIMEOUT_ENV,
                    };
                    return self.fail(err);
                }
                Poll::Pending
            }
            Poll::Ready(Some(Ok(chunk))) => {
                let deadline = tokio::time::Instant::now() + self.limits.idle_timeout;
                self.idle_timer.as_mut().reset(deadline);
                self.seen += chunk.len() as u64;
                if self.seen > self.size {
                    let err = self.mismatch(format!("more than the {} bytes it should have", self.size));
                    return self.fail(err);
                }
                self.hasher.update(&chunk);
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Ready(Some(Err(e))) => {
                let err = super::transport_error(&self.registry, e, &self.limits);
                self.fail(err)
            }
            Poll::Ready(None) => {
                self.done = true;
                if self.seen != self.size {
                    let err = self.mismatch(format!("{} bytes instead of {}", self.seen, self.size));
                    return self.fail(err);
                }
                let actual = format!("sha256:{}", hex::encode(std::mem::take(&mut self.hasher).finalize()));
                if actual != self.expected {
                    let err = self.mismatch(format!("its content has digest {actual}"));
                    return self.fail(err);
                }
                Poll::Ready(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_digest;
    use futures_util::StreamExt;
    use std::time::Duration;

    fn stream_of(chunks: Vec<&'static [u8]>, digest: &str, size: u64) -> BlobStream {
        let body = futures_util::stream::iter(chunks.into_iter().map(|c| Ok(Bytes::from_static(c))));
        BlobStream::new(Box::pin(body), digest, size, "r:1", &Limits::default())
    }

    async fn collect(mut s: BlobStream) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return Err(e.get_ref().map(|r| r.to_string()).unwrap_or_default()),
            }
        }
        Ok(out)
    }

    #[tokio::test]
    async fn verified_as_it_streams() {
        let digest = sha256_digest(b"hello world");
        assert_eq!(collect(stream_of(vec![b"hello ", b"world"], &digest, 11)).await.unwrap(), b"hello world");
        let err = collect(stream_of(vec![b"hello ", b"World"], &digest, 11)).await.unwrap_err();
        assert!(err.contains("does not match") && err.contains("its content has digest"), "{err}");
        let err = collect(stream_of(vec![b"hello"], &digest, 11)).await.unwrap_err();
        assert!(err.contains("5 bytes instead of 11"), "{err}");
        // More than announced stops the stream at once, before the extra bytes are handed on.
        let mut s = stream_of(vec![b"hello world", b"and more"], &digest, 11);
        assert_eq!(&s.next().await.unwrap().unwrap()[..], b"hello world");
        let err = s.next().await.unwrap().unwrap_err();
        assert!(err.to_string().contains("more than the 11 bytes"), "{err}");
        assert!(s.next().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_times_out() {
        let body = futures_util::stream::iter(vec![Ok(Bytes::from_static(b"x"))]).chain(futures_util::stream::pending());
        let limits = Limits { idle_timeout: Duration::from_secs(60), ..Limits::default() };
        let mut s = BlobStream::new(Box::pin(body), &sha256_digest(b"xy"), 2, "r:1", &limits);
        assert!(s.next().await.unwrap().is_ok());
        let err = s.next().await.unwrap().unwrap_err();
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<RegistryError>()).unwrap();
        assert!(matches!(inner, RegistryError::Timeout { limit: "idle timeout", .. }), "{inner}");
        assert!(inner.hint().contains(IDLE_TIMEOUT_ENV));
    }

    #[test]
    fn digest_format() {
        let d = sha256_digest(b"");
        assert_eq!(d, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
        assert!(sha256_hex(&d).is_some());
        assert!(sha256_hex("sha256:E3B0").is_none() && sha256_hex("sha512:00").is_none());
        assert!(sha256_hex(&format!("sha256:{}/../x", "a".repeat(58))).is_none());
    }
}
