//! `s2i build SOURCE BUILDER_IMAGE [TAG]`.

use std::io::Write;
use std::time::Instant;

use regex::Regex;
use s2i_core::source::ParsedSource;
use s2i_core::{env, users, BuildConfig, BuildError, BuildMethod, BuildResult, PullPolicy};
use s2i_engine::OutputStream;
use tracing::{info, warn};

use super::report;
use crate::cli::{BuildArgs, GlobalArgs};

pub async fn run(global: &GlobalArgs, args: BuildArgs) -> Result<(), BuildError> {
    let json = args.output == "json";
    let run_after = args.run;
    let callback = args.common.callback_url.clone().filter(|u| !u.is_empty());
    let requested = (args.builder.clone().unwrap_or_default(), args.tag.clone().filter(|t| !t.is_empty()));
    let started = Instant::now();

    let cfg = match config_from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            if json {
                print_json(&report::failure(&requested.0, requested.1.as_deref(), &e, started.elapsed()));
            }
            return Err(e);
        }
    };
    if let Some(Some((pending, dir))) = crate::PENDING_CONFIG.get() {
        pending.save(dir);
    }
    let after = After { json, run_after, callback, started };
    if cfg.as_dockerfile.is_some() {
        let builder = super::inspect_if_reachable(global, &cfg.builder_image).await;
        let written = s2i_core::write_dockerfile(&cfg, builder.as_ref(), true).await;
        if json {
            print_json(&match &written {
                Ok(path) => report::dockerfile(&cfg, path, started.elapsed()),
                Err(e) => report::failure(&cfg.builder_image, cfg.tag.as_deref(), e, started.elapsed()),
            });
        }
        eprintln!("Application dockerfile generated in {}", written?.display());
        return Ok(());
    }
    execute(global, &cfg, after).await
}

/// What happens around a build: JSON output, the callback, running the result.
pub struct After {
    pub json: bool,
    pub run_after: bool,
    pub callback: Option<String>,
    pub started: Instant,
}

/// Build `cfg` with the engine, then send the callback, print the result and run the image as asked.
pub async fn execute(global: &GlobalArgs, cfg: &BuildConfig, after: After) -> Result<(), BuildError> {
    let After { json, run_after, callback, started } = after;
    let cfg = cfg.clone();
    let engine = match super::connect(global).await {
        Ok(engine) => engine,
        Err(e) => return finish_failed(&cfg, e, callback.as_deref(), json, started, None).await,
    };
    let engine_doc = s2i_engine::Engine::version(&engine).await.ok().map(|v| report::engine(&v));
    let relay: s2i_core::OutputFn = std::sync::Arc::new(relay_line);
    let built = super::interruptible(&engine, s2i_core::build(&cfg, &engine, relay.clone())).await;
    let result = match built {
        Ok(result) => result,
        Err(e) => return finish_failed(&cfg, e, callback.as_deref(), json, started, engine_doc).await,
    };
    if let Some(url) = &callback {
        send_callback(url, true, &result.labels).await;
    }
    print_result(&result);
    if json {
        let mut doc = report::success(&cfg, &result, started.elapsed());
        if let Some(engine) = engine_doc {
            doc["engine"] = engine;
        }
        print_json(&doc);
    }
    if run_after {
        let image = result.tag.clone().unwrap_or_else(|| result.image_id.clone());
        eprintln!("Running {image} as a result of the --run=true option (all its ports are published; Ctrl-C stops it)");
        super::interruptible(&engine, s2i_core::run_image(&engine, &image, relay)).await?;
    }
    Ok(())
}

/// A failed build still sends its callback and its JSON document; the error is returned for the
/// binary to render once.
async fn finish_failed(
    cfg: &BuildConfig,
    e: BuildError,
    callback: Option<&str>,
    json: bool,
    started: Instant,
    engine: Option<serde_json::Value>,
) -> Result<(), BuildError> {
    if let Some(url) = callback {
        send_callback(url, false, &Default::default()).await;
    }
    if json {
        let mut doc = report::failure(&cfg.builder_image, cfg.tag.as_deref(), &e, started.elapsed());
        if let Some(engine) = engine {
            doc["engine"] = engine;
        }
        print_json(&doc);
    }
    Err(e)
}

/// The callback never changes the outcome of the build: its failure is a warning.
async fn send_callback(url: &str, success: bool, labels: &std::collections::BTreeMap<String, String>) {
    if let Err(e) = s2i_core::callback::send(url, success, labels).await {
        warn!("{e}");
    }
}

fn print_json(doc: &serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{doc}");
    let _ = out.flush();
}

/// Container output goes to stderr, line by line, untouched: stdout is kept for machine output.
fn relay_line(_stream: OutputStream, line: &[u8]) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(line);
    let _ = err.write_all(b"\n");
}

fn print_result(result: &BuildResult) {
    for (phase, took) in &result.timings.phases {
        info!("{phase}: {:.2}s", took.as_secs_f64());
    }
    match &result.tag {
        Some(tag) => info!("Image {tag} ({}) built", short_id(&result.image_id)),
        None => info!("Image {} built (untagged)", short_id(&result.image_id)),
    }
    eprintln!("Build completed successfully");
}

fn short_id(id: &str) -> &str {
    let id = id.strip_prefix("sha256:").unwrap_or(id);
    &id[..id.len().min(12)]
}

/// Turn flags into a validated config. Flags whose feature is not built yet are refused by name
/// rather than ignored.
pub fn config_from_args(args: BuildArgs) -> Result<BuildConfig, BuildError> {
    refuse_conflicts(&args)?;
    refuse_unsupported(&args)?;
    let (Some(source), Some(builder)) = (args.source.clone(), args.builder.clone()) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i build needs SOURCE and BUILDER_IMAGE (and optionally TAG); see s2i build --help".into(),
        });
    };
    if builder.trim().is_empty() {
        return Err(BuildError::InvalidValue { what: "builder image", value: builder, reason: "cannot be empty".into() });
    }
    let parsed = ParsedSource::parse(&source)?;
    // Unlike the reference, a `#ref` in SOURCE counts when --ref is not given.
    let git_ref = match (args.git_ref.filter(|r| !r.is_empty()), parsed.fragment) {
        (Some(flag), Some(fragment)) if flag != fragment => {
            warn!("--ref {flag} overrides #{fragment} in the source");
            Some(flag)
        }
        (flag, fragment) => flag.or(fragment),
    };

    let mut env_vars = Vec::new();
    for e in &args.env {
        env_vars.push(env::parse_env_flag(e)?);
    }
    // Repeating --allowed-uids replaces the list, as in the reference.
    let allowed_uids = match args.allowed_uids.last() {
        Some(text) => users::parse_ranges(text)?,
        None => Vec::new(),
    };
    let exclude = if args.exclude.is_empty() {
        None
    } else {
        Some(Regex::new(&args.exclude).map_err(|e| BuildError::InvalidValue {
            what: "--exclude",
            value: args.exclude.clone(),
            reason: e.to_string(),
        })?)
    };
    let scripts_url = match (args.scripts_url, args.scripts) {
        (Some(u), _) => Some(u),
        (None, Some(u)) => {
            warn!("DEPRECATED: Flag --scripts is deprecated, use --scripts-url instead");
            Some(u)
        }
        (None, None) => None,
    }
    .filter(|u| !u.is_empty());
    let destination = match (args.common.destination, args.location) {
        (Some(d), _) => Some(d),
        (None, Some(d)) => {
            warn!("DEPRECATED: Flag --location is deprecated, use --destination instead");
            Some(d)
        }
        (None, None) => None,
    }
    .filter(|d| !d.is_empty());
    if let Some(d) = &destination {
        if !d.starts_with('/') {
            return Err(BuildError::InvalidValue { what: "--destination", value: d.clone(), reason: "must be an absolute path".into() });
        }
    }
    for (flag, values) in [("--add-host", &args.add_host), ("--volume", &args.volume)] {
        if let Some(bad) = values.iter().find(|v| !v.contains(':')) {
            let reason = if flag == "--add-host" { "must be host:ip" } else { "must be host-path:container-path[:options]" };
            return Err(BuildError::InvalidValue { what: flag, value: bad.clone(), reason: reason.into() });
        }
    }
    let tag = args.tag.filter(|t| !t.is_empty());
    if let Some(t) = &tag {
        s2i_core::image_ref::parse_output_tag(t)
            .map_err(|reason| BuildError::InvalidValue { what: "tag", value: t.clone(), reason })?;
    }
    // Malformed mappings are flag errors, found before anything runs.
    for spec in &args.inject {
        s2i_core::mapping::parse_specs(spec, "--inject")?;
    }
    for spec in &args.runtime_artifact {
        s2i_core::mapping::parse_specs(spec, "--runtime-artifact")?;
    }
    if let Some(ctx) = args.context_dir.as_deref().filter(|c| !c.is_empty()) {
        s2i_core::config::validate_context_dir(ctx)?;
    }
    Ok(BuildConfig {
        source: parsed.spec,
        source_location: source,
        git_ref,
        copy: args.copy,
        ignore_submodules: args.ignore_submodules,
        builder_image: builder,
        tag,
        context_dir: args.context_dir.filter(|c| !c.is_empty()),
        scripts_url,
        destination,
        env: env_vars,
        environment_file: args.environment_file,
        pull_policy: PullPolicy::parse(&args.common.pull_policy)?,
        incremental: args.common.incremental,
        incremental_pull_policy: PullPolicy::parse(&args.common.incremental_pull_policy)?,
        remove_previous: args.common.remove_previous,
        quiet: args.common.quiet,
        assemble_user: args.assemble_user.filter(|u| !u.is_empty()),
        allowed_uids,
        application_name: args.application_name.filter(|n| !n.is_empty()),
        description: args.description.filter(|d| !d.is_empty()),
        exclude,
        keep_symlinks: args.keep_symlinks,
        save_temp_dir: args.common.save_temp_dir,
        volumes: args.volume,
        cap_drop: args.cap_drop.into_iter().filter(|c| !c.is_empty()).collect(),
        network: args.network.filter(|n| !n.is_empty()),
        add_hosts: args.add_host,
        injections: args.inject,
        runtime_image: args.runtime_image.filter(|r| !r.is_empty()),
        runtime_pull_policy: PullPolicy::parse(&args.common.runtime_pull_policy)?,
        runtime_artifacts: args.runtime_artifact,
        assemble_runtime_user: args.assemble_runtime_user.filter(|u| !u.is_empty()),
        labels: parse_labels(&args.labels)?,
        as_dockerfile: args.as_dockerfile.filter(|p| !p.as_os_str().is_empty()),
        image_scripts_url: Some(args.image_scripts_url).filter(|u| !u.is_empty()),
        build_method: BuildMethod::parse(&args.build_method)?,
    })
}

/// `--label key=value`: split at the first `=`; the key must not be empty.
fn parse_labels(values: &[String]) -> Result<Vec<(String, String)>, BuildError> {
    values
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(BuildError::InvalidValue { what: "--label", value: l.clone(), reason: "must be KEY=VALUE".into() }),
        })
        .collect()
}

/// Flags that cannot go together, refused before any work (the reference prints an error and exits 0).
fn refuse_conflicts(args: &BuildArgs) -> Result<(), BuildError> {
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if args.as_dockerfile.is_some() {
        if args.run {
            return Err(BuildError::Conflict("--run cannot be used with --as-dockerfile".into()));
        }
        if set(&args.runtime_image) {
            return Err(BuildError::Conflict("--runtime-image cannot be used with --as-dockerfile".into()));
        }
        if args.build_method == BuildMethod::Dockerfile.as_str() {
            return Err(BuildError::Conflict("--as-dockerfile writes the Dockerfile that --build-method=dockerfile builds: use one of them".into()));
        }
    }
    if args.build_method == BuildMethod::Dockerfile.as_str() && set(&args.runtime_image) {
        return Err(BuildError::Conflict("--runtime-image cannot be used with --build-method=dockerfile".into()));
    }
    Ok(())
}

fn refuse_unsupported(args: &BuildArgs) -> Result<(), BuildError> {
    let mut used: Vec<&str> = Vec::new();
    let c = &args.common;
    let checks: [(&str, bool); 1] = [
        ("--dockercfg-path", c.dockercfg_path.is_some()),
    ];
    for (flag, set) in checks {
        if set {
            used.push(flag);
        }
    }
    match used.as_slice() {
        [] => Ok(()),
        flags => Err(BuildError::NotSupported(flags.join(", "))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::{Cli, Command};
    use s2i_core::source::SourceSpec;
    use std::path::PathBuf;
    use clap::Parser;

    fn args(extra: &[&str]) -> BuildArgs {
        let mut argv = vec!["s2i", "build"];
        argv.extend_from_slice(extra);
        match Cli::try_parse_from(argv).unwrap().command {
            Some(Command::Build(b)) => *b,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_become_config() {
        let cfg = config_from_args(args(&[
            "./app", "builder", "out:v1", "-e", "A=1", "--scripts", "image:///s", "-l", "/opt", "-u", "0-10",
            "-u", "1001", "--exclude", "",
        ]))
        .unwrap();
        assert_eq!(cfg.source, SourceSpec::Local(PathBuf::from("./app")));
        assert_eq!(cfg.tag.as_deref(), Some("out:v1"));
        assert_eq!(cfg.scripts_url.as_deref(), Some("image:///s"));
        assert_eq!(cfg.destination.as_deref(), Some("/opt"));
        assert_eq!(cfg.allowed_uids.len(), 1);
        assert!(cfg.exclude.is_none());
    }

    #[test]
    fn unbuilt_features_are_refused_by_name() {
        let err = config_from_args(args(&["a", "b", "--dockercfg-path", "x"])).unwrap_err();
        assert_eq!(err.to_string(), "--dockercfg-path: not supported yet");
    }

    #[test]
    fn git_sources_and_refs() {
        let cfg = config_from_args(args(&["https://example.com/x.git#dev", "b"])).unwrap();
        assert_eq!(cfg.source, SourceSpec::GitRemote("https://example.com/x.git".into()));
        assert_eq!(cfg.source_location, "https://example.com/x.git#dev");
        assert_eq!(cfg.git_ref.as_deref(), Some("dev"));
        let cfg = config_from_args(args(&["git@github.com:org/repo.git#dev", "b", "-r", "v1", "--ignore-submodules"])).unwrap();
        assert_eq!(cfg.source, SourceSpec::GitRemote("git@github.com:org/repo.git".into()));
        assert_eq!(cfg.git_ref.as_deref(), Some("v1"));
        assert!(cfg.ignore_submodules);
        let cfg = config_from_args(args(&["./app", "b", "--ref", "", "-c"])).unwrap();
        assert_eq!(cfg.git_ref, None);
        assert!(cfg.copy);
        let err = config_from_args(args(&["file://host/x", "b"])).unwrap_err().to_string();
        assert!(err.contains(r#"has non-empty host "host""#), "{err}");
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(config_from_args(args(&["a", "b", "-e", "NOEQUALS"])).is_err());
        assert!(config_from_args(args(&["a", "b", "Bad:Tag"])).is_err());
        assert!(config_from_args(args(&["a", "b", "--exclude", "("])).is_err());
        assert!(config_from_args(args(&["a", "b", "-u", "x"])).is_err());
        assert!(config_from_args(args(&["a", "b", "--add-host", "nohost"])).is_err());
        assert!(config_from_args(args(&["a", "b", "--context-dir", "../up"])).is_err());
        assert!(config_from_args(args(&["a"])).is_err());
        assert!(config_from_args(args(&["a", "b", "-d", "relative"])).is_err());
    }
}
