//! Getting an image per pull policy.

use s2i_engine::{Engine, ImageInfo};
use tracing::{debug, info};

use crate::config::PullPolicy;
use crate::error::{BuildError, Result};
use crate::image_ref::with_default_tag;

/// Inspect `name`, pulling it when the policy says so.
pub async fn obtain(engine: &dyn Engine, name: &str, policy: PullPolicy) -> Result<ImageInfo> {
    let name = with_default_tag(name);
    match policy {
        PullPolicy::Never => {
            info!("Checking if image {name:?} is available locally ...");
            engine
                .inspect_image(&name)
                .await?
                .ok_or(BuildError::ImageNotLocal { image: name.clone(), policy: policy.as_str() })
        }
        PullPolicy::IfNotPresent => {
            if let Some(found) = engine.inspect_image(&name).await? {
                return Ok(found);
            }
            info!("Image {name:?} not available locally, pulling ...");
            pull_and_inspect(engine, &name).await
        }
        PullPolicy::Always => {
            info!("Pulling image {name:?} ...");
            pull_and_inspect(engine, &name).await
        }
    }
}

async fn pull_and_inspect(engine: &dyn Engine, name: &str) -> Result<ImageInfo> {
    let mut progress = |line: &str| debug!("{line}");
    engine
        .pull_image(name, None, &mut progress)
        .await
        .map_err(|e| BuildError::PullFailed { image: name.to_string(), message: e.to_string() })?;
    engine.inspect_image(name).await?.ok_or_else(|| BuildError::PullFailed {
        image: name.to_string(),
        message: "the pull finished but the image is not there".into(),
    })
}
