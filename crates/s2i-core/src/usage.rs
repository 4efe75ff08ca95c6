//! `s2i usage IMAGE`: run the builder's usage script and relay what it prints. Nothing is committed.

use s2i_engine::{ContainerInput, ContainerSpec};

use crate::config::BuildConfig;
use crate::container;
use crate::error::{BuildError, Result};
use crate::report::ContainerLog;
use crate::scripts::{self, Resolver};
use crate::services::Services;
use crate::tar_stream::{self, StreamOptions, TarPart};

/// Run the usage script of `cfg.builder_image` (found through the image's scripts label; no source,
/// no `--scripts-url`) as the image's user. `cfg.destination` overrides where a downloaded script
/// is put, as in a build.
pub async fn usage(cfg: &BuildConfig, services: &Services<'_>) -> Result<()> {
    let (engine, reporter) = (services.engine, &services.reporter);
    let builder = crate::images::obtain(engine, &services.registries, &cfg.builder_image, cfg.pull_policy, "--pull-policy", reporter).await?;
    let destination = crate::plan::destination(cfg, &builder);
    let found = Resolver {
        scripts_url: None,
        source_root: None,
        image_url: scripts::image_scripts_url(&builder, &cfg.builder_image),
        image_name: &cfg.builder_image,
        limits: &cfg.limits,
    }
    .resolve(&[scripts::USAGE], &[])
    .await?;
    let command = found.command_path(scripts::USAGE, &destination).ok_or_else(|| BuildError::ScriptsMissing {
        missing: vec![scripts::USAGE.into()],
        looked_in: vec![cfg.builder_image.clone()],
    })?;
    let shipped: Vec<Box<dyn TarPart>> = found
        .external()
        .map(|(n, data)| tar_stream::file(format!("scripts/{n}"), data.to_vec(), 0o755))
        .collect();
    let cmd = if shipped.is_empty() {
        vec![command]
    } else {
        let q = crate::inject::shell_quote;
        vec!["/bin/sh".into(), "-c".into(), format!("tar -C {} -xf - && {}", q(&destination), q(&command))]
    };
    let spec = ContainerSpec {
        cmd,
        open_stdin: !shipped.is_empty(),
        ..container::spec(&Default::default(), &cfg.builder_image, &cfg.builder_image)
    };
    let id = engine.create_container(&spec).await?;
    let input = (!shipped.is_empty()).then(|| {
        let mut parts = vec![tar_stream::dir("scripts", 0o755)];
        parts.extend(shipped);
        tar_stream::spawn(parts, StreamOptions::default())
    });
    let mut log = ContainerLog::new(reporter.clone(), false);
    let (reader, done) = match input {
        Some(s) => (Some(Box::new(s.reader) as ContainerInput), Some(s.done)),
        None => (None, None),
    };
    let ran = engine.run_container(&id, reader, &mut log).await;
    let tail = log.into_stderr_tail();
    if let Some(done) = done {
        let _ = done.written().await;
    }
    container::remove(engine, &id).await;
    let code = ran?;
    if code != 0 {
        return Err(BuildError::ScriptFailed { script: scripts::USAGE.into(), image: cfg.builder_image.clone(), code, stderr_tail: tail });
    }
    Ok(())
}
