//! The engine a command runs on (`--engine`, `S2I_ENGINE`): a Docker or Podman daemon through the
//! Docker API (the default), reached as `-U`, `DOCKER_HOST` and the TLS flags say, or the
//! daemonless OCI engine (an image store and runc), or the in-place engine (inside a container of
//! the builder itself, unprivileged).

use std::ops::Deref;
use std::time::Duration;

use s2i_core::limits::{Env, Grammar, Limits};
use s2i_core::registry::CaFile;
use s2i_core::{BuildConfig, BuildError, BuildMethod};
use s2i_docker::{ConnectOptions, DockerEngine};
use s2i_engine::{Engine, EngineError, ImageInfo};
use s2i_oci::engine::{MEMORY_LIMIT_ENV, PIDS_LIMIT_ENV, ROOTFS_ENV};
use s2i_oci::image::{Store, MAX_BLOB_ENV, MAX_JSON_ENV};
use s2i_oci::run::rootfs::RootfsDriver;
use s2i_oci::{OciEngine, OciEngineOptions};
use s2i_inplace::{InPlaceEngine, InPlaceOptions};
use tracing::{info, warn};

use crate::cli::{EngineArgs, EngineChoice, GlobalArgs, ImageOutputArgs};
use crate::json_output::EngineReport;

/// The engine a command was connected to. Strategies see only `dyn Engine` (through `Deref`).
pub enum Connected {
    Docker(DockerEngine),
    Oci(OciEngine),
    InPlace(InPlaceEngine),
}

impl Deref for Connected {
    type Target = dyn Engine;

    fn deref(&self) -> &Self::Target {
        match self {
            Connected::Docker(e) => e,
            Connected::Oci(e) => e,
            Connected::InPlace(e) => e,
        }
    }
}

/// Connect the engine the flags chose, and say which one answers (`--loglevel 1`).
pub async fn connect(global: &GlobalArgs, limits: &Limits) -> Result<Connected, BuildError> {
    connect_with(global, limits, None).await
}

/// [`connect`], with one creation time for every image the OCI engine commits (what makes two
/// builds of one input the same image; Docker cannot be told one).
pub async fn connect_with(global: &GlobalArgs, limits: &Limits, fixed_time: Option<std::time::SystemTime>) -> Result<Connected, BuildError> {
    let engine = match global.engine.kind {
        EngineChoice::Docker => Connected::Docker(connect_docker(global).await?),
        EngineChoice::Oci => {
            let mut opts = oci_options(&global.engine, limits, &Env::process())?;
            opts.registry_ca_files = registry_ca_files(global)?;
            let ui = crate::ui::ui().clone();
            opts.tasks = Some(s2i_engine::TaskReporter::new(move |event| ui.engine_task(event)));
            // SOURCE_DATE_EPOCH, when set, is the user's word: the engine reads it.
            if Env::process().text("SOURCE_DATE_EPOCH").is_none() {
                opts.source_date_epoch = fixed_time;
            }
            Connected::Oci(OciEngine::open(opts).await?)
        }
        EngineChoice::InPlace => {
            let mut opts = InPlaceOptions { registry_ca_files: registry_ca_files(global)?, registry_limits: limits.registry, ..Default::default() };
            if Env::process().text("SOURCE_DATE_EPOCH").is_none() {
                opts.source_date_epoch = fixed_time;
            }
            Connected::InPlace(InPlaceEngine::open(opts).await?)
        }
    };
    if let Ok(v) = engine.version().await {
        info!("Using the {} engine ({}) at {}", v.kind, v.version, v.endpoint);
    }
    Ok(engine)
}

/// The OCI engine's settings: the flags, the run's registry limits, and the engine's own
/// variables (`S2I_OCI_*`), read with the grammar of every limit.
fn oci_options<F: Fn(&str) -> Option<String>>(args: &EngineArgs, limits: &Limits, env: &Env<F>) -> Result<OciEngineOptions, BuildError> {
    let mut opts = OciEngineOptions::new(args.oci_store.clone().unwrap_or_else(Store::default_root));
    if let Some(runtime) = &args.oci_runtime {
        opts.runtime = runtime.clone();
    }
    if let Some(memory) = env.optional(MEMORY_LIMIT_ENV, Grammar::Size)? {
        opts.memory_limit = memory;
    }
    if let Some(pids) = env.optional(PIDS_LIMIT_ENV, Grammar::Count)? {
        opts.pids_limit = pids;
    }
    if let Some(n) = env.size(MAX_JSON_ENV)? {
        opts.store_limits.max_json_bytes = n;
    }
    if let Some(n) = env.size(MAX_BLOB_ENV)? {
        opts.store_limits.max_blob_bytes = n;
    }
    opts.registry_limits = limits.registry;
    if let Some(driver) = env.text(ROOTFS_ENV).filter(|v| v != "auto") {
        opts.rootfs_driver = Some(RootfsDriver::parse(&driver).ok_or_else(|| BuildError::InvalidValue {
            what: ROOTFS_ENV,
            value: driver.clone(),
            reason: "use overlay, fuse-overlayfs, copy or auto".into(),
        })?);
    }
    Ok(opts)
}

/// Flags that cannot work with the chosen engine, refused before any work.
pub fn check_flags(global: &GlobalArgs, cfg: &BuildConfig, outputs: &ImageOutputArgs) -> Result<(), BuildError> {
    let oci = global.engine.kind == EngineChoice::Oci;
    if oci && cfg.build_method == BuildMethod::Dockerfile {
        return Err(BuildError::conflict(
            "--build-method=dockerfile",
            "--engine oci, which runs containers but has no image builder to build a Dockerfile (use --engine docker)",
        ));
    }
    for (flag, given) in [("--digest-file", &outputs.digest_file), ("--image-url-file", &outputs.image_url_file)] {
        if given.is_some() && !cfg.push {
            return Err(BuildError::conflict(flag, "a build without --push (the file holds what was pushed)"));
        }
    }
    if cfg.cache_dir.is_some() {
        if !cfg.incremental {
            return Err(BuildError::conflict("--cache-dir", "a build without --incremental (the cache holds the artifacts of incremental builds)"));
        }
        if cfg.runtime.is_some() {
            return Err(BuildError::conflict("--cache-dir", "--runtime-image (the cache serves the standard flow; a runtime build takes its artifacts from its builder stage)"));
        }
        if cfg.build_method == BuildMethod::Dockerfile {
            return Err(BuildError::conflict("--cache-dir", "--build-method=dockerfile"));
        }
    }
    if global.engine.kind == EngineChoice::InPlace {
        if cfg.build_method == BuildMethod::Dockerfile {
            return Err(BuildError::conflict(
                "--build-method=dockerfile",
                "--engine in-place, which runs only the scripts of the builder it is in (use --engine docker)",
            ));
        }
        if !cfg.container.volumes.is_empty() {
            return Err(BuildError::conflict("-v/--volume", "--engine in-place, whose build runs in the process's own filesystem (mount the volume into the pod instead)"));
        }
        if !cfg.push && outputs.output_archive.is_none() {
            return Err(BuildError::conflict(
                "a build without --push or --output-archive",
                "--engine in-place, which keeps no image after it exits (push the TAG with --push, or write --output-archive)",
            ));
        }
    }
    if outputs.load && !oci {
        return Err(BuildError::conflict(
            "--load",
            "--engine docker: the image is in the daemon already (--load hands an image built with --engine oci to a daemon)",
        ));
    }
    Ok(())
}

/// The engine the flags chose, for a JSON report written before any engine answered.
pub fn report_before_connecting(global: &GlobalArgs) -> EngineReport {
    EngineReport::kind_only(match global.engine.kind {
        EngineChoice::Docker => "docker",
        EngineChoice::Oci => "oci",
        EngineChoice::InPlace => "in-place",
    })
}

/// The CA files trusted for registries s2i talks to itself: `--ca-file`, then `SSL_CERT_FILE`
/// (which the system roots also read). Each is read here, so that a file that cannot be used stops
/// the command before any work, with an error that names the flag or the variable.
pub fn registry_ca_files(global: &GlobalArgs) -> Result<Vec<CaFile>, BuildError> {
    let mut files = Vec::new();
    if let Some(path) = global.registry.ca_file.as_ref().filter(|p| !p.as_os_str().is_empty()) {
        files.push(CaFile::new(path, "--ca-file"));
    }
    if let Some(path) = std::env::var_os("SSL_CERT_FILE").filter(|p| !p.is_empty()) {
        files.push(CaFile::new(path, "SSL_CERT_FILE"));
    }
    for file in &files {
        file.certificates().map_err(|e| BuildError::RegistryTrust(Box::new(e)))?;
    }
    Ok(files)
}

/// Connection settings: the environment's, overridden by the global flags.
fn connect_options(global: &GlobalArgs) -> Result<ConnectOptions, BuildError> {
    let mut opts = ConnectOptions::from_env()?;
    if let Some(url) = global.url.as_deref().filter(|u| !u.is_empty()) {
        opts.endpoint = url.to_string();
    }
    if let Some(tls) = global.tls {
        opts.tls.tls = tls;
    }
    if let Some(verify) = global.tlsverify {
        opts.tls.verify = verify;
    }
    if let Some(ca) = &global.ca {
        opts.tls.ca = ca.clone();
    }
    if let Some(cert) = &global.cert {
        opts.tls.cert = cert.clone();
    }
    if let Some(key) = &global.key {
        opts.tls.key = key.clone();
    }
    // An https:// endpoint means TLS: speaking plain HTTP to it would send everything in the clear.
    if opts.endpoint.starts_with("https://") && !opts.tls.enabled() {
        opts.tls.tls = true;
    }
    if opts.tls.tls && !opts.tls.verify {
        warn!("--tls without --tlsverify: the connection to {} is encrypted, but nothing checks that the daemon is the one you meant", opts.endpoint);
    }
    Ok(opts)
}

/// The Docker API engine (Docker, Podman) at `-U`/`DOCKER_HOST`.
pub async fn connect_docker(global: &GlobalArgs) -> Result<DockerEngine, BuildError> {
    let opts = connect_options(global)?;
    DockerEngine::connect(&opts).await.map_err(|e| match e {
        EngineError::Connect { endpoint, reason } => BuildError::EngineUnreachable { endpoint, reason },
        other => other.into(),
    })
}

/// The builder as the local engine knows it, for Dockerfile generation, which needs no engine: an
/// engine that does not answer within a few seconds, or lacks the image, only means the builder's
/// scripts label is unknown (`--image-scripts-url` stands in for it).
pub async fn inspect_if_reachable(global: &GlobalArgs, limits: &Limits, image: &str) -> Option<ImageInfo> {
    let name = s2i_core::image_ref::with_default_tag(image);
    let attempt = async {
        let engine = connect(global, limits).await.map_err(|e| e.to_string())?;
        engine.inspect_image(&name).await.map_err(|e| e.to_string())?.ok_or_else(|| "not present locally".to_string())
    };
    let outcome = tokio::time::timeout(Duration::from_secs(5), attempt).await.unwrap_or_else(|_| Err("the engine did not answer".into()));
    match outcome {
        Ok(info) => Some(info),
        Err(why) => {
            info!("Could not inspect the builder image {name} ({why}); its scripts label is unknown");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["s2i"];
        argv.extend_from_slice(args);
        argv.push("version");
        crate::cli::Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn an_https_endpoint_is_spoken_to_with_tls() {
        let opts = connect_options(&global(&["-U", "https://127.0.0.1:2376"])).unwrap();
        assert!(opts.tls.enabled(), "never plain HTTP to an https:// endpoint");
        assert!(!opts.tls.verify, "verification stays as the flags say");
        let opts = connect_options(&global(&["-U", "tcp://127.0.0.1:2375"])).unwrap();
        assert_eq!(opts.tls.enabled(), std::env::var_os("DOCKER_TLS").is_some() || std::env::var_os("DOCKER_TLS_VERIFY").is_some());
    }

    fn env(pairs: &'static [(&'static str, &'static str)]) -> Env<impl Fn(&str) -> Option<String>> {
        Env::with(move |n: &str| pairs.iter().find(|(k, _)| *k == n).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn the_oci_engine_variables_take_the_grammar_of_limits() {
        let args = global(&["--engine", "oci", "--oci-store", "/s"]).engine;
        let mut limits = Limits::default();
        limits.registry.manifest_max_bytes = 99;
        let vars = env(&[("S2I_OCI_MEMORY_LIMIT", "none"), ("S2I_OCI_PIDS_LIMIT", "64K"), ("S2I_OCI_MAX_JSON_BYTES", "1M"), ("S2I_OCI_ROOTFS", "copy")]);
        let o = oci_options(&args, &limits, &vars).unwrap();
        assert_eq!((o.memory_limit, o.pids_limit), (None, Some(64 << 10)));
        assert_eq!(o.store_limits.max_json_bytes, 1 << 20);
        assert_eq!(o.store_limits.max_blob_bytes, s2i_oci::image::Limits::default().max_blob_bytes);
        assert_eq!(o.rootfs_driver, Some(RootfsDriver::Copy));
        assert_eq!(o.registry_limits.manifest_max_bytes, 99, "the run's registry limits");
        assert_eq!(o.store_root, std::path::Path::new("/s"));
    }

    /// The store's limits were read apart from the others, and a value they could not read was
    /// dropped without a word.
    #[test]
    fn an_oci_variable_that_cannot_be_read_is_an_error_naming_it() {
        let args = global(&["--engine", "oci"]).engine;
        for (vars, variable) in [
            (env(&[("S2I_OCI_MAX_JSON_BYTES", "lots")]), "S2I_OCI_MAX_JSON_BYTES"),
            (env(&[("S2I_OCI_MAX_BLOB_BYTES", "-1")]), "S2I_OCI_MAX_BLOB_BYTES"),
            (env(&[("S2I_OCI_MEMORY_LIMIT", "8 gigs")]), "S2I_OCI_MEMORY_LIMIT"),
            (env(&[("S2I_OCI_PIDS_LIMIT", "many")]), "S2I_OCI_PIDS_LIMIT"),
            (env(&[("S2I_OCI_ROOTFS", "zfs")]), "S2I_OCI_ROOTFS"),
        ] {
            let err = oci_options(&args, &Limits::default(), &vars).unwrap_err();
            assert!(matches!(&err, BuildError::InvalidValue { what, .. } if *what == variable), "{err}");
        }
    }
}
