//! Build containers: what every one of them gets, their names, streams into and files out of
//! them, commits and removal. Strategies decide what runs; this module knows how.

use std::io::Read;

use futures_util::StreamExt;
use rand::Rng;
use s2i_engine::{CommitSpec, ContainerSpec, Engine};
use tracing::warn;

use crate::config::ContainerSettings;
use crate::error::{BuildError, Result};
use crate::image_ref::with_default_tag;
use crate::tar_stream::{self, StreamOptions, TarPart, WalkStats};

/// The shared memory size the reference gives build containers.
pub const SHM_SIZE: i64 = 64 * 1024 * 1024;

/// Where `tar` is looked for in an image, most likely first.
const TAR_PATHS: [&str; 6] = ["/usr/bin/tar", "/bin/tar", "/usr/local/bin/tar", "/usr/sbin/tar", "/sbin/tar", "/usr/local/sbin/tar"];

/// `s2i_<image with every non-alphanumeric character replaced by _>_<8 hex digits>`.
pub fn name(image: &str) -> String {
    let clean: String = image.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
    format!("s2i_{clean}_{:08x}", rand::rng().random::<u32>())
}

/// What every build container of a build shares: a name after the builder, the image (`:latest`
/// when untagged), the `none` log driver, volumes, network, capabilities, hosts, shared memory,
/// the seccomp profile and no-new-privileges.
pub fn spec(settings: &ContainerSettings, builder: &str, image: &str) -> ContainerSpec {
    ContainerSpec {
        name: Some(name(builder)),
        image: with_default_tag(image),
        no_log: true,
        binds: settings.volumes.clone(),
        cap_drop: settings.cap_drop.clone(),
        network_mode: settings.network.clone(),
        extra_hosts: settings.add_hosts.clone(),
        shm_size: Some(SHM_SIZE),
        security: settings.security.clone(),
        ..Default::default()
    }
}

/// A container that is only created, never started: to read files out of its image.
fn inert_spec(image: &str) -> ContainerSpec {
    ContainerSpec {
        name: Some(name(image)),
        image: with_default_tag(image),
        // Never run: create needs a command when the image has none.
        cmd: vec!["/s2i-never-started".into()],
        entrypoint: Some(Vec::new()),
        ..Default::default()
    }
}

/// Remove a container; a failure is only logged (the engine's leftovers list still has it).
pub async fn remove(engine: &dyn Engine, id: &str) {
    if let Err(e) = engine.remove_container(id).await {
        warn!("could not remove the build container {id}: {e}");
    }
}

/// Stream `parts` as one tar into `path` of a created container through the engine's archive API
/// (the engine unpacks it itself, so the image needs no tar).
pub async fn upload(engine: &dyn Engine, id: &str, path: &str, parts: Vec<Box<dyn TarPart>>, options: StreamOptions) -> Result<WalkStats> {
    let input = tar_stream::spawn(parts, options);
    let uploaded = engine.upload_archive(id, path, Box::new(input.reader)).await;
    // Our side's failure says more than the engine's view of a broken stream.
    let stats = input.done.written().await.map_err(BuildError::SourceStream)?;
    uploaded?;
    Ok(stats)
}

/// The content of the regular file `path` in container `id`, at most `limit` bytes; `None` when
/// the path does not exist.
pub async fn read_file(engine: &dyn Engine, id: &str, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let context = || format!("reading {path} from the container");
    let Some(mut stream) = engine.download_archive(id, path).await? else { return Ok(None) };
    let mut tar = Vec::new();
    while let Some(chunk) = stream.next().await {
        tar.extend_from_slice(&chunk.map_err(|e| BuildError::io(context(), e))?);
        if tar.len() as u64 > limit + 4096 {
            return Err(BuildError::io(context(), std::io::Error::other(format!("it is bigger than {limit} bytes"))));
        }
    }
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().map_err(|e| BuildError::io(context(), e))? {
        let mut entry = entry.map_err(|e| BuildError::io(context(), e))?;
        if entry.header().entry_type().is_file() {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).map_err(|e| BuildError::io(context(), e))?;
            return Ok(Some(data));
        }
    }
    Err(BuildError::io(context(), std::io::Error::other("it is not a regular file")))
}

/// A file of an image, read from a container that is created and never started.
pub async fn read_image_file(engine: &dyn Engine, image: &str, path: &str, limit: u64) -> Result<Option<Vec<u8>>> {
    let id = engine.create_container(&inert_spec(image)).await?;
    let read = read_file(engine, &id, path, limit).await;
    remove(engine, &id).await;
    read
}

/// Several files of an image, each as [`read_image_file`] reads one, from one container: a file
/// that cannot be read is an error of its own, not of the others.
pub async fn read_image_files(engine: &dyn Engine, image: &str, paths: &[String], limit: u64) -> Result<Vec<Result<Option<Vec<u8>>>>> {
    let id = engine.create_container(&inert_spec(image)).await?;
    let mut read = Vec::with_capacity(paths.len());
    for path in paths {
        read.push(read_file(engine, &id, path, limit).await);
    }
    remove(engine, &id).await;
    Ok(read)
}

/// Whether the image of the created container `id` has `tar` (in one of the usual places): the
/// builder's files decide how the input gets in, never what a script prints.
pub async fn has_tar(engine: &dyn Engine, id: &str) -> Result<bool> {
    for path in TAR_PATHS {
        if engine.path_exists(id, path).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Commit the stopped container `id`; `shown` names the result in an error.
pub async fn commit(engine: &dyn Engine, id: &str, spec: &CommitSpec, shown: &str) -> Result<String> {
    engine.commit_container(id, spec).await.map_err(|source| BuildError::Commit { tag: shown.to_string(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_names_follow_the_reference_pattern() {
        let n = name("quay.io/org/img:1.0");
        assert!(n.starts_with("s2i_quay_io_org_img_1_0_"), "{n}");
        assert_eq!(n.len(), "s2i_quay_io_org_img_1_0_".len() + 8);
    }
}
