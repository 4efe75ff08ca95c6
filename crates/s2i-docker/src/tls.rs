//! TLS to a daemon on tcp://, as the reference does it: `--tlsverify` checks the daemon against
//! `--ca`; `--tls` alone encrypts without checking who answers. A client certificate is sent when
//! both `--cert` and `--key` exist. One rustls client serves both, behind bollard's custom transport.

use std::path::Path;
use std::sync::Arc;

use bollard::{ClientVersion, Docker};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::connect::{existing, TlsOptions};
use crate::error::{EngineError, Result};

pub(crate) fn connect(addr: &str, tls: &TlsOptions, timeout: u64, version: &ClientVersion) -> Result<Docker> {
    let config = client_config(tls)?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(config)
        .https_only()
        .enable_http1()
        .build();
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
    let transport = move |req: bollard::BollardRequest| {
        let client = client.clone();
        Box::pin(async move { client.request(req).await.map_err(bollard::errors::Error::from) })
            as std::pin::Pin<Box<dyn std::future::Future<Output = _> + Send>>
    };
    Docker::connect_with_custom_transport(transport, Some(format!("https://{addr}")), timeout, version)
        .map_err(|e| EngineError::Tls(e.to_string()))
}

fn client_config(tls: &TlsOptions) -> Result<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EngineError::Tls(e.to_string()))?;
    let builder = if tls.verify {
        let ca = existing(&tls.ca).ok_or_else(|| {
            EngineError::Tls(format!("--tlsverify needs the CA that signed the daemon's certificate, and {} does not exist", tls.ca.display()))
        })?;
        let mut roots = RootCertStore::empty();
        for cert in read_certs(ca)? {
            roots.add(cert).map_err(|e| EngineError::Tls(format!("{}: {e}", ca.display())))?;
        }
        builder.with_root_certificates(roots)
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
    };
    let mut config = match (existing(&tls.cert), existing(&tls.key)) {
        (Some(cert), Some(key)) => {
            let key = PrivateKeyDer::from_pem_file(key).map_err(|e| EngineError::Tls(format!("{}: {e}", key.display())))?;
            builder.with_client_auth_cert(read_certs(cert)?, key).map_err(|e| EngineError::Tls(e.to_string()))?
        }
        (None, None) => builder.with_no_client_auth(),
        _ => Err(EngineError::Tls(format!(
            "a client certificate needs its key and the other way round (cert {}, key {})",
            tls.cert.display(),
            tls.key.display()
        )))?,
    };
    // A build opens a handful of connections; resuming sessions saves nothing, and TLS front-ends
    // that check client certificates (OpenSSL without a session id context) reject resumption.
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
        .map_err(|e| EngineError::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(EngineError::Tls(format!("{} holds no PEM certificate", path.display())));
    }
    Ok(certs)
}

/// `--tls` without `--tlsverify`: the connection is encrypted, the daemon is not authenticated.
#[derive(Debug)]
struct AcceptAnyServer(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
