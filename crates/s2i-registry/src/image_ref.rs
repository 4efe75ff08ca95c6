//! Image references: validation of output tags, the fully qualified form recorded in labels, and
//! the split into repository and tag for a commit.

/// The registry of references that name none.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed `[domain/]path[:tag][@digest]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub domain: Option<String>,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

// Docker's reference grammar is ASCII and small; checked by hand (a regex for the tag rule alone,
// `[\w][\w.-]{0,127}`, costs megabytes to compile).

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
fn is_component(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        match &s[start..i] {
            "." | "_" | "__" => {}
            sep if sep.bytes().all(|c| c == b'-') => {}
            _ => return false,
        }
    }
    true
}

/// `host(.host)*(:port)?` with hosts `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
fn is_domain(s: &str) -> bool {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p)),
        None => (s, None),
    };
    if port.is_some_and(|p| p.is_empty() || !p.bytes().all(|c| c.is_ascii_digit())) {
        return false;
    }
    host.split('.').all(|part| {
        let b = part.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    })
}

/// `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`
fn is_tag(s: &str) -> bool {
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let b = s.as_bytes();
    !b.is_empty() && b.len() <= 128 && word(b[0]) && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
}

/// `algorithm:hex` with at least 32 hex digits.
fn is_digest(s: &str) -> bool {
    let Some((algo, hex)) = s.split_once(':') else { return false };
    let algo_ok = algo.split(['-', '_', '+', '.']).all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(|c| c.is_ascii_alphanumeric())
    });
    algo_ok && hex.len() >= 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())
}

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("an image reference cannot be empty".into());
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !is_digest(d) {
                    return Err(format!("invalid digest {d:?}"));
                }
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        // A ':' after the last '/' starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(i) => (&rest[..last_slash + i], Some(rest[last_slash + i + 1..].to_string())),
            None => (rest, None),
        };
        if let Some(t) = &tag {
            if !is_tag(t) {
                return Err(format!("invalid tag {t:?}"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                if !is_domain(first) {
                    return Err(format!("invalid registry {first:?}"));
                }
                (Some(first.to_string()), rest)
            }
            _ => (None, name),
        };
        if path.is_empty() {
            return Err("the repository name is empty".into());
        }
        for component in path.split('/') {
            if !is_component(component) {
                let reason = if component.chars().any(|c| c.is_ascii_uppercase()) {
                    "repository names must be lowercase"
                } else {
                    "use lowercase letters, digits and . _ - separators"
                };
                return Err(format!("invalid repository name component {component:?}: {reason}"));
            }
        }
        Ok(ImageRef { domain, path: path.to_string(), tag, digest })
    }

    /// The fully qualified name Docker would use: `busybox` → `docker.io/library/busybox:latest`.
    pub fn normalized(&self) -> String {
        let mut s = format!("{}/{}", self.registry(), self.remote_path());
        match (&self.tag, &self.digest) {
            (None, None) => s.push_str(":latest"),
            (tag, digest) => {
                if let Some(t) = tag {
                    s.push(':');
                    s.push_str(t);
                }
                if let Some(d) = digest {
                    s.push('@');
                    s.push_str(d);
                }
            }
        }
        s
    }

    /// The registry that holds the image: its domain, or `docker.io` when it names none.
    pub fn registry(&self) -> &str {
        self.domain.as_deref().unwrap_or(DOCKER_HUB)
    }

    /// The repository's path inside its registry: `busybox` → `library/busybox` on Docker Hub.
    pub fn remote_path(&self) -> String {
        if self.registry() == DOCKER_HUB && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        }
    }

    /// What to ask the registry for: the digest when there is one, else the tag (`latest` by default).
    pub fn reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The repository part as written (with its registry, if any), for a commit's `repo`.
    pub fn repository(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
    }
}

impl std::fmt::Display for ImageRef {
    /// The reference as it was written: `[domain/]path[:tag][@digest]`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(d) = &self.domain {
            write!(f, "{d}/")?;
        }
        f.write_str(&self.path)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The builder name as the reference records it in `io.openshift.s2i.build.image`: fully qualified
/// when it parses, verbatim otherwise.
pub fn normalize_for_label(name: &str) -> String {
    ImageRef::parse(name).map(|r| r.normalized()).unwrap_or_else(|_| name.to_string())
}

/// The name to ask the engine for: `:latest` added when there is neither tag nor digest.
pub fn with_default_tag(name: &str) -> String {
    match ImageRef::parse(name) {
        Ok(r) if r.tag.is_none() && r.digest.is_none() => format!("{name}:latest"),
        _ => name.to_string(),
    }
}

/// Validate an output tag: a lowercase reference without a digest.
pub fn parse_output_tag(tag: &str) -> Result<ImageRef, String> {
    let r = ImageRef::parse(tag)?;
    if r.digest.is_some() {
        return Err("an output tag cannot carry a digest".into());
    }
    Ok(r)
}

/// `repo[:tag]` → (`repo`, `tag`), the tag being `latest` when there is none: what the Docker
/// API's push and tag calls take. A port in the registry's host (`127.0.0.1:5000/app`) is not a tag.
pub fn split_tag(name: &str) -> (&str, &str) {
    let last_slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[last_slash..].rfind(':') {
        Some(i) => (&name[..last_slash + i], &name[last_slash + i + 1..]),
        None => (name, "latest"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_tag_leaves_a_registry_port_alone() {
        assert_eq!(split_tag("127.0.0.1:5000/team/app:v1"), ("127.0.0.1:5000/team/app", "v1"));
        assert_eq!(split_tag("127.0.0.1:5000/app"), ("127.0.0.1:5000/app", "latest"));
        assert_eq!(split_tag("busybox:1.36"), ("busybox", "1.36"));
    }

    #[test]
    fn normalizes_like_docker() {
        assert_eq!(normalize_for_label("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(normalize_for_label("sti_test/sti-fake"), "docker.io/sti_test/sti-fake:latest");
        assert_eq!(normalize_for_label("quay.io/org/img:1.2"), "quay.io/org/img:1.2");
        assert_eq!(normalize_for_label("localhost:5000/x"), "localhost:5000/x:latest");
        assert_eq!(normalize_for_label("localhost/x:t"), "localhost/x:t");
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert_eq!(normalize_for_label(&format!("img@{d}")), format!("docker.io/library/img@{d}"));
        // Unparsable names are recorded verbatim.
        assert_eq!(normalize_for_label("Bad Name"), "Bad Name");
    }

    #[test]
    fn grammar_pieces() {
        for ok in ["a", "a.b", "a_b", "a__b", "a---b", "a0"] {
            assert!(is_component(ok), "{ok}");
        }
        for bad in ["", "A", "a..b", "a___b", "-a", "a-", "a_.b"] {
            assert!(!is_component(bad), "{bad}");
        }
        assert!(is_domain("localhost:5000") && is_domain("my-reg.example.com") && !is_domain("bad_host") && !is_domain("h:"));
        assert!(is_tag("v1.2-rc_3") && !is_tag(".v1") && !is_tag(&"x".repeat(129)) && is_tag(&"x".repeat(128)));
        assert!(is_digest(&format!("sha256:{}", "a".repeat(64))) && !is_digest("sha256:abc") && !is_digest("1sha:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"));
    }

    #[test]
    fn display_gives_back_what_was_parsed() {
        let d = format!("sha256:{}", "b".repeat(64));
        for text in ["busybox", "app:v1", "127.0.0.1:5000/team/app:v1", "localhost/x", format!("q.io/x:1@{d}").as_str()] {
            assert_eq!(ImageRef::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn registry_and_remote_path() {
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!((r.registry(), r.remote_path().as_str(), r.reference()), ("docker.io", "library/busybox", "latest"));
        let r = ImageRef::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!((r.registry(), r.remote_path().as_str(), r.reference()), ("127.0.0.1:5000", "team/app", "v1"));
        let d = format!("sha256:{}", "a".repeat(64));
        let r = ImageRef::parse(&format!("docker.io/x@{d}")).unwrap();
        assert_eq!((r.registry(), r.remote_path().as_str(), r.reference()), ("docker.io", "library/x", d.as_str()));
    }

    #[test]
    fn default_tag_is_added_only_when_missing() {
        assert_eq!(with_default_tag("busybox"), "busybox:latest");
        assert_eq!(with_default_tag("host:5000/busybox"), "host:5000/busybox:latest");
        assert_eq!(with_default_tag("busybox:1"), "busybox:1");
    }

    #[test]
    fn output_tags_are_validated() {
        let r = parse_output_tag("registry:5000/team/app:v1").unwrap();
        assert_eq!(r.repository(), "registry:5000/team/app");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(parse_output_tag("app").unwrap().tag, None);
        assert!(parse_output_tag("App").unwrap_err().contains("lowercase"));
        assert!(parse_output_tag("app:").is_err());
        assert!(parse_output_tag("app:bad tag").is_err());
        assert!(parse_output_tag("").is_err());
        assert!(parse_output_tag("a//b").is_err());
        let d = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
        assert!(parse_output_tag(&format!("app@{d}")).is_err());
    }
}
