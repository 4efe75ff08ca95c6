//! The OCI runtime's command line (`runc`, or a compatible one such as `crun`), with its state
//! in a directory of s2i's own (`--root`), never the system's `/run/runc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::process::{Child, Command};
use tracing::debug;

use super::error::{Result, RunError};

#[derive(Debug, Clone)]
pub struct Runtime {
    bin: PathBuf,
    root: PathBuf,
}

/// The file in a bundle where the runtime writes its own messages (JSON lines).
pub const LOG_FILE: &str = "runtime.log";

impl Runtime {
    pub fn new(bin: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Runtime {
        Runtime { bin: bin.into(), root: root.into() }
    }

    pub fn bin(&self) -> &Path {
        &self.bin
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn name(&self) -> String {
        self.bin.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "runc".into())
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--root").arg(&self.root);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn missing(&self, e: std::io::Error) -> RunError {
        RunError::RuntimeMissing { runtime: self.bin.clone(), source: e }
    }

    /// The runtime's version line (`runc version 1.1.5+ds1`).
    pub async fn version(&self) -> Result<String> {
        let out = self.command().arg("--version").output().await.map_err(|e| self.missing(e))?;
        if !out.status.success() {
            return Err(RunError::Runtime {
                runtime: self.name(),
                op: "--version",
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or_default().trim().to_string())
    }

    /// Start `runc run` for the bundle in `bundle`, in the foreground: the container's process
    /// gets the child's stdin, stdout and stderr directly (pipes, or /dev/null without input),
    /// and the runtime exits with the process's exit code. The runtime's own messages go to
    /// the bundle's [`LOG_FILE`]. The child is killed if dropped; the container is then left for
    /// [`Runtime::delete`].
    pub fn spawn_run(&self, id: &str, bundle: &Path, with_stdin: bool) -> Result<Child> {
        let _ = std::fs::remove_file(bundle.join(LOG_FILE));
        let mut cmd = self.command();
        cmd.arg("--log")
            .arg(bundle.join(LOG_FILE))
            .arg("--log-format")
            .arg("json")
            .arg("run")
            .arg("--bundle")
            .arg(bundle)
            .arg(id)
            .stdin(if with_stdin { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        debug!("starting container {id} with {}", self.bin.display());
        cmd.spawn().map_err(|e| self.missing(e))
    }

    /// The runtime's own error for a run that failed before (or instead of) the container's
    /// process: `None` when the log has no error, so a non-zero exit is the process's own.
    pub fn run_error(&self, bundle: &Path) -> Option<RunError> {
        let log = std::fs::read_to_string(bundle.join(LOG_FILE)).ok()?;
        let message = log
            .lines()
            .rev()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| matches!(v["level"].as_str(), Some("error" | "fatal")))
            .find_map(|v| v["msg"].as_str().map(str::to_string))?;
        Some(RunError::Runtime { runtime: self.name(), op: "run", message })
    }

    /// Send `signal` to the container's process.
    pub async fn kill(&self, id: &str, signal: &str) {
        let _ = self.command().args(["kill", id, signal]).stdout(Stdio::null()).stderr(Stdio::null()).status().await;
    }

    /// Kill and delete the container (its state and cgroup); a container the runtime does not
    /// know is fine.
    pub async fn delete(&self, id: &str) -> Result<()> {
        let out = self
            .command()
            .args(["delete", "--force", id])
            .output()
            .await
            .map_err(|e| self.missing(e))?;
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.success() || stderr.contains("does not exist") || stderr.contains("not exist") {
            return Ok(());
        }
        // Deleting a container whose process was never started leaves no state: also fine.
        if !self.root.join(id).exists() {
            return Ok(());
        }
        Err(RunError::Runtime { runtime: self.name(), op: "delete", message: stderr.trim().to_string() })
    }

    /// The ids of the containers the runtime knows under our root.
    pub async fn list(&self) -> Result<Vec<String>> {
        let out = self
            .command()
            .args(["list", "--format", "json"])
            .output()
            .await
            .map_err(|e| self.missing(e))?;
        if !out.status.success() {
            return Err(RunError::Runtime {
                runtime: self.name(),
                op: "list",
                message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        Ok(list
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["id"].as_str().map(str::to_string)).collect())
            .unwrap_or_default())
    }
}
