use thiserror::Error;

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum EngineError {
    #[error("cannot connect to the container engine at {endpoint}: {reason}")]
    Connect { endpoint: String, reason: String },

    #[error("unsupported engine endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },

    #[error("TLS setup failed: {0}")]
    Tls(String),

    #[error("image {0:?} not found")]
    ImageNotFound(String),

    #[error("pulling {image:?} failed: {message}")]
    Pull { image: String, message: String },

    /// A call to the engine failed; `op` names what we were doing.
    #[error("{op} failed: {message}")]
    Api { op: String, message: String, status: Option<u16> },

    /// The engine cannot do this at all (an OCI archive on Docker, an image build on the OCI engine).
    #[error("the {engine} engine cannot {what}")]
    NotSupported { engine: crate::EngineKind, what: String },

    /// Reading the stream we were feeding into a container failed (our side, not the container's).
    #[error("{0}")]
    Input(std::io::Error),

    /// A call failed with an error that text would flatten (a registry's answer, with its own
    /// hint): the cause is kept, typed, for callers that look for it ([`EngineError::find_cause`]).
    #[error("{op} failed: {source}")]
    Failed { op: String, #[source] source: Box<dyn std::error::Error + Send + Sync> },
}

impl EngineError {
    /// The first error of type `T` among this error's causes (a `RegistryError`, say).
    pub fn find_cause<T: std::error::Error + 'static>(&self) -> Option<&T> {
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            if let Some(found) = c.downcast_ref::<T>() {
                return Some(found);
            }
            cause = c.source();
        }
        None
    }

    /// The cause of a [`EngineError::Failed`] when it is a `T`, taken out; otherwise the error
    /// itself, untouched.
    pub fn into_cause<T: std::error::Error + 'static>(self) -> std::result::Result<Box<T>, EngineError> {
        match self {
            EngineError::Failed { op, source } => source.downcast::<T>().map_err(|source| EngineError::Failed { op, source }),
            other => Err(other),
        }
    }

    /// True when the engine answered "404 not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, EngineError::Api { status: Some(404), .. } | EngineError::ImageNotFound(_))
    }
}

pub use s2i_registry::error_chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_call_keeps_its_typed_cause() {
        let io = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no");
        let e = EngineError::Failed { op: "pulling x".into(), source: Box::new(io) };
        assert_eq!(e.to_string(), "pulling x failed: no");
        assert_eq!(e.find_cause::<std::io::Error>().map(|c| c.kind()), Some(std::io::ErrorKind::PermissionDenied));
        assert!(e.find_cause::<std::fmt::Error>().is_none());
        assert_eq!(error_chain(&e), "pulling x failed: no");
        let e = e.into_cause::<std::fmt::Error>().expect_err("not an fmt::Error");
        assert!(matches!(&e, EngineError::Failed { op, .. } if op == "pulling x"), "kept as it was: {e:?}");
        assert_eq!(e.into_cause::<std::io::Error>().map(|c| c.kind()).ok(), Some(std::io::ErrorKind::PermissionDenied));
        let api = EngineError::Api { op: "x".into(), message: "y".into(), status: None };
        assert!(matches!(api.into_cause::<std::io::Error>(), Err(EngineError::Api { .. })));
    }
}
