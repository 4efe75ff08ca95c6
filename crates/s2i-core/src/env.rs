//! The build environment: `.s2i/environment`, `-e NAME=VALUE` and `-E FILE`, merged with the
//! reference's precedence (`-E` over `-e` over `.s2i/environment`) and de-duplicated, last wins.

use std::path::Path;

use tracing::{debug, warn};

use crate::config::EnvVar;

/// Parse the application's `.s2i/environment`. Like the reference, lines starting with `#` are
/// comments and quotes are kept; unlike it, a line that is dropped gets a warning naming the file and line.
pub fn parse_s2i_environment(text: &str, file: &Path) -> Vec<EnvVar> {
    parse_lines(text, file, |line| line.starts_with('#') || line.trim().is_empty())
}

/// The directive by which `.s2i/environment` says the build needs a secret: `# s2i:secret ID`. A
/// comment to anything else (the reference s2i skips it), so a repository can carry it safely.
pub const SECRET_DIRECTIVE: &str = "s2i:secret";

/// A secret an application's `.s2i/environment` says its build needs, and the line that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretReference {
    pub id: String,
    pub line: usize,
}

/// The `# s2i:secret ID` lines of an application's `.s2i/environment`. A directive line that
/// does not name one valid id gets a warning naming the file and line, and is skipped.
pub fn secret_references(text: &str, file: &Path) -> Vec<SecretReference> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let Some(rest) = line.strip_prefix('#').map(str::trim_start).and_then(|r| r.strip_prefix(SECRET_DIRECTIVE)) else { continue };
        if !(rest.is_empty() || rest.starts_with(char::is_whitespace)) {
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        match words[..] {
            [id] if crate::config::check_secret_id(id).is_ok() => found.push(SecretReference { id: id.to_string(), line: i + 1 }),
            _ => warn!("{}:{}: skipping {:?}: write `# {SECRET_DIRECTIVE} ID` with one id of letters, digits, '.', '_' or '-'", file.display(), i + 1, line.trim()),
        }
    }
    found
}

/// Parse an `-E/--environment-file`: lines are trimmed; `#` and `//` start comments.
pub fn parse_environment_file(text: &str, file: &Path) -> Vec<EnvVar> {
    parse_lines(text, file, |line| {
        let t = line.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with("//")
    })
}

fn parse_lines(text: &str, file: &Path, is_comment: impl Fn(&str) -> bool) -> Vec<EnvVar> {
    let mut vars = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if is_comment(line) {
            continue;
        }
        match line.split_once('=') {
            Some((name, value)) if !name.trim().is_empty() => {
                vars.push(EnvVar { name: name.trim().to_string(), value: value.trim().to_string() })
            }
            _ => warn!("{}:{}: skipping {:?}: not NAME=VALUE", file.display(), i + 1, line.trim()),
        }
    }
    vars
}

/// Read an `-E` file; an unreadable one is a warning (as in the reference: the build goes on),
/// and so is one that is not a small regular file.
pub fn read_environment_file(path: &Path, limits: &crate::limits::Limits) -> Vec<EnvVar> {
    match crate::fsutil::read_text(path, limits) {
        Ok(Some(text)) => parse_environment_file(&text, path),
        Ok(None) => {
            warn!("Unable to read environment file {:?}: it does not exist", path.display());
            Vec::new()
        }
        Err(e) => {
            warn!("Unable to read environment file {:?}: {e}", path.display());
            Vec::new()
        }
    }
}

/// Merge in precedence order (later lists win); a name keeps the position of its first appearance.
pub fn merge(lists: &[&[EnvVar]]) -> Vec<EnvVar> {
    let mut merged: Vec<EnvVar> = Vec::new();
    for var in lists.iter().flat_map(|l| l.iter()) {
        match merged.iter_mut().find(|v| v.name == var.name) {
            Some(existing) => existing.value = var.value.clone(),
            None => merged.push(var.clone()),
        }
    }
    debug!("build environment has {} variables", merged.len());
    merged
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(n: &str, v: &str) -> EnvVar {
        EnvVar { name: n.into(), value: v.into() }
    }

    #[test]
    fn s2i_environment_keeps_quotes_and_skips_comments_and_bad_lines() {
        let text = "# comment\nA=\"quoted\"\n\nnot a pair\n=novalue\n  B = spaced \nC=x=y\n";
        let vars = parse_s2i_environment(text, Path::new(".s2i/environment"));
        assert_eq!(vars, vec![var("A", "\"quoted\""), var("B", "spaced"), var("C", "x=y")]);
    }

    #[test]
    fn secret_directives_are_found_and_bad_ones_skipped() {
        let text = "A=1\n# s2i:secret pip-index\n#s2i:secret token\n# s2i:secret\n# s2i:secret a b\n# s2i:secret ../x\n# s2i:secretive x\n # s2i:secret indented\n";
        let refs = secret_references(text, Path::new(".s2i/environment"));
        assert_eq!(refs, vec![SecretReference { id: "pip-index".into(), line: 2 }, SecretReference { id: "token".into(), line: 3 }]);
        // A directive is a comment: no variable comes from it.
        assert_eq!(parse_s2i_environment(text, Path::new("e")), vec![var("A", "1")]);
    }

    #[test]
    fn s2i_environment_comment_must_start_the_line() {
        // The reference does not trim before the comment test: " #X=1" is a variable named "#X".
        let vars = parse_s2i_environment(" #X=1", Path::new("env"));
        assert_eq!(vars, vec![var("#X", "1")]);
    }

    #[test]
    fn environment_file_trims_and_knows_slash_comments() {
        let vars = parse_environment_file("  // c\n  # c\n  K=V  \nbad\n", Path::new("f"));
        assert_eq!(vars, vec![var("K", "V")]);
    }

    #[test]
    fn merge_is_last_wins_in_first_position() {
        let file = [var("A", "file"), var("B", "file")];
        let flags = [var("B", "flag"), var("C", "flag"), var("B", "flag2")];
        let envfile = [var("A", "envfile")];
        let merged = merge(&[&file, &flags, &envfile]);
        assert_eq!(merged, vec![var("A", "envfile"), var("B", "flag2"), var("C", "flag")]);
    }
}
