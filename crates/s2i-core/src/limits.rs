//! The bounds s2i puts on what it does not trust and on how long it waits: sizes, counts and
//! times. Each has a default that suits real builds, an environment variable that changes it, and
//! an error that names both.
//!
//! The environment is read here and nowhere else: [`Limits::from_env`] once per run, at the
//! binary's edge, and [`Env`] for the few variables of one engine (the binary's OCI settings).
//! Every variable has one grammar ([`Grammar`]), and a value that does not fit it is an error that
//! names the variable and the grammar, never ignored. The crates below this one (`s2i-tar`,
//! `s2i-registry`, `s2i-oci`) keep their limits as plain data with defaults and read no
//! environment: they are libraries whose caller decides, and they cannot depend on this crate,
//! which sits above them. Their variables' names stay beside their errors, which name them.

use std::fmt;
use std::time::Duration;

use s2i_registry::client::{self as registry_client, Limits as RegistryLimits};
use s2i_registry::credentials::HELPER_TIMEOUT_ENV;

/// One bound of s2i-core, for messages: what it bounds and how to change it.
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
    /// Bytes `s2i verify` keeps of one output it compares (a run's stdout or stderr, an HTTP body).
    VerifyOutput,
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
            Limit::VerifyOutput => "S2I_LIMIT_VERIFY_OUTPUT",
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
            Limit::VerifyOutput => "verify output limit",
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the {} ({})", self.describe(), self.variable())
    }
}

/// Every bound of one run: s2i-core's own, and those of the registry client and credential
/// helpers that its registry service uses.
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
    pub verify_output: u64,
    /// The registry client's (`S2I_REGISTRY_*`), for asking a registry why a transfer failed.
    pub registry: RegistryLimits,
    /// How long a credential helper may take to answer (`S2I_CREDENTIAL_HELPER_TIMEOUT`).
    pub credential_helper_timeout: Duration,
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
            verify_output: 1 << 20,
            registry: RegistryLimits::default(),
            credential_helper_timeout: s2i_registry::LookupOptions::default().helper_timeout,
        }
    }
}

impl Limits {
    /// The defaults, with every variable that is set applied (`S2I_LIMIT_*`, `S2I_REGISTRY_*`,
    /// `S2I_CREDENTIAL_HELPER_TIMEOUT`). Call it once per run, where the run starts.
    pub fn from_env() -> Result<Limits, InvalidLimit> {
        Limits::read(&Env::process())
    }

    /// The defaults with what `env` sets applied.
    pub fn read<F: Fn(&str) -> Option<String>>(env: &Env<F>) -> Result<Limits, InvalidLimit> {
        let mut l = Limits::default();
        let size = |limit: Limit, slot: &mut u64| -> Result<(), InvalidLimit> {
            env.size(limit.variable())?.into_iter().for_each(|v| *slot = v);
            Ok(())
        };
        let time = |limit: Limit, slot: &mut Duration| -> Result<(), InvalidLimit> {
            env.time(limit.variable())?.into_iter().for_each(|v| *slot = v);
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
        size(Limit::VerifyOutput, &mut l.verify_output)?;
        if let Some(n) = env.count(Limit::TarPaths.variable())? {
            l.tar_paths = n;
        }
        let r = &mut l.registry;
        for (variable, slot) in [
            (registry_client::CONNECT_TIMEOUT_ENV, &mut r.connect_timeout),
            (registry_client::IDLE_TIMEOUT_ENV, &mut r.idle_timeout),
            (registry_client::REQUEST_TIMEOUT_ENV, &mut r.request_timeout),
            (HELPER_TIMEOUT_ENV, &mut l.credential_helper_timeout),
        ] {
            env.time(variable)?.into_iter().for_each(|v| *slot = v);
        }
        for (variable, slot) in [(registry_client::MANIFEST_MAX_ENV, &mut r.manifest_max_bytes), (registry_client::CONFIG_MAX_ENV, &mut r.config_max_bytes)] {
            env.size(variable)?.into_iter().for_each(|v| *slot = v);
        }
        Ok(l)
    }

    /// The caps of s2i-tar's reader and guard, for an untrusted tar.
    pub fn tar(&self) -> s2i_tar::Limits {
        s2i_tar::Limits { max_name: self.tar_name, max_pax: self.tar_pax, max_paths: self.tar_paths }
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
            Limit::VerifyOutput => show_size(self.verify_output),
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

/// How a variable's value is written: the one grammar of every `S2I_*` limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// Bytes: a whole number, optionally with `K`, `M`, `G` or `T` (powers of 1024; a trailing
    /// `B` or `iB` is allowed): `1048576`, `512K`, `16M`, `2GiB`.
    Size,
    /// A number of things, written as a size is: `4096`, `64K`.
    Count,
    /// Whole seconds, optionally with `s`, `m` or `h`: `90`, `90s`, `10m`, `1h`.
    Time,
}

impl Grammar {
    /// The grammar in one line, for an error.
    pub fn reason(self) -> &'static str {
        match self {
            Grammar::Size => "use bytes, or a number with K, M or G (512K, 16M, 2G)",
            Grammar::Count => "use a whole number, or one with K or M (4096, 64K)",
            Grammar::Time => "use seconds, or a number with s, m or h (90s, 10m, 1h)",
        }
    }
}

/// A variable whose value does not fit its grammar.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidLimit {
    pub variable: &'static str,
    pub value: String,
    pub grammar: Grammar,
    /// The variable also takes `none` (or `0`) for no limit at all.
    pub can_be_off: bool,
}

impl InvalidLimit {
    pub fn reason(&self) -> String {
        match self.can_be_off {
            true => format!("{}; none or 0 for no limit", self.grammar.reason()),
            false => self.grammar.reason().to_string(),
        }
    }
}

/// The environment, as limits read it: a variable that is unset or blank is not set.
pub struct Env<F>(F);

impl Env<fn(&str) -> Option<String>> {
    /// This process's environment.
    pub fn process() -> Self {
        Env(|name| std::env::var(name).ok())
    }
}

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// An environment that `lookup` answers (tests).
    pub fn with(lookup: F) -> Self {
        Env(lookup)
    }

    fn get(&self, variable: &str) -> Option<String> {
        (self.0)(variable).filter(|v| !v.trim().is_empty())
    }

    fn parsed<T>(&self, variable: &'static str, grammar: Grammar, parse: impl Fn(&str) -> Option<T>) -> Result<Option<T>, InvalidLimit> {
        match self.get(variable) {
            None => Ok(None),
            Some(v) => parse(&v).map(Some).ok_or(InvalidLimit { variable, value: v, grammar, can_be_off: false }),
        }
    }

    pub fn size(&self, variable: &'static str) -> Result<Option<u64>, InvalidLimit> {
        self.parsed(variable, Grammar::Size, parse_size)
    }

    pub fn count(&self, variable: &'static str) -> Result<Option<u64>, InvalidLimit> {
        self.parsed(variable, Grammar::Count, parse_size)
    }

    pub fn time(&self, variable: &'static str) -> Result<Option<Duration>, InvalidLimit> {
        self.parsed(variable, Grammar::Time, parse_duration)
    }

    /// A setting that is a word (`S2I_OCI_ROOTFS`), trimmed.
    pub fn text(&self, variable: &str) -> Option<String> {
        self.get(variable).map(|v| v.trim().to_string())
    }

    /// A limit that can be switched off: `Some(None)` for `none` or `0`.
    pub fn optional(&self, variable: &'static str, grammar: Grammar) -> Result<Option<Option<u64>>, InvalidLimit> {
        let Some(v) = self.get(variable) else { return Ok(None) };
        if v.trim().eq_ignore_ascii_case("none") {
            return Ok(Some(None));
        }
        match parse_size(&v) {
            Some(0) => Ok(Some(None)),
            Some(n) => Ok(Some(Some(n))),
            None => Err(InvalidLimit { variable, value: v, grammar, can_be_off: true }),
        }
    }
}

/// A size or a count: `123`, `512K`, `16M`, `2G` (powers of 1024; a trailing `B`/`iB` is allowed).
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

/// A time: `90`, `90s`, `10m`, `1h`.
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

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::with(move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn sizes_and_durations_parse() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("16M"), Some(16 << 20));
        assert_eq!(parse_size("2GiB"), Some(2 << 30));
        assert_eq!(parse_size("512k"), Some(512 << 10));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("-1"), None);
        assert_eq!(parse_size("99999999999T"), None, "overflow is no value");
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("soon"), None);
    }

    #[test]
    fn the_environment_overrides_defaults_and_bad_values_name_the_variable() {
        let l = Limits::read(&env(&[("S2I_LIMIT_IDLE_TIME", "2s"), ("S2I_LIMIT_FILE_SIZE", " ")])).unwrap();
        assert_eq!(l.idle_time, Duration::from_secs(2));
        assert_eq!(l.download_size, Limits::default().download_size);
        assert_eq!(l.file_size, Limits::default().file_size, "blank is unset");
        let err = Limits::read(&env(&[("S2I_LIMIT_SCRIPT_SIZE", "lots")])).unwrap_err();
        assert_eq!(err, InvalidLimit { variable: "S2I_LIMIT_SCRIPT_SIZE", value: "lots".into(), grammar: Grammar::Size, can_be_off: false });
        assert_eq!(err.reason(), "use bytes, or a number with K, M or G (512K, 16M, 2G)");
    }

    /// The registry client's and the credential helpers' limits were read apart, and a value they
    /// could not read was dropped without a word; now they are read with the same grammar.
    #[test]
    fn registry_and_helper_limits_take_the_same_grammar_and_refuse_bad_values() {
        let l = Limits::read(&env(&[
            ("S2I_REGISTRY_IDLE_TIMEOUT", "2m"),
            ("S2I_REGISTRY_MANIFEST_MAX_BYTES", "8M"),
            ("S2I_CREDENTIAL_HELPER_TIMEOUT", "5"),
        ]))
        .unwrap();
        assert_eq!(l.registry.idle_timeout, Duration::from_secs(120));
        assert_eq!(l.registry.manifest_max_bytes, 8 << 20);
        assert_eq!(l.registry.connect_timeout, RegistryLimits::default().connect_timeout);
        assert_eq!(l.credential_helper_timeout, Duration::from_secs(5));
        for (variable, value) in [
            ("S2I_REGISTRY_CONNECT_TIMEOUT", "soon"),
            ("S2I_REGISTRY_CONFIG_MAX_BYTES", "big"),
            ("S2I_CREDENTIAL_HELPER_TIMEOUT", "-1"),
        ] {
            let pairs: &'static [(&'static str, &'static str)] = Box::leak(vec![(variable, value)].into_boxed_slice());
            let err = Limits::read(&env(pairs)).unwrap_err();
            assert_eq!((err.variable, err.value.as_str()), (variable, value));
        }
    }

    #[test]
    fn a_limit_that_can_be_off_takes_none_and_zero() {
        let e = env(&[("A", "none"), ("B", "0"), ("C", "8g"), ("D", "lots")]);
        assert_eq!(e.optional("A", Grammar::Size).unwrap(), Some(None));
        assert_eq!(e.optional("B", Grammar::Size).unwrap(), Some(None));
        assert_eq!(e.optional("C", Grammar::Size).unwrap(), Some(Some(8 << 30)));
        assert_eq!(e.optional("UNSET", Grammar::Size).unwrap(), None);
        let err = e.optional("D", Grammar::Count).unwrap_err();
        assert!(err.reason().ends_with("none or 0 for no limit"), "{}", err.reason());
    }
}
