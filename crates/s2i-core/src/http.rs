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
        Self::build(limits, reqwest::Client::builder())
    }

    fn build(limits: &Limits, builder: reqwest::ClientBuilder) -> Result<Fetcher> {
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
        let client = builder
            .dns_resolver(s2i_registry::dns::resolver())
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

#[cfg(test)]
mod tests {
    use super::*;
    use s2i_testkit::{Answer, HttpServer};
    use std::sync::Arc;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A TLS server on 127.0.0.1 that answers every request with `302` to `location`; returns its
    /// port and the certificate to trust.
    async fn tls_redirector(location: String) -> (u16, Vec<u8>) {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let der = cert.cert.der().to_vec();
        let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, location) = (acceptor.clone(), location.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                    let mut buf = vec![0u8; 4096];
                    let _ = tls.read(&mut buf).await;
                    let answer = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        (port, der)
    }

    fn fetcher(limits: &Limits, trust: Option<Vec<u8>>) -> Fetcher {
        let mut builder = reqwest::Client::builder();
        if let Some(der) = trust {
            builder = builder.add_root_certificate(reqwest::Certificate::from_der(&der).unwrap());
        }
        Fetcher::build(limits, builder).unwrap()
    }

    #[tokio::test]
    async fn a_redirect_from_https_to_http_is_refused() {
        let plain = HttpServer::scripted(|_| Answer::ok(b"archive".to_vec()));
        let (port, der) = tls_redirector(format!("{}/app.tgz", plain.url())).await;
        let d = tempfile::tempdir().unwrap();
        let f = fetcher(&Limits::default(), Some(der));
        let err = f.to_file(&format!("https://127.0.0.1:{port}/app.tgz"), &d.path().join("x")).await.unwrap_err();
        assert!(err.to_string().contains("refusing a redirect from https to http://127.0.0.1"), "{err}");
        assert!(plain.requests().is_empty(), "the plain server was never asked");
    }

    #[tokio::test]
    async fn plain_redirects_are_followed() {
        let target = HttpServer::scripted(|_| Answer::ok(b"archive".to_vec()));
        let to = format!("{}/app.tgz", target.url());
        let hop = HttpServer::scripted(move |_| Answer::redirect(&to));
        let d = tempfile::tempdir().unwrap();
        let n = fetcher(&Limits::default(), None).to_file(&format!("{}/a.tgz", hop.url()), &d.path().join("x")).await.unwrap();
        assert_eq!(n, 7);
    }

    #[tokio::test]
    async fn downloads_stop_at_their_size_and_idle_limits() {
        let d = tempfile::tempdir().unwrap();
        let limits = Limits { download_size: 1 << 20, idle_time: Duration::from_secs(1), ..Limits::default() };
        let endless = HttpServer::scripted(|_| Answer::Endless);
        let err = fetcher(&limits, None).to_file(&format!("{}/a.tgz", endless.url()), &d.path().join("x")).await.unwrap_err();
        assert!(err.to_string().contains("S2I_LIMIT_DOWNLOAD_SIZE"), "{err}");
        let stall = HttpServer::scripted(|_| Answer::Stall { length: 1000, sent: b"abc".to_vec() });
        let started = std::time::Instant::now();
        let err = fetcher(&limits, None).to_file(&format!("{}/a.tgz", stall.url()), &d.path().join("y")).await.unwrap_err();
        assert!(err.to_string().contains("S2I_LIMIT_IDLE_TIME"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        // A chunked body in memory (a script) stops at its cap too.
        let err = fetcher(&limits, None).small(&format!("{}/assemble", endless.url()), Limit::ScriptSize, 4096).await.unwrap_err();
        assert!(err.to_string().contains("S2I_LIMIT_SCRIPT_SIZE"), "{err}");
    }

    #[tokio::test]
    async fn credentials_in_a_url_never_show_in_errors() {
        let d = tempfile::tempdir().unwrap();
        let err = fetcher(&Limits::default(), None).to_file("http://user:s3cr3t@127.0.0.1:1/a.tgz?token=t0k", &d.path().join("x")).await.unwrap_err();
        let shown = err.to_string();
        assert!(!shown.contains("s3cr3t") && !shown.contains("t0k"), "{shown}");
    }
}
