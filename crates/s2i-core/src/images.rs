//! Getting an image per pull policy (pulled with the credentials of its registry), and reading
//! what s2i needs from it.

use std::sync::Arc;

use s2i_engine::{Engine, ImageInfo, Progress};
use tracing::info;

use crate::config::PullPolicy;
use crate::error::{BuildError, Result};
use crate::image_ref::with_default_tag;
use crate::registry::{PullAccess, Registries};
use crate::report::{Reporter, Transfer};

/// Inspect `name`, pulling it when the policy says so with the credentials `registries` finds
/// for its registry. `flag` is the option that set `policy` (`--pull-policy`,
/// `--runtime-pull-policy`, …): errors name it in their hint.
pub async fn obtain(engine: &dyn Engine, registries: &Registries, name: &str, policy: PullPolicy, flag: &'static str, reporter: &Arc<dyn Reporter>) -> Result<ImageInfo> {
    let name = with_default_tag(name);
    match policy {
        PullPolicy::Never => {
            info!("Checking if image {name:?} is available locally ...");
            engine
                .inspect_image(&name)
                .await?
                .ok_or(BuildError::ImageNotLocal { image: name.clone(), policy: policy.as_str(), flag })
        }
        PullPolicy::IfNotPresent => {
            if let Some(found) = engine.inspect_image(&name).await? {
                return Ok(found);
            }
            info!("Image {name:?} not available locally, pulling ...");
            pull_and_inspect(engine, registries, &name, flag, reporter).await
        }
        PullPolicy::Always => {
            info!("Pulling image {name:?} ...");
            pull_and_inspect(engine, registries, &name, flag, reporter).await
        }
    }
}

async fn pull_and_inspect(engine: &dyn Engine, registries: &Registries, name: &str, flag: &'static str, reporter: &Arc<dyn Reporter>) -> Result<ImageInfo> {
    let access = PullAccess::for_image(registries, name).await?;
    reporter.transfer_started(Transfer::Pull, name);
    let mut progress = |event: Progress<'_>| reporter.transfer(Transfer::Pull, name, event);
    let pulled = engine.pull_image(name, access.auth(), &mut progress).await;
    reporter.transfer_finished(Transfer::Pull, name, pulled.is_ok());
    if let Err(source) = pulled {
        // The registry's answer says what went wrong better than the engine's wording can.
        return Err(match access.diagnose(registries, name, source).await {
            Ok(failure) => failure.into(),
            Err(source) => BuildError::PullFailed { image: name.to_string(), flag, source },
        });
    }
    engine.inspect_image(name).await?.ok_or_else(|| BuildError::PulledImageMissing { image: name.to_string() })
}

/// The image's /etc/passwd (for users given by name), `None` when it has none.
pub async fn passwd(engine: &dyn Engine, image: &str, limit: u64) -> Result<Option<String>> {
    let data = crate::container::read_image_file(engine, image, "/etc/passwd", limit).await?;
    Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
}
