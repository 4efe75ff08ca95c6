//! A container's streams, the same way for every engine: feeding its stdin, relaying its output,
//! and handing what a blocking writer produces to an async reader.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tracing::debug;

use crate::{ByteStream, ContainerInput, OutputSink, OutputStream};

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

/// Relay both output pipes to `sink` as they produce, until both end.
pub async fn forward_output(
    mut stdout: Option<impl AsyncRead + Unpin>,
    mut stderr: Option<impl AsyncRead + Unpin>,
    sink: &mut dyn OutputSink,
) -> std::io::Result<()> {
    let mut out_buf = vec![0u8; 64 * 1024];
    let mut err_buf = vec![0u8; 64 * 1024];
    while stdout.is_some() || stderr.is_some() {
        tokio::select! {
            n = async { stdout.as_mut().unwrap().read(&mut out_buf).await }, if stdout.is_some() => {
                match n? {
                    0 => stdout = None,
                    n => sink.output(OutputStream::Stdout, &out_buf[..n]),
                }
            }
            n = async { stderr.as_mut().unwrap().read(&mut err_buf).await }, if stderr.is_some() => {
                match n? {
                    0 => stderr = None,
                    n => sink.output(OutputStream::Stderr, &err_buf[..n]),
                }
            }
        }
    }
    Ok(())
}

/// A `Write` that hands each chunk to an async reader through a bounded channel.
pub struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

impl ChannelWriter {
    pub fn new(tx: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>) -> ChannelWriter {
        ChannelWriter { tx }
    }
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the archive's reader went away"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A stream of what `write` writes on a blocking thread (an archive of a container's files),
/// through a bounded channel: the writer waits while nobody reads, and fails at once when the
/// stream is dropped. An error `write` returns is the stream's last item.
pub fn blocking_stream<F>(write: F) -> ByteStream
where
    F: FnOnce(&mut ChannelWriter) -> Result<(), String> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    tokio::task::spawn_blocking(move || {
        let mut w = ChannelWriter::new(tx.clone());
        if let Err(e) = write(&mut w) {
            let _ = tx.blocking_send(Err(std::io::Error::other(e)));
        }
    });
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// A bounded channel from a blocking writer to `out`: the [`ChannelWriter`] to hand the writer,
/// and the future that writes what it sends to `out`, then closes `out`. When the future is
/// dropped (an interruption) or `out` fails, the writer's next write fails at once instead of
/// waiting on `out` for ever.
pub fn channel_to(
    mut out: impl AsyncWrite + Unpin + Send + 'static,
) -> (ChannelWriter, impl std::future::Future<Output = std::io::Result<()>> + Send) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(16);
    let copy = async move {
        while let Some(chunk) = rx.recv().await {
            out.write_all(&chunk?).await?;
        }
        out.shutdown().await
    };
    (ChannelWriter::new(tx), copy)
}
