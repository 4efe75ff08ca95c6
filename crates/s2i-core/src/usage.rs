//! `s2i usage IMAGE`: run the builder's usage script and relay what it prints. Nothing is committed.

use s2i_engine::{ContainerSpec, Engine};

use crate::container_log::OutputFn;
use tracing::warn;

use crate::config::BuildConfig;
use crate::container_log::ContainerLog;
use crate::error::{BuildError, Result};
use crate::image_ref::with_default_tag;
use crate::scripts::{self, Resolver};
use crate::tar_stream::{self, Part};

/// Run the usage script of `cfg.builder_image` (found through the image's scripts label; no source,
/// no `--scripts-url`) as the image's user. `cfg.destination` overrides where a downloaded script
/// is put, as in a build.
pub async fn usage(cfg: &BuildConfig, engine: &dyn Engine, output: OutputFn) -> Result<()> {
    let builder = crate::images::obtain(engine, &cfg.builder_image, cfg.pull_policy).await?;
    let destination = crate::strategy::standard::destination(cfg, &builder);
    let found = Resolver {
        scripts_url: None,
        source_root: None,
        image_url: scripts::image_scripts_url(&builder, &cfg.builder_image),
        image_name: &cfg.builder_image,
    }
    .resolve(&[scripts::USAGE], &[])
    .await?;
    let command = found.command_path(scripts::USAGE, &destination).expect("usage was resolved");
    let shipped: Vec<(String, Vec<u8>)> = found.external().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
    let cmd = if shipped.is_empty() {
        vec![command]
    } else {
        vec!["/bin/sh".into(), "-c".into(), format!("tar -C {destination} -xf - && {command}")]
    };
    let spec = ContainerSpec {
        name: Some(crate::strategy::standard::container_name(&cfg.builder_image)),
        image: with_default_tag(&cfg.builder_image),
        cmd,
        open_stdin: !shipped.is_empty(),
        no_log: true,
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    let input = (!shipped.is_empty()).then(|| {
        let mut parts = vec![Part::Dir { path: "scripts".into(), mode: 0o755 }];
        parts.extend(shipped.into_iter().map(|(n, data)| Part::File { path: format!("scripts/{n}"), data, mode: 0o755 }));
        tar_stream::spawn(parts, None)
    });
    let mut log = ContainerLog::new(output, false);
    let (reader, done) = match input {
        Some(s) => (Some(Box::new(s.reader) as s2i_engine::ContainerInput), Some(s.done)),
        None => (None, None),
    };
    let ran = engine.run_container(&id, reader, &mut log).await;
    let tail = log.finish();
    if let Some(done) = done {
        let _ = done.await;
    }
    if let Err(e) = engine.remove_container(&id).await {
        warn!("could not remove the usage container {id}: {e}");
    }
    let code = ran?;
    if code != 0 {
        return Err(BuildError::ScriptFailed { script: scripts::USAGE.into(), image: cfg.builder_image.clone(), code, stderr_tail: tail });
    }
    Ok(())
}
