//! The bounds s2i puts on untrusted input: sizes and times. Each has a default that suits real
//! builds, an environment variable that raises (or lowers) it, and an error that names both.

use std::fmt;
use std::time::Duration;

/// One bound, for messages: what it bounds and how to change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// Bytes of one download (an archive source).
    DownloadSize,
    /// Seconds a whole download (archive, script) may take.
    DownloadTime,
    /// Seconds a download, or save-artifacts, may go without sending a byte.
    IdleTime,
    /// Bytes of one script (read into memory).
    ScriptSize,
    /// Bytes of a small file s2i reads itself (`.s2i/environment`, `.s2iignore`, `-E`, image files).
    FileSize,
    /// Seconds the clean-up after an interruption may take before s2i gives up waiting.
    CleanupTime,
    /// Bytes of one path or link target in an untrusted tar.
    TarName,
    /// Bytes of one entry's PAX records in an untrusted tar.
    TarPax,
    /// Distinct paths of one untrusted tar.
    TarPaths,
}

impl Limit {
    /// The environment variable that sets it.
    pub fn variable(self) -> &'static str {
        match self {
            Limit::DownloadSize => "S2I_LIMIT_DOWNLOAD_SIZE",
            Limit::DownloadTime => "S2I_LIMIT_DOWNLOAD_TIME",
            Limit::IdleTime => "S2I_LIMIT_IDLE_TIME",
            Limit::ScriptSize => "S2I_LIMIT_SCRIPT_SIZE",
            Limit::FileSize => "S2I_LIMIT_FILE_SIZE",
            Limit::CleanupTime => "S2I_LIMIT_CLEANUP_TIME",
            Limit::TarName => "S2I_LIMIT_TAR_NAME",
            Limit::TarPax => "S2I_LIMIT_TAR_PAX",
            Limit::TarPaths => "S2I_LIMIT_TAR_PATHS",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Limit::DownloadSize => "download size limit",
            Limit::DownloadTime => "download time limit",
            Limit::IdleTime => "idle time limit",
            Limit::ScriptSize => "script size limit",
            Limit::FileSize => "file size limit",
            Limit::CleanupTime => "clean-up time limit",
            Limit::TarName => "archive name limit",
            Limit::TarPax => "archive record limit",
            Limit::TarPaths => "archive paths limit",
        }
    }

    fn is_time(self) -> bool {
        matches!(self, Limit::DownloadTime | Limit::IdleTime | Limit::CleanupTime)
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} ({})", self.describe(), self.variable())
    }
}

/// Every bound of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub download_size: u64,
    pub download_time: Duration,
    pub idle_time: Duration,
    pub script_size: u64,
    pub file_size: u64,
    pub cleanup_time: Duration,
    pub tar_name: u64,
    pub tar_pax: u64,
    pub tar_paths: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            download_size: 4 << 30,
            download_time: Duration::from_secs(30 * 60),
            idle_time: Duration::from_secs(5 * 60),
            script_size: 16 << 20,
            file_size: 1 << 20,
            cleanup_time: Duration::from_secs(15),
            tar_name: 64 << 10,
            tar_pax: 1 << 20,
            tar_paths: 1_000_000,
        }
    }
}

impl Limits {
    /// The defaults, with every `S2I_LIMIT_*` variable that is set applied.
    pub fn from_env() -> Result<Limits, InvalidLimit> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Limits, InvalidLimit> {
        let mut l = Limits::default();
        let size = |limit: Limit, slot: &mut u64| -> Result<(), InvalidLimit> {
            if let Some(v) = get(limit.variable()).filter(|v| !v.trim().is_empty()) {
                *slot = parse_size(&v).ok_or_else(|| invalid(limit, &v))?;
            }
            Ok(())
        };
        let time = |limit: Limit, slot: &mut Duration| -> Result<(), InvalidLimit> {
            if let Some(v) = get(limit.variable()).filter(|v| !v.trim().is_empty()) {
                *slot = parse_duration(&v).ok_or_else(|| invalid(limit, &v))?;
            }
            Ok(())
        };
        size(Limit::DownloadSize, &mut l.download_size)?;
        time(Limit::DownloadTime, &mut l.download_time)?;
        time(Limit::IdleTime, &mut l.idle_time)?;
        size(Limit::ScriptSize, &mut l.script_size)?;
        size(Limit::FileSize, &mut l.file_size)?;
        time(Limit::CleanupTime, &mut l.cleanup_time)?;
        size(Limit::TarName, &mut l.tar_name)?;
        size(Limit::TarPax, &mut l.tar_pax)?;
        size(Limit::TarPaths, &mut l.tar_paths)?;
        Ok(l)
    }

    /// The bound, as a user reads it (`16 MiB`, `5 min`).
    pub fn shown(&self, limit: Limit) -> String {
        match limit {
            Limit::DownloadSize => show_size(self.download_size),
            Limit::ScriptSize => show_size(self.script_size),
            Limit::FileSize => show_size(self.file_size),
            Limit::DownloadTime => show_time(self.download_time),
            Limit::IdleTime => show_time(self.idle_time),
            Limit::CleanupTime => show_time(self.cleanup_time),
            Limit::TarName => show_size(self.tar_name),
            Limit::TarPax => show_size(self.tar_pax),
            Limit::TarPaths => self.tar_paths.to_string(),
        }
    }

    /// An untrusted tar's record over one of s2i-tar's caps, in the words of these limits.
    pub fn tar_limit_message(&self, e: &s2i_tar::LimitExceeded) -> String {
        let limit = match e.limit {
            s2i_tar::Limit::Name => Limit::TarName,
            s2i_tar::Limit::PaxRecords => Limit::TarPax,
            s2i_tar::Limit::Paths => Limit::TarPaths,
        };
        let entry = e.entry.as_ref().map(|n| format!("entry {n:?}: ")).unwrap_or_default();
        format!("{entry}{} of {} exceeds {limit} of {}", if limit == Limit::TarPaths { "a path count" } else { "a record" }, e.actual, self.shown(limit))
    }
}

/// An `S2I_LIMIT_*` variable that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimit {
    pub limit: Limit,
    pub value: String,
}

impl InvalidLimit {
    pub fn reason(&self) -> &'static str {
        if self.limit.is_time() {
            "use seconds, or a number with s, m or h (90s, 10m, 1h)"
        } else {
            "use bytes, or a number with K, M or G (512K, 16M, 2G)"
        }
    }
}

fn invalid(limit: Limit, value: &str) -> InvalidLimit {
    InvalidLimit { limit, value: value.to_string() }
}

/// `123`, `512K`, `16M`, `2G` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim().trim_end_matches("iB").trim_end_matches(['B', 'b']);
    let (digits, shift) = match t.chars().last()? {
        'k' | 'K' => (&t[..t.len() - 1], 10),
        'm' | 'M' => (&t[..t.len() - 1], 20),
        'g' | 'G' => (&t[..t.len() - 1], 30),
        't' | 'T' => (&t[..t.len() - 1], 40),
        _ => (t, 0),
    };
    digits.trim().parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

/// `90`, `90s`, `10m`, `1h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (digits, unit) = match t.chars().last()? {
        's' => (&t[..t.len() - 1], 1),
        'm' => (&t[..t.len() - 1], 60),
        'h' => (&t[..t.len() - 1], 3600),
        _ => (t, 1),
    };
    Some(Duration::from_secs(digits.trim().parse::<u64>().ok()?.checked_mul(unit)?))
}

fn show_size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{} GiB", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

fn show_time(d: Duration) -> String {
    match d.as_secs() {
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn the_environment_overrides_defaults_and_bad_values_name_the_variable() {
        let l = Limits::from_lookup(|n| (n == "S2I_LIMIT_IDLE_TIME").then(|| "2s".to_string())).unwrap();
        assert_eq!(l.idle_time, Duration::from_secs(2));
        assert_eq!(l.download_size, Limits::default().download_size);
        let err = Limits::from_lookup(|n| (n == "S2I_LIMIT_SCRIPT_SIZE").then(|| "lots".to_string())).unwrap_err();
        assert_eq!(err, InvalidLimit { limit: Limit::ScriptSize, value: "lots".into() });
    }

}
