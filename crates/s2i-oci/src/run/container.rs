//! One build container on disk, and its removal on every path.
//!
//! Layout under the state directory (`<store>/s2i/run`):
//! ```text
//! runc/                    the runtime's --root
//! containers/<id>.lock     flock held by the process that owns the container
//! containers/<id>/         info.json, config.json, rootfs/ (the mount), upper/, work/,
//!                          hosts, resolv.conf, hostname, netns (a bind mount), runtime.log
//! ```
//! The lock is taken before the directory is made and released after it is gone: a container
//! whose lock nobody holds belongs to a process that died (killed, say), and the next engine
//! opened on the same store removes it ([`sweep`]): runtime state, mounts, cgroups, files.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use rustix::fs::FlockOperation;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::error::{IoContext, Result, RunError};
use super::rootfs::{self, RootfsDriver};
use super::runc::Runtime;
use super::{cgroup, netns};

/// What another process needs to know to remove a container whose owner died.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
pub struct ContainerInfo {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub cgroups: Vec<PathBuf>,
    #[serde(default)]
    pub driver: Option<String>,
}

/// The directories of the state dir.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Result<StateDir> {
        let s = StateDir { root: root.into() };
        for d in [s.containers(), s.runtime_root()] {
            std::fs::create_dir_all(&d).context(|| format!("creating {}", d.display()))?;
        }
        Ok(s)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.root.join("runc")
    }

    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    fn lock_path(&self, id: &str) -> PathBuf {
        self.containers().join(format!("{id}.lock"))
    }

    /// Take the lock of a new container id and make its directory.
    pub fn claim(&self, id: &str) -> Result<(File, PathBuf)> {
        let lock = try_lock(&self.lock_path(id))?
            .ok_or_else(|| RunError::io(format!("locking container {id}"), std::io::Error::other("already in use")))?;
        let dir = self.container_dir(id);
        std::fs::create_dir(&dir).context(|| format!("creating {}", dir.display()))?;
        Ok((lock, dir))
    }
}

/// Open (creating) and lock `path` without waiting; `None` when another process holds it.
fn try_lock(path: &Path) -> Result<Option<File>> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .context(|| format!("opening {}", path.display()))?;
    loop {
        match rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => return Ok(Some(file)),
            Err(rustix::io::Errno::INTR) => continue,
            Err(rustix::io::Errno::WOULDBLOCK) => return Ok(None),
            Err(e) => return Err(RunError::io(format!("locking {}", path.display()), e.into())),
        }
    }
}

pub fn write_info(dir: &Path, info: &ContainerInfo) -> Result<()> {
    let path = dir.join("info.json");
    let tmp = dir.join(".info.json.tmp");
    std::fs::write(&tmp, serde_json::to_vec(info).unwrap_or_default()).context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).context(|| format!("writing {}", path.display()))
}

fn read_info(dir: &Path) -> Option<ContainerInfo> {
    std::fs::read(dir.join("info.json")).ok().and_then(|b| serde_json::from_slice(&b).ok())
}

/// Everything the teardown of one container removes, in order: the runtime's container (which
/// kills its processes and removes its own cgroup), the mounts (rootfs, network namespace), s2i's
/// cgroup parents, the directory, then the lock.
pub async fn teardown(state: &StateDir, runtime: &Runtime, id: &str, lock: Option<File>) -> Result<()> {
    runtime.delete(id).await?;
    let state = state.clone();
    let id = id.to_string();
    tokio::task::spawn_blocking(move || {
        remove_files(&state, &id)?;
        drop(lock);
        debug!("removed container {id}");
        Ok(())
    })
    .await
    .map_err(|e| RunError::io("removing a container", std::io::Error::other(e.to_string())))?
}

/// What [`teardown`] removes after the runtime's container: the mounts, s2i's cgroup parents,
/// the directory and the lock file (the caller drops the lock after this). On its own, for a
/// container whose making failed or was cancelled, before the runtime ever knew it.
pub fn remove_files(state: &StateDir, id: &str) -> Result<()> {
    let dir = state.container_dir(id);
    if dir.exists() {
        let info = read_info(&dir);
        netns::remove(&dir.join("netns"))?;
        for m in rootfs::mount_points_under(&dir)? {
            rootfs::unmount(&m)?;
        }
        if let Some(info) = &info {
            cgroup::remove_dirs(&info.cgroups)?;
        }
        rootfs::remove_tree(&dir)?;
    }
    let _ = std::fs::remove_file(state.lock_path(id));
    Ok(())
}

/// Remove the containers of processes that died: those whose lock nobody holds.
pub async fn sweep(state: &StateDir, runtime: &Runtime) {
    let Ok(entries) = std::fs::read_dir(state.containers()) else { return };
    let mut ids: Vec<String> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let id = name.strip_suffix(".lock").unwrap_or(&name).to_string();
        if !id.is_empty() && !id.starts_with('.') && !ids.contains(&id) {
            ids.push(id);
        }
    }
    for id in ids {
        match try_lock(&state.lock_path(&id)) {
            Ok(Some(lock)) => {
                warn!("removing container {id}, left behind by an s2i process that did not finish");
                if let Err(e) = teardown(state, runtime, &id, Some(lock)).await {
                    warn!("could not remove the leftover container {id}: {e}");
                }
            }
            Ok(None) => {}
            Err(e) => warn!("could not check container {id}: {e}"),
        }
    }
}

/// The driver to try first and those after it, for `auto`.
pub fn drivers_to_try(chosen: Option<RootfsDriver>, known_good: Option<RootfsDriver>) -> Vec<RootfsDriver> {
    match chosen {
        Some(d) => vec![d],
        None => {
            let mut all = vec![RootfsDriver::Overlay, RootfsDriver::FuseOverlayfs, RootfsDriver::Copy];
            if let Some(good) = known_good {
                all.retain(|d| *d != good);
                all.insert(0, good);
            }
            all
        }
    }
}
