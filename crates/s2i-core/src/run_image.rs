//! `--run`: run the image a build made, relay its output, remove the container when it stops.

use s2i_engine::{ContainerSpec, Engine};

use crate::container_log::OutputFn;
use tracing::warn;

use crate::container_log::ContainerLog;
use crate::error::{BuildError, Result};

/// Run `image` with its own command and all its ports published, until it exits. The container is
/// named like s2i's build containers and removed however the run ends (on Ctrl-C by the caller's
/// clean-up of [`Engine::remove_leftovers`]).
pub async fn run_image(engine: &dyn Engine, image: &str, output: OutputFn) -> Result<()> {
    let spec = ContainerSpec {
        name: Some(crate::strategy::standard::container_name(image)),
        image: image.to_string(),
        publish_all_ports: true,
        ..Default::default()
    };
    let id = engine.create_container(&spec).await?;
    let mut log = ContainerLog::new(output, false);
    let ran = engine.run_container(&id, None, &mut log).await;
    let tail = log.finish();
    if let Err(e) = engine.remove_container(&id).await {
        warn!("could not remove container {id}: {e}");
    }
    match ran? {
        0 => Ok(()),
        code => Err(BuildError::ScriptFailed { script: "the image's command".into(), image: image.to_string(), code, stderr_tail: tail }),
    }
}
