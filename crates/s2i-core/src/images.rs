//! Getting an image per pull policy.

use std::io::Read;

use futures_util::StreamExt;
use s2i_engine::{ContainerSpec, Engine, ImageInfo};
use tracing::{debug, info, warn};

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
    let mut progress = |event: s2i_engine::Progress<'_>| debug!("{event:?}");
    engine
        .pull_image(name, None, &mut progress)
        .await
        .map_err(|e| BuildError::PullFailed { image: name.to_string(), message: e.to_string() })?;
    engine.inspect_image(name).await?.ok_or_else(|| BuildError::PullFailed {
        image: name.to_string(),
        message: "the pull finished but the image is not there".into(),
    })
}

/// The content of a (small) file inside an image, read from a container that is created and never
/// started; `None` when the image has no such file.
pub async fn read_file(engine: &dyn Engine, image: &str, path: &str, limit: usize) -> Result<Option<Vec<u8>>> {
    let spec = ContainerSpec {
        name: Some(crate::strategy::standard::container_name(image)),
        image: with_default_tag(image),
        // Never run: create needs a command when the image has none.
        cmd: vec!["/s2i-never-started".into()],
        entrypoint: Some(Vec::new()),
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    let read = async {
        let Some(mut stream) = engine.download_archive(&id, path).await? else { return Ok(None) };
        let mut tar = Vec::new();
        while let Some(chunk) = stream.next().await {
            tar.extend_from_slice(&chunk.map_err(|e| BuildError::io(format!("reading {path} from {image}"), e))?);
            if tar.len() > limit + 4096 {
                return Err(BuildError::io(format!("reading {path} from {image}"), std::io::Error::other("the file is too big")));
            }
        }
        let mut archive = tar::Archive::new(&tar[..]);
        for entry in archive.entries().map_err(|e| BuildError::io(format!("reading {path}"), e))? {
            let mut entry = entry.map_err(|e| BuildError::io(format!("reading {path}"), e))?;
            if entry.header().entry_type().is_file() {
                let mut data = Vec::new();
                entry.read_to_end(&mut data).map_err(|e| BuildError::io(format!("reading {path}"), e))?;
                return Ok(Some(data));
            }
        }
        Ok(None)
    }
    .await;
    if let Err(e) = engine.remove_container(&id).await {
        warn!("could not remove container {id}: {e}");
    }
    read
}

/// The image's /etc/passwd when `--allowed-uids` has to judge a named user; `None` otherwise.
pub async fn passwd_if_needed(engine: &dyn Engine, image: &str, needed: bool) -> Result<Option<String>> {
    if !needed {
        return Ok(None);
    }
    let data = read_file(engine, image, "/etc/passwd", 1024 * 1024).await?;
    Ok(data.map(|d| String::from_utf8_lossy(&d).into_owned()))
}
