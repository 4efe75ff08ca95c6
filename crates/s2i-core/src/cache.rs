//! `--cache-dir DIR`: the artifacts of incremental builds kept in a directory (a Tekton
//! workspace, a CI cache) instead of being taken from the previous image. After assemble and the
//! commit, save-artifacts runs in a container of the new image; its tar goes to a sidecar file
//! in DIR, renamed over the entry only once the build (and its push) succeeded. The next build
//! restores it to `artifacts/` of the destination, as the previous image's would be.
//!
//! The entry's name is a key of the builder (its image id, a digest) and the output name: a
//! builder that changed, or another output, never gets these artifacts. A stale or corrupt entry
//! is a warning and a clean build; an interrupted build leaves the entry as it was (the sidecar
//! is a temp file, removed when the build is dropped); a full volume fails the build before
//! anything is pushed, with an error that names the directory.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use s2i_engine::{ContainerSpec, Engine};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tracing::{info, warn};

use crate::container;
use crate::error::{BuildError, Result};
use crate::limits::Limits;
use crate::report::{ContainerLog, Reporter};

/// The entry of `builder` (its image id) and `output` (the tag, as given) in `dir`.
pub fn entry(dir: &Path, builder: &str, output: &str) -> PathBuf {
    let mut h = Sha256::new();
    h.update(builder.as_bytes());
    h.update([0]);
    h.update(output.as_bytes());
    let key: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    dir.join(format!("s2i-artifacts-{key}.tar"))
}

/// The entry `path`, when it is there and usable (else one line says why the build is clean).
pub fn find(path: &Path, limits: &Limits) -> Option<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            info!("Clean build will be performed: no cached artifacts for this builder and output in {}", path.parent().unwrap_or(path).display());
            return None;
        }
        Err(e) => {
            warn!("Clean build will be performed: the cached artifacts {} cannot be read: {e}", path.display());
            return None;
        }
        Ok(_) => {}
    }
    match crate::artifacts::check_cached(path, limits) {
        Ok(()) => {
            info!("Restoring the artifacts cached in {}", path.display());
            Some(path.to_path_buf())
        }
        Err(e) => {
            warn!("Clean build will be performed: the cached artifacts {} are not usable ({e})", path.display());
            None
        }
    }
}

/// A save-artifacts tar written to its sidecar, to become the entry with [`Pending::keep`].
pub struct Pending {
    file: tempfile::NamedTempFile,
    entry: PathBuf,
}

impl Pending {
    /// Rename the sidecar over the entry: the build and its push succeeded.
    pub fn keep(self) -> Result<()> {
        let Pending { file, entry } = self;
        file.persist(&entry).map_err(|e| BuildError::io(format!("keeping the artifacts in {}", entry.display()), e.error))?;
        info!("Kept the artifacts for the next build in {}", entry.display());
        Ok(())
    }
}

/// Run save-artifacts as `spec` says (a container of the image just committed, `input` on its
/// stdin: the secrets' prelude takes them) and write its tar
/// to a sidecar beside `entry`. A script that fails keeps nothing (a warning); a sidecar that
/// cannot be written (a full volume) is the build's error.
pub async fn save(engine: &dyn Engine, spec: &ContainerSpec, input: Option<s2i_engine::ContainerInput>, reporter: Arc<dyn Reporter>, limits: &Limits, entry: PathBuf) -> Result<Option<Pending>> {
    let dir = entry.parent().unwrap_or(Path::new(".")).to_path_buf();
    let place = |e: std::io::Error| {
        let full = matches!(e.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
            || matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
        let hint = if full {
            " (the cache volume is full: give it more room, or empty it)"
        } else {
            ""
        };
        BuildError::io(format!("writing the artifacts to the cache directory {} (--cache-dir){hint}", dir.display()), e)
    };
    std::fs::create_dir_all(&dir).map_err(place)?;
    let mut file = tempfile::Builder::new().prefix(".s2i-artifacts-").suffix(".partial").tempfile_in(&dir).map_err(place)?;

    let id = engine.create_container(spec).await?;
    let stderr = Box::new(ContainerLog::new(reporter, false));
    let run = match engine.run_with_stdout(&id, input, stderr).await {
        Ok(run) => run,
        Err(e) => {
            container::remove(engine, &id).await;
            return Err(e.into());
        }
    };
    let mut stdout = run.stdout;
    let mut buf = vec![0u8; 64 << 10];
    let mut written = 0u64;
    // Err(Some(e)): the cache cannot be written (the build fails); Err(None): the script's output
    // is not to be kept (said, the build goes on).
    let copied: std::result::Result<(), Option<BuildError>> = async {
        loop {
            let n = match tokio::time::timeout(limits.idle_time, stdout.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                Ok(Err(e)) => {
                    warn!("No artifacts are cached: reading the output of save-artifacts: {e}");
                    return Err(None);
                }
                Err(_) => {
                    warn!("No artifacts are cached: save-artifacts wrote nothing within {} s (S2I_LIMIT_IDLE_TIME)", limits.idle_time.as_secs());
                    return Err(None);
                }
            };
            if n == 0 {
                break;
            }
            written += n as u64;
            file.write_all(&buf[..n]).map_err(|e| Some(place(e)))?;
        }
        file.as_file().sync_all().map_err(|e| Some(place(e)))?;
        Ok(())
    }
    .await;
    drop(stdout);
    let code = match copied {
        Ok(()) => tokio::time::timeout(limits.idle_time, run.exit).await.unwrap_or(Ok(-1)),
        Err(_) => Ok(-1),
    };
    container::remove(engine, &id).await;
    match copied {
        Err(Some(e)) => return Err(e),
        Err(None) => return Ok(None),
        Ok(()) => {}
    }
    match code {
        Ok(0) => {}
        Ok(code) => {
            warn!("No artifacts are cached: save-artifacts exited with status {code}");
            return Ok(None);
        }
        Err(e) => {
            warn!("No artifacts are cached: save-artifacts could not be run to its end: {e}");
            return Ok(None);
        }
    }
    info!("save-artifacts wrote {written} bytes for the next build");
    Ok(Some(Pending { file, entry }))
}
