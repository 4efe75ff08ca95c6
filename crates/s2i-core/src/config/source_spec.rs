//! Parsing the SOURCE argument as the reference does: a URL with a scheme, an scp-like
//! `[user@]host:path`, or a local path; each may carry a `#fragment` naming a git ref.

use std::path::{Path, PathBuf};

use crate::error::{BuildError, Result};

/// What the user handed `s2i build` as SOURCE, classified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A local path: a directory (git work tree or not) or an archive file.
    Local(PathBuf),
    /// A remote git repository, as git understands it (`https://…`, `ssh://…`, `git@host:path`,
    /// `ext::…`), without the fragment.
    GitRemote(String),
    /// A `.tar`, `.tar.gz`/`.tgz` or `.zip` file over http(s).
    HttpArchive(String),
}

impl Default for SourceSpec {
    fn default() -> Self {
        SourceSpec::Local(PathBuf::from("."))
    }
}

/// A parsed SOURCE: where, and the ref named by its `#fragment`, if any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedSource {
    pub spec: SourceSpec,
    pub fragment: Option<String>,
}

/// The archive formats accepted as sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArchiveFormat {
    Tar,
    TarGz,
    Zip,
}

impl ArchiveFormat {
    /// The format a file name announces, if any.
    pub fn from_name(name: &str) -> Option<ArchiveFormat> {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
            Some(ArchiveFormat::TarGz)
        } else if lower.ends_with(".tar") {
            Some(ArchiveFormat::Tar)
        } else if lower.ends_with(".zip") {
            Some(ArchiveFormat::Zip)
        } else {
            None
        }
    }

    /// The format the first bytes of a file show (gzip is taken to hold a tar).
    pub fn sniff(head: &[u8]) -> Option<ArchiveFormat> {
        if head.starts_with(&[0x1f, 0x8b]) {
            Some(ArchiveFormat::TarGz)
        } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
            Some(ArchiveFormat::Zip)
        } else if head.len() >= 262 && &head[257..262] == b"ustar" {
            Some(ArchiveFormat::Tar)
        } else {
            None
        }
    }
}

impl ParsedSource {
    /// Classify SOURCE: a URL with a scheme, then an scp-like `[user@]host:path`, then a local
    /// path. A local path that exists as written (even with a `#` in its name) is taken whole.
    pub fn parse(source: &str) -> Result<ParsedSource> {
        let err = |reason: String| BuildError::SourceParse { input: source.to_string(), reason };
        if source.is_empty() {
            return Err(err("it is empty".into()));
        }
        if let Some(scheme_len) = scheme_length(source) {
            let (without_fragment, fragment) = split_fragment(source);
            let scheme = source[..scheme_len].to_ascii_lowercase();
            let rest = &without_fragment[scheme_len + 1..];
            if scheme == "file" {
                let Some(after) = rest.strip_prefix("//") else {
                    // `file:path` (opaque): a path relative to the working directory.
                    return Ok(ParsedSource { spec: SourceSpec::Local(PathBuf::from(rest)), fragment });
                };
                let (host, path) = match after.find('/') {
                    Some(i) => (&after[..i], &after[i..]),
                    None => (after, ""),
                };
                if !host.is_empty() {
                    return Err(err(format!("file url {source:?} has non-empty host {host:?}")));
                }
                if path.is_empty() {
                    return Err(err("the file url has no path".into()));
                }
                return Ok(ParsedSource { spec: SourceSpec::Local(PathBuf::from(path)), fragment });
            }
            if rest.starts_with(':') {
                // `transport::address`: handed to git's remote helper as it is.
                return Ok(ParsedSource { spec: SourceSpec::GitRemote(without_fragment.to_string()), fragment });
            }
            if (scheme == "http" || scheme == "https") && ArchiveFormat::from_name(url_path(rest)).is_some() {
                return Ok(ParsedSource { spec: SourceSpec::HttpArchive(without_fragment.to_string()), fragment });
            }
            let needs_host = matches!(scheme.as_str(), "http" | "https" | "ssh" | "git" | "git+ssh" | "ssh+git" | "ftp" | "ftps");
            if needs_host && (!rest.starts_with("//") || rest.len() <= 2) {
                return Err(err(format!("a {scheme}: URL needs a host: {scheme}://host/path")));
            }
            return Ok(ParsedSource { spec: SourceSpec::GitRemote(without_fragment.to_string()), fragment });
        }
        if Path::new(source).exists() {
            return Ok(ParsedSource { spec: SourceSpec::Local(PathBuf::from(source)), fragment: None });
        }
        let (without_fragment, fragment) = split_fragment(source);
        if is_scp_like(without_fragment) {
            return Ok(ParsedSource { spec: SourceSpec::GitRemote(without_fragment.to_string()), fragment });
        }
        Ok(ParsedSource { spec: SourceSpec::Local(PathBuf::from(without_fragment)), fragment })
    }
}

/// The length of an RFC 3986 scheme followed by `:`, if the string starts with one. A single
/// letter followed by `:` is not taken as a scheme only when a `\` follows (a Windows drive).
fn scheme_length(s: &str) -> Option<usize> {
    let colon = s.find(':')?;
    let scheme = &s[..colon];
    let mut chars = scheme.chars();
    let first = chars.next()?;
    if !first.is_ascii_alphabetic() || !chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
        return None;
    }
    let rest = &s[colon + 1..];
    // `host:path` (scp-like) also starts with letters and a colon; a scheme is followed by `/`
    // or `:` (opaque `transport::address`), or it is `file:`.
    if rest.starts_with('/') || rest.starts_with(':') || scheme.eq_ignore_ascii_case("file") {
        return Some(colon);
    }
    None
}

/// `[user@]host:path` where host has no `/` (so `./a:b` and `dir/x:y` stay local paths).
fn is_scp_like(s: &str) -> bool {
    let Some((host, path)) = s.split_once(':') else { return false };
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty() && !host.contains('/') && !path.is_empty()
}

fn split_fragment(s: &str) -> (&str, Option<String>) {
    match s.split_once('#') {
        Some((base, frag)) if !frag.is_empty() => (base, Some(frag.to_string())),
        Some((base, _)) => (base, None),
        None => (s, None),
    }
}

/// The path part of `//host/path?query`.
fn url_path(rest: &str) -> &str {
    let after_host = rest.strip_prefix("//").map_or(rest, |r| r.find('/').map_or("", |i| &r[i..]));
    after_host.split(['?', '#']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> ParsedSource {
        ParsedSource::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn remote(s: &str, frag: Option<&str>) -> ParsedSource {
        ParsedSource { spec: SourceSpec::GitRemote(s.into()), fragment: frag.map(Into::into) }
    }

    fn local(s: &str, frag: Option<&str>) -> ParsedSource {
        ParsedSource { spec: SourceSpec::Local(s.into()), fragment: frag.map(Into::into) }
    }

    #[test]
    fn scheme_urls_are_git_remotes_with_their_fragment() {
        assert_eq!(parse("https://github.com/org/repo.git"), remote("https://github.com/org/repo.git", None));
        assert_eq!(parse("https://github.com/org/repo.git#v1.2"), remote("https://github.com/org/repo.git", Some("v1.2")));
        assert_eq!(parse("ssh://git@host:2222/x.git#main"), remote("ssh://git@host:2222/x.git", Some("main")));
        assert_eq!(parse("git://host/x"), remote("git://host/x", None));
        assert_eq!(parse("HTTP://host/x"), remote("HTTP://host/x", None));
        assert_eq!(parse("http::http://host/x#dev"), remote("http::http://host/x", Some("dev")));
        assert!(ParsedSource::parse("https://").is_err());
    }

    #[test]
    fn file_urls_are_local_and_need_an_empty_host() {
        assert_eq!(parse("file:///abs/path"), local("/abs/path", None));
        assert_eq!(parse("file:///abs/path#feature"), local("/abs/path", Some("feature")));
        let e = ParsedSource::parse("file://rel/path").unwrap_err().to_string();
        assert!(e.contains(r#"has non-empty host "rel""#), "{e}");
    }

    #[test]
    fn scp_like_forms_are_git_remotes() {
        assert_eq!(parse("git@github.com:org/repo.git#branch"), remote("git@github.com:org/repo.git", Some("branch")));
        assert_eq!(parse("github.com:org/repo.git"), remote("github.com:org/repo.git", None));
        assert_eq!(parse("user@host:repo"), remote("user@host:repo", None));
        assert_eq!(parse("host:/srv/repo.git"), remote("host:/srv/repo.git", None));
    }

    #[test]
    fn local_paths_with_and_without_fragments() {
        assert_eq!(parse("."), local(".", None));
        assert_eq!(parse("cakephp-ex"), local("cakephp-ex", None));
        assert_eq!(parse("/abs/dir"), local("/abs/dir", None));
        assert_eq!(parse("/abs/dir#ref"), local("/abs/dir", Some("ref")));
        assert_eq!(parse("./dir/with:colon"), local("./dir/with:colon", None));
        assert_eq!(parse("dir/x:y"), local("dir/x:y", None));
        assert_eq!(parse("app#"), local("app", None));
    }

    #[test]
    fn an_existing_path_with_a_hash_is_taken_whole() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a#b");
        std::fs::create_dir(&p).unwrap();
        let s = p.to_str().unwrap();
        assert_eq!(parse(s), local(s, None));
    }

    #[test]
    fn http_archives_are_recognised_by_their_name() {
        for url in ["http://h/app.tar", "https://h/a/app.tar.gz", "http://h:8080/x.tgz?token=1", "https://h/x.ZIP"] {
            assert_eq!(parse(url).spec, SourceSpec::HttpArchive(url.to_string()), "{url}");
        }
        assert_eq!(parse("https://h/repo.git").spec, SourceSpec::GitRemote("https://h/repo.git".into()));
        assert_eq!(parse("ssh://h/app.tar").spec, SourceSpec::GitRemote("ssh://h/app.tar".into()));
    }

    #[test]
    fn archive_formats_by_name_and_content() {
        assert_eq!(ArchiveFormat::from_name("a.TGZ"), Some(ArchiveFormat::TarGz));
        assert_eq!(ArchiveFormat::from_name("a.tar"), Some(ArchiveFormat::Tar));
        assert_eq!(ArchiveFormat::from_name("a.tar.bz2"), None);
        assert_eq!(ArchiveFormat::sniff(&[0x1f, 0x8b, 8]), Some(ArchiveFormat::TarGz));
        assert_eq!(ArchiveFormat::sniff(b"PK\x03\x04rest"), Some(ArchiveFormat::Zip));
        assert_eq!(ArchiveFormat::sniff(b"hello"), None);
    }
}
