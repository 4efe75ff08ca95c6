//! Every build flow on the fake engine: no daemon, milliseconds per test. The same flows run
//! against Docker and Podman in the s2i crate's integration tests; these pin down the pipeline's
//! own decisions (what is streamed, run, committed and removed).

mod common;

use std::os::unix::fs::PermissionsExt;

use common::*;
use s2i_core::config::{BuildMethod, PullPolicy};
use s2i_core::BuildError;
use s2i_testkit::fake::Node;

fn uid_of(tree: &s2i_testkit::fake::Tree, path: &str) -> Option<u64> {
    match tree.get(path)? {
        Node::File { uid, .. } | Node::Dir { uid, .. } => Some(*uid),
        Node::Symlink { .. } => None,
    }
}

#[tokio::test]
async fn standard_build_streams_assembles_commits_and_leaves_no_container() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let rec = Recorder::new();
    let cfg = config(d.path(), BUILDER, Some("app:v1"));
    let result = s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert_eq!(result.tag.as_deref(), Some("app:v1"));
    assert!(rec.text().contains("installed the dependencies"), "{}", rec.text());
    let (info, files) = engine.image("app:v1").expect("tagged");
    assert_eq!(info.cmd, Some(vec!["/usr/libexec/s2i/run".to_string()]));
    assert_eq!(info.user, "1001");
    assert_eq!(info.labels["io.openshift.s2i.build.image"], "docker.io/library/builder:latest");
    assert!(files.contains_key("/opt/app/index.html") && files.contains_key("/opt/app/lib/util.sh"));
    // Everything streamed in belongs to the assemble user.
    assert_eq!(uid_of(&files, "/tmp/src/index.html"), Some(1001));
    assert!(engine.containers().is_empty(), "no container is left");
}

#[tokio::test]
async fn an_incremental_build_reuses_the_previous_artifacts() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let mut cfg = config(d.path(), BUILDER, Some("app:v1"));
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let first = engine.image_id("app:v1").unwrap();
    cfg.incremental = true;
    cfg.remove_previous = true;
    let rec = Recorder::new();
    s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert!(rec.text().contains("reused the artifacts"), "{}", rec.text());
    assert_ne!(engine.image_id("app:v1").unwrap(), first);
    assert!(engine.image(&first).is_none(), "--rm removed the previous image");
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn hostile_artifacts_make_a_clean_build() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    // A previous image whose save-artifacts writes an entry that climbs out of artifacts/.
    let mut evil = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o755);
    h.set_entry_type(tar::EntryType::Regular);
    h.as_old_mut().name[..20].copy_from_slice(b"../scripts/assemble\0");
    h.set_cksum();
    evil.append(&h, &b"evil"[..]).unwrap();
    let evil = evil.into_inner().unwrap();
    let previous = builder().program("/usr/libexec/s2i/save-artifacts", move |e| {
        e.stdout = evil.clone();
        0
    });
    engine.add_image("app:v1", previous.label("io.openshift.s2i.build.image", "x"));
    let mut cfg = config(d.path(), BUILDER, Some("app:v1"));
    cfg.incremental = true;
    let rec = Recorder::new();
    s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert!(rec.text().contains("installed the dependencies"), "a clean build: {}", rec.text());
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn a_runtime_image_gets_only_the_artifacts() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let cfg = with_runtime(config(d.path(), BUILDER, Some("slim:v1")));
    let rec = Recorder::new();
    s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert!(rec.text().contains("assemble-runtime"), "{}", rec.text());
    let (info, files) = engine.image("slim:v1").unwrap();
    assert!(files.contains_key("/srv/deps/installed"), "the artifact is in the runtime workdir");
    assert!(!files.contains_key("/opt/app/index.html"), "the source is not");
    assert_eq!(info.cmd, Some(vec!["/usr/libexec/s2i/run".to_string()]));
    assert_eq!(uid_of(&files, "/srv/deps/installed"), Some(1001), "the runtime user owns the artifacts");
    assert!(engine.containers().is_empty());
}

/// A missing image under the policy `never` is an error whose hint names the flag that set that
/// image's policy, and the flow leaves nothing.
#[tokio::test]
async fn a_missing_image_names_the_pull_policy_flag_of_that_image() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let mut cfg = with_runtime(config(d.path(), BUILDER, Some("slim:v1")));
    cfg.runtime.as_mut().unwrap().image = "absent/runtime:1".into();
    cfg.runtime.as_mut().unwrap().pull_policy = PullPolicy::Never;
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(&err, BuildError::ImageNotLocal { image, .. } if image == "absent/runtime:1"), "{err}");
    assert_eq!(err.hint().as_deref(), Some("build or load the image locally, or use --runtime-pull-policy if-not-present to pull it"));
    assert!(engine.containers().is_empty());
    assert!(engine.image_id("slim:v1").is_none());

    let mut cfg = config(d.path(), "absent/builder:1", Some("app:v1"));
    cfg.pull_policy = PullPolicy::Never;
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert_eq!(err.hint().as_deref(), Some("build or load the image locally, or use --pull-policy if-not-present to pull it"));
}

#[tokio::test]
async fn injections_are_readable_during_assemble_and_empty_afterwards() {
    let d = tempfile::tempdir().unwrap();
    source(&d.path().join("src"));
    std::fs::write(d.path().join("secret"), "s3cr3t").unwrap();
    let engine = engine();
    let mut cfg = config(&d.path().join("src"), BUILDER, Some("app:v1"));
    cfg.injections = s2i_core::mapping::parse_specs(&format!("{}:/tmp/secret", d.path().join("secret").display()), "--inject").unwrap();
    let rec = Recorder::new();
    s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert!(rec.text().contains("secret: s3cr3t"), "{}", rec.text());
    assert_eq!(engine.file("app:v1", "/tmp/secret").unwrap(), b"");
}

#[tokio::test]
async fn a_builder_without_tar_gets_its_input_from_the_engine_owned_by_the_assemble_user() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    std::fs::write(d.path().join("setuid"), "x").unwrap();
    std::fs::set_permissions(d.path().join("setuid"), std::fs::Permissions::from_mode(0o4755)).unwrap();
    let engine = engine();
    engine.add_image("notar:latest", builder().without("/bin/tar"));
    let cfg = config(d.path(), "notar", Some("app:v1"));
    let rec = Recorder::new();
    s2i_core::build(&cfg, &services(&engine, rec.clone())).await.unwrap();
    let (_, files) = engine.image("app:v1").unwrap();
    // The engine unpacks as root, keeping the header's owner: it must be the assemble user's.
    assert_eq!(uid_of(&files, "/tmp/src/index.html"), Some(1001));
    match files.get("/tmp/src/setuid") {
        Some(Node::File { mode, .. }) => assert_eq!(mode & 0o7777, 0o755, "setuid is stripped"),
        other => panic!("{other:?}"),
    }
    assert!(engine.containers().is_empty());
}

/// Users given by name are turned into numbers while planning: what the engine unpacks into a
/// builder without tar, and the artifacts it copies into the runtime image, belong to them; a name
/// the builder does not know is refused before the engine unpacks anything as root.
#[tokio::test]
async fn named_users_own_what_the_engine_unpacks() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    engine.add_image("named:latest", builder().user("default").without("/bin/tar"));
    engine.add_image("named-runtime:latest", runtime().user("default"));
    let mut cfg = with_runtime(config(d.path(), "named", Some("slim:v1")));
    cfg.runtime.as_mut().unwrap().image = "named-runtime".into();
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let (_, files) = engine.image("slim:v1").unwrap();
    assert_eq!(uid_of(&files, "/srv/deps/installed"), Some(1001), "the runtime user's number");
    let cfg = config(d.path(), "named", Some("app:v1"));
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let (_, files) = engine.image("app:v1").unwrap();
    assert_eq!(uid_of(&files, "/tmp/src/index.html"), Some(1001), "the assemble user's number");

    engine.add_image("ghost:latest", builder().user("ghost").without("/bin/tar"));
    let err = s2i_core::build(&config(d.path(), "ghost", Some("ghost-app:v1")), &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(&err, BuildError::UserNotAllowed { what, .. } if what.contains("ghost")), "{err}");
    assert!(engine.image_id("ghost-app:v1").is_none());
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn a_script_printing_tar_not_found_does_not_force_the_engine_fallback() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    engine.add_image(
        "liar:latest",
        builder().program("/usr/libexec/s2i/assemble", |e| {
            e.complain("/bin/sh: tar: not found");
            1
        }),
    );
    let cfg = config(d.path(), "liar", Some("app:v1"));
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(err, BuildError::ScriptFailed { code: 1, .. }), "{err}");
    let uploads = engine.calls().iter().filter(|c| **c == s2i_testkit::fake::Call::UploadArchive).count();
    assert_eq!(uploads, 0, "the input went in on stdin, once");
}

#[tokio::test]
async fn a_failing_assemble_is_reported_and_leaves_no_container_and_no_tag() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    std::fs::write(d.path().join("fail"), "").unwrap();
    let engine = engine();
    let cfg = config(d.path(), BUILDER, Some("app:v1"));
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    match &err {
        BuildError::ScriptFailed { code, stderr_tail, .. } => {
            assert_eq!(*code, 3);
            assert!(stderr_tail.contains("told to fail"));
        }
        other => panic!("{other}"),
    }
    assert!(engine.containers().is_empty());
    assert!(engine.image_id("app:v1").is_none());
}

#[tokio::test]
async fn onbuild_builders_build_from_the_source() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let cfg = config(d.path(), ONBUILD, Some("app:v1"));
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let (_, files) = engine.image("app:v1").unwrap();
    assert!(files.contains_key("/tmp/src/index.html"));
    let dockerfile = String::from_utf8(engine.file("app:v1", "/tmp/src/Dockerfile").unwrap()).unwrap();
    assert!(dockerfile.starts_with("FROM onbuild:latest\n"), "{dockerfile}");
}

#[tokio::test]
async fn dockerfile_builds_go_through_the_engines_builder() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    let mut cfg = config(d.path(), BUILDER, Some("app:v1"));
    cfg.build_method = BuildMethod::Dockerfile;
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let dockerfile = String::from_utf8(engine.file("app:v1", "/opt/app/Dockerfile").unwrap()).unwrap();
    assert!(dockerfile.contains("COPY --chown=1001:0 upload/src /tmp/src"), "{dockerfile}");
    assert!(dockerfile.contains("RUN /usr/libexec/s2i/assemble"), "{dockerfile}");
}

#[tokio::test]
async fn usage_runs_the_usage_script() {
    let engine = engine();
    let cfg = s2i_core::BuildConfig { builder_image: BUILDER.into(), ..Default::default() };
    let rec = Recorder::new();
    s2i_core::usage::usage(&cfg, &services(&engine, rec.clone())).await.unwrap();
    assert_eq!(rec.text(), "usage: fake");
    assert!(engine.containers().is_empty());
}

#[tokio::test]
async fn the_save_artifacts_user_is_held_to_allowed_uids() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = engine();
    // The builder runs as 1001 through its label; the previous image would run save-artifacts as root.
    engine.add_image("labelled:latest", builder().label("io.openshift.s2i.assemble-user", "1001"));
    engine.add_image("app:v1", builder().user("0"));
    let mut cfg = config(d.path(), BUILDER, Some("app:v1"));
    cfg.incremental = true;
    cfg.allowed_uids = s2i_core::config::parse_ranges("1000-").unwrap();
    // The builder's own USER (1001) passes; save-artifacts would run as the previous image's root.
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(err, BuildError::UserNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("save-artifacts"), "{err}");
    assert!(engine.containers().is_empty());
    // With the assemble user pinned by the builder's label, save-artifacts runs as that user.
    let mut cfg = config(d.path(), "labelled", Some("app:v1"));
    cfg.incremental = true;
    cfg.allowed_uids = s2i_core::config::parse_ranges("1000-").unwrap();
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
}

/// The fake with the in-place engine's limits, holding the usual images.
fn in_place_engine(uid: u32) -> s2i_testkit::fake::FakeEngine {
    let engine = s2i_testkit::fake::FakeEngine::in_place(BUILDER, uid, 0);
    engine.add_image(BUILDER, builder());
    engine.add_image(RUNTIME, runtime());
    engine.add_image(ONBUILD, s2i_testkit::fake::FakeImage::new().onbuild("COPY . /tmp/src").workdir("/tmp/src"));
    engine
}

/// An engine that runs every script as the process's uid: that uid owns the input, and it is the
/// one --allowed-uids judges (the builder's USER 1001 would pass, 0 must not).
#[tokio::test]
async fn a_fixed_user_engine_owns_the_input_and_is_held_to_allowed_uids() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let engine = in_place_engine(1_000_680_000);
    let mut cfg = config(d.path(), BUILDER, Some("app:v1"));
    cfg.allowed_uids = s2i_core::config::parse_ranges("1000-").unwrap();
    s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap();
    let (_, files) = engine.image("app:v1").expect("tagged");
    assert_eq!(uid_of(&files, "/tmp/src/index.html"), Some(1_000_680_000), "the process's uid owns the input");

    let engine = in_place_engine(0);
    let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
    assert!(matches!(err, BuildError::UserNotAllowed { .. }), "{err}");
    assert!(err.to_string().contains("uid 0"), "names the uid the build runs as: {err}");
    assert!(!engine.calls().contains(&s2i_testkit::fake::Call::CreateContainer), "refused before anything runs");
}

/// Flows that need a container of another image are refused before any work, naming the engines
/// that can run them.
#[tokio::test]
async fn an_only_builder_engine_refuses_flows_that_need_another_image() {
    let d = tempfile::tempdir().unwrap();
    source(d.path());
    let mut incremental = config(d.path(), BUILDER, Some("app:v1"));
    incremental.incremental = true;
    for (cfg, builder_name, says) in [
        (with_runtime(config(d.path(), BUILDER, Some("slim:v1"))), BUILDER, "--runtime-image"),
        (config(d.path(), ONBUILD, Some("app:v1")), ONBUILD, "ONBUILD"),
        (incremental, BUILDER, "--incremental"),
    ] {
        let engine = s2i_testkit::fake::FakeEngine::in_place(builder_name, 1001, 0);
        engine.add_image(BUILDER, builder());
        engine.add_image(RUNTIME, runtime());
        engine.add_image(ONBUILD, s2i_testkit::fake::FakeImage::new().onbuild("COPY . /tmp/src").workdir("/tmp/src"));
        let err = s2i_core::build(&cfg, &services(&engine, Recorder::new())).await.unwrap_err();
        assert!(matches!(err, BuildError::EngineCannot { .. }), "{err}");
        assert!(err.to_string().contains(says) && err.to_string().contains("in-place"), "{err}");
        assert!(err.hint().unwrap_or_default().contains("--engine oci"), "{:?}", err.hint());
        assert!(!engine.calls().contains(&s2i_testkit::fake::Call::CreateContainer), "nothing ran");
        assert!(engine.containers().is_empty());
    }
}
