//! Typed errors of the build pipeline. Each carries what a user needs to act (which file, image,
//! script or limit), keeps its cause, and knows its exit code and a one-line hint; the binary
//! renders them once.

use std::path::PathBuf;

use s2i_engine::EngineError;
use thiserror::Error;

use crate::limits::{InvalidLimit, Limit, Limits};

pub type Result<T, E = BuildError> = std::result::Result<T, E>;

#[derive(Debug, Error)]
pub enum BuildError {
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidValue { what: &'static str, value: String, reason: String },

    /// Two settings that cannot go together.
    #[error("{what} cannot be used with {with}")]
    Conflict { what: String, with: String },

    #[error("--as-dockerfile writes the Dockerfile that --build-method=dockerfile builds: use one of them")]
    DockerfileTwice,

    /// A `--secret` whose value cannot be read. Names the secret and where it was looked for, never a value.
    #[error("secret {id}: cannot read {source_of}: {reason}")]
    SecretUnavailable { id: String, source_of: String, reason: String },

    /// The application's `.s2i/environment` says the build needs a secret that no `--secret` gives.
    #[error("{file}:{line} says the build needs the secret {id:?}, and no --secret gives it")]
    SecretNotGiven { id: String, file: PathBuf, line: usize },

    #[error("an incremental Dockerfile needs the TAG of the previous image")]
    IncrementalDockerfileNeedsTag,

    #[error("{dir} holds {entry:?}, which s2i did not write; remove it or write the Dockerfile elsewhere")]
    UploadDirNotOurs { dir: PathBuf, entry: String },

    #[error("s2i rebuild cannot use {flag}")]
    RebuildFlag { flag: &'static str },

    #[error("source {path:?} does not exist")]
    SourceNotFound { path: PathBuf },

    #[error("source {path:?} is neither a directory nor a .tar, .tar.gz, .tgz or .zip archive")]
    SourceNotDirectory { path: PathBuf },

    #[error("context directory {dir:?} does not exist in the source {source_root:?}")]
    ContextDirNotFound { dir: String, source_root: PathBuf },

    #[error("couldn't parse {input:?}: {reason}")]
    SourceParse { input: String, reason: String },

    #[error("--ref (or #{reference}) needs a git source, but {location} is {what}")]
    RefNeedsGit { reference: String, location: String, what: &'static str },

    #[error("--ref {reference} cannot be used with --copy, which builds the directory as it is")]
    RefWithCopy { reference: String },

    #[error("git is not installed (no `git` on PATH), and {location:?} is a git source")]
    GitNotInstalled { location: String },

    #[error("The git repository {path:?} has no tracking information or commits")]
    EmptyGitRepository { path: String },

    #[error("git ref {reference:?} not found in {location}{}", format_detail(.detail))]
    GitUnknownRef { reference: String, location: String, detail: String },

    #[error("cannot reach {location}{}", format_detail(.detail))]
    SourceUnreachable { location: String, detail: String },

    #[error("{location} requires authentication, and s2i never prompts{}", format_detail(.detail))]
    GitAuthRequired { location: String, detail: String },

    #[error("git failed {action} {location}{}", format_detail(.detail))]
    GitFailed { action: &'static str, location: String, detail: String },

    #[error("archive {archive}: refusing entry {entry:?}: {reason}")]
    UnsafeArchiveEntry { archive: String, entry: String, reason: String },

    #[error("{path} in {location} is a symlink to {target}, outside the repository")]
    UnsafeSourceLink { location: String, path: String, target: String },

    #[error("archive {archive} cannot be read: {reason}")]
    ArchiveUnreadable { archive: String, reason: String },

    #[error("an archive source cannot be built with the ONBUILD builder {builder}")]
    OnbuildArchive { builder: String },

    #[error("{} is not a regular file", path.display())]
    NotARegularFile { path: PathBuf },

    #[error("{what} exceeds {limit} of {value}")]
    LimitExceeded { what: String, limit: Limit, value: String },

    #[error("cannot connect to the container engine at {endpoint}: {reason}")]
    EngineUnreachable { endpoint: String, reason: String },

    #[error("unable to get metadata for {image}: the image is not present locally and the pull policy is {policy}")]
    ImageNotLocal {
        image: String,
        policy: &'static str,
        /// The flag that sets this image's pull policy, for the hint.
        flag: &'static str,
    },

    #[error("unable to get {image}: {source}")]
    PullFailed {
        image: String,
        /// The flag that sets this image's pull policy, for the hint.
        flag: &'static str,
        #[source]
        source: EngineError,
    },

    /// A registry refused, lacked or could not be asked for an image, or `--push` failed.
    #[error(transparent)]
    Registry(#[from] crate::registry::RegistryFailure),

    /// A CA file given for registries (`--ca-file`, `SSL_CERT_FILE`) that cannot be used.
    #[error(transparent)]
    RegistryTrust(Box<s2i_registry::RegistryError>),

    /// `s2i copy-binary` could not put the binary at `dest`.
    #[error("cannot copy s2i to {}: {reason}", dest.display())]
    CopyBinary {
        dest: PathBuf,
        reason: String,
        #[source]
        source: Option<std::io::Error>,
    },

    #[error("{image} is missing after its pull finished")]
    PulledImageMissing { image: String },

    #[error("failed to install [{}]: not found in {}", missing.join(" "), looked_in.join(", "))]
    ScriptsMissing { missing: Vec<String>, looked_in: Vec<String> },

    #[error("could not download any scripts from URL {url}: {details}")]
    ScriptsUrlUnusable { url: String, details: String },

    #[error("the scripts location {url:?} is not supported: use image://, file:// or http(s)://")]
    ScriptsUrlScheme { url: String },

    #[error("{script} exited with status {code} in {image}{}", format_tail(.stderr_tail))]
    ScriptFailed { script: String, image: String, code: i64, stderr_tail: String },

    #[error("building FROM the ONBUILD builder {builder} failed: {message}")]
    OnbuildFailed { builder: String, message: String },

    #[error("the builder image {image} has no {what}, which s2i needs to stream the source in")]
    BuilderLacks { image: String, what: &'static str },

    /// The previous image's artifacts could not be used; the build goes on clean.
    #[error("saving the previous build's artifacts failed: {reason}")]
    ArtifactsUnusable {
        reason: String,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    #[error("{what} is not allowed: {reason}")]
    UserNotAllowed { what: String, reason: String },

    /// The engine cannot do what the build needs (the in-place engine runs only its own image,
    /// as the process's own user).
    #[error("the {engine} engine cannot {what}")]
    EngineCannot { engine: String, what: String },

    #[error("label validation failed for {image:?}: label size {size} exceeds the maximum limit 10240")]
    LabelsTooBig { image: String, size: usize },

    #[error("invalid /tmp/.s2i/image_metadata.json written by assemble: {reason}")]
    ImageMetadata { reason: String },

    #[error("streaming the source into the container failed: {0}")]
    SourceStream(#[source] std::io::Error),

    #[error("building {tag} failed when committing the image: {source}")]
    Commit { tag: String, source: EngineError },

    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },

    #[error(transparent)]
    Engine(#[from] EngineError),

    #[error("interrupted")]
    Interrupted,

    #[error("required label {label:?} not found in image {image}")]
    MissingLabel { image: String, label: &'static str },

    #[error("image {image} was built from {location}, which is not a git repository: s2i rebuild reads any other source only when you name it")]
    RebuildSourceNotGiven { image: String, location: String },

    #[error("the callback to {url} failed: {reason}")]
    Callback { url: String, reason: String },

    #[error("the image build failed: {message}")]
    ImageBuild { message: String },

    /// `s2i verify`: one side could not be built or examined; the cause says why.
    #[error("side {side} ({image}): {source}")]
    VerifySide { side: String, image: String, source: Box<BuildError> },
}

fn format_detail(detail: &str) -> String {
    let detail = detail.trim();
    if detail.is_empty() {
        String::new()
    } else {
        format!(": {detail}")
    }
}

fn format_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        String::new()
    } else {
        format!("; its last error output:\n{}", tail.trim_end())
    }
}

impl Limits {
    /// The error for `what` having gone over `limit`.
    pub fn exceeded(&self, limit: Limit, what: impl Into<String>) -> BuildError {
        BuildError::LimitExceeded { what: what.into(), limit, value: self.shown(limit) }
    }
}

impl From<InvalidLimit> for BuildError {
    fn from(e: InvalidLimit) -> Self {
        BuildError::InvalidValue { what: e.variable, reason: e.reason(), value: e.value }
    }
}

impl BuildError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        BuildError::Io { context: context.into(), source }
    }

    pub fn conflict(what: impl Into<String>, with: impl Into<String>) -> Self {
        BuildError::Conflict { what: what.into(), with: with.into() }
    }

    /// The process exit code, following the reference's table where it has one.
    pub fn exit_code(&self) -> i32 {
        match self {
            BuildError::ImageNotLocal { .. } => 1,
            BuildError::PullFailed { .. } | BuildError::PulledImageMissing { .. } => 2,
            BuildError::Registry(e) => e.exit_code(),
            BuildError::Commit { .. } => 6,
            BuildError::ScriptsMissing { .. } => 11,
            BuildError::UserNotAllowed { .. } => 15,
            BuildError::EmptyGitRepository { .. } => 16,
            BuildError::Interrupted => 2,
            BuildError::VerifySide { source, .. } => source.exit_code(),
            _ => 1,
        }
    }

    /// What the user can do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            BuildError::SourceNotFound { .. } | BuildError::SourceNotDirectory { .. } => {
                "give the application's source: a directory, a git repository (path or URL) or a .tar, .tar.gz, .tgz or .zip archive".into()
            }
            BuildError::ContextDirNotFound { .. } => "--context-dir is relative to the source root".into(),
            BuildError::SecretUnavailable { id, .. } => {
                format!("--secret id={id},src=PATH reads a regular file, --secret id={id},env=VAR a variable of s2i's environment")
            }
            BuildError::SecretNotGiven { id, .. } => format!("pass --secret id={id},src=PATH or --secret id={id},env=VAR"),
            BuildError::SourceParse { .. } => {
                "give a local directory or archive, file:///abs/path, a git URL (https://, ssh://, git@host:path) or an http(s) .tar/.tar.gz/.tgz/.zip URL".into()
            }
            BuildError::GitNotInstalled { .. } => {
                "install git, or build a local directory (use --copy for a git work tree) or an archive".into()
            }
            BuildError::EmptyGitRepository { .. } => {
                "commit something, remove the .git directory, or use --copy to build the directory as it is".into()
            }
            BuildError::GitUnknownRef { .. } => {
                "give a branch, a tag or a commit SHA that exists in the repository (git ls-remote <url> lists branches and tags)".into()
            }
            BuildError::SourceUnreachable { .. } => "check the URL, the host and the network".into(),
            BuildError::GitAuthRequired { .. } => {
                "load an ssh key into ssh-agent, or set up a git credential helper, then try again".into()
            }
            BuildError::GitFailed { action, .. } if action.contains("submodules") => {
                "check the submodule URLs, or pass --ignore-submodules to build without them".into()
            }
            BuildError::UnsafeSourceLink { .. } => {
                "s2i reads --context-dir, .s2i/bin, .s2i/environment and .s2iignore of a repository only inside it".into()
            }
            BuildError::UnsafeArchiveEntry { .. } => {
                "every entry of a source archive must stay inside it: no absolute paths, no .., no links that leave it".into()
            }
            BuildError::NotARegularFile { .. } => {
                "s2i reads only regular files there: a FIFO, a device or a directory in its place is refused".into()
            }
            BuildError::LimitExceeded { limit, .. } => {
                format!("if the input is trusted, raise the limit with {}=<value> in the environment", limit.variable())
            }
            BuildError::EngineUnreachable { .. } | BuildError::Engine(EngineError::Connect { .. }) => {
                "is Docker or Podman running? Start Docker, or Podman's API service (systemctl --user start podman.socket, or podman system service --time=0 &), and point -U/--url, DOCKER_HOST or CONTAINER_HOST at it unless it is at its default socket".into()
            }
            BuildError::ImageNotLocal { flag, .. } => {
                format!("build or load the image locally, or use {flag} if-not-present to pull it")
            }
            BuildError::PullFailed { flag, .. } => {
                format!("check the image name; for an image that exists only locally use {flag} never")
            }
            BuildError::ScriptsMissing { .. } => {
                "give the scripts with --scripts-url, in the source's .s2i/bin, or set the builder's io.openshift.s2i.scripts-url label".into()
            }
            BuildError::ScriptsUrlUnusable { .. } => "check --scripts-url: the scripts must be at <url>/<name>".into(),
            BuildError::ScriptFailed { script, .. } if script == "assemble" => {
                "the builder's assemble script failed; its output above says why".into()
            }
            BuildError::OnbuildFailed { .. } => "the build output above shows the ONBUILD step that failed".into(),
            BuildError::EngineCannot { .. } => format!("build this with {}", s2i_engine::GENERAL_ENGINES),
            BuildError::UserNotAllowed { .. } => {
                "use a numeric user inside the --allowed-uids ranges (--assemble-user, the image's USER or its io.openshift.s2i.assemble-user label)".into()
            }
            BuildError::BuilderLacks { what, .. } => {
                format!("install {what} in the builder image, or build FROM an image that has it")
            }
            BuildError::MissingLabel { .. } => "s2i rebuild needs an image that s2i built".into(),
            BuildError::RebuildSourceNotGiven { location, image } => {
                format!("if you trust {image} and want that source, name it: s2i rebuild {image} --source {location}")
            }
            BuildError::ImageBuild { .. } => "the build output above shows the step that failed".into(),
            BuildError::Registry(e) => e.hint(),
            BuildError::RegistryTrust(e) => e.hint(),
            BuildError::CopyBinary { .. } => "give a directory that exists and that this user may write to (the shared volume of the step that runs the copy)".into(),
            BuildError::VerifySide { source, .. } => return source.hint(),
            BuildError::LabelsTooBig { .. } => "write fewer or shorter labels in image_metadata.json".into(),
            BuildError::ImageMetadata { .. } => {
                "the file must look like {\"labels\":[{\"key\":\"value\"}]}".into()
            }
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exceeded_limit_names_its_value_and_variable() {
        let e = Limits::default().exceeded(Limit::ScriptSize, "the script https://h/assemble").to_string();
        assert_eq!(e, "the script https://h/assemble exceeds the script size limit (S2I_LIMIT_SCRIPT_SIZE) of 16 MiB");
    }
}
