//! Credentials and `--push` on the fake engine: which credentials each pull and push is handed,
//! what is pushed, and what a failed pull or push says. The registries are loopback ports nobody
//! listens on, so that asking them why something failed gets a quick, certain answer.

mod common;

use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;

use common::*;
use s2i_core::config::{BuildConfig, PullPolicy};
use s2i_core::registry::{Registries, RegistryFailure};
use s2i_core::limits::Limits;
use s2i_core::{BuildError, Services};
use s2i_testkit::fake::{Call, Fault};

/// A loopback port that nothing listens on (it was free a moment ago).
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A config.json with `user:password-of-user` for each registry.
fn config_file(dir: &Path, entries: &[(&str, &str)]) -> std::path::PathBuf {
    let auths: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(registry, user)| {
            let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:pw-{user}"));
            (registry.to_string(), serde_json::json!({ "auth": auth }))
        })
        .collect();
    let path = dir.join("config.json");
    std::fs::write(&path, serde_json::json!({ "auths": auths }).to_string()).unwrap();
    path
}

/// Who a transfer's credentials name, if any.
fn user_of(auth: &Option<s2i_engine::RegistryAuth>) -> Option<String> {
    auth.as_ref().map(|a| format!("{}@{}", a.username, a.server))
}

#[tokio::test]
async fn every_pull_and_push_gets_the_credentials_of_its_own_registry() {
    let d = tempfile::tempdir().unwrap();
    source(&d.path().join("src"));
    let (a, b, c) = (format!("127.0.0.1:{}", closed_port()), format!("127.0.0.1:{}", closed_port()), format!("127.0.0.1:{}", closed_port()));
    let builder = format!("{a}/builder:latest");
    let runtime = format!("{b}/runtime:latest");
    let engine = s2i_testkit::fake::FakeEngine::new();
    engine.add_image(&builder, common::builder());
    engine.add_image(&runtime, common::runtime());
    let credentials = config_file(d.path(), &[(&a, "ann"), (&b, "bob"), (&c, "cy")]);
    let tag = format!("{c}/app:v1");
    let mut cfg = with_runtime(config(&d.path().join("src"), &builder, Some(&tag)));
    cfg.runtime.as_mut().unwrap().image = runtime.clone();
    cfg.runtime.as_mut().unwrap().pull_policy = PullPolicy::Always;
    cfg.pull_policy = PullPolicy::Always;
    cfg.incremental_pull_policy = PullPolicy::Always;
    cfg.incremental = true;
    cfg.push = true;
    let registries = Registries::new(Some(credentials), &Limits::default());
    let with_credentials = |reporter: Arc<Recorder>| Services { engine: &engine, registries: registries.clone(), reporter };

    // The first build finds no previous stage (its registry does not answer) and builds clean.
    let first = s2i_core::build(&cfg, &with_credentials(Recorder::new())).await.unwrap();
    assert_eq!(first.builder_stage.as_ref().map(|s| s.to_string()), Some(format!("{tag}-build")));
    let seen = engine.transfers().len();

    let rec = Recorder::new();
    let result = s2i_core::build(&cfg, &with_credentials(rec.clone())).await.unwrap();
    assert!(rec.text().contains("reused the artifacts"), "{}", rec.text());
    let transfers: Vec<(Call, String, Option<String>)> = engine.transfers()[seen..].iter().map(|(call, name, auth)| (*call, name.clone(), user_of(auth))).collect();
    assert_eq!(
        transfers,
        vec![
            (Call::PullImage, builder.clone(), Some(format!("ann@{a}"))),
            (Call::PullImage, runtime.clone(), Some(format!("bob@{b}"))),
            (Call::PullImage, format!("{tag}-build"), Some(format!("cy@{c}"))),
            (Call::PushImage, tag.clone(), Some(format!("cy@{c}"))),
            (Call::PushImage, format!("{tag}-build"), Some(format!("cy@{c}"))),
        ]
    );
    let pushed: Vec<(&str, &str)> = result.pushed.iter().map(|p| (p.name.as_str(), p.digest.as_str())).collect();
    let stage_id = engine.image_id(&format!("{tag}-build")).unwrap();
    assert_eq!(pushed, vec![(tag.as_str(), result.image_id.as_str()), (format!("{tag}-build").as_str(), stage_id.as_str())]);
    assert!(result.timings.phases.iter().any(|(p, _)| p.as_str() == "push"), "the push is timed");
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn a_failed_push_keeps_the_image_and_says_what_the_registry_says() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let registry = format!("127.0.0.1:{}", closed_port());
    let tag = format!("{registry}/app:v1");
    let mut cfg: BuildConfig = config(d.path(), BUILDER, Some(&tag));
    cfg.push = true;
    let registries = Registries::new(Some(d.path().join("no-such-config.json")), &Limits::default());
    engine.inject(Call::PushImage, 0, Fault::Fail);
    let err = s2i_core::build(&cfg, &Services { engine: &engine, registries, reporter: Recorder::new() }).await.unwrap_err();
    let BuildError::Registry(RegistryFailure::PushFailed { image, image_id, pushed, cause }) = &err else { panic!("{err:?}") };
    assert_eq!(image, &tag);
    assert!(pushed.is_empty());
    assert_eq!(engine.image_id(&tag).as_ref(), Some(image_id), "the built image is kept");
    // The engine's failure made s2i ask the registry, which could not be reached.
    assert!(matches!(&**cause, RegistryFailure::Registry { source, .. } if matches!(**source, s2i_registry::RegistryError::Unreachable { .. })), "{cause:?}");
    let text = err.to_string();
    assert!(text.starts_with(&format!("unable to push {tag}: cannot reach registry {registry}")), "{text}");
    assert!(text.ends_with(&format!("; the built image {tag} is kept locally")), "{text}");
    assert_eq!(err.exit_code(), 1);
    assert!(err.hint().unwrap().contains(&format!("docker push {tag}")));
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn a_failed_pull_is_explained_by_the_registry_and_exits_2() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let registry = format!("127.0.0.1:{}", closed_port());
    let builder = format!("{registry}/nope:v1");
    let cfg = config(d.path(), &builder, None);
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(err, BuildError::Registry(RegistryFailure::Registry { .. })), "{err:?}");
    assert!(err.to_string().starts_with(&format!("unable to get {builder}: cannot reach registry {registry}")), "{err}");
    assert_eq!(err.exit_code(), 2);
    assert_eq!(engine.transfers().len(), 1);
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn push_without_a_tag_is_refused_before_building_by_a_library_caller_too() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let mut cfg = config(d.path(), BUILDER, None);
    cfg.push = true;
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(err.to_string().contains("--push"), "{err}");
    assert!(engine.calls().is_empty(), "nothing was done: {:?}", engine.calls());
}
