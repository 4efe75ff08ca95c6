//! Feeding a container's stdin, the same way for every engine.

use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::ContainerInput;

/// Copy `input` into a container's stdin, then close it. An error only when reading `input`
/// failed; a container that stops reading early just ends the copy (its exit code tells).
pub async fn pump_stdin(mut input: ContainerInput, stdin: &mut (dyn AsyncWrite + Send + Unpin)) -> std::io::Result<()> {
    let mut buf = vec![0u8; 128 * 1024];
    let result = loop {
        let n = match input.read(&mut buf).await {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) => break Err(e),
        };
        if let Err(e) = stdin.write_all(&buf[..n]).await {
            debug!("the container stopped reading its input: {e}");
            break Ok(());
        }
    };
    let _ = stdin.shutdown().await;
    result
}
