//! `s2i usage IMAGE`: run the builder's usage script. What it prints on stdout is the command's
//! output (our stdout); its stderr goes to stderr.

use std::io::Write;

use s2i_core::{BuildConfig, BuildError, PullPolicy};
use s2i_engine::OutputStream;

use crate::cli::{GlobalArgs, UsageArgs};

pub async fn run(global: &GlobalArgs, args: UsageArgs) -> Result<(), BuildError> {
    let Some(image) = args.image.filter(|i| !i.trim().is_empty()) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i usage needs IMAGE; see s2i usage --help".into(),
        });
    };
    let cfg = BuildConfig {
        builder_image: image,
        pull_policy: PullPolicy::parse(&args.common.pull_policy)?,
        destination: args.common.destination.filter(|d| !d.is_empty()),
        ..Default::default()
    };
    let engine = super::connect(global).await?;
    let relay: s2i_core::OutputFn = std::sync::Arc::new(|stream: OutputStream, line: &[u8]| {
        let _ = match stream {
            OutputStream::Stdout => writeln_bytes(&mut std::io::stdout().lock(), line),
            OutputStream::Stderr => writeln_bytes(&mut std::io::stderr().lock(), line),
        };
    });
    super::interruptible(&engine, s2i_core::usage::usage(&cfg, &engine, relay)).await
}

fn writeln_bytes(w: &mut impl Write, line: &[u8]) -> std::io::Result<()> {
    w.write_all(line)?;
    w.write_all(b"\n")
}
