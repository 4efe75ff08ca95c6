//! The engine errors of `s2i-engine`, made from bollard's.

pub use s2i_engine::{error_chain, EngineError, Result};

/// A failed Engine API call: the engine's own status and message when it answered, else the
/// transport's error chain; `op` names what we were doing.
pub(crate) fn api_error(op: impl Into<String>, err: bollard::errors::Error) -> EngineError {
    use bollard::errors::Error as B;
    let (message, status) = match &err {
        B::DockerResponseServerError { status_code, message } => (message.clone(), Some(*status_code)),
        other => (error_chain(other), None),
    };
    EngineError::Api { op: op.into(), message, status }
}
