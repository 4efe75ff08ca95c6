use std::path::PathBuf;

use thiserror::Error;

pub type Result<T, E = RunError> = std::result::Result<T, E>;

/// What went wrong running a build container. Each variant names the thing a user can act on.
#[derive(Debug, Error)]
pub enum RunError {
    /// A file system call failed; `what` says what we were doing and to which path.
    #[error("{what}: {source}")]
    Io { what: String, #[source] source: std::io::Error },

    #[error("the oci engine needs root for now (overlay mounts, runc and cgroups): run s2i as root, or use --engine docker")]
    NotRoot,

    #[error("the kernel cannot resolve paths inside a root file system (openat2 with RESOLVE_IN_ROOT, Linux 5.6 or newer); the oci engine refuses to write into a container's files without it")]
    NoOpenat2,

    #[error("cannot run the OCI runtime {runtime}: {source}; install runc (`apt-get install runc`) or name one with --oci-runtime PATH")]
    RuntimeMissing { runtime: PathBuf, #[source] source: std::io::Error },

    /// The runtime itself failed (not the container's process): its own message.
    #[error("{runtime} {op} failed: {message}")]
    Runtime { runtime: String, op: &'static str, message: String },

    #[error("unable to find user {user}: no matching entries in the image's /etc/passwd")]
    UnknownUser { user: String },

    #[error("unable to find group {group}: no matching entries in the image's /etc/group")]
    UnknownGroup { group: String },

    #[error("invalid user {user:?}: {reason}")]
    BadUser { user: String, reason: String },

    #[error("{file} in the image is larger than {limit} bytes; s2i does not read it")]
    FileTooLarge { file: String, limit: u64 },

    #[error("unknown capability {0:?} in --cap-drop (use names such as NET_RAW or CAP_NET_RAW, or ALL)")]
    UnknownCapability(String),

    #[error("invalid volume {spec:?}: {reason}")]
    BadBind { spec: String, reason: String },

    #[error("invalid --add-host {spec:?}: expected HOST:IP, with no spaces or control characters")]
    BadHost { spec: String },

    #[error("the oci engine has no network mode {0:?}: use host (the default) or none")]
    BadNetwork(String),

    #[error("no command to run: the image {image} has neither a command nor an entrypoint, and none was given")]
    NoCommand { image: String },

    /// An archive entry we refuse to write; `entry` is its name in the archive.
    #[error("archive entry {entry:?}: {reason}")]
    BadEntry { entry: String, reason: String },

    #[error("no container {0:?} in the oci engine")]
    NoSuchContainer(String),

    #[error("container {id} is {state}; {what}")]
    BadState { id: String, state: &'static str, what: String },

    #[error("none of the root file system drivers worked for {image}: {tried}; check that the kernel has overlay, or install fuse-overlayfs")]
    NoRootfsDriver { image: String, tried: String },

    /// The container was killed by the kernel for going over its memory limit.
    #[error("the container was killed: it used its whole memory limit of {limit_mib} MiB; raise the limit with S2I_OCI_MEMORY_LIMIT=<bytes, or with a suffix such as 8g>")]
    OutOfMemory { limit_mib: u64 },

    #[error("the seccomp profile {profile} cannot be used: {reason}")]
    BadSeccompProfile { profile: String, reason: String },

    #[error("invalid {name}={value:?}: {reason}")]
    BadSetting { name: &'static str, value: String, reason: String },

    #[error("{path} is still mounted after unmounting it; s2i leaves the directory in place rather than delete through a mount")]
    StillMounted { path: PathBuf },

    /// The engine was told to remove what it made while this ran (an interruption).
    #[error(transparent)]
    Cancelled(#[from] crate::cancel::Cancelled),

    /// The image's layers cannot make a root filesystem, whichever driver puts it together.
    #[error("{0}")]
    Image(#[source] crate::image::ImageError),
}

impl RunError {
    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        RunError::Io { what: what.into(), source }
    }
}

/// Attach what we were doing to an I/O error.
pub(crate) trait IoContext<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RunError::io(what(), e))
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| RunError::io(what(), e.into()))
    }
}
