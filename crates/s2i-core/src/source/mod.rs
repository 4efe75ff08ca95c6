//! The source stage: turn what the user handed `s2i build` (a directory, a git repository, an
//! archive; `--ref`, `--context-dir`, `--copy`, `--ignore-submodules`) into a [`PreparedSource`]:
//! the application root to walk or the archive to stream, the commit it came from, and the
//! temporary directory (if any) that must outlive the build and then go.
//!
//! A local directory is never copied: it is walked straight into the container's input stream.
//! Only git sources are cloned (into a temp dir). A tar archive is streamed entry by entry; only
//! a zip or an http(s) archive is put in a temp file first.

pub mod archive;
pub mod git;
pub mod tree;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use regex::Regex;
use tempfile::TempDir;
use tracing::{info, warn};

pub use archive::{ArchiveSource, ArchiveStream};
pub use git::CommitInfo;
pub use tree::{SourceTree, DEFAULT_EXCLUDE};

use crate::config::{ArchiveFormat, SourceConfig, SourceSpec};
use crate::error::{BuildError, Result};
use crate::http::{FetchError, Fetcher};
use crate::ignore::IgnoreRules;
use crate::limits::Limits;
use crate::tar_stream::TarPart;

/// What gets streamed as `src/`.
#[derive(Debug)]
pub enum Content {
    /// A directory walked as it is. `cloned` sources keep their symlinks as links: a link in a
    /// repository must not pull host files into the image.
    Dir { cloned: bool },
    /// An archive, streamed entry by entry.
    Archive(Box<ArchiveSource>),
}

/// A source ready to be streamed.
#[derive(Debug)]
pub struct PreparedSource {
    /// The application root on the host: the directory (after `--context-dir`) for directory and
    /// git sources; for an archive, a temp dir holding the files read before streaming
    /// (`.s2i/bin/*`, `.s2i/environment`, `.s2iignore`).
    pub root: PathBuf,
    pub content: Content,
    /// Set for git sources.
    pub commit: Option<CommitInfo>,
    /// The value of the source-location label: the clone's origin URL, else the source as given
    /// (credentials removed either way).
    pub location: String,
    /// Removed when the source is dropped.
    _temp: Option<TempDir>,
}

impl PreparedSource {
    /// The stream part that writes the application under `prefix/`.
    pub fn part(&self, prefix: &str, ignore: IgnoreRules, exclude: Option<Regex>, keep_symlinks: bool, skip: HashSet<PathBuf>) -> Box<dyn TarPart> {
        match &self.content {
            Content::Dir { cloned } => SourceTree {
                root: self.root.clone(),
                ignore,
                exclude,
                keep_symlinks: keep_symlinks || *cloned,
                skip,
                world_writable: false,
            }
            .part(prefix),
            Content::Archive(source) => ArchiveStream { source: (**source).clone(), ignore, exclude, skip }.part(prefix),
        }
    }
}

/// Fetch (clone, download) what must be fetched and say what to stream.
pub async fn prepare(req: &SourceConfig, limits: &Limits) -> Result<PreparedSource> {
    if let Some(ctx) = req.context_dir.as_deref() {
        crate::config::validate_context_dir(ctx)?;
    }
    if let Some(r) = req.git_ref.as_deref() {
        if r.starts_with('-') || r.chars().any(|c| c.is_control() || c == ' ') {
            return Err(BuildError::InvalidValue { what: "--ref", value: r.to_string(), reason: "not a branch, tag or commit name".into() });
        }
    }
    match &req.spec {
        SourceSpec::Local(path) => prepare_local(req, limits, path).await,
        SourceSpec::GitRemote(url) => {
            if req.copy {
                warn!("--copy applies only to local directories; cloning {}", req.location);
            }
            prepare_clone(req, url, false).await
        }
        SourceSpec::HttpArchive(url) => {
            refuse_ref(req, "an archive")?;
            let temp = temp_dir()?;
            let path = url.split(['?', '#']).next().unwrap_or(url);
            let name = path.rsplit('/').next().unwrap_or("source");
            let file = temp.path().join(format!("download-{}", sanitize(name)));
            let fetcher = Fetcher::new(limits)?;
            let total = fetcher.to_file(url, &file).await.map_err(|e| match e {
                FetchError::Limit(e) => e,
                other => BuildError::SourceUnreachable { location: req.location.clone(), detail: other.to_string() },
            })?;
            info!("Downloaded {total} bytes from {}", req.location);
            let format = ArchiveFormat::from_name(path).unwrap_or(ArchiveFormat::Tar);
            prepare_archive(req, limits, file, format, Some(temp)).await
        }
    }
}

async fn prepare_local(req: &SourceConfig, limits: &Limits, path: &Path) -> Result<PreparedSource> {
    let abs = std::path::absolute(path).map_err(|e| BuildError::io("resolving the source path", e))?;
    let meta = std::fs::metadata(&abs).map_err(|_| BuildError::SourceNotFound { path: path.to_path_buf() })?;
    if meta.is_file() {
        let format = ArchiveFormat::from_name(&abs.to_string_lossy()).or_else(|| sniff(&abs));
        let Some(format) = format else { return Err(BuildError::SourceNotDirectory { path: path.to_path_buf() }) };
        refuse_ref(req, "an archive")?;
        return prepare_archive(req, limits, abs, format, None).await;
    }
    if !meta.is_dir() {
        return Err(BuildError::SourceNotDirectory { path: path.to_path_buf() });
    }
    let plain = |req: &SourceConfig| -> Result<PreparedSource> {
        info!("Copying sources from {:?} to the build container as a stream", req.location);
        Ok(PreparedSource {
            root: context_root(&abs, req)?,
            content: Content::Dir { cloned: false },
            commit: None,
            location: req.location.clone(),
            _temp: None,
        })
    };
    if req.copy {
        if let Some(r) = &req.git_ref {
            return Err(BuildError::RefWithCopy { reference: r.clone() });
        }
        return plain(req);
    }
    if !abs.join(".git").exists() {
        refuse_ref(req, "a directory that is not a git repository")?;
        return plain(req);
    }
    if !git_dir_has_content(&abs) {
        return Err(BuildError::EmptyGitRepository { path: req.location.to_string() });
    }
    if !git::installed() {
        if req.git_ref.is_some() {
            return Err(BuildError::GitNotInstalled { location: req.location.to_string() });
        }
        warn!("git is not installed: building {} as it is (as with --copy), without commit labels", req.location);
        return plain(req);
    }
    if git::local_repo_is_empty(&abs, &req.location, req.git_ref.as_deref()).await? {
        return Err(BuildError::EmptyGitRepository { path: req.location.to_string() });
    }
    if req.git_ref.is_none() {
        let changed = git::uncommitted_files(&abs, &req.location).await?;
        if changed > 0 {
            let files = if changed == 1 { "file is" } else { "files are" };
            warn!(
                "{changed} uncommitted or untracked {files} left out: s2i builds the last commit of the git work tree {}; use --copy to build the directory as it is",
                req.location
            );
        }
    }
    // git records what it cloned as the origin URL (the source-location label): a file:// URL
    // as written, else the absolute path.
    let url = match req.location.strip_prefix("file://") {
        Some(_) => req.location.split('#').next().unwrap_or(&req.location).to_string(),
        None => abs.to_string_lossy().into_owned(),
    };
    prepare_clone(req, &url, true).await
}

/// A `.git` (directory, or a `gitdir:` file) with no file at all under `objects` or `refs` is a
/// repository without commits, as the reference decides.
fn git_dir_has_content(work_tree: &Path) -> bool {
    let dot_git = work_tree.join(".git");
    let git_dir = if dot_git.is_file() {
        let text = std::fs::read_to_string(&dot_git).unwrap_or_default();
        match text.trim().strip_prefix("gitdir:") {
            Some(p) => work_tree.join(p.trim()),
            None => return true,
        }
    } else {
        dot_git
    };
    fn any_file(dir: &Path) -> bool {
        let Ok(rd) = std::fs::read_dir(dir) else { return false };
        rd.flatten().any(|e| {
            let p = e.path();
            if p.is_dir() {
                any_file(&p)
            } else {
                true
            }
        })
    }
    any_file(&git_dir.join("objects")) || any_file(&git_dir.join("refs")) || git_dir.join("packed-refs").is_file()
}

async fn prepare_clone(req: &SourceConfig, url: &str, local: bool) -> Result<PreparedSource> {
    let temp = temp_dir()?;
    let dest = temp.path().join("clone");
    let reference = req.git_ref.as_deref();
    match reference {
        Some(r) => info!("Cloning {} at {r}", req.location),
        None => info!("Cloning {}", req.location),
    }
    git::clone(url, &dest, reference, local, !req.ignore_submodules, &req.location).await?;
    let (mut commit, origin) = git::describe(&dest, &req.location).await?;
    if let Some(name) = &req.reference_name {
        commit.reference = name.clone();
    }
    info!("Building commit {} ({}) of {}", &commit.id[..commit.id.len().min(12)], commit.reference, req.location);
    let root = context_root(&dest, req)?;
    refuse_links_out_of(&dest, &root, &req.location)?;
    Ok(PreparedSource {
        root,
        content: Content::Dir { cloned: true },
        commit: Some(commit),
        location: origin.map(|o| crate::redact::url(&o)).unwrap_or_else(|| req.location.clone()),
        _temp: Some(temp),
    })
}

/// A repository is not the user's own directory: its context dir and the files s2i reads from it
/// on the host (scripts, environment, ignore rules) must not be links to elsewhere on the host.
fn refuse_links_out_of(clone: &Path, root: &Path, location: &str) -> Result<()> {
    let base = clone.canonicalize().map_err(|e| BuildError::io(format!("resolving {}", clone.display()), e))?;
    let mut candidates = vec![root.to_path_buf()];
    for rel in [".s2i", ".s2i/bin", ".s2i/environment", crate::ignore::IGNORE_FILE, ".sti", ".sti/bin"] {
        candidates.push(root.join(rel));
    }
    for dir in [".s2i/bin", ".sti/bin"] {
        if let Ok(rd) = std::fs::read_dir(root.join(dir)) {
            candidates.extend(rd.flatten().map(|e| e.path()));
        }
    }
    for path in candidates {
        // Missing or broken: nothing will be read through it.
        let Ok(real) = path.canonicalize() else { continue };
        if !real.starts_with(&base) {
            let shown = path.strip_prefix(clone).unwrap_or(&path).display().to_string();
            return Err(BuildError::UnsafeSourceLink { location: location.to_string(), path: shown, target: real.display().to_string() });
        }
    }
    Ok(())
}

async fn prepare_archive(req: &SourceConfig, limits: &Limits, file: PathBuf, format: ArchiveFormat, temp: Option<TempDir>) -> Result<PreparedSource> {
    let temp = match temp {
        Some(t) => t,
        None => temp_dir()?,
    };
    let meta_dir = temp.path().join("root");
    std::fs::create_dir(&meta_dir).map_err(|e| BuildError::io(format!("creating {}", meta_dir.display()), e))?;
    let context = req.context_dir.as_deref().map(crate::mapping::clean_path).filter(|c| c != ".");
    let source = ArchiveSource { path: file, format, display: req.location.to_string(), context, limits: *limits };
    info!("Streaming the archive {} to the build container", req.location);
    let checked = source.clone();
    let meta = meta_dir.clone();
    // The pass runs on a blocking thread; if this future is dropped (Ctrl-C), it stops at the next
    // entry rather than reading on into a temp dir that is being removed.
    let cancel = CancelOnDrop(Arc::new(AtomicBool::new(false)));
    let cancelled = cancel.0.clone();
    tokio::task::spawn_blocking(move || archive::first_pass(&checked, &meta, &cancelled))
        .await
        .map_err(|e| BuildError::io("reading the archive", std::io::Error::other(e)))??;
    drop(cancel);
    Ok(PreparedSource {
        root: meta_dir,
        content: Content::Archive(Box::new(source)),
        commit: None,
        location: req.location.to_string(),
        _temp: Some(temp),
    })
}

/// Sets its flag when dropped: a blocking task watching the flag stops.
struct CancelOnDrop(Arc<AtomicBool>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// `--ref` names a git commit; for anything else it would be dropped without a word.
fn refuse_ref(req: &SourceConfig, what: &'static str) -> Result<()> {
    match &req.git_ref {
        Some(r) => Err(BuildError::RefNeedsGit { reference: r.clone(), location: req.location.clone(), what }),
        None => Ok(()),
    }
}

/// The application root: `dir`, or its `--context-dir`, which must exist.
fn context_root(dir: &Path, req: &SourceConfig) -> Result<PathBuf> {
    let Some(ctx) = req.context_dir.as_deref() else { return Ok(dir.to_path_buf()) };
    let root = dir.join(ctx);
    if !root.is_dir() {
        return Err(BuildError::ContextDirNotFound { dir: ctx.to_string(), source_root: PathBuf::from(&req.location) });
    }
    Ok(root)
}

fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new().prefix("s2i-source").tempdir().map_err(|e| BuildError::io("creating a temporary directory", e))
}

fn sniff(path: &Path) -> Option<ArchiveFormat> {
    use std::io::Read;
    let mut head = [0u8; 512];
    let mut f = std::fs::File::open(path).ok()?;
    let mut n = 0;
    while n < head.len() {
        match f.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    ArchiveFormat::sniff(&head[..n])
}

fn sanitize(name: &str) -> String {
    let s: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' }).collect();
    if s.is_empty() { "source".into() } else { s }
}
