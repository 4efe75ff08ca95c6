//! `s2i usage IMAGE`: run the builder's usage script. What it prints on stdout is the command's
//! output (our stdout); its stderr goes to stderr.

use std::sync::Arc;

use s2i_core::registry::Registries;
use s2i_core::{BuildConfig, BuildError, Services};

use crate::cli::{GlobalArgs, UsageArgs};
use crate::ui::{ui, UiReporter};

pub async fn run(global: &GlobalArgs, args: UsageArgs) -> Result<(), BuildError> {
    let Some(image) = args.image.filter(|i| !i.trim().is_empty()) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i usage needs IMAGE; see s2i usage --help".into(),
        });
    };
    let limits = s2i_core::limits::Limits::from_env()?;
    let cfg = BuildConfig {
        builder_image: image,
        pull_policy: args.common.pull_policy,
        destination: args.common.destination.filter(|d| !d.is_empty()),
        dockercfg_path: args.common.dockercfg_path,
        limits,
        ..Default::default()
    };
    let engine = crate::engine::connect(global, &cfg.limits).await?;
    ui().set_container_stdout_to_stdout(true);
    let reporter: Arc<dyn s2i_core::Reporter> = Arc::new(UiReporter(ui().clone()));
    let services = Services { engine: &*engine, registries: Registries::new(cfg.dockercfg_path.clone(), &cfg.limits).with_ca_files(crate::engine::registry_ca_files(global)?), reporter };
    super::interruptible(Some(&*engine), &cfg.limits, s2i_core::usage::usage(&cfg, &services)).await
}
