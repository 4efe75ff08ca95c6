//! `s2i build SOURCE BUILDER_IMAGE [TAG]`.

use std::sync::Arc;
use std::time::Instant;

use regex::Regex;
use s2i_core::config::{ContainerSettings, RuntimeConfig, SourceConfig};
use s2i_core::limits::Limits;
use s2i_core::registry::Registries;
use s2i_core::source::ParsedSource;
use s2i_core::{env, mapping, redact, users, BuildConfig, BuildError, OutputFormat};
use tracing::{info, warn};

use super::report;
use crate::cli::{BuildArgs, GlobalArgs, ImageOutputArgs};
use crate::s2ifile::Pending;
use crate::ui::{ui, UiReporter};

pub async fn run(global: &GlobalArgs, args: BuildArgs, pending: Option<Pending>) -> Result<(), BuildError> {
    let json = args.output == OutputFormat::Json;
    let run_after = args.run;
    let outputs = args.image_outputs.clone();
    let callback = args.common.callback_url.clone().filter(|u| !u.is_empty());
    let requested = (args.builder.clone().unwrap_or_default(), args.tag.clone().filter(|t| !t.is_empty()));
    let started = Instant::now();
    ui().set_quiet(args.common.quiet);

    let cfg = match config_from_args(args) {
        Ok(cfg) => cfg,
        Err(e) => {
            if json {
                ui().json(&report::failure(&requested.0, requested.1.as_deref(), &e, started.elapsed()));
            }
            return Err(e);
        }
    };
    if let Some(pending) = pending {
        pending.save();
    }
    let after = After { json, run_after, callback, started, outputs };
    if cfg.as_dockerfile.is_some() {
        let builder = super::inspect_if_reachable(global, &cfg.builder_image).await;
        let written = super::interruptible(None, &cfg.limits, s2i_core::write_dockerfile(&cfg, builder.as_ref(), true)).await;
        if json {
            ui().json(&match &written {
                Ok(path) => report::dockerfile(&cfg, path, started.elapsed()),
                Err(e) => report::failure(&cfg.builder_image, cfg.tag_name().as_deref(), e, started.elapsed()),
            });
        }
        ui().line(&format!("Application dockerfile generated in {}", written?.display()));
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
    /// `--output-archive`, `--load`.
    pub outputs: ImageOutputArgs,
}

/// Build `cfg` with the engine, write and load the image where asked, then send the callback,
/// print the result and run the image as asked.
pub async fn execute(global: &GlobalArgs, cfg: &BuildConfig, after: After) -> Result<(), BuildError> {
    let After { json, run_after, callback, started, outputs } = after;
    // Until an engine answers, the report names the one that was chosen.
    let chosen = super::engine::chosen(global);
    if let Err(e) = super::engine::check_flags(global, cfg, &outputs) {
        return finish_failed(cfg, e, callback.as_deref(), json, started, Some(chosen)).await;
    }
    let engine = match super::connect(global).await {
        Ok(engine) => engine,
        Err(e) => return finish_failed(cfg, e, callback.as_deref(), json, started, Some(chosen)).await,
    };
    let engine_doc = engine.version().await.ok().map(|v| report::engine(&v));
    let reporter: Arc<dyn s2i_core::Reporter> = Arc::new(UiReporter(ui().clone()));
    let built = super::interruptible(Some(&*engine), &cfg.limits, s2i_core::build(cfg, &*engine, reporter.clone())).await;
    let result = match built {
        Ok(result) => result,
        Err(e) => return finish_failed(cfg, e, callback.as_deref(), json, started, engine_doc).await,
    };
    let image = result.tag.clone().unwrap_or_else(|| result.image_id.clone());
    // Writing the archive and loading it into a daemon are interruptible too: tokio keeps its
    // signal handlers once installed, so outside `interruptible` Ctrl-C would be swallowed.
    let delivered = match super::interruptible(Some(&*engine), &cfg.limits, super::engine::deliver(&engine, global, &outputs, &image)).await {
        Ok(d) => d,
        Err(e) => return finish_failed(cfg, e, callback.as_deref(), json, started, engine_doc).await,
    };
    if let Some(url) = &callback {
        send_callback(url, true, &result.labels).await;
    }
    match &result.tag {
        Some(tag) => info!("Image {tag} ({}) built", crate::ui::short_id(&result.image_id)),
        None => info!("Image {} built (untagged)", crate::ui::short_id(&result.image_id)),
    }
    ui().line("Build completed successfully");
    ui().summary(&result, started.elapsed());
    for pushed in &result.pushed {
        ui().line(&format!("Pushed {}@{}", pushed.name, pushed.digest));
    }
    if json {
        let mut doc = report::success(cfg, &result, started.elapsed());
        if let Some(engine) = engine_doc {
            doc["engine"] = engine;
        }
        delivered.add_to(&mut doc);
        ui().json(&doc);
    }
    if run_after {
        ui().line(&format!("Running {image} as a result of the --run=true option (all its ports are published; Ctrl-C stops it)"));
        super::interruptible(Some(&*engine), &cfg.limits, s2i_core::run_image(&*engine, &image, reporter)).await?;
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
        let mut doc = report::failure(&cfg.builder_image, cfg.tag_name().as_deref(), &e, started.elapsed());
        if let Some(engine) = engine {
            doc["engine"] = engine;
        }
        ui().json(&doc);
    }
    Err(e)
}

/// The callback never changes the outcome of the build: its failure is a warning.
async fn send_callback(url: &str, success: bool, labels: &std::collections::BTreeMap<String, String>) {
    if let Err(e) = s2i_core::callback::send(url, success, labels).await {
        warn!("{e}");
    }
}

/// Turn flags into a config, checked once: nothing after this parses or validates a flag again.
pub fn config_from_args(args: BuildArgs) -> Result<BuildConfig, BuildError> {
    refuse_conflicts(&args)?;
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
        Some(Regex::new(&args.exclude).map_err(|e| BuildError::InvalidValue { what: "--exclude", value: args.exclude.clone(), reason: e.to_string() })?)
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
    if let Some(url) = &scripts_url {
        s2i_core::scripts::ScriptsUrl::parse(url)?;
    }
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
    let tag = args.tag.filter(|t| !t.is_empty()).map(|t| s2i_core::config::parse_tag(&t)).transpose()?;
    if args.push {
        s2i_core::config::check_push(tag.as_ref())?;
    }
    let mut injections = Vec::new();
    for spec in &args.inject {
        injections.extend(mapping::parse_specs(spec, "--inject")?);
    }
    let mut artifacts = Vec::new();
    for spec in &args.runtime_artifact {
        artifacts.extend(mapping::parse_specs(spec, "--runtime-artifact")?);
    }
    let context_dir = args.context_dir.filter(|c| !c.is_empty());
    if let Some(ctx) = &context_dir {
        s2i_core::config::validate_context_dir(ctx)?;
    }
    let runtime = args.runtime_image.filter(|r| !r.is_empty()).map(|image| RuntimeConfig {
        image,
        pull_policy: args.common.runtime_pull_policy,
        artifacts,
        assemble_user: args.assemble_runtime_user.filter(|u| !u.is_empty()),
    });
    Ok(BuildConfig {
        source: SourceConfig {
            spec: parsed.spec,
            location: redact::url(&source),
            git_ref,
            reference_name: None,
            copy: args.copy,
            ignore_submodules: args.ignore_submodules,
            context_dir,
            exclude,
            keep_symlinks: args.keep_symlinks,
        },
        builder_image: builder,
        tag,
        scripts_url,
        destination,
        env: env_vars,
        environment_file: args.environment_file,
        pull_policy: args.common.pull_policy,
        incremental: args.common.incremental,
        incremental_pull_policy: args.common.incremental_pull_policy,
        remove_previous: args.common.remove_previous,
        quiet: args.common.quiet,
        assemble_user: args.assemble_user.filter(|u| !u.is_empty()),
        allowed_uids,
        application_name: args.application_name.filter(|n| !n.is_empty()),
        description: args.description.filter(|d| !d.is_empty()),
        save_temp_dir: args.common.save_temp_dir,
        container: ContainerSettings {
            volumes: args.volume,
            cap_drop: args.cap_drop.into_iter().filter(|c| !c.is_empty()).collect(),
            network: args.network.filter(|n| !n.is_empty()),
            add_hosts: args.add_host,
        },
        injections,
        runtime,
        labels: parse_labels(&args.labels)?,
        as_dockerfile: args.as_dockerfile.filter(|p| !p.as_os_str().is_empty()),
        image_scripts_url: Some(args.image_scripts_url).filter(|u| !u.is_empty()),
        build_method: args.build_method,
        limits: Limits::from_env()?,
        registries: Registries::new(args.common.dockercfg_path),
        push: args.push,
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
    let dockerfile_method = args.build_method == s2i_core::BuildMethod::Dockerfile;
    if args.as_dockerfile.is_some() {
        if args.run {
            return Err(BuildError::conflict("--run", "--as-dockerfile"));
        }
        if set(&args.runtime_image) {
            return Err(BuildError::conflict("--runtime-image", "--as-dockerfile"));
        }
        if dockerfile_method {
            return Err(BuildError::DockerfileTwice);
        }
    }
    if dockerfile_method && set(&args.runtime_image) {
        return Err(BuildError::conflict("--runtime-image", "--build-method=dockerfile"));
    }
    if args.push && args.as_dockerfile.is_some() {
        return Err(BuildError::conflict("--push", "--as-dockerfile"));
    }
    Ok(())
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
        assert_eq!(cfg.source.spec, SourceSpec::Local(PathBuf::from("./app")));
        assert_eq!(cfg.tag_name().as_deref(), Some("out:v1"));
        assert_eq!(cfg.scripts_url.as_deref(), Some("image:///s"));
        assert_eq!(cfg.destination.as_deref(), Some("/opt"));
        assert_eq!(cfg.allowed_uids.len(), 1);
        assert!(cfg.source.exclude.is_none());
    }

    #[test]
    fn registry_flags_become_config() {
        let cfg = config_from_args(args(&["a", "b", "127.0.0.1:5000/team/app:v1", "--dockercfg-path", "/etc/s2i/auth.json", "--push"])).unwrap();
        assert_eq!(cfg.registries.config_path(), Some(std::path::Path::new("/etc/s2i/auth.json")));
        assert!(cfg.push);
        let cfg = config_from_args(args(&["a", "b", "app"])).unwrap();
        assert_eq!(cfg.registries.config_path(), None, "Docker's places");
        assert!(!cfg.push);
    }

    #[test]
    fn push_is_refused_before_any_work_without_a_registry_in_the_tag() {
        for (argv, want) in [
            (&["a", "b", "app:v1", "--push"][..], "TAG app:v1 names no registry"),
            (&["a", "b", "--push"][..], "needs the TAG"),
            (&["a", "b", "r.example/app", "--push", "--as-dockerfile", "out/Dockerfile"][..], "--push cannot be used with --as-dockerfile"),
        ] {
            let err = config_from_args(args(argv)).unwrap_err().to_string();
            assert!(err.contains(want), "{argv:?}: {err}");
        }
    }

    #[test]
    fn credentials_in_a_source_url_never_reach_the_config() {
        let cfg = config_from_args(args(&["https://user:t0ken@example.com/x.git?access_token=abc#dev", "b"])).unwrap();
        assert_eq!(cfg.source.location, "https://example.com/x.git?access_token=redacted#dev");
        assert_eq!(cfg.source.spec, SourceSpec::GitRemote("https://user:t0ken@example.com/x.git?access_token=abc".into()), "git still gets them");
    }

    #[test]
    fn git_sources_and_refs() {
        let cfg = config_from_args(args(&["https://example.com/x.git#dev", "b"])).unwrap();
        assert_eq!(cfg.source.spec, SourceSpec::GitRemote("https://example.com/x.git".into()));
        assert_eq!(cfg.source.location, "https://example.com/x.git#dev");
        assert_eq!(cfg.source.git_ref.as_deref(), Some("dev"));
        let cfg = config_from_args(args(&["git@github.com:org/repo.git#dev", "b", "-r", "v1", "--ignore-submodules"])).unwrap();
        assert_eq!(cfg.source.spec, SourceSpec::GitRemote("git@github.com:org/repo.git".into()));
        assert_eq!(cfg.source.git_ref.as_deref(), Some("v1"));
        assert!(cfg.source.ignore_submodules);
        let cfg = config_from_args(args(&["./app", "b", "--ref", "", "-c"])).unwrap();
        assert_eq!(cfg.source.git_ref, None);
        assert!(cfg.source.copy);
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
