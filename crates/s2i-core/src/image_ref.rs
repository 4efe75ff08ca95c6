//! Image references: validation of output tags, the fully qualified form recorded in labels, and
//! the split into repository and tag for a commit.

use std::sync::LazyLock;

use regex::Regex;

/// A parsed `[domain/]path[:tag][@digest]` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub domain: Option<String>,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

static COMPONENT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$").unwrap());
static DOMAIN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$").unwrap()
});
static TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[\w][\w.-]{0,127}$").unwrap());
static DIGEST: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}$").unwrap());

impl ImageRef {
    pub fn parse(text: &str) -> Result<ImageRef, String> {
        if text.is_empty() {
            return Err("an image reference cannot be empty".into());
        }
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                if !DIGEST.is_match(d) {
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
            if !TAG.is_match(t) {
                return Err(format!("invalid tag {t:?}"));
            }
        }
        let (domain, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains(['.', ':']) || first == "localhost" || first.chars().any(|c| c.is_ascii_uppercase()) =>
            {
                if !DOMAIN.is_match(first) {
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
            if !COMPONENT.is_match(component) {
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
        let domain = self.domain.as_deref().unwrap_or("docker.io");
        let path = if self.domain.is_none() && !self.path.contains('/') {
            format!("library/{}", self.path)
        } else {
            self.path.clone()
        };
        let mut s = format!("{domain}/{path}");
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

    /// The repository part as written (with its registry, if any), for a commit's `repo`.
    pub fn repository(&self) -> String {
        match &self.domain {
            Some(d) => format!("{d}/{}", self.path),
            None => self.path.clone(),
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
