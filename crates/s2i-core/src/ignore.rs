//! `.s2iignore`: root-anchored globs (`*` does not cross `/`), `!` exceptions that undo earlier
//! rules, no recursion, no `**`. Evaluated per path during the walk: for one path, the last rule
//! that matches it decides, which is what the reference's "expand, add, then remove" amounts to.
//! A matched directory is left out with everything below it.

use std::path::Path;

use globset::{GlobBuilder, GlobMatcher};

use crate::mapping::clean_path;
use tracing::warn;

pub const IGNORE_FILE: &str = ".s2iignore";

#[derive(Debug, Clone)]
struct Rule {
    matcher: GlobMatcher,
    exception: bool,
}

#[derive(Debug, Default, Clone)]
pub struct IgnoreRules {
    rules: Vec<Rule>,
}

impl IgnoreRules {
    /// Read `<root>/.s2iignore`; a missing file ignores nothing; anything but a small regular
    /// file is an error.
    pub fn load(root: &Path, limits: &crate::limits::Limits) -> crate::error::Result<IgnoreRules> {
        let path = root.join(IGNORE_FILE);
        Ok(match crate::fsutil::read_text(&path, limits)? {
            Some(text) => IgnoreRules::parse(&text, &path),
            None => IgnoreRules::default(),
        })
    }

    pub fn parse(text: &str, file: &Path) -> IgnoreRules {
        let mut rules = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim_matches(' ');
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (exception, pattern) = match line.strip_prefix('!') {
                Some(p) => (true, p),
                None => (false, line),
            };
            let Some(pattern) = clean_pattern(pattern) else {
                warn!("{}:{}: skipping {line:?}: it points outside the application root", file.display(), i + 1);
                continue;
            };
            let glob = GlobBuilder::new(&pattern).literal_separator(true).backslash_escape(true).build();
            match glob {
                Ok(g) => rules.push(Rule { matcher: g.compile_matcher(), exception }),
                Err(e) => warn!("{}:{}: skipping {line:?}: {e}", file.display(), i + 1),
            }
        }
        IgnoreRules { rules }
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Is `rel` (a `/`-separated path relative to the application root) ignored?
    pub fn is_ignored(&self, rel: &str) -> bool {
        let mut ignored = false;
        for rule in &self.rules {
            if rule.matcher.is_match(rel) {
                ignored = !rule.exception;
            }
        }
        ignored
    }
}

/// Clean a pattern like a path ([`clean_path`]), a leading `/` dropped (patterns are anchored at
/// the root anyway). `None` when it names the root or climbs out of it (it could never match
/// anything inside).
fn clean_pattern(pattern: &str) -> Option<String> {
    let cleaned = clean_path(pattern.trim_start_matches('/'));
    (cleaned != "." && cleaned != ".." && !cleaned.starts_with("../")).then_some(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> IgnoreRules {
        IgnoreRules::parse(text, Path::new(".s2iignore"))
    }

    #[test]
    fn star_does_not_cross_slashes_and_rules_are_anchored() {
        let r = rules("*.md\n");
        assert!(r.is_ignored("README.md"));
        assert!(!r.is_ignored("docs/guide.md"));
        let r = rules("*/*.md\n");
        assert!(r.is_ignored("docs/guide.md"));
        assert!(!r.is_ignored("README.md"));
        let r = rules("tmp\n");
        assert!(r.is_ignored("tmp"));
        assert!(!r.is_ignored("src/tmp"));
    }

    #[test]
    fn exceptions_undo_only_earlier_rules() {
        let r = rules("*.md\n!README.md\n");
        assert!(!r.is_ignored("README.md"));
        assert!(r.is_ignored("CHANGES.md"));
        let r = rules("!README.md\n*.md\n");
        assert!(r.is_ignored("README.md"));
    }

    #[test]
    fn comments_blank_lines_and_spaces() {
        let r = rules("# comment\n\n   dummy   \n#skip_file\n");
        assert!(r.is_ignored("dummy"));
        assert!(!r.is_ignored("#skip_file"));
        assert!(!r.is_ignored("skip_file"));
    }

    #[test]
    fn paths_are_cleaned_and_cannot_leave_the_root() {
        let r = rules("./foo/bar/\n/abs\n../outside\nfoo/../../x\n");
        assert!(r.is_ignored("foo/bar"));
        assert!(r.is_ignored("abs"));
        assert!(!r.is_ignored("outside"));
        assert!(!r.is_ignored("x"));
        assert_eq!(r.rules.len(), 2);
    }

    #[test]
    fn character_classes_and_question_marks() {
        let r = rules("file[0-9].txt\nlog?\n");
        assert!(r.is_ignored("file1.txt"));
        assert!(!r.is_ignored("filea.txt"));
        assert!(r.is_ignored("log1"));
        assert!(!r.is_ignored("log12"));
    }
}
