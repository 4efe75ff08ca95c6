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
