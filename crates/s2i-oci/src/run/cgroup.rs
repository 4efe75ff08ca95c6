//! The cgroup around one container, so that a build cannot take the host's memory or fork
//! without bound, and so that s2i can tell afterwards that the kernel killed it for memory.
//!
//! cgroup v1 (and hybrid): s2i makes a parent cgroup `s2i-<id>` next to its own in every
//! hierarchy, puts the memory and pids limits on it, and has runc put the container in
//! `s2i-<id>/ctr` below it. runc removes `ctr` with the container; the parent, which holds the
//! counters (`memory.oom_control`'s `oom_kill`, `pids.events`), stays until s2i removes it.
//! cgroup v2: a parent cannot get controllers while s2i's own cgroup holds processes, so runc
//! applies the limits to the container's cgroup itself.

use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::bundle::RuncResources;
use super::error::{IoContext, Result, RunError};

/// A mounted cgroup hierarchy and where this process sits in it.
#[derive(Debug, Clone)]
struct Hierarchy {
    /// This process's cgroup in the hierarchy, as a host path.
    own: PathBuf,
    controllers: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Cgroups {
    unified: bool,
    hierarchies: Vec<Hierarchy>,
}

/// The cgroup made for one container.
#[derive(Debug, Clone, Default)]
pub struct ContainerCgroup {
    /// What goes in config.json's `cgroupsPath` (relative: below runc's own cgroup, which is ours).
    pub runc_path: String,
    /// Limits runc must apply itself (cgroup v2).
    pub runc_resources: RuncResources,
    /// The parent directories s2i made (v1), removed with the container.
    pub parents: Vec<PathBuf>,
    memory_dir: Option<PathBuf>,
    pids_dir: Option<PathBuf>,
    pub memory_limit: Option<u64>,
}

impl Cgroups {
    /// The hierarchies this process is in, from /proc/self/cgroup and /proc/self/mountinfo.
    pub fn detect() -> Result<Cgroups> {
        let own = std::fs::read_to_string("/proc/self/cgroup").context(|| "reading /proc/self/cgroup".into())?;
        let info = std::fs::read_to_string("/proc/self/mountinfo").context(|| "reading /proc/self/mountinfo".into())?;
        Ok(Self::parse(&own, &info))
    }

    fn parse(own: &str, mountinfo: &str) -> Cgroups {
        // mountinfo: id parent major:minor root mount-point options [optional…] - fstype source super-options
        let mounts: Vec<(PathBuf, &str, Vec<&str>)> = mountinfo
            .lines()
            .filter_map(|l| {
                let (left, right) = l.split_once(" - ")?;
                let f: Vec<&str> = left.split(' ').collect();
                let r: Vec<&str> = right.split(' ').collect();
                let fstype = *r.first()?;
                let root = *f.get(3)?;
                let point = PathBuf::from(*f.get(4)?);
                let supers = r.get(2).map(|s| s.split(',').collect()).unwrap_or_default();
                // A hierarchy mounted at its root only: a bind of a sub-cgroup maps paths differently.
                (root == "/" && (fstype == "cgroup" || fstype == "cgroup2")).then_some((point, fstype, supers))
            })
            .collect();
        let unified = mounts.iter().all(|(_, t, _)| *t == "cgroup2") && mounts.iter().any(|(_, t, _)| *t == "cgroup2");
        let mut hierarchies = Vec::new();
        for line in own.lines() {
            let mut parts = line.splitn(3, ':');
            let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else { continue };
            let rel = path.trim_start_matches('/');
            let mount = if ctrls.is_empty() {
                mounts.iter().find(|(_, t, _)| *t == "cgroup2")
            } else {
                let wanted: Vec<&str> = ctrls.split(',').collect();
                mounts.iter().find(|(_, t, s)| *t == "cgroup" && wanted.iter().all(|w| s.contains(w)))
            };
            if let Some((point, _, _)) = mount {
                // Hybrid hosts mount a cgroup2 hierarchy beside the v1 ones (`0::`): runc makes
                // the container's path there too, so s2i makes and removes the parent there too.
                if unified && !ctrls.is_empty() {
                    continue;
                }
                hierarchies.push(Hierarchy {
                    own: point.join(rel),
                    controllers: ctrls.split(',').filter(|c| !c.is_empty()).map(str::to_string).collect(),
                });
            }
        }
        Cgroups { unified, hierarchies }
    }

    /// Make the container's cgroup with these limits.
    pub fn create(&self, id: &str, memory: Option<u64>, pids: Option<u64>) -> Result<ContainerCgroup> {
        let name = format!("s2i-{id}");
        if self.unified || self.hierarchies.is_empty() {
            return Ok(ContainerCgroup {
                runc_path: name,
                runc_resources: RuncResources { memory, pids },
                memory_limit: memory,
                ..Default::default()
            });
        }
        let mut cg = ContainerCgroup { runc_path: format!("{name}/ctr"), memory_limit: memory, ..Default::default() };
        for h in &self.hierarchies {
            let dir = h.own.join(&name);
            match std::fs::create_dir(&dir) {
                Ok(()) => cg.parents.push(dir.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => cg.parents.push(dir.clone()),
                // A hierarchy we may not write to (read-only, delegated elsewhere): runc will
                // say so if it needs it; the limits live in memory and pids.
                Err(e) => {
                    debug!("cannot make {}: {e}", dir.display());
                    continue;
                }
            }
            if h.controllers.iter().any(|c| c == "memory") {
                if let Some(limit) = memory {
                    write(&dir.join("memory.limit_in_bytes"), &limit.to_string())?;
                }
                cg.memory_dir = Some(dir.clone());
            }
            if h.controllers.iter().any(|c| c == "pids") {
                if let Some(limit) = pids {
                    write(&dir.join("pids.max"), &limit.to_string())?;
                }
                cg.pids_dir = Some(dir.clone());
            }
        }
        if memory.is_some() && cg.memory_dir.is_none() || pids.is_some() && cg.pids_dir.is_none() {
            // No writable memory or pids hierarchy of our own: let runc try.
            cg.runc_resources = RuncResources {
                memory: memory.filter(|_| cg.memory_dir.is_none()),
                pids: pids.filter(|_| cg.pids_dir.is_none()),
            };
        }
        Ok(cg)
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    std::fs::write(path, value).context(|| format!("writing {value} to {}", path.display()))
}

impl ContainerCgroup {
    /// Whether the kernel killed a process of the container for going over the memory limit,
    /// given that the container's process was killed by SIGKILL. cgroup v1 counts OOM kills in
    /// the container's own cgroup only (gone with the container), so the parent's `failcnt` (the
    /// limit was reached) stands in for it.
    pub fn oom_killed(&self) -> bool {
        let Some(dir) = &self.memory_dir else { return false };
        let read_u64 = |file: &str, prefix: &str| -> u64 {
            std::fs::read_to_string(dir.join(file))
                .ok()
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix(prefix).and_then(|n| n.trim().parse().ok())))
                .unwrap_or(0)
        };
        read_u64("memory.oom_control", "oom_kill ") > 0 || read_u64("memory.failcnt", "") > 0
    }

    /// How many times a fork failed on the pids limit.
    pub fn pids_limit_hits(&self) -> u64 {
        let Some(dir) = &self.pids_dir else { return 0 };
        std::fs::read_to_string(dir.join("pids.events"))
            .ok()
            .and_then(|t| t.lines().find_map(|l| l.strip_prefix("max ").and_then(|n| n.trim().parse().ok())))
            .unwrap_or(0)
    }
}

/// Remove cgroup directories made for a container (children first), killing what is still
/// inside (processes left by a runtime that was killed itself).
pub fn remove_dirs(parents: &[PathBuf]) -> Result<()> {
    for parent in parents {
        if !parent.exists() {
            continue;
        }
        let mut dirs: Vec<PathBuf> = walk_dirs(parent);
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        for dir in dirs {
            remove_one(&dir)?;
        }
    }
    Ok(())
}

fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                out.extend(walk_dirs(&e.path()));
            }
        }
    }
    out
}

fn remove_one(dir: &Path) -> Result<()> {
    for attempt in 0..50 {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if attempt == 0 {
                    warn!("processes are left in {}; killing them", dir.display());
                }
                if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
                    for pid in procs.lines().filter_map(|p| p.trim().parse::<i32>().ok()) {
                        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                        }
                    }
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            Err(e) => return Err(RunError::io(format!("removing the cgroup {}", dir.display()), e)),
        }
    }
    Err(RunError::io(format!("removing the cgroup {}", dir.display()), std::io::Error::other("its processes did not exit")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hierarchies_are_found_under_our_own_cgroup() {
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/process_api/abc\n1:cpu,cpuacct:/x\n0::/\n";
        let info = "30 25 0:26 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n\
            31 30 0:27 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids\n\
            32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n\
            33 30 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n\
            34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n";
        let info = format!("{info}41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n");
        let cg = Cgroups::parse(own, &info);
        assert!(!cg.unified);
        let owns: Vec<&Path> = cg.hierarchies.iter().map(|h| h.own.as_path()).collect();
        assert_eq!(
            owns,
            [
                Path::new("/sys/fs/cgroup/systemd"),
                Path::new("/sys/fs/cgroup/pids"),
                Path::new("/sys/fs/cgroup/memory/process_api/abc"),
                Path::new("/sys/fs/cgroup/cpu,cpuacct/x"),
                // The hybrid host's cgroup2 hierarchy: runc makes paths there too.
                Path::new("/sys/fs/cgroup/unified"),
            ]
        );

        let v2 = Cgroups::parse("0::/user.slice/s.scope\n", "40 1 0:30 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
        assert!(v2.unified);
        let c = v2.create("abc", Some(1 << 30), Some(10)).unwrap();
        assert_eq!(c.runc_path, "s2i-abc");
        assert_eq!(c.runc_resources, RuncResources { memory: Some(1 << 30), pids: Some(10) });
        assert!(c.parents.is_empty());
    }
}
