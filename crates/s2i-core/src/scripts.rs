//! Finding the builder scripts: `--scripts-url`, then the source's `.s2i/bin` (or the deprecated
//! `.sti/bin`), then the builder image's scripts-url label; the first place that has a script wins.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use s2i_engine::ImageInfo;
use tracing::{debug, info, warn};

use crate::error::{BuildError, Result};
use crate::http::{FetchError, Fetcher};
use crate::labels;
use crate::limits::{Limit, Limits};
use crate::redact;

pub const ASSEMBLE: &str = "assemble";
pub const RUN: &str = "run";
pub const SAVE_ARTIFACTS: &str = "save-artifacts";
pub const USAGE: &str = "usage";

/// A parsed scripts location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScriptsUrl {
    /// `image:///dir`: the scripts are already in the image; nothing is fetched.
    Image(String),
    /// `file://path`: a host directory (`file://rel` is relative to the working directory).
    File(PathBuf),
    /// `http(s)://…`: fetched with GET from `<url>/<name>`.
    Http(String),
}

impl ScriptsUrl {
    pub fn parse(url: &str) -> Result<ScriptsUrl> {
        if let Some(dir) = url.strip_prefix("image://") {
            // Trailing slashes are dropped so that commands read `/dir/run`, not `/dir//run`.
            let dir = dir.trim_end_matches('/');
            return Ok(ScriptsUrl::Image(if dir.is_empty() { "/".into() } else { dir.into() }));
        }
        if let Some(path) = url.strip_prefix("file://") {
            return Ok(ScriptsUrl::File(PathBuf::from(path)));
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Ok(ScriptsUrl::Http(url.trim_end_matches('/').to_string()));
        }
        Err(BuildError::ScriptsUrlScheme { url: url.to_string() })
    }
}

/// Where one script will come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Script {
    /// Inside the image, run as `<dir>/<name>`.
    InImage { dir: String },
    /// Shipped in the input stream as `scripts/<name>`; `origin` says where it came from.
    External { data: Vec<u8>, origin: String },
}

/// The outcome of resolving a set of scripts.
#[derive(Debug, Default)]
pub struct Scripts {
    pub found: BTreeMap<String, Script>,
    /// Source files moved into `scripts/` (left out of `src/`), relative to the application root.
    pub moved_from_source: Vec<PathBuf>,
    /// The scripts fetched over HTTP(S) and used, with the digest of the bytes fetched (what the
    /// build ran), for the provenance.
    pub fetched: Vec<Fetched>,
}

pub use crate::result::FetchedScript as Fetched;

impl Fetched {
    fn of(url: &ScriptsUrl, script: &Script) -> Option<Fetched> {
        use sha2::Digest;
        match (url, script) {
            (ScriptsUrl::Http(_), Script::External { data, origin }) => {
                let hash = sha2::Sha256::digest(data);
                Some(Fetched { uri: origin.clone(), sha256: hash.iter().map(|b| format!("{b:02x}")).collect() })
            }
            _ => None,
        }
    }
}

impl Scripts {
    pub fn get(&self, name: &str) -> Option<&Script> {
        self.found.get(name)
    }

    /// The command path of a script: `<dest>/scripts/<name>` when shipped, `<dir>/<name>` when in the image.
    pub fn command_path(&self, name: &str, destination: &str) -> Option<String> {
        Some(match self.found.get(name)? {
            Script::External { .. } => format!("{}/scripts/{name}", destination.trim_end_matches('/')),
            Script::InImage { dir } => format!("{}/{name}", dir.trim_end_matches('/')),
        })
    }

    /// The scripts that travel in the input stream.
    pub fn external(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.found.iter().filter_map(|(n, s)| match s {
            Script::External { data, .. } => Some((n.as_str(), data.as_slice())),
            Script::InImage { .. } => None,
        })
    }
}

/// The scripts location an image declares: its label, or the deprecated label or environment variable.
pub fn image_scripts_url(image: &ImageInfo, name: &str) -> Option<String> {
    if let Some(url) = image.label(labels::SCRIPTS_URL) {
        return Some(url.to_string());
    }
    if let Some(url) = image.label(labels::SCRIPTS_URL_DEPRECATED) {
        warn!("Image {name} uses deprecated label '{}', please migrate it to {} instead!", labels::SCRIPTS_URL_DEPRECATED, labels::SCRIPTS_URL);
        return Some(url.to_string());
    }
    if let Some(url) = image.env_var(labels::ENV_SCRIPTS_URL).filter(|v| !v.is_empty()) {
        warn!("Image {name} uses deprecated environment variable {}, please migrate it to the {} label instead!", labels::ENV_SCRIPTS_URL, labels::SCRIPTS_URL);
        return Some(url.to_string());
    }
    None
}

/// The places scripts may come from, in the order they are tried.
pub struct Resolver<'a> {
    pub scripts_url: Option<&'a str>,
    pub source_root: Option<&'a Path>,
    pub image_url: Option<String>,
    pub image_name: &'a str,
    pub limits: &'a Limits,
}

enum Outcome {
    Found(Script),
    Missing(String),
}

impl Resolver<'_> {
    /// Resolve `required` (all must be found) and `optional` scripts.
    pub async fn resolve(&self, required: &[&str], optional: &[&str]) -> Result<Scripts> {
        let user_url = self.scripts_url.map(ScriptsUrl::parse).transpose()?;
        let image_url = match self.image_url.as_deref() {
            Some(u) => match ScriptsUrl::parse(u) {
                Ok(p) => Some(p),
                Err(_) => {
                    warn!("Image {} declares an unsupported scripts location {u:?}; ignoring it", self.image_name);
                    None
                }
            },
            None => {
                if user_url.is_none() && !required.is_empty() {
                    warn!("Image {} does not contain a value for the {} label", self.image_name, labels::SCRIPTS_URL);
                }
                None
            }
        };
        let http = Fetcher::new(self.limits)?;
        let shown_url = self.scripts_url.map(redact::url);

        let mut scripts = Scripts::default();
        let mut user_url_failures = Vec::new();
        let mut missing = Vec::new();
        for (name, is_required) in required.iter().map(|n| (n, true)).chain(optional.iter().map(|n| (n, false))) {
            let mut reasons = Vec::new();
            let mut found = None;
            if let (Some(url), Some(raw)) = (&user_url, shown_url.as_deref()) {
                match fetch(&http, url, name, self.limits).await? {
                    Outcome::Found(s) => {
                        scripts.fetched.extend(Fetched::of(url, &s));
                        found = Some(s)
                    }
                    Outcome::Missing(why) => {
                        user_url_failures.push(format!("{name}: {why}"));
                        reasons.push(format!("{raw}: {why}"));
                    }
                }
            }
            if found.is_none() {
                if let Some(root) = self.source_root {
                    if let Some((s, rel)) = from_source(root, name, self.limits)? {
                        scripts.moved_from_source.push(rel);
                        found = Some(s);
                    } else {
                        reasons.push("the source's .s2i/bin".into());
                    }
                }
            }
            if found.is_none() {
                if let Some(url) = &image_url {
                    match fetch(&http, url, name, self.limits).await? {
                        Outcome::Found(s) => {
                            scripts.fetched.extend(Fetched::of(url, &s));
                            found = Some(s)
                        }
                        Outcome::Missing(why) => reasons.push(format!("the image's {}: {why}", labels::SCRIPTS_URL)),
                    }
                }
            }
            match found {
                Some(s) => {
                    debug!("{name}: {}", describe(&s));
                    scripts.found.insert(name.to_string(), s);
                }
                None if is_required => missing.push((name.to_string(), reasons)),
                // The caller says what a missing optional script means (incremental builds do).
                None => debug!("optional script {name} not found ({})", reasons.join("; ")),
            }
        }
        let considered = required.len() + optional.len();
        if let Some(raw) = &shown_url {
            if considered > 0 && user_url_failures.len() == considered {
                return Err(BuildError::ScriptsUrlUnusable { url: raw.clone(), details: user_url_failures.join("; ") });
            }
        }
        if !missing.is_empty() {
            let mut looked_in: Vec<String> = Vec::new();
            if let Some(u) = &shown_url {
                looked_in.push(format!("--scripts-url {u}"));
            }
            if self.source_root.is_some() {
                looked_in.push("the source's .s2i/bin".into());
            }
            match &self.image_url {
                Some(u) => looked_in.push(format!("{} ({})", self.image_name, redact::url(u))),
                None => looked_in.push(format!("{} (no {} label)", self.image_name, labels::SCRIPTS_URL)),
            }
            return Err(BuildError::ScriptsMissing { missing: missing.into_iter().map(|(n, _)| n).collect(), looked_in });
        }
        Ok(scripts)
    }
}

fn describe(s: &Script) -> String {
    match s {
        Script::InImage { dir } => format!("in the image at {dir}"),
        Script::External { origin, data } => format!("from {origin} ({} bytes)", data.len()),
    }
}

/// `.s2i/bin/<name>`, or the deprecated `.sti/bin/<name>`, below the application root.
fn from_source(root: &Path, name: &str, limits: &Limits) -> Result<Option<(Script, PathBuf)>> {
    for dir in [".s2i/bin", ".sti/bin"] {
        let rel = Path::new(dir).join(name);
        let path = root.join(&rel);
        if path.is_file() {
            if dir == ".sti/bin" {
                warn!("DEPRECATED: Use .s2i/bin instead of .sti/bin");
            }
            let data = read_script(&path, limits)?.unwrap_or_default();
            info!("Using {name} from the source's {dir}");
            return Ok(Some((Script::External { data, origin: path.display().to_string() }, rel)));
        }
    }
    Ok(None)
}

fn read_script(path: &Path, limits: &Limits) -> Result<Option<Vec<u8>>> {
    crate::fsutil::read_regular(path, Limit::ScriptSize, limits.script_size, limits)
}

async fn fetch(http: &Fetcher, url: &ScriptsUrl, name: &str, limits: &Limits) -> Result<Outcome> {
    match url {
        ScriptsUrl::Image(dir) => Ok(Outcome::Found(Script::InImage { dir: dir.clone() })),
        ScriptsUrl::File(dir) => {
            let path = dir.join(name);
            match read_script(&path, limits) {
                Ok(Some(data)) => Ok(Outcome::Found(Script::External { data, origin: format!("file://{}", path.display()) })),
                Ok(None) => Ok(Outcome::Missing(format!("{} does not exist", path.display()))),
                Err(BuildError::NotARegularFile { .. }) => Ok(Outcome::Missing(format!("{} is not a regular file", path.display()))),
                Err(e) => Err(e),
            }
        }
        ScriptsUrl::Http(base) => {
            let url = format!("{base}/{name}");
            let shown = redact::url(&url);
            match http.small(&url, Limit::ScriptSize, limits.script_size).await {
                Ok(data) => Ok(Outcome::Found(Script::External { data, origin: shown })),
                Err(FetchError::Status(code)) => Ok(Outcome::Missing(format!("failed to retrieve {shown}, response code {code}"))),
                Err(FetchError::Transport(why)) => Ok(Outcome::Missing(format!("GET {shown}: {why}"))),
                Err(FetchError::Limit(e)) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_urls_parse() {
        assert_eq!(ScriptsUrl::parse("image:///usr/libexec/s2i").unwrap(), ScriptsUrl::Image("/usr/libexec/s2i".into()));
        assert_eq!(ScriptsUrl::parse("image:///tmp/scripts/").unwrap(), ScriptsUrl::Image("/tmp/scripts".into()));
        assert_eq!(ScriptsUrl::parse("file:///abs/dir").unwrap(), ScriptsUrl::File("/abs/dir".into()));
        assert_eq!(ScriptsUrl::parse("file://rel/dir").unwrap(), ScriptsUrl::File("rel/dir".into()));
        assert_eq!(ScriptsUrl::parse("http://h:1/s/").unwrap(), ScriptsUrl::Http("http://h:1/s".into()));
        assert!(ScriptsUrl::parse("ftp://h/s").is_err());
        assert!(ScriptsUrl::parse("/plain/path").is_err());
    }

    #[test]
    fn command_paths_depend_on_where_scripts_live() {
        let mut s = Scripts::default();
        s.found.insert("assemble".into(), Script::External { data: vec![], origin: "x".into() });
        s.found.insert("run".into(), Script::InImage { dir: "/usr/libexec/s2i".into() });
        assert_eq!(s.command_path("assemble", "/tmp/").unwrap(), "/tmp/scripts/assemble");
        assert_eq!(s.command_path("run", "/tmp").unwrap(), "/usr/libexec/s2i/run");
        assert_eq!(s.command_path("usage", "/tmp"), None);
    }

    #[tokio::test]
    async fn source_scripts_win_over_the_image_and_missing_ones_are_named() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join(".s2i/bin")).unwrap();
        std::fs::write(d.path().join(".s2i/bin/assemble"), "#!/bin/sh\n").unwrap();
        let r = Resolver {
            scripts_url: None,
            source_root: Some(d.path()),
            image_url: Some("image:///usr/libexec/s2i".into()),
            image_name: "builder",
            limits: &Limits::default(),
        };
        let s = r.resolve(&["assemble", "run"], &[]).await.unwrap();
        assert!(matches!(s.get("assemble"), Some(Script::External { .. })));
        assert_eq!(s.get("run"), Some(&Script::InImage { dir: "/usr/libexec/s2i".into() }));
        assert_eq!(s.moved_from_source, vec![PathBuf::from(".s2i/bin/assemble")]);

        let none = Resolver { scripts_url: None, source_root: Some(d.path()), image_url: None, image_name: "builder", limits: &Limits::default() };
        let err = none.resolve(&["assemble", "run"], &[]).await.unwrap_err();
        assert_eq!(err.exit_code(), 11);
        let msg = err.to_string();
        assert!(msg.contains("[run]") && msg.contains("no io.openshift.s2i.scripts-url label"), "{msg}");
    }

    #[tokio::test]
    async fn a_scripts_url_that_has_nothing_is_an_error() {
        let d = tempfile::tempdir().unwrap();
        let url = format!("file://{}", d.path().display());
        let r = Resolver {
            scripts_url: Some(&url),
            source_root: None,
            image_url: Some("image:///usr/libexec/s2i".into()),
            image_name: "b",
            limits: &Limits::default(),
        };
        let err = r.resolve(&["assemble", "run"], &[]).await.unwrap_err();
        assert!(matches!(err, BuildError::ScriptsUrlUnusable { .. }), "{err}");
    }
}
