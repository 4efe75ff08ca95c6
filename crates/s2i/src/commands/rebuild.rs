//! `s2i rebuild IMAGE [NEW_TAG]`: build again from the builder and source recorded in the labels of
//! an image s2i made; the result replaces IMAGE's tag unless NEW_TAG is given.

use std::time::Instant;

use s2i_core::{BuildError, PullPolicy};

use super::build::{execute, After};
use crate::cli::{GlobalArgs, RebuildArgs};

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
    if c.incremental || c.remove_previous {
        return Err(BuildError::NotSupported(if c.incremental { "--incremental" } else { "--rm" }.into()));
    }
    let engine = super::connect(global).await?;
    let mut cfg = s2i_core::rebuild::config_for(&engine, &image, PullPolicy::parse(&c.pull_policy)?).await?;
    let tag = args.new_tag.filter(|t| !t.is_empty()).unwrap_or(image);
    s2i_core::image_ref::parse_output_tag(&tag)
        .map_err(|reason| BuildError::InvalidValue { what: "tag", value: tag.clone(), reason })?;
    cfg.tag = Some(tag);
    cfg.pull_policy = PullPolicy::parse(&c.pull_policy)?;
    cfg.quiet = c.quiet;
    cfg.save_temp_dir = c.save_temp_dir;
    cfg.destination = c.destination.clone().filter(|d| !d.is_empty());
    let after = After { json: args.output == "json", run_after: false, callback: c.callback_url.clone().filter(|u| !u.is_empty()), started };
    execute(global, &cfg, after).await
}
