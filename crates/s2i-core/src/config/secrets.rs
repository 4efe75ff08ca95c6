//! `--secret id=NAME,src=PATH` and `--secret id=NAME,env=VAR`: build-only secrets.
//!
//! The config holds a secret's name and where its value is, never the value: the value is read by
//! [`SecretSpec::read`] only when the container that needs it is about to run, and lives in a
//! [`SecretValue`] that prints as `<redacted>` and is wiped when dropped. [`SecretSpec::check`]
//! runs when the flags are parsed, so that a missing file or unset variable stops the build before
//! any container starts.

use std::fmt;
use std::io::Read;
use std::path::PathBuf;
use std::str::FromStr;

use zeroize::Zeroizing;

use crate::error::{BuildError, Result};

/// Where every secret is, in every build container that gets secrets.
pub const SECRETS_DIR: &str = "/run/secrets";
/// The biggest secret s2i passes on: secrets are tokens, keys and small config files.
pub const MAX_SECRET_SIZE: u64 = 512 * 1024;

/// One `--secret`: its name (the file's name under [`SECRETS_DIR`]) and where its value is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretSpec {
    pub id: String,
    pub source: SecretSource,
}

/// Where a secret's value is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A host file the user named.
    File(PathBuf),
    /// An environment variable of s2i's own environment.
    Env(String),
}

impl fmt::Display for SecretSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSource::File(p) => write!(f, "file {}", p.display()),
            SecretSource::Env(v) => write!(f, "environment variable {v}"),
        }
    }
}

/// A secret's value: never printed, wiped from memory when dropped.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted, {} bytes>", self.0.len())
    }
}

/// A secret's name: a file name under /run/secrets and a word in a shell command and a
/// Dockerfile, so letters, digits, `.`, `_` and `-` only, not starting with `.` or `-`.
pub fn check_id(id: &str) -> std::result::Result<(), String> {
    let plain = id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if id.is_empty() || id.len() > 128 || !plain || id.starts_with(['.', '-']) {
        return Err("a secret's id is 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' or '-'".into());
    }
    Ok(())
}

impl FromStr for SecretSpec {
    type Err = BuildError;

    /// BuildKit's and Podman's spelling: `id=NAME,src=PATH` (or `source=`), `id=NAME,env=VAR`,
    /// with an optional `type=file|env`.
    fn from_str(s: &str) -> Result<SecretSpec> {
        let bad = |reason: String| BuildError::InvalidValue { what: "--secret", value: s.to_string(), reason };
        let (mut id, mut src, mut env, mut typ) = (None, None, None, None);
        for part in s.split(',') {
            let (key, value) = part.split_once('=').ok_or_else(|| bad(format!("{part:?} is not KEY=VALUE (use id=NAME,src=PATH or id=NAME,env=VAR)")))?;
            let slot = match key {
                "id" => &mut id,
                "src" | "source" => &mut src,
                "env" => &mut env,
                "type" => &mut typ,
                other => return Err(bad(format!("unknown key {other:?} (use id=NAME,src=PATH or id=NAME,env=VAR)"))),
            };
            if slot.replace(value.to_string()).is_some() {
                return Err(bad(format!("{key} is given twice")));
            }
        }
        let id = id.ok_or_else(|| bad("it needs id=NAME".into()))?;
        check_id(&id).map_err(bad)?;
        let source = match (src, env, typ.as_deref()) {
            (Some(p), None, None | Some("file")) if !p.is_empty() => SecretSource::File(PathBuf::from(p)),
            (None, Some(v), None | Some("env")) if !v.is_empty() => SecretSource::Env(v),
            (Some(_), Some(_), _) => return Err(bad("give either src=PATH or env=VAR, not both".into())),
            (None, None, _) => return Err(bad("it needs src=PATH or env=VAR".into())),
            (_, _, Some(t)) if t != "file" && t != "env" => return Err(bad(format!("unknown type {t:?} (file or env)"))),
            _ => return Err(bad("type does not match src=/env=, or the value is empty".into())),
        };
        Ok(SecretSpec { id, source })
    }
}

impl SecretSpec {
    /// That the value can be read (without reading it): a regular file within the size limit, or
    /// a set variable. Run when the flags are parsed.
    pub fn check(&self) -> Result<()> {
        let unavailable = |reason: String| BuildError::SecretUnavailable { id: self.id.clone(), source_of: self.source.to_string(), reason };
        match &self.source {
            SecretSource::File(path) => {
                let meta = std::fs::metadata(path).map_err(|e| unavailable(e.to_string()))?;
                if !meta.is_file() {
                    return Err(unavailable("it is not a regular file".into()));
                }
                if meta.len() > MAX_SECRET_SIZE {
                    return Err(unavailable(format!("it is bigger than {MAX_SECRET_SIZE} bytes, the most a secret can hold")));
                }
            }
            SecretSource::Env(var) => {
                std::env::var_os(var).ok_or_else(|| unavailable("it is not set".into()))?;
            }
        }
        Ok(())
    }

    /// The value, read now.
    pub fn read(&self) -> Result<SecretValue> {
        let unavailable = |reason: String| BuildError::SecretUnavailable { id: self.id.clone(), source_of: self.source.to_string(), reason };
        let data = match &self.source {
            SecretSource::File(path) => {
                let file = crate::fsutil::open_regular(path)
                    .map_err(|e| unavailable(e.to_string()))?
                    .ok_or_else(|| unavailable("it is not a regular file".into()))?;
                let mut data = Zeroizing::new(Vec::new());
                file.take(MAX_SECRET_SIZE + 1).read_to_end(&mut data).map_err(|e| unavailable(e.to_string()))?;
                data
            }
            SecretSource::Env(var) => {
                use std::os::unix::ffi::OsStringExt;
                Zeroizing::new(std::env::var_os(var).ok_or_else(|| unavailable("it is not set".into()))?.into_vec())
            }
        };
        if data.len() as u64 > MAX_SECRET_SIZE {
            return Err(unavailable(format!("it is bigger than {MAX_SECRET_SIZE} bytes, the most a secret can hold")));
        }
        Ok(SecretValue(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_in_buildkit_spelling() {
        let s: SecretSpec = "id=pip,src=/run/pip.conf".parse().unwrap();
        assert_eq!(s, SecretSpec { id: "pip".into(), source: SecretSource::File("/run/pip.conf".into()) });
        let s: SecretSpec = "type=env,env=TOKEN,id=git-token".parse().unwrap();
        assert_eq!(s, SecretSpec { id: "git-token".into(), source: SecretSource::Env("TOKEN".into()) });
        let s: SecretSpec = "id=a.b_c,source=x".parse().unwrap();
        assert_eq!(s.source, SecretSource::File("x".into()));
    }

    #[test]
    fn bad_specs_say_why() {
        for (spec, why) in [
            ("src=/x", "needs id=NAME"),
            ("id=a", "needs src=PATH or env=VAR"),
            ("id=a,src=/x,env=Y", "not both"),
            ("id=../x,src=/x", "letters, digits"),
            ("id=a b,src=/x", "letters, digits"),
            ("id=.hidden,src=/x", "not starting"),
            ("id=a,src=/x,mode=0400", "unknown key"),
            ("id=a,id=b,src=/x", "twice"),
            ("id=a,type=env,src=/x", "does not match"),
            ("id=a,src=", "value is empty"),
            ("id=a,nonsense", "not KEY=VALUE"),
        ] {
            let e = spec.parse::<SecretSpec>().unwrap_err().to_string();
            assert!(e.contains("--secret") && e.contains(why), "{spec}: {e}");
        }
    }

    #[test]
    fn values_are_read_late_and_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let spec = SecretSpec { id: "t".into(), source: SecretSource::File(path.clone()) };
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("secret t") && e.contains(&path.display().to_string()), "{e}");
        std::fs::write(&path, b"s3cr3t-value").unwrap();
        spec.check().unwrap();
        let value = spec.read().unwrap();
        assert_eq!(value.bytes(), b"s3cr3t-value");
        let shown = format!("{value:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
        std::fs::write(&path, vec![b'x'; MAX_SECRET_SIZE as usize + 1]).unwrap();
        let e = spec.check().unwrap_err().to_string();
        assert!(e.contains("bigger than"), "{e}");
        assert!(spec.read().is_err());
        let unset = SecretSpec { id: "e".into(), source: SecretSource::Env("S2I_TEST_SURELY_UNSET_VARIABLE".into()) };
        let e = unset.check().unwrap_err().to_string();
        assert!(e.contains("environment variable S2I_TEST_SURELY_UNSET_VARIABLE") && e.contains("not set"), "{e}");
    }
}
