//! `src[:dest]` specs of `--inject` and `--runtime-artifact`: `;` separates several specs in one
//! value, the last `:` splits source from destination, surrounding quotes are dropped and both
//! sides are cleaned like paths.

use crate::error::{BuildError, Result};

/// One `src[:dest]` mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    pub source: String,
    pub destination: String,
}

/// Characters the reference refuses in either side of a spec.
const INVALID: &[char] = &[';', '*', '?', '"', '<', '>', '|', '%', '#', '$', '!', '+', '{', '}', '&', '[', ']', ',', '\'', '`'];

/// Parse one flag value (or label value) into mappings.
pub fn parse_specs(value: &str, what: &'static str) -> Result<Vec<Mapping>> {
    let mut out = Vec::new();
    for part in value.split(';').filter(|p| !p.trim().is_empty()) {
        let (src, dest) = match part.rfind(':') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, ""),
        };
        let trim = |s: &str| s.trim().trim_matches(|c| c == '"' || c == '\'').to_string();
        let (src, dest) = (trim(src), trim(dest));
        for side in [&src, &dest] {
            if side.contains(INVALID) {
                return Err(BuildError::InvalidValue {
                    what,
                    value: part.to_string(),
                    reason: format!("invalid characters in filename: {side:?}"),
                });
            }
        }
        if src.is_empty() {
            return Err(BuildError::InvalidValue { what, value: part.to_string(), reason: "the source is empty".into() });
        }
        out.push(Mapping { source: clean_path(&src), destination: clean_path(&dest) });
    }
    Ok(out)
}

/// Lexical path cleaning: no doubled slashes, no `.`, `..` folded where it can be; `""` → `.`.
pub fn clean_path(path: &str) -> String {
    let absolute = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => match parts.last() {
                Some(&last) if last != ".." => {
                    parts.pop();
                }
                _ if absolute => {}
                _ => parts.push(".."),
            },
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (absolute, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Check a runtime-artifact mapping: the source absolute, the destination relative and inside.
pub fn check_runtime_artifact(m: &Mapping) -> Result<()> {
    let invalid = |reason: &str| BuildError::InvalidValue {
        what: "runtime artifact",
        value: format!("{} -> {}", m.source, m.destination),
        reason: reason.into(),
    };
    if !m.source.starts_with('/') {
        return Err(invalid("the source must be an absolute path"));
    }
    if m.destination.starts_with('/') {
        return Err(invalid("the destination must be a relative path"));
    }
    if m.destination == ".." || m.destination.starts_with("../") {
        return Err(invalid("the destination cannot start with '..'"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(s: &str, d: &str) -> Mapping {
        Mapping { source: s.into(), destination: d.into() }
    }

    #[test]
    fn specs_split_at_the_last_colon_and_on_semicolons() {
        assert_eq!(parse_specs("/a/b:c", "x").unwrap(), vec![m("/a/b", "c")]);
        assert_eq!(parse_specs("/a/b", "x").unwrap(), vec![m("/a/b", ".")]);
        assert_eq!(parse_specs("T:/tmp;T:", "x").unwrap(), vec![m("T", "/tmp"), m("T", ".")]);
        assert_eq!(parse_specs("'/q/x/':\"dir/\"", "x").unwrap(), vec![m("/q/x", "dir")]);
        assert_eq!(parse_specs("/x//y/./z:a/../b", "x").unwrap(), vec![m("/x/y/z", "b")]);
        assert!(parse_specs("/a/*.jar:lib", "x").unwrap_err().to_string().contains("invalid characters"));
        assert!(parse_specs("/a$HOME:b", "x").is_err());
        assert!(parse_specs(":dest", "x").is_err());
    }

    #[test]
    fn paths_clean_like_go() {
        assert_eq!(clean_path(""), ".");
        assert_eq!(clean_path("/../a"), "/a");
        assert_eq!(clean_path("../a"), "../a");
        assert_eq!(clean_path("a/../.."), "..");
        assert_eq!(clean_path("/"), "/");
    }

    #[test]
    fn runtime_artifacts_are_checked() {
        assert!(check_runtime_artifact(&m("/opt/app", ".")).is_ok());
        assert!(check_runtime_artifact(&m("/opt/app", "lib")).is_ok());
        assert!(check_runtime_artifact(&m("opt/app", ".")).is_err());
        assert!(check_runtime_artifact(&m("/opt/app", "/abs")).is_err());
        assert!(check_runtime_artifact(&m("/opt/app", "../up")).is_err());
    }
}
