//! The plain values of a build's settings that come with their own small grammar: `-e
//! NAME=VALUE` and `--allowed-uids` ranges. Parsed once, where the flags are read.

use std::fmt;

use tracing::warn;

use crate::error::{BuildError, Result};

/// One variable of the build's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvVar {
    pub name: String,
    pub value: String,
}

impl EnvVar {
    pub fn to_kv(&self) -> String {
        format!("{}={}", self.name, self.value)
    }
}

/// Parse one `-e` value: split at the first `=`, trim both sides; the name must not be empty.
pub fn parse_env_flag(text: &str) -> Result<EnvVar> {
    let invalid = || BuildError::InvalidValue {
        what: "environment variable",
        value: text.to_string(),
        reason: "must be NAME=VALUE".into(),
    };
    let (name, value) = text.split_once('=').ok_or_else(invalid)?;
    let (name, value) = (name.trim(), value.trim());
    if name.is_empty() {
        return Err(invalid());
    }
    if value.contains(',') && value.contains('=') {
        warn!("DEPRECATED: Use multiple -e flags to specify multiple environment variables instead of comma ({text:?} is kept whole)");
    }
    Ok(EnvVar { name: name.to_string(), value: value.to_string() })
}

/// An inclusive uid range; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub low: Option<u32>,
    pub high: Option<u32>,
}

impl UidRange {
    pub fn contains(&self, uid: u32) -> bool {
        self.low.is_none_or(|l| uid >= l) && self.high.is_none_or(|h| uid <= h)
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.low, self.high) {
            (Some(l), Some(h)) if l == h => write!(f, "{l}"),
            (Some(l), Some(h)) => write!(f, "{l}-{h}"),
            (Some(l), None) => write!(f, "{l}-"),
            (None, Some(h)) => write!(f, "-{h}"),
            (None, None) => write!(f, "-"),
        }
    }
}

/// Parse `N`, `N-`, `-N`, `N-M` items separated by commas.
pub fn parse_ranges(text: &str) -> Result<Vec<UidRange>> {
    let invalid = |reason: &str| BuildError::InvalidValue {
        what: "--allowed-uids",
        value: text.to_string(),
        reason: reason.to_string(),
    };
    let num = |s: &str| s.trim().parse::<u32>().map_err(|_| invalid("a range must be N, N-, -N or N-M with non-negative whole numbers"));
    let mut ranges = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let range = match item.split_once('-') {
            None => {
                let n = num(item)?;
                UidRange { low: Some(n), high: Some(n) }
            }
            Some(("", "")) => return Err(invalid("a range needs at least one end")),
            Some((l, "")) => UidRange { low: Some(num(l)?), high: None },
            Some(("", h)) => UidRange { low: None, high: Some(num(h)?) },
            Some((l, h)) => {
                let (l, h) = (num(l)?, num(h)?);
                if h < l {
                    return Err(invalid("the end of a range must not be below its start"));
                }
                UidRange { low: Some(l), high: Some(h) }
            }
        };
        ranges.push(range);
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn var(n: &str, v: &str) -> EnvVar {
        EnvVar { name: n.into(), value: v.into() }
    }

    #[test]
    fn env_flag_splits_at_first_equals_and_trims() {
        assert_eq!(parse_env_flag(" A = b=c ").unwrap(), var("A", "b=c"));
        assert_eq!(parse_env_flag("EMPTY=").unwrap(), var("EMPTY", ""));
        assert!(parse_env_flag("NOEQUALS").is_err());
        assert!(parse_env_flag("=value").is_err());
        assert!(parse_env_flag("  =value").is_err());
    }

    #[test]
    fn ranges_parse() {
        let r = parse_ranges("1001, 2000-3000,5000-,-10").unwrap();
        assert_eq!(r.len(), 4);
        assert!(r[0].contains(1001) && !r[0].contains(1002));
        assert!(r[1].contains(2500) && !r[1].contains(3001));
        assert!(r[2].contains(u32::MAX));
        assert!(r[3].contains(0) && !r[3].contains(11));
        assert_eq!(r.iter().map(|r| r.to_string()).collect::<Vec<_>>(), vec!["1001", "2000-3000", "5000-", "-10"]);
        assert!(parse_ranges("-").is_err());
        assert!(parse_ranges("a-b").is_err());
        assert!(parse_ranges("10-5").is_err());
        assert!(parse_ranges("-5-").is_err());
        assert!(parse_ranges("").unwrap().is_empty());
    }
}
