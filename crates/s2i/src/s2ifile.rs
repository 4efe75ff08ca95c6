//! `s2i build --use-config`: restore arguments and flags from `./.s2ifile` (or the deprecated
//! `./.stifile`) before parsing, and save the ones in force once the build's config is valid.
//!
//! The file is JSON: `{"source":…,"builderImage":…,"tag":…,"flags":{"name":"value",…}}`; `-e`
//! values are stored as `env-0`, `env-1`, …, and a repeated flag as a list of strings.
//! Flags given on the command line win over stored ones; stored `-e` values are dropped when any
//! `-e` is given; positional arguments replace the stored source, builder and tag.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory};
use serde_json::{Map, Value};
use tracing::{info, warn};

use crate::cli::Cli;

pub const FILE: &str = ".s2ifile";
const OLD_FILE: &str = ".stifile";
/// Flags never stored: the switch itself, and help.
const NOT_STORED: [&str; 2] = ["use_config", "help"];

/// What to write to `.s2ifile` (in `dir`) once the build's config has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct S2ifileToSave {
    pub doc: Value,
    pub dir: PathBuf,
}

impl S2ifileToSave {
    /// Write the file through a new file renamed into place: a `.s2ifile` that is a symlink is
    /// replaced, never written through.
    pub fn save(&self) {
        let path = self.dir.join(FILE);
        let text = serde_json::to_string_pretty(&self.doc).unwrap_or_default() + "\n";
        let saved = tempfile::Builder::new()
            .prefix(".s2ifile.")
            .tempfile_in(&self.dir)
            .and_then(|mut tmp| {
                std::io::Write::write_all(&mut tmp, text.as_bytes())?;
                tmp.persist(&path).map_err(|e| e.error)?;
                Ok(())
            });
        if let Err(e) = saved {
            warn!("Could not save {}: {e}", path.display());
        }
    }
}

/// The build's matches, when `argv` is an `s2i build … --use-config` command line.
fn build_matches(argv: &[OsString]) -> Option<ArgMatches> {
    let matches = Cli::command().try_get_matches_from(argv).ok()?;
    let (name, sub) = matches.subcommand()?;
    (name == "build" && sub.get_one::<bool>("use_config").copied().unwrap_or(false)).then(|| sub.clone())
}

fn from_command_line(m: &ArgMatches, id: &str) -> bool {
    m.value_source(id) == Some(ValueSource::CommandLine)
}

/// Rewrite `argv` with what `.s2ifile` in `dir` holds, and say what to save after validation.
/// Not a `--use-config` build: `argv` unchanged and nothing to save.
pub fn restore(argv: Vec<OsString>, dir: &Path) -> (Vec<OsString>, Option<S2ifileToSave>) {
    let Some(matches) = build_matches(&argv) else { return (argv, None) };
    let mut argv = argv;
    if let Some(stored) = read(dir) {
        let build = Cli::command().find_subcommand("build").cloned().expect("build is a subcommand");
        let flags = stored.get("flags").and_then(Value::as_object).cloned().unwrap_or_default();
        for arg in build.get_arguments() {
            let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else { continue };
            if NOT_STORED.contains(&id) || id == "env" || from_command_line(&matches, id) {
                continue;
            }
            match flags.get(long) {
                Some(Value::String(v)) => argv.push(format!("--{long}={v}").into()),
                Some(Value::Array(vs)) => argv.extend(vs.iter().filter_map(Value::as_str).map(|v| OsString::from(format!("--{long}={v}")))),
                _ => {}
            }
        }
        if !from_command_line(&matches, "env") {
            let mut i = 0;
            while let Some(v) = flags.get(&format!("env-{i}")).and_then(Value::as_str) {
                argv.push(format!("--env={v}").into());
                i += 1;
            }
        }
        let given = ["source", "builder", "tag"].iter().filter(|id| from_command_line(&matches, id)).count();
        for key in ["source", "builderImage", "tag"].iter().skip(given) {
            match stored.get(*key).and_then(Value::as_str).filter(|v| !v.is_empty()) {
                Some(v) => argv.push(v.into()),
                None => break,
            }
        }
    }
    let pending = build_matches(&argv).map(|m| S2ifileToSave { doc: snapshot(&m), dir: dir.to_path_buf() });
    (argv, pending)
}

fn read(dir: &Path) -> Option<Map<String, Value>> {
    let (path, text) = [FILE, OLD_FILE].iter().find_map(|name| {
        let path = dir.join(name);
        std::fs::read_to_string(&path).ok().map(|t| (path, t))
    })?;
    if path.ends_with(OLD_FILE) {
        warn!("DEPRECATED: {OLD_FILE} is read because there is no {FILE}; rename it");
    }
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(map)) => {
            info!("Restored arguments and flags from {}", path.display());
            Some(map)
        }
        _ => {
            warn!("Ignoring {}: it is not a JSON object", path.display());
            None
        }
    }
}

/// The flags set on the command line (restored ones included), as `.s2ifile` stores them.
fn snapshot(m: &ArgMatches) -> Value {
    let build = Cli::command().find_subcommand("build").cloned().expect("build is a subcommand");
    let mut flags = Map::new();
    for arg in build.get_arguments() {
        let (id, Some(long)) = (arg.get_id().as_str(), arg.get_long()) else { continue };
        if NOT_STORED.contains(&id) || !from_command_line(m, id) {
            continue;
        }
        let values: Vec<String> = m.get_raw(id).into_iter().flatten().map(|v| v.to_string_lossy().into_owned()).collect();
        if id == "env" {
            for (i, v) in values.iter().enumerate() {
                flags.insert(format!("env-{i}"), Value::String(v.clone()));
            }
        } else if arg.get_action().takes_values() && matches!(arg.get_action(), clap::ArgAction::Append) {
            flags.insert(long.to_string(), Value::Array(values.into_iter().map(Value::String).collect()));
        } else if let Some(v) = values.into_iter().last() {
            // URLs (--scripts-url, --callback-url) are stored without credentials.
            flags.insert(long.to_string(), Value::String(s2i_core::redact::url(&v)));
        }
    }
    let positional = |id: &str| Value::String(m.get_one::<String>(id).map(|v| s2i_core::redact::url(v)).unwrap_or_default());
    serde_json::json!({
        "source": positional("source"),
        "builderImage": positional("builder"),
        "tag": positional("tag"),
        "flags": flags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn flags_round_trip_and_the_command_line_wins() {
        let dir = tempfile::tempdir().unwrap();
        let (argv, pending) = restore(
            args(&["s2i", "build", "src", "builder", "app:1", "--use-config", "-e", "A=1", "-e", "B=2", "-v", "/a:/b", "-v", "/c:/d", "--incremental", "-p", "never"]),
            dir.path(),
        );
        assert_eq!(argv.len(), 17, "nothing stored yet: {argv:?}");
        pending.unwrap().save();
        let saved: Value = serde_json::from_str(&std::fs::read_to_string(dir.path().join(FILE)).unwrap()).unwrap();
        assert_eq!(saved["builderImage"], "builder");
        assert_eq!(saved["flags"]["env-1"], "B=2");
        assert_eq!(saved["flags"]["volume"], serde_json::json!(["/a:/b", "/c:/d"]));
        assert_eq!(saved["flags"]["incremental"], "true");
        assert_eq!(saved["flags"]["pull-policy"], "never");

        // A later run with only --use-config gets it all back; what it gives itself wins.
        let (argv, _) = restore(args(&["s2i", "build", "--use-config", "-p", "always", "-e", "C=3"]), dir.path());
        let m = build_matches(&argv).unwrap();
        assert_eq!(m.get_one::<String>("source").unwrap(), "src");
        assert_eq!(m.get_one::<String>("tag").unwrap(), "app:1");
        assert_eq!(*m.get_one::<s2i_core::PullPolicy>("pull_policy").unwrap(), s2i_core::PullPolicy::Always);
        assert_eq!(m.get_many::<String>("env").unwrap().collect::<Vec<_>>(), ["C=3"], "stored -e values give way to given ones");
        assert_eq!(m.get_many::<String>("volume").unwrap().collect::<Vec<_>>(), ["/a:/b", "/c:/d"]);
        assert!(m.get_one::<bool>("incremental").copied().unwrap());
    }

    #[test]
    fn positionals_replace_the_stored_ones_and_other_commands_are_untouched() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE), r#"{"source":"old","builderImage":"b","tag":"t","flags":{}}"#).unwrap();
        let (argv, _) = restore(args(&["s2i", "build", "new", "--use-config"]), dir.path());
        let m = build_matches(&argv).unwrap();
        assert_eq!(m.get_one::<String>("source").unwrap(), "new");
        assert_eq!(m.get_one::<String>("builder").unwrap(), "b");
        let (argv, pending) = restore(args(&["s2i", "build", "a", "b"]), dir.path());
        assert_eq!((argv.len(), pending), (4, None));
        // A .s2ifile that is a link is replaced, not written through.
        let target = dir.path().join("elsewhere");
        std::fs::write(&target, "keep").unwrap();
        std::fs::remove_file(dir.path().join(FILE)).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(FILE)).unwrap();
        let (_, pending) = restore(args(&["s2i", "build", "a", "b", "--use-config"]), dir.path());
        pending.unwrap().save();
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep");
        assert!(!std::fs::symlink_metadata(dir.path().join(FILE)).unwrap().file_type().is_symlink());
        std::fs::write(dir.path().join(FILE), "not json").unwrap();
        let (argv, _) = restore(args(&["s2i", "build", "--use-config"]), dir.path());
        assert_eq!(argv.len(), 3, "an unreadable file is ignored");
    }
}
