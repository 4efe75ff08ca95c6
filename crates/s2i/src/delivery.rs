//! Where a built image goes besides the engine's own store: `--output-archive` (any engine) and
//! `--load` (from the OCI engine into a daemon).

use std::path::Path;

use s2i_core::BuildError;
use s2i_engine::{ArchiveFormat, Engine, EngineError};
use s2i_oci::OciEngine;

use crate::cli::{GlobalArgs, ImageOutputArgs};
use crate::engine::{connect_docker, Connected};
use crate::json_output::{ArchiveWritten, Loaded};

/// Where the image went besides the engine's store.
#[derive(Debug, Default)]
pub struct Delivered {
    pub archive: Option<ArchiveWritten>,
    /// The manifest digest of an OCI archive written (a docker-archive has no manifest digest).
    pub archive_digest: Option<String>,
    pub loaded: Option<Loaded>,
}

fn format_name(format: ArchiveFormat) -> &'static str {
    match format {
        ArchiveFormat::DockerArchive => "docker-archive",
        ArchiveFormat::OciArchive => "oci-archive",
    }
}

/// Write `image` to `--output-archive` and hand it to a daemon with `--load`, as asked.
pub async fn deliver(engine: &Connected, global: &GlobalArgs, outputs: &ImageOutputArgs, image: &str) -> Result<Delivered, BuildError> {
    let mut delivered = Delivered::default();
    if let Some(archive) = &outputs.output_archive {
        write_archive(engine, image, archive.format, &archive.path).await?;
        let shown = format!("{}:{}", format_name(archive.format), archive.path.display());
        crate::ui::ui().line(&format!("Wrote {image} to {shown}"));
        delivered.archive = Some(ArchiveWritten { format: format_name(archive.format), path: archive.path.display().to_string() });
        if archive.format == ArchiveFormat::OciArchive {
            delivered.archive_digest = oci_archive_manifest_digest(&archive.path);
        }
    }
    if outputs.load {
        let Connected::Oci(oci) = engine else { unreachable!("check_flags refuses --load without --engine oci") };
        let (endpoint, names) = load_into_daemon(oci, global, image).await?;
        crate::ui::ui().line(&format!("Loaded {} into the daemon at {endpoint}", names.join(", ")));
        delivered.loaded = Some(Loaded { endpoint, images: names });
    }
    Ok(delivered)
}

/// The digest of the one manifest that the index of the OCI archive at `path` names, if it names
/// exactly one (read back from what s2i just wrote).
fn oci_archive_manifest_digest(path: &Path) -> Option<String> {
    use std::io::Read;
    let file = std::fs::File::open(path).ok()?;
    let mut archive = tar::Archive::new(file);
    for entry in archive.entries().ok()? {
        let entry = entry.ok()?;
        let name = entry.path().ok()?.to_string_lossy().trim_start_matches("./").to_string();
        if name != "index.json" {
            continue;
        }
        let mut text = Vec::new();
        entry.take(1 << 20).read_to_end(&mut text).ok()?;
        let index: serde_json::Value = serde_json::from_slice(&text).ok()?;
        let manifests = index["manifests"].as_array()?;
        let [only] = manifests.as_slice() else { return None };
        return only["digest"].as_str().filter(|d| d.starts_with("sha256:")).map(str::to_string);
    }
    None
}

/// The archive is written next to its final name and renamed into place: a failed write leaves
/// no half archive that `docker load` would choke on later.
async fn write_archive(engine: &Connected, image: &str, format: ArchiveFormat, path: &Path) -> Result<(), BuildError> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let tmp = tempfile::Builder::new()
        .prefix(".s2i-archive-")
        .tempfile_in(&dir)
        .map_err(|e| BuildError::io(format!("creating the archive in {}", dir.display()), e))?;
    let file = tokio::fs::File::from_std(tmp.reopen().map_err(|e| BuildError::io("opening the archive", e))?);
    engine.save_image(image, format, Box::new(file)).await?;
    tmp.persist(path).map_err(|e| BuildError::io(format!("writing {}", path.display()), e.error))?;
    Ok(())
}

/// Stream the image out of the OCI store into the daemon's load, through a pipe.
async fn load_into_daemon(oci: &OciEngine, global: &GlobalArgs, image: &str) -> Result<(String, Vec<String>), BuildError> {
    let docker = connect_docker(global).await.map_err(|e| match e {
        BuildError::EngineUnreachable { endpoint, reason } => BuildError::EngineUnreachable {
            endpoint,
            reason: format!(
                "{reason}; --load needs a Docker or Podman daemon there (the image {image} is kept in the OCI store at {}; --output-archive docker-archive:PATH writes it to a file)",
                oci.store().root().display()
            ),
        },
        other => other,
    })?;
    let endpoint = docker.endpoint().to_string();
    let (writer, reader) = tokio::io::duplex(1 << 20);
    let (saved, loaded) = tokio::join!(oci.save_image(image, ArchiveFormat::DockerArchive, Box::new(writer)), docker.load_image(Box::new(reader)));
    saved?;
    let names = loaded.map_err(|e| EngineError::Failed { op: format!("loading {image} into the daemon at {endpoint}"), source: Box::new(e) })?;
    Ok((endpoint, names))
}
