//! What `s2i verify` hides before it compares: parts of output that differ from run to run and
//! from machine to machine whatever the builder (times, ids, addresses), each replaced by
//! `<name>`. The defaults can be dropped (`--no-default-ignores`); `--ignore REGEX` adds more.

use regex::Regex;
use serde::Serialize;

use crate::error::{BuildError, Result};

const MONTH: &str = "(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)";
const WEEKDAY: &str = "(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)";

/// The default masks: name, what it hides (for `--help` and the report), pattern. Applied in this
/// order, so that a timestamp is one `<timestamp>`, not a date and a duration.
fn defaults() -> Vec<(&'static str, &'static str, String)> {
    vec![
        (
            "timestamp",
            "ISO 8601 / RFC 3339 times (2024-01-02T03:04:05.6Z)",
            r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?".into(),
        ),
        (
            "date",
            "log, HTTP and clock times ([02/Jan/2024:03:04:05 +0000], Tue, 02 Jan 2024 03:04:05 GMT)",
            format!(
                r"\d{{1,2}}/{MONTH}/\d{{4}}[: ]\d{{2}}:\d{{2}}:\d{{2}}(?: [+-]\d{{4}})?|(?:{WEEKDAY},? )?\d{{1,2}} {MONTH} \d{{4}} \d{{2}}:\d{{2}}:\d{{2}}(?: (?:GMT|UTC|[+-]\d{{4}}))?|(?:{WEEKDAY} )?{MONTH} +\d{{1,2}} \d{{2}}:\d{{2}}(?::\d{{2}})?(?: [A-Z]{{2,5}})?(?: \d{{4}})?|\b\d{{2}}:\d{{2}}:\d{{2}}(?:[.,]\d+)?\b"
            ),
        ),
        ("uuid", "UUIDs", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b".into()),
        ("hex-id", "hex ids of 12 or more characters (container and image ids, digests)", r"\b[0-9a-fA-F]{12,}\b".into()),
        ("ipv4", "IPv4 addresses", r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b".into()),
        ("duration", "durations (15ms, 2 s, 0.25 s)", r"\b\d+(?:\.\d+)?\s?(?:ns|us|µs|ms|s)\b".into()),
    ]
}

/// One mask, as the report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MaskInfo {
    /// What replaces a match: `<name>`.
    pub name: String,
    pub pattern: String,
    /// One of the defaults (`false`: `--ignore`).
    pub default: bool,
}

/// The masks of one verify run.
#[derive(Debug, Clone)]
pub struct Masks {
    masks: Vec<(MaskInfo, Regex)>,
}

impl Masks {
    /// The defaults (unless `defaults` is false), then each `--ignore` pattern, named
    /// `ignore-1`, `ignore-2`… A pattern that does not compile is an error naming it.
    pub fn new(defaults: bool, ignore: &[String]) -> Result<Masks> {
        let mut masks = Vec::new();
        if defaults {
            for (name, _, pattern) in self::defaults() {
                let regex = Regex::new(&pattern).expect("the default masks compile");
                masks.push((MaskInfo { name: name.into(), pattern, default: true }, regex));
            }
        }
        for (i, pattern) in ignore.iter().enumerate() {
            let regex = Regex::new(pattern).map_err(|e| BuildError::InvalidValue { what: "--ignore", value: pattern.clone(), reason: e.to_string() })?;
            if regex.is_match("") {
                return Err(BuildError::InvalidValue { what: "--ignore", value: pattern.clone(), reason: "it matches the empty string, so it would mask between every character".into() });
            }
            masks.push((MaskInfo { name: format!("ignore-{}", i + 1), pattern: pattern.clone(), default: false }, regex));
        }
        Ok(Masks { masks })
    }

    /// The masks in the order they apply.
    pub fn infos(&self) -> Vec<MaskInfo> {
        self.masks.iter().map(|(info, _)| info.clone()).collect()
    }

    /// `text` with `hostnames` (the container's own names, replaced by `<hostname>` first) and
    /// every mask's matches replaced.
    pub fn apply(&self, text: &str, hostnames: &[String]) -> String {
        let mut out = text.to_string();
        for host in hostnames.iter().filter(|h| !h.is_empty()) {
            out = out.replace(host.as_str(), "<hostname>");
        }
        for (info, regex) in &self.masks {
            if regex.is_match(&out) {
                out = regex.replace_all(&out, format!("<{}>", info.name).as_str()).into_owned();
            }
        }
        out
    }
}

/// The default masks in words, one per line (`--help`).
pub fn describe_defaults() -> String {
    let mut lines: Vec<String> = defaults().into_iter().map(|(name, what, _)| format!("  <{name}>: {what}")).collect();
    lines.push("  <hostname>: the container's hostname".into());
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(text: &str) -> String {
        Masks::new(true, &[]).unwrap().apply(text, &[])
    }

    #[test]
    fn times_dates_ids_addresses_and_durations_are_masked() {
        for (text, want) in [
            ("started 2024-01-02T03:04:05.123Z ok", "started <timestamp> ok"),
            ("at 2024-01-02 03:04:05+01:00", "at <timestamp>"),
            ("127.0.0.1 - - [02/Jan/2024 03:04:05] \"GET / HTTP/1.0\" 200 -", "<ipv4> - - [<date>] \"GET / HTTP/1.0\" 200 -"),
            ("[02/Jan/2024:03:04:05 +0000]", "[<date>]"),
            ("Date: Tue, 02 Jan 2024 03:04:05 GMT", "Date: <date>"),
            ("Tue Jan  2 03:04:05 UTC 2024", "<date>"),
            ("-rw-r--r--    1 default  root   171 Dec  6 19:11 .env", "-rw-r--r--    1 default  root   171 <date> .env"),
            ("INFO 03:04:05,123 ready", "INFO <date> ready"),
            ("id 3f1c2b4a5d6e7f80 done", "id <hex-id> done"),
            ("sha256:3f1c2b4a5d6e7f8090a1b2c3d4e5f60718293a4b5c6d7e8f9012345678901234", "sha256:<hex-id>"),
            ("req 123e4567-e89b-12d3-a456-426614174000", "req <uuid>"),
            ("listening on 172.17.0.2:8080", "listening on <ipv4>:8080"),
            ("Ran 3 tests in 0.123s", "Ran 3 tests in <duration>"),
            ("took 15ms, then 2 s", "took <duration>, then <duration>"),
        ] {
            assert_eq!(masked(text), want, "{text}");
        }
    }

    #[test]
    fn what_a_user_would_notice_stays() {
        for text in ["Hello from Python 3.11.2, built with s2i!", "exit 3", "HTTP/1.1 404 Not Found", "version 1.2.3", "deadbeef", "port 8080"] {
            assert_eq!(masked(text), text);
        }
    }

    #[test]
    fn hostnames_user_patterns_and_no_defaults() {
        let m = Masks::new(false, &["build #\\d+".into(), "pid=\\d+".into()]).unwrap();
        assert_eq!(m.apply("web-7f9c on build #42 (pid=17) 2024-01-02T03:04:05Z", &["web-7f9c".into()]), "<hostname> on <ignore-1> (<ignore-2>) 2024-01-02T03:04:05Z");
        assert_eq!(m.infos().iter().map(|i| (i.name.as_str(), i.default)).collect::<Vec<_>>(), [("ignore-1", false), ("ignore-2", false)]);
        let err = Masks::new(true, &["(".into()]).unwrap_err().to_string();
        assert!(err.starts_with("invalid --ignore \"(\": "), "{err}");
        let err = Masks::new(true, &["x*".into()]).unwrap_err().to_string();
        assert!(err.contains("matches the empty string"), "{err}");
        assert!(describe_defaults().lines().all(|l| l.len() <= 100 && l.starts_with("  <")), "{}", describe_defaults());
    }
}
