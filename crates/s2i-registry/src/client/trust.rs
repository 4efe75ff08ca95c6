//! What the client trusts beside its built-in roots (webpki's, for registries with a public
//! certificate in an image without a CA bundle) and the system's (its bundle, or `SSL_CERT_FILE`
//! / `SSL_CERT_DIR`): PEM files the user or the engine's configuration names.

use std::path::PathBuf;

use super::{error_chain, RegistryError, Result};

/// A PEM file of CA certificates, and what named it (`--ca-file`, `SSL_CERT_FILE`, a `certs.d`
/// directory), for the error that a file that cannot be used gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaFile {
    pub path: PathBuf,
    pub given_by: &'static str,
}

impl CaFile {
    pub fn new(path: impl Into<PathBuf>, given_by: &'static str) -> CaFile {
        CaFile { path: path.into(), given_by }
    }

    /// Its certificates; an error naming the file and what gave it when it cannot be read, is
    /// not PEM, or holds no certificate.
    pub fn certificates(&self) -> Result<Vec<reqwest::Certificate>> {
        let error = |detail: String| RegistryError::CaFile { path: self.path.clone(), given_by: self.given_by, detail };
        let pem = std::fs::read(&self.path).map_err(|e| error(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error(error_chain(&e)))?;
        if certs.is_empty() {
            return Err(error("no PEM certificate in it".into()));
        }
        Ok(certs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error_of(path: &std::path::Path) -> String {
        let e = CaFile::new(path, "--ca-file").certificates().expect_err("refused");
        assert!(matches!(e, RegistryError::CaFile { given_by: "--ca-file", .. }), "{e:?}");
        assert!(e.hint().contains("--ca-file"), "{}", e.hint());
        e.to_string()
    }

    #[test]
    fn unusable_files_are_refused_with_what_named_them() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(error_of(&missing).starts_with(&format!("cannot use the CA file {} (--ca-file): No such file", missing.display())));
        assert!(error_of(dir.path()).contains("Is a directory"));
        let der = dir.path().join("ca.der");
        std::fs::write(&der, [0x30, 0x82, 0x01, 0x0a, 0x02]).unwrap();
        assert!(error_of(&der).ends_with("(--ca-file): no PEM certificate in it"));
        let key_only = dir.path().join("key.pem");
        std::fs::write(&key_only, "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n").unwrap();
        assert!(error_of(&key_only).ends_with("no PEM certificate in it"));
    }
}
