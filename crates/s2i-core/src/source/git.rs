//! Git sources through the `git` command line: clone (shallow when that gives the same tree),
//! check out the ref, initialise submodules, and read what the commit labels record. Git never
//! prompts: terminal prompts are off and ssh runs in batch mode, so a missing credential is an
//! error, not a hang.

use std::path::Path;
use std::process::{Output, Stdio};

use tokio::process::Command;
use tracing::{debug, info};

use crate::error::{BuildError, Result};

/// What the `io.openshift.s2i.build.commit.*` labels record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitInfo {
    /// Full SHA.
    pub id: String,
    /// The branch checked out, or `HEAD` when detached.
    pub reference: String,
    /// `Name <email>`.
    pub author: String,
    /// Author date in git's default `%ad` format.
    pub date: String,
    /// Subject, at most 80 characters.
    pub message: String,
}

/// The longest commit subject the message label keeps (git's `%<(80,trunc)`).
const MESSAGE_WIDTH: usize = 80;

/// Settings that make git run a program, neutralised on every git command s2i runs: a
/// repository's own config (`.git/config` of a local source, which s2i did not write) must never
/// make git execute anything on the host.
const SAFE_CONFIG: &[&str] = &[
    "core.fsmonitor=false",
    "core.hooksPath=/dev/null",
    "core.alternateRefsCommand=",
    "core.untrackedCache=false",
    "diff.external=",
    "protocol.ext.allow=never",
];

/// A `git` command with prompts off, English messages (they are classified), no stdin, and the
/// repository's program-running settings neutralised (see [`SAFE_CONFIG`] and [`driver_overrides`]).
fn git_command(dir: Option<&Path>) -> Command {
    let mut cmd = Command::new("git");
    for setting in SAFE_CONFIG {
        cmd.args(["-c", setting]);
    }
    if let Some(dir) = dir {
        for setting in driver_overrides(dir) {
            cmd.arg("-c").arg(setting);
        }
        cmd.arg("-C").arg(dir);
    }
    cmd.env("GIT_TERMINAL_PROMPT", "0")
        .env("GCM_INTERACTIVE", "never")
        .env("LC_ALL", "C")
        .env("LANGUAGE", "C")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // A user's own ssh command is kept; otherwise ssh must never ask for a password or a host key.
    if std::env::var_os("GIT_SSH_COMMAND").is_none() && std::env::var_os("GIT_SSH").is_none() {
        cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes -o ConnectTimeout=20");
    }
    cmd
}

/// Filter and diff drivers that the repository at `dir` defines in its own config (`filter.X.clean`
/// runs on `git status`, `smudge` on checkout): each is overridden with an empty command. Reading
/// config runs nothing.
fn driver_overrides(dir: &Path) -> Vec<String> {
    let out = std::process::Command::new("git")
        .args(["-C"])
        .arg(dir)
        .args(["config", "--local", "--name-only", "--list"])
        .env("GIT_TERMINAL_PROMPT", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|key| {
            let lower = key.to_ascii_lowercase();
            let program = [".clean", ".smudge", ".process", ".textconv", ".command", ".driver"];
            (lower.starts_with("filter.") || lower.starts_with("diff.") || lower.starts_with("merge."))
                && program.iter().any(|p| lower.ends_with(p))
        })
        .map(|key| format!("{key}="))
        .collect()
}

/// Run git; a missing binary is [`BuildError::GitNotInstalled`].
async fn run(dir: Option<&Path>, args: &[&str], location: &str) -> Result<Output> {
    debug!("git {}", crate::redact::text(&args.join(" ")));
    git_command(dir).args(args).output().await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            BuildError::GitNotInstalled { location: location.to_string() }
        } else {
            BuildError::io("running git", e)
        }
    })
}

/// Is a `git` binary on PATH?
pub(crate) fn installed() -> bool {
    std::process::Command::new("git")
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A ref that only a full clone can check out: a (possibly short) commit SHA.
fn looks_like_sha(r: &str) -> bool {
    (4..=40).contains(&r.len()) && r.chars().all(|c| c.is_ascii_hexdigit())
}

/// Clone `url` into `dest` (which must not exist) at `reference` (default: the remote's HEAD),
/// with submodules unless told not to.
pub(crate) async fn clone(
    url: &str,
    dest: &Path,
    reference: Option<&str>,
    local: bool,
    submodules: bool,
    location: &str,
) -> Result<()> {
    let dest_str = dest.to_string_lossy().into_owned();
    // A shallow clone gives the same tree for a branch or tag, and the remote's HEAD; git ignores
    // --depth for local paths, and a SHA needs the full history.
    let try_shallow = !local && !reference.is_some_and(looks_like_sha);
    let mut checked_out = false;
    if try_shallow {
        let mut args = vec!["clone", "--quiet", "--depth", "1"];
        if let Some(r) = reference {
            args.extend(["--branch", r]);
        }
        args.extend(["--", url, &dest_str]);
        let out = run(None, &args, location).await?;
        if out.status.success() {
            checked_out = true;
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            match classify(&stderr, location, reference, "cloning") {
                e @ (BuildError::SourceUnreachable { .. } | BuildError::GitAuthRequired { .. }) => return Err(e),
                _ => debug!("shallow clone failed, cloning in full: {}", stderr.trim()),
            }
            if dest.exists() {
                std::fs::remove_dir_all(dest).map_err(|e| BuildError::io(format!("removing {}", dest.display()), e))?;
            }
        }
    }
    if !checked_out {
        let mut args = vec!["clone", "--quiet"];
        if reference.is_some() {
            args.push("--no-checkout");
        }
        args.extend(["--", url, &dest_str]);
        let out = run(None, &args, location).await?;
        if !out.status.success() {
            return Err(classify(&String::from_utf8_lossy(&out.stderr), location, reference, "cloning"));
        }
        if let Some(r) = reference {
            let out = run(Some(dest), &["checkout", "--quiet", r, "--"], location).await?;
            if !out.status.success() {
                if !has_commits(dest, location).await? {
                    return Err(BuildError::EmptyGitRepository { path: location.to_string() });
                }
                let stderr = String::from_utf8_lossy(&out.stderr);
                return Err(BuildError::GitUnknownRef {
                    reference: r.to_string(),
                    location: location.to_string(),
                    detail: git_detail(&stderr),
                });
            }
        }
    }
    if !head_exists(dest, location).await? {
        return Err(BuildError::EmptyGitRepository { path: location.to_string() });
    }
    if submodules && dest.join(".gitmodules").exists() {
        info!("Initialising the git submodules of {location}");
        let out = run(Some(dest), &["submodule", "update", "--init", "--recursive", "--quiet"], location).await?;
        if !out.status.success() {
            return Err(BuildError::GitFailed {
                action: "initialising the submodules of",
                location: location.to_string(),
                detail: git_detail(&String::from_utf8_lossy(&out.stderr)),
            });
        }
    }
    Ok(())
}

async fn head_exists(dir: &Path, location: &str) -> Result<bool> {
    Ok(run(Some(dir), &["rev-parse", "--verify", "--quiet", "HEAD^{commit}"], location).await?.status.success())
}

async fn has_commits(dir: &Path, location: &str) -> Result<bool> {
    let out = run(Some(dir), &["rev-list", "-n", "1", "--all"], location).await?;
    Ok(out.status.success() && !out.stdout.trim_ascii().is_empty())
}

/// Is the work tree at `dir` (a local source) empty of commits, the way the reference decides it:
/// nothing at all under `.git/objects` or `.git/refs`, or no commit git can find?
pub(crate) async fn local_repo_is_empty(dir: &Path, location: &str, reference: Option<&str>) -> Result<bool> {
    if reference.is_some() {
        return Ok(!has_commits(dir, location).await?);
    }
    Ok(!head_exists(dir, location).await?)
}

/// How many files of the work tree differ from HEAD or are untracked (ignored files not counted).
pub(crate) async fn uncommitted_files(dir: &Path, location: &str) -> Result<usize> {
    let out = run(Some(dir), &["status", "--porcelain", "--untracked-files=all"], location).await?;
    if !out.status.success() {
        return Ok(0);
    }
    Ok(out.stdout.split(|b| *b == b'\n').filter(|l| !l.is_empty()).count())
}

/// The commit checked out in `dir`, and the clone's origin URL.
pub(crate) async fn describe(dir: &Path, location: &str) -> Result<(CommitInfo, Option<String>)> {
    let log = run(Some(dir), &["log", "-1", "--format=%H%x00%an%x00%ae%x00%ad%x00%s"], location).await?;
    if !log.status.success() {
        return Err(BuildError::GitFailed {
            action: "reading the commit of",
            location: location.to_string(),
            detail: git_detail(&String::from_utf8_lossy(&log.stderr)),
        });
    }
    let text = String::from_utf8_lossy(&log.stdout);
    let fields: Vec<&str> = text.trim_end_matches('\n').splitn(5, '\0').collect();
    let field = |i: usize| fields.get(i).copied().unwrap_or("").to_string();
    let branch = run(Some(dir), &["rev-parse", "--abbrev-ref", "HEAD"], location).await?;
    let origin = run(Some(dir), &["config", "--get", "remote.origin.url"], location).await?;
    let info = CommitInfo {
        id: field(0),
        reference: String::from_utf8_lossy(&branch.stdout).trim().to_string(),
        author: format!("{} <{}>", field(1), field(2)),
        date: field(3),
        message: truncate_subject(&field(4)),
    };
    let origin = Some(String::from_utf8_lossy(&origin.stdout).trim().to_string()).filter(|o| !o.is_empty());
    Ok((info, origin))
}

/// git's `%<(80,trunc)%s`, trimmed: a longer subject keeps 78 characters and gets `..`.
fn truncate_subject(subject: &str) -> String {
    let subject = subject.trim();
    if subject.chars().count() <= MESSAGE_WIDTH {
        return subject.to_string();
    }
    let mut s: String = subject.chars().take(MESSAGE_WIDTH - 2).collect();
    s.push_str("..");
    s
}

/// git's error lines, for a one-line message.
fn git_detail(stderr: &str) -> String {
    let error_lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .filter(|l| l.starts_with("fatal:") || l.starts_with("error:") || l.starts_with("ssh:") || l.contains("denied"))
        .collect();
    // Without an error line, the last line git printed says most.
    let shown = if error_lines.is_empty() {
        stderr.lines().map(str::trim).rfind(|l| !l.is_empty()).into_iter().collect()
    } else {
        error_lines
    };
    let mut detail = crate::redact::text(&shown.join("; "));
    if detail.chars().count() > 400 {
        detail = detail.chars().take(400).collect::<String>() + "…";
    }
    detail
}

/// Turn a failed clone's complaint into the error a user can act on.
pub(crate) fn classify(stderr: &str, location: &str, reference: Option<&str>, action: &'static str) -> BuildError {
    let lower = stderr.to_ascii_lowercase();
    let detail = git_detail(stderr);
    let location = location.to_string();
    let any = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    if any(&[
        "could not read username",
        "could not read password",
        "authentication failed",
        "permission denied (publickey",
        "permission denied, please try again",
        "terminal prompts disabled",
        "http basic: access denied",
        "returned error: 401",
        "returned error: 403",
        "host key verification failed",
    ]) {
        return BuildError::GitAuthRequired { location, detail };
    }
    if let Some(r) = reference {
        if any(&["remote branch", "did not match any", "invalid reference", "unknown revision", "not a tree"])
            && lower.contains(&r.to_ascii_lowercase())
        {
            return BuildError::GitUnknownRef { reference: r.to_string(), location, detail };
        }
    }
    if lower.contains("repository") && lower.contains("not found") {
        return BuildError::SourceUnreachable { location, detail };
    }
    if any(&[
        "could not resolve host",
        "could not resolve hostname",
        "connection refused",
        "failed to connect",
        "connection timed out",
        "timed out",
        "no route to host",
        "network is unreachable",
        "unable to access",
        "could not read from remote repository",
        "does not appear to be a git repository",
        "repository not found",
        "returned error: 404",
        "does not exist",
        "unable to connect",
    ]) {
        return BuildError::SourceUnreachable { location, detail };
    }
    BuildError::GitFailed { action, location, detail }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_are_cut_like_git_does() {
        assert_eq!(truncate_subject("  short  "), "short");
        let exact = "x".repeat(80);
        assert_eq!(truncate_subject(&exact), exact);
        let long = "y".repeat(81);
        assert_eq!(truncate_subject(&long), format!("{}..", "y".repeat(78)));
        assert_eq!(truncate_subject(&"é".repeat(100)).chars().count(), 80);
    }

    #[test]
    fn shas_need_a_full_clone() {
        assert!(looks_like_sha("abc1234"));
        assert!(looks_like_sha(&"a".repeat(40)));
        assert!(!looks_like_sha("main"));
        assert!(!looks_like_sha("v1.0"));
        assert!(!looks_like_sha("abc"));
    }

    #[test]
    fn clone_failures_are_classified() {
        let c = |s: &str| classify(s, "u", Some("feature"), "cloning");
        assert!(matches!(
            c("fatal: could not read Username for 'https://h': terminal prompts disabled"),
            BuildError::GitAuthRequired { .. }
        ));
        assert!(matches!(
            c("git@h: Permission denied (publickey).\nfatal: Could not read from remote repository."),
            BuildError::GitAuthRequired { .. }
        ));
        assert!(matches!(
            c("ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read from remote repository."),
            BuildError::SourceUnreachable { .. }
        ));
        assert!(matches!(
            c("fatal: unable to access 'http://nohost/x/': Could not resolve host: nohost"),
            BuildError::SourceUnreachable { .. }
        ));
        assert!(matches!(
            c("warning: Could not find remote branch feature to clone.\nfatal: Remote branch feature not found in upstream origin"),
            BuildError::GitUnknownRef { .. }
        ));
        assert!(matches!(
            c("fatal: repository 'http://127.0.0.1:1/nothing.git/' not found"),
            BuildError::SourceUnreachable { .. }
        ));
        assert!(matches!(c("fatal: something else"), BuildError::GitFailed { .. }));
        let e = c("ssh: connect to host 127.0.0.1 port 1: Connection refused\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights").to_string();
        assert_eq!(e, "cannot reach u: ssh: connect to host 127.0.0.1 port 1: Connection refused; fatal: Could not read from remote repository.");
    }
}
