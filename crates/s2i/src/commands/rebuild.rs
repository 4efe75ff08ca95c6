//! `s2i rebuild IMAGE [NEW_TAG]`: build again from the builder and source recorded in the labels of
//! an image s2i made; the result replaces IMAGE's tag unless NEW_TAG is given.

use std::sync::Arc;
use std::time::Instant;

use s2i_core::registry::Registries;
use s2i_core::{BuildError, Services};

use super::build::{execute, ResultHandling};
use crate::cli::{GlobalArgs, OutputFormat, RebuildArgs};
use crate::ui::{ui, UiReporter};

pub async fn run(global: &GlobalArgs, args: RebuildArgs) -> Result<(), BuildError> {
    let started = Instant::now();
    let Some(image) = args.image.filter(|i| !i.trim().is_empty()) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i rebuild needs IMAGE (and optionally NEW_TAG); see s2i rebuild --help".into(),
        });
    };
    let c = &args.common;
    if c.incremental {
        return Err(BuildError::RebuildFlag { flag: "--incremental" });
    }
    if c.cache_dir.is_some() {
        return Err(BuildError::RebuildFlag { flag: "--cache-dir" });
    }
    if c.remove_previous {
        return Err(BuildError::RebuildFlag { flag: "--rm" });
    }
    ui().set_quiet(c.quiet);
    let tag = s2i_core::config::parse_tag(&args.new_tag.clone().filter(|t| !t.is_empty()).unwrap_or_else(|| image.clone()))?;
    let limits = s2i_core::limits::Limits::from_env()?;
    let engine = crate::engine::connect(global, &limits).await?;
    let reporter: Arc<dyn s2i_core::Reporter> = Arc::new(UiReporter(ui().clone()));
    let source = args.source.as_deref().filter(|s| !s.is_empty());
    // One look-up per registry for the image and the build that follows.
    let registries = Registries::new(c.dockercfg_path.clone(), &limits).with_ca_files(crate::engine::registry_ca_files(global)?);
    let services = Services { engine: &*engine, registries: registries.clone(), reporter };
    let mut cfg = s2i_core::rebuild::config_for(&services, &image, c.pull_policy, source).await?;
    // The labels of an image are not the user's word: say what will be read and run before it is.
    let at = cfg.source.git_ref.as_deref().map(|r| format!(" at {r}")).unwrap_or_default();
    ui().line(&format!("Rebuilding {image} from {}{at} with the builder {}", cfg.source.location, cfg.builder_image));
    cfg.tag = Some(tag);
    cfg.pull_policy = c.pull_policy;
    cfg.quiet = c.quiet;
    cfg.save_temp_dir = c.save_temp_dir;
    cfg.destination = c.destination.clone().filter(|d| !d.is_empty());
    cfg.limits = limits;
    cfg.dockercfg_path = c.dockercfg_path.clone();
    let handling = ResultHandling {
        json: args.output == OutputFormat::Json,
        run_image: false,
        callback: c.callback_url.clone().filter(|u| !u.is_empty()),
        started,
        outputs: Default::default(),
        provenance: None,
    };
    execute(global, &cfg, registries, handling).await
}
