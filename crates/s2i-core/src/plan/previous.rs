//! The previous image of an incremental build: found (per `--incremental-pull-policy`), with the
//! save-artifacts command and the user that will run it, held to `--allowed-uids`.

use s2i_engine::{Engine, ImageInfo};
use tracing::{info, warn};

use super::Plan;
use crate::error::{BuildError, Result};
use crate::image_ref::ImageRef;
use crate::registry::RegistryFailure;
use crate::scripts;

/// The previous image of an incremental build, and how to run its save-artifacts.
pub struct Previous {
    pub image: ImageInfo,
    /// The save-artifacts command.
    pub command: String,
    /// Who runs it: the assemble user, else the previous image's own USER.
    pub user: Option<String>,
}

/// The previous image of `tag`, when there is one with a save-artifacts script; otherwise one
/// line says why the build is clean.
pub(super) async fn find(plan: &Plan<'_>, engine: &dyn Engine, tag: Option<&ImageRef>) -> Result<Option<Previous>> {
    let cfg = plan.cfg;
    let Some(tag) = tag else {
        info!("Clean build will be performed: an incremental build needs a tag to find the previous image");
        return Ok(None);
    };
    let Some(command) = plan.scripts.command_path(scripts::SAVE_ARTIFACTS, &plan.destination) else {
        info!("Clean build will be performed: there is no save-artifacts script");
        return Ok(None);
    };
    let name = tag.to_string();
    let image = match crate::images::obtain(engine, &plan.registries, &name, cfg.incremental_pull_policy, "--incremental-pull-policy", &plan.reporter).await {
        Ok(image) => image,
        // No previous image is a first build's normal case. A registry the tag names that refused
        // us, or could not be reached, deserves a warning: the build would stay clean for good.
        Err(BuildError::Registry(e)) if tag.domain.is_some() && matches!(&e, RegistryFailure::Registry { source, .. } if !source.is_not_found()) => {
            warn!("Clean build will be performed: {e}");
            return Ok(None);
        }
        Err(e) => {
            info!("Clean build will be performed: no previous image {name} ({e})");
            return Ok(None);
        }
    };
    info!("Existing image for tag {name} detected for incremental build");
    // save-artifacts runs as the assemble user, else the previous image's own USER: it is held to
    // --allowed-uids like any other user of the build.
    let user = super::assemble_user(cfg, &plan.builder, &image.user);
    let passwd = match (&user, cfg.allowed_uids.is_empty()) {
        (Some(u), false) if u.split(':').next().is_some_and(|n| n.parse::<u32>().is_err()) => {
            crate::images::passwd(engine, &image.id, cfg.limits.file_size).await?
        }
        _ => None,
    };
    crate::users::check_user(&cfg.allowed_uids, format!("the save-artifacts user of {name}"), user.as_deref().unwrap_or(""), passwd.as_deref())?;
    Ok(Some(Previous { image, command, user }))
}
