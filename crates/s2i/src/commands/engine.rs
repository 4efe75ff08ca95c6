//! The engine a command runs on (`--engine`, `S2I_ENGINE`): a Docker or Podman daemon through the
//! Docker API (the default), or the daemonless OCI engine (an image store and runc). And where a
//! built image goes besides the engine's own store: `--output-archive` (any engine) and `--load`
//! (from the OCI engine into a daemon).

use std::ops::Deref;
use std::path::Path;

use s2i_core::registry::CaFile;
use s2i_core::{BuildConfig, BuildError, BuildMethod};
use s2i_engine::{ArchiveFormat, DockerEngine, Engine, EngineError};
use s2i_oci::image::Store;
use s2i_oci::run::RunError;
use s2i_oci::{OciEngine, OciEngineOptions};
use serde_json::{json, Value};
use tracing::info;

use crate::cli::{EngineArgs, EngineChoice, GlobalArgs, ImageOutputArgs};

/// The engine a command was connected to. Strategies see only `dyn Engine` (through `Deref`).
pub enum Connected {
    Docker(DockerEngine),
    Oci(OciEngine),
}

impl Deref for Connected {
    type Target = dyn Engine;

    fn deref(&self) -> &Self::Target {
        match self {
            Connected::Docker(e) => e,
            Connected::Oci(e) => e,
        }
    }
}

/// Connect the engine the flags chose, and say which one answers (`--loglevel 1`).
pub async fn connect(global: &GlobalArgs) -> Result<Connected, BuildError> {
    let engine = match global.engine.kind {
        EngineChoice::Docker => Connected::Docker(super::connect_docker(global).await?),
        EngineChoice::Oci => Connected::Oci(open_oci(&global.engine, super::registry_ca_files(global)?).await?),
    };
    if let Ok(v) = engine.version().await {
        info!("Using the {} engine ({}) at {}", v.kind, v.version, v.endpoint);
    }
    Ok(engine)
}

async fn open_oci(args: &EngineArgs, registry_ca_files: Vec<CaFile>) -> Result<OciEngine, BuildError> {
    let root = args.oci_store.clone().unwrap_or_else(Store::default_root);
    let mut opts = OciEngineOptions::from_env(&root).map_err(|e| match e {
        RunError::BadSetting { name, value, reason } => BuildError::InvalidValue { what: name, value, reason },
        other => BuildError::Engine(EngineError::Failed { op: "setting up the oci engine".into(), source: Box::new(other) }),
    })?;
    if let Some(runtime) = &args.oci_runtime {
        opts.runtime = runtime.clone();
    }
    opts.registry_ca_files = registry_ca_files;
    Ok(OciEngine::open(opts).await?)
}

/// Flags that cannot work with the chosen engine, refused before any work.
pub fn check_flags(global: &GlobalArgs, cfg: &BuildConfig, outputs: &ImageOutputArgs) -> Result<(), BuildError> {
    let oci = global.engine.kind == EngineChoice::Oci;
    if oci && cfg.build_method == BuildMethod::Dockerfile {
        return Err(BuildError::conflict(
            "--build-method=dockerfile",
            "--engine oci, which runs containers but has no image builder to build a Dockerfile (use --engine docker)",
        ));
    }
    if outputs.load && !oci {
        return Err(BuildError::conflict(
            "--load",
            "--engine docker: the image is in the daemon already (--load hands an image built with --engine oci to a daemon)",
        ));
    }
    Ok(())
}

/// The engine the flags chose, for a JSON report written before any engine answered.
pub fn chosen(global: &GlobalArgs) -> Value {
    json!({ "kind": match global.engine.kind { EngineChoice::Docker => "docker", EngineChoice::Oci => "oci" } })
}

/// Where the image went besides the engine's store, for the JSON report.
#[derive(Debug, Default)]
pub struct Delivered {
    pub archive: Option<Value>,
    pub loaded: Option<Value>,
}

impl Delivered {
    pub fn add_to(&self, doc: &mut Value) {
        if let Some(a) = &self.archive {
            doc["archive"] = a.clone();
        }
        if let Some(l) = &self.loaded {
            doc["loaded"] = l.clone();
        }
    }
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
        delivered.archive = Some(json!({ "format": format_name(archive.format), "path": archive.path.display().to_string() }));
    }
    if outputs.load {
        let Connected::Oci(oci) = engine else { unreachable!("check_flags refuses --load without --engine oci") };
        let (endpoint, names) = load_into_daemon(oci, global, image).await?;
        crate::ui::ui().line(&format!("Loaded {} into the daemon at {endpoint}", names.join(", ")));
        delivered.loaded = Some(json!({ "endpoint": endpoint, "images": names }));
    }
    Ok(delivered)
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
    let docker = super::connect_docker(global).await.map_err(|e| match e {
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
