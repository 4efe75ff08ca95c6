//! Downloads of untrusted content over HTTP (archive sources, scripts): bounded in size and time,
//! never following a redirect from https to plain http, and never showing a credential that a URL
//! carries.

use std::path::Path;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::{BuildError, Result};
use crate::limits::{Limit, Limits};
use crate::redact;
use s2i_engine::error_chain;

/// How many redirects a download follows.
const MAX_REDIRECTS: usize = 10;

/// Why a fetch did not give a body.
#[derive(Debug)]
pub enum FetchError {
    /// The server answered, with this status.
    Status(u16),
    /// The request failed on the way (DNS, connect, TLS, a refused redirect, a timeout).
    Transport(String),
    /// A limit was hit.
    Limit(BuildError),
}

impl std::fmt::Display for FetchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FetchError::Status(s) => write!(f, "HTTP status {s}"),
            FetchError::Transport(t) => f.write_str(t),
            FetchError::Limit(e) => write!(f, "{e}"),
        }
    }
}

/// An HTTP client with the build's limits.
pub struct Fetcher {
    client: reqwest::Client,
    limits: Limits,
}

impl Fetcher {
    pub fn new(limits: &Limits) -> Result<Fetcher> {
        let policy = reqwest::redirect::Policy::custom(|attempt| {
            let downgrade = attempt.previous().last().is_some_and(|prev| prev.scheme() == "https") && attempt.url().scheme() != "https";
            if downgrade {
                let to = redact::url(attempt.url().as_str());
                attempt.error(format!("refusing a redirect from https to {to}"))
            } else if attempt.previous().len() >= MAX_REDIRECTS {
                attempt.error(format!("more than {MAX_REDIRECTS} redirects"))
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(30))
            .timeout(limits.download_time)
            .redirect(policy)
            .build()
            .map_err(|e| BuildError::io("setting up the HTTP client", std::io::Error::other(e)))?;
        Ok(Fetcher { client, limits: *limits })
    }

    async fn get(&self, url: &str) -> std::result::Result<reqwest::Response, FetchError> {
        let resp = self.client.get(url).send().await.map_err(|e| self.transport(url, &e))?;
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            return Err(FetchError::Status(status));
        }
        Ok(resp)
    }

    fn transport(&self, url: &str, e: &reqwest::Error) -> FetchError {
        if e.is_timeout() {
            return FetchError::Limit(self.limits.exceeded(Limit::DownloadTime, format!("downloading {}", redact::url(url))));
        }
        FetchError::Transport(redact::text(&error_chain(e)))
    }

    /// The next chunk of `resp`, or a limit error when none comes within the idle time.
    async fn chunk(&self, url: &str, resp: &mut reqwest::Response) -> std::result::Result<Option<bytes::Bytes>, FetchError> {
        match tokio::time::timeout(self.limits.idle_time, resp.chunk()).await {
            Ok(Ok(chunk)) => Ok(chunk),
            Ok(Err(e)) => Err(self.transport(url, &e)),
            Err(_) => Err(FetchError::Limit(self.limits.exceeded(Limit::IdleTime, format!("downloading {}", redact::url(url))))),
        }
    }

    /// GET `url` into `file`, at most the download size limit; returns the bytes written.
    pub async fn to_file(&self, url: &str, file: &Path) -> std::result::Result<u64, FetchError> {
        let mut resp = self.get(url).await?;
        let too_big = || FetchError::Limit(self.limits.exceeded(Limit::DownloadSize, format!("the download {}", redact::url(url))));
        if resp.content_length().is_some_and(|n| n > self.limits.download_size) {
            return Err(too_big());
        }
        let io = |e: std::io::Error| FetchError::Transport(format!("writing {}: {e}", file.display()));
        let mut out = tokio::fs::File::create(file).await.map_err(io)?;
        let mut total: u64 = 0;
        while let Some(chunk) = self.chunk(url, &mut resp).await? {
            total += chunk.len() as u64;
            if total > self.limits.download_size {
                return Err(too_big());
            }
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        Ok(total)
    }

    /// GET a small document (a script) into memory, at most `cap` bytes (`limit` names the cap).
    pub async fn small(&self, url: &str, limit: Limit, cap: u64) -> std::result::Result<Vec<u8>, FetchError> {
        let mut resp = self.get(url).await?;
        let too_big = || FetchError::Limit(self.limits.exceeded(limit, redact::url(url)));
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = self.chunk(url, &mut resp).await? {
            if (body.len() + chunk.len()) as u64 > cap {
                return Err(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}
