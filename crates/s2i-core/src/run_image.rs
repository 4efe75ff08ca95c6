//! `--run`: run the image a build made, relay its output, remove the container when it stops.

use std::sync::Arc;

use s2i_engine::{ContainerSpec, Engine};

use crate::container;
use crate::error::{BuildError, Result};
use crate::report::{ContainerLog, Reporter};

/// Run `image` with its own command and all its ports published, until it exits. The container is
/// named like s2i's build containers and removed however the run ends (on Ctrl-C by the caller's
/// clean-up of [`Engine::remove_leftovers`]).
pub async fn run_image(engine: &dyn Engine, image: &str, reporter: Arc<dyn Reporter>) -> Result<()> {
    let spec = ContainerSpec { name: Some(container::name(image)), image: image.to_string(), publish_all_ports: true, ..Default::default() };
    let id = engine.create_container(&spec).await?;
    let mut log = ContainerLog::new(reporter, false);
    let ran = engine.run_container(&id, None, &mut log).await;
    let tail = log.into_stderr_tail();
    container::remove(engine, &id).await;
    match ran? {
        0 => Ok(()),
        code => Err(BuildError::ScriptFailed { script: "the image's command".into(), image: image.to_string(), code, stderr_tail: tail }),
    }
}
