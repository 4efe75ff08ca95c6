//! `s2i build SOURCE BUILDER_IMAGE [TAG]`.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use regex::Regex;
use s2i_core::config::{self, ContainerSettings, ParsedSource, RuntimeConfig, SourceConfig};
use s2i_core::limits::{Limit, Limits};
use s2i_core::registry::Registries;
use s2i_core::{mapping, redact, BuildConfig, BuildError, Services};
use s2i_engine::{SeccompProfile, SecurityOptions};
use tracing::{info, warn};

use crate::json_output::{BuildDocument, EngineReport};
use crate::cli::{BuildArgs, BuildFlags, GlobalArgs, ImageOutputArgs, OutputFormat};
use crate::s2ifile::S2ifileToSave;
use crate::ui::{ui, UiReporter};

pub async fn run(global: &GlobalArgs, args: BuildArgs, pending: Option<S2ifileToSave>) -> Result<(), BuildError> {
    let json = args.output == OutputFormat::Json;
    let run_image = args.run;
    let outputs = args.image_outputs.clone();
    let provenance = args.provenance.clone().filter(|p| !p.as_os_str().is_empty());
    let callback = args.flags.common.callback_url.clone().filter(|u| !u.is_empty());
    let requested = (args.builder.clone().unwrap_or_default(), args.tag.clone().filter(|t| !t.is_empty()));
    let started = Instant::now();
    ui().set_quiet(args.flags.common.quiet);

    // The CA files are read now: one that cannot be used stops the build before any work.
    let configured = config_from_args(args).and_then(|cfg| Ok((crate::engine::registry_ca_files(global)?, cfg)));
    let (ca_files, cfg) = match configured {
        Ok(configured) => configured,
        Err(e) => {
            if json {
                ui().json(&BuildDocument::failure(&requested.0, requested.1.as_deref(), &e, started.elapsed()));
            }
            return Err(e);
        }
    };
    if let Some(pending) = pending {
        pending.save();
    }
    let handling = ResultHandling { json, run_image, callback, started, outputs, provenance };
    if cfg.as_dockerfile.is_some() {
        let builder = crate::engine::inspect_if_reachable(global, &cfg.limits, &cfg.builder_image).await;
        let written = super::interruptible(None, &cfg.limits, s2i_core::write_dockerfile(&cfg, builder.as_ref(), true)).await;
        if json {
            ui().json(&match &written {
                Ok(path) => BuildDocument::dockerfile(&cfg, path, started.elapsed()),
                Err(e) => BuildDocument::failure(&cfg.builder_image, cfg.tag_name().as_deref(), e, started.elapsed()),
            });
        }
        ui().line(&format!("Application dockerfile generated in {}", written?.display()));
        return Ok(());
    }
    let registries = Registries::new(cfg.dockercfg_path.clone(), &cfg.limits).with_ca_files(ca_files);
    execute(global, &cfg, registries, handling).await
}

/// What is done with a build's outcome besides showing it: the JSON document, the callback, the
/// image's archive and load, and running it.
pub struct ResultHandling {
    pub json: bool,
    pub run_image: bool,
    pub callback: Option<String>,
    pub started: Instant,
    /// `--output-archive`, `--load`.
    pub outputs: ImageOutputArgs,
    /// `--provenance FILE`.
    pub provenance: Option<std::path::PathBuf>,
}

/// Build `cfg` with the engine (pulling and pushing with `registries`), write and load the image
/// where asked, then send the callback, print the result and run the image as asked.
pub async fn execute(global: &GlobalArgs, cfg: &BuildConfig, registries: Registries, handling: ResultHandling) -> Result<(), BuildError> {
    let ResultHandling { json, run_image, callback, started, outputs, provenance } = handling;
    let started_at = std::time::SystemTime::now();
    // Until an engine answers, the report names the one that was chosen.
    let engine_report = crate::engine::report_before_connecting(global);
    if let Err(e) = crate::engine::check_flags(global, cfg, &outputs) {
        return report_failure(cfg, e, callback.as_deref(), json, started, Some(engine_report)).await;
    }
    let engine = match crate::engine::connect(global, &cfg.limits).await {
        Ok(engine) => engine,
        Err(e) => return report_failure(cfg, e, callback.as_deref(), json, started, Some(engine_report)).await,
    };
    let engine_doc = engine.version().await.ok().map(|v| EngineReport::answered(&v));
    let reporter: Arc<dyn s2i_core::Reporter> = Arc::new(UiReporter(ui().clone()));
    let services = Services { engine: &*engine, registries, reporter: reporter.clone() };
    let built = super::interruptible(Some(&*engine), &cfg.limits, s2i_core::build(cfg, &services)).await;
    let result = match built {
        Ok(result) => result,
        Err(e) => return report_failure(cfg, e, callback.as_deref(), json, started, engine_doc).await,
    };
    let image = result.tag.clone().unwrap_or_else(|| result.image_id.clone());
    // Writing the archive and loading it into a daemon are interruptible too: tokio keeps its
    // signal handlers once installed, so outside `interruptible` Ctrl-C would be swallowed.
    let delivered = match super::interruptible(Some(&*engine), &cfg.limits, crate::delivery::deliver(&engine, global, &outputs, &image)).await {
        Ok(d) => d,
        Err(e) => return report_failure(cfg, e, callback.as_deref(), json, started, engine_doc).await,
    };
    if let Err(e) = write_pushed_files(&outputs, &result) {
        return report_failure(cfg, e, callback.as_deref(), json, started, engine_doc).await;
    }
    // After the push and the archive: the digest it names is the one pushed.
    if let Some(path) = &provenance {
        let kind = engine_doc.as_ref().map_or("docker", |e| e.kind);
        let times = crate::provenance::Times { started: started_at, finished: std::time::SystemTime::now() };
        let statement = crate::provenance::statement(cfg, &result, kind, &times, delivered.archive_digest.as_deref());
        if let Err(e) = crate::provenance::write(path, &statement) {
            return report_failure(cfg, e, callback.as_deref(), json, started, engine_doc).await;
        }
        info!("Provenance written to {}", path.display());
    }
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
        let doc = BuildDocument {
            engine: engine_doc,
            archive: delivered.archive,
            loaded: delivered.loaded,
            provenance: provenance.as_ref().map(|p| p.display().to_string()),
            ..BuildDocument::success(cfg, &result, started.elapsed())
        };
        ui().json(&doc);
    }
    if run_image {
        ui().line(&format!("Running {image} as a result of the --run=true option (all its ports are published; Ctrl-C stops it)"));
        super::interruptible(Some(&*engine), &cfg.limits, s2i_core::run_image(&*engine, &image, reporter)).await?;
    }
    Ok(())
}

/// `--digest-file` and `--image-url-file`: what the push of the tag stored, for a pipeline's
/// results (Tekton's IMAGE_DIGEST and IMAGE_URL). Each is written whole or not at all.
fn write_pushed_files(outputs: &ImageOutputArgs, result: &s2i_core::BuildResult) -> Result<(), BuildError> {
    let Some(pushed) = result.pushed.first() else { return Ok(()) };
    for (file, text) in [(&outputs.digest_file, &pushed.digest), (&outputs.image_url_file, &pushed.name)] {
        let Some(path) = file else { continue };
        let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
        let write = || -> std::io::Result<()> {
            let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
            std::io::Write::write_all(&mut tmp, text.as_bytes())?;
            tmp.persist(path).map_err(|e| e.error)?;
            Ok(())
        };
        write().map_err(|e| BuildError::io(format!("writing {}", path.display()), e))?;
    }
    Ok(())
}

/// A failed build still sends its callback and its JSON document; the error is returned for the
/// binary to render once.
async fn report_failure(
    cfg: &BuildConfig,
    e: BuildError,
    callback: Option<&str>,
    json: bool,
    started: Instant,
    engine: Option<EngineReport>,
) -> Result<(), BuildError> {
    if let Some(url) = callback {
        send_callback(url, false, &Default::default()).await;
    }
    if json {
        let doc = BuildDocument { engine, ..BuildDocument::failure(&cfg.builder_image, cfg.tag_name().as_deref(), &e, started.elapsed()) };
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
    let limits = Limits::from_env()?;
    let (Some(source), Some(builder)) = (args.source.clone(), args.builder.clone()) else {
        return Err(BuildError::InvalidValue {
            what: "arguments",
            value: String::new(),
            reason: "s2i build needs SOURCE and BUILDER_IMAGE (and optionally TAG); see s2i build --help".into(),
        });
    };
    let mut cfg = config_from_flags(&source, &builder, args.flags, limits)?;
    cfg.tag = args.tag.filter(|t| !t.is_empty()).map(|t| config::parse_tag(&t)).transpose()?;
    if args.push {
        config::check_push(cfg.tag.as_ref())?;
    }
    cfg.push = args.push;
    cfg.as_dockerfile = args.as_dockerfile.filter(|p| !p.as_os_str().is_empty());
    Ok(cfg)
}

/// SOURCE and BUILDER with the flags of a build (what `s2i build` and `s2i verify` share), made
/// into a config that is untagged, pushes nothing and writes no Dockerfile.
pub fn config_from_flags(source: &str, builder: &str, args: BuildFlags, limits: Limits) -> Result<BuildConfig, BuildError> {
    let (source, builder) = (source.to_string(), builder.to_string());
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
        env_vars.push(config::parse_env_flag(e)?);
    }
    let mut secrets: Vec<config::SecretSpec> = Vec::new();
    for spec in &args.secrets {
        let secret: config::SecretSpec = spec.parse()?;
        if secrets.iter().any(|s| s.id == secret.id) {
            return Err(BuildError::InvalidValue { what: "--secret", value: spec.clone(), reason: format!("the id {} is given twice", secret.id) });
        }
        // Now, so that a missing file stops the build before any container starts.
        secret.check()?;
        secrets.push(secret);
    }
    // Repeating --allowed-uids replaces the list, as in the reference.
    let allowed_uids = match args.allowed_uids.last() {
        Some(text) => config::parse_ranges(text)?,
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
    let security = security_options(&args.security_opt, &limits)?;
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
        config::validate_context_dir(ctx)?;
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
        tag: None,
        scripts_url,
        destination,
        env: env_vars,
        secrets,
        environment_file: args.environment_file,
        pull_policy: args.common.pull_policy,
        incremental: args.common.incremental,
        incremental_pull_policy: args.common.incremental_pull_policy,
        cache_dir: args.common.cache_dir.filter(|d| !d.as_os_str().is_empty()),
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
            security,
        },
        injections,
        runtime,
        labels: parse_labels(&args.labels)?,
        as_dockerfile: None,
        image_scripts_url: Some(args.image_scripts_url).filter(|u| !u.is_empty()),
        build_method: args.build_method,
        dockercfg_path: args.common.dockercfg_path,
        limits,
        push: false,
    })
}

/// `--security-opt`, in docker's words (`KEY=VALUE`, or the older `KEY:VALUE`); the last seccomp
/// value counts. A profile file is read and checked here, so that a bad one stops the build
/// before anything starts, whichever engine runs it.
fn security_options(values: &[String], limits: &Limits) -> Result<SecurityOptions, BuildError> {
    let mut options = SecurityOptions::default();
    for value in values.iter().filter(|v| !v.is_empty()) {
        let bad = |reason: &str| BuildError::InvalidValue { what: "--security-opt", value: value.clone(), reason: reason.into() };
        match value.split_once('=').or_else(|| value.split_once(':')) {
            None if value == "no-new-privileges" => options.no_new_privileges = true,
            Some(("no-new-privileges", flag)) => {
                options.no_new_privileges = match flag {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad("no-new-privileges takes true or false")),
                }
            }
            Some(("seccomp", "unconfined")) => options.seccomp = SeccompProfile::Unconfined,
            Some(("seccomp", "builtin")) => options.seccomp = SeccompProfile::Default,
            Some(("seccomp", "")) => return Err(bad("name a profile file (Docker's JSON format), unconfined or builtin")),
            Some(("seccomp", file)) => options.seccomp = seccomp_file(value, Path::new(file), limits)?,
            _ => return Err(bad("s2i takes seccomp=unconfined, seccomp=builtin, seccomp=PROFILE.json and no-new-privileges")),
        }
    }
    Ok(options)
}

/// A seccomp profile file, read (a small regular file) and parsed as the oci engine will use it.
fn seccomp_file(value: &str, file: &Path, limits: &Limits) -> Result<SeccompProfile, BuildError> {
    let bad = |reason: String| BuildError::InvalidValue { what: "--security-opt", value: value.to_string(), reason };
    // Absolute: Podman's service opens the path itself, from its own working directory.
    let path = std::path::absolute(file).map_err(|e| bad(e.to_string()))?;
    let data = s2i_core::fsutil::read_regular(&path, Limit::FileSize, limits.file_size, limits)?
        .ok_or_else(|| bad(format!("no profile file at {}", path.display())))?;
    let json = String::from_utf8(data).map_err(|_| bad(format!("{} is not UTF-8 text", path.display())))?;
    s2i_oci::run::seccomp::Profile::parse(&json, &path.display().to_string()).map_err(|e| match e {
        s2i_oci::run::RunError::BadSeccompProfile { reason, .. } => bad(format!("not a usable seccomp profile: {reason}")),
        other => bad(other.to_string()),
    })?;
    Ok(SeccompProfile::File { path, json })
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
    let dockerfile_method = args.flags.build_method == s2i_core::BuildMethod::Dockerfile;
    if args.as_dockerfile.is_some() {
        if args.run {
            return Err(BuildError::conflict("--run", "--as-dockerfile"));
        }
        if set(&args.flags.runtime_image) {
            return Err(BuildError::conflict("--runtime-image", "--as-dockerfile"));
        }
        if dockerfile_method {
            return Err(BuildError::DockerfileTwice);
        }
    }
    if dockerfile_method && set(&args.flags.runtime_image) {
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
    use s2i_core::config::SourceSpec;
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
    fn security_opts_become_config() {
        let security = |extra: &[&str]| {
            let mut argv = vec!["a", "b"];
            argv.extend_from_slice(extra);
            config_from_args(args(&argv)).map(|cfg| cfg.container.security)
        };
        assert_eq!(security(&[]).unwrap(), SecurityOptions::default());
        let s = security(&["--security-opt", "seccomp=unconfined", "--security-opt=no-new-privileges"]).unwrap();
        assert_eq!((s.seccomp, s.no_new_privileges), (SeccompProfile::Unconfined, true));
        // Docker's older colon form; the last seccomp value counts.
        let s = security(&["--security-opt", "seccomp:unconfined", "--security-opt", "seccomp=builtin", "--security-opt", "no-new-privileges:false"]).unwrap();
        assert_eq!(s, SecurityOptions::default());

        let dir = tempfile::tempdir().unwrap();
        let profile = dir.path().join("p.json");
        let json = r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["setpriority"], "action": "SCMP_ACT_ERRNO"}]}"#;
        std::fs::write(&profile, json).unwrap();
        let s = security(&["--security-opt", &format!("seccomp={}", profile.display())]).unwrap();
        assert_eq!(s.seccomp, SeccompProfile::File { path: profile.clone(), json: json.into() });

        std::fs::write(&profile, r#"{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": []}]}"#).unwrap();
        for (value, says) in [
            ("label=disable".to_string(), "s2i takes seccomp=unconfined, seccomp=builtin, seccomp=PROFILE.json and no-new-privileges"),
            ("seccomp=".to_string(), "name a profile file"),
            ("no-new-privileges=yes".to_string(), "takes true or false"),
            (format!("seccomp={}", dir.path().join("none.json").display()), "no profile file at"),
            (format!("seccomp={}", profile.display()), "not a usable seccomp profile: missing field `action`"),
        ] {
            let err = security(&["--security-opt", &value]).unwrap_err().to_string();
            assert!(err.starts_with(&format!("invalid --security-opt {value:?}: ")) && err.contains(says), "{value}: {err}");
        }
    }

    #[test]
    fn registry_flags_become_config() {
        let cfg = config_from_args(args(&["a", "b", "127.0.0.1:5000/team/app:v1", "--dockercfg-path", "/etc/s2i/auth.json", "--push"])).unwrap();
        assert_eq!(cfg.dockercfg_path.as_deref(), Some(std::path::Path::new("/etc/s2i/auth.json")));
        assert!(cfg.push);
        let cfg = config_from_args(args(&["a", "b", "app"])).unwrap();
        assert_eq!(cfg.dockercfg_path, None, "Docker's places");
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
