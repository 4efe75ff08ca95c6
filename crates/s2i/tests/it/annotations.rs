//! The standard OCI keys on a result: labels on every engine, and the manifest's annotations
//! where s2i writes the manifest (`--engine oci`, and what it pushes).

use s2i_testkit::{fixture, git, image_config, write_file, TestEnv, TestRegistry};
use serde_json::Value;

use crate::oci::Oci;

/// A committed git repository under `work/repo`; returns its path and HEAD.
fn repo(env: &TestEnv) -> (String, String) {
    let repo = env.work().join("repo");
    write_file(&repo.join("index.html"), "hello\n", 0o644);
    git(&repo, &["init", "-q"]);
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "first"]);
    (repo.display().to_string(), git(&repo, &["rev-parse", "HEAD"]).trim().to_string())
}

#[test]
fn a_result_carries_the_standard_oci_labels_beside_the_openshift_ones() {
    let env = TestEnv::new("oci-labels");
    let builder = env.alias(&fixture("sti-fake"));
    let (src, head) = repo(&env);
    let out = env.tag("app");
    let mut cmd = env.s2i();
    cmd.args(["build", &src, &builder, &out, "--label", "org.opencontainers.image.title=My App", "--description", "what it does", "-n", "app"]);
    cmd.env("SOURCE_DATE_EPOCH", "1700000000");
    let run = cmd.output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let labels = &image_config(&out)["Labels"];
    let label = |k: &str| labels[k].as_str().unwrap_or_else(|| panic!("no {k}: {labels}")).to_string();
    assert_eq!(label("org.opencontainers.image.revision"), head);
    assert_eq!(label("org.opencontainers.image.created"), "2023-11-14T22:13:20Z", "SOURCE_DATE_EPOCH");
    assert_eq!(label("org.opencontainers.image.ref.name"), out);
    assert_eq!(label("org.opencontainers.image.base.name"), format!("docker.io/{builder}"));
    assert_eq!(label("org.opencontainers.image.title"), "My App");
    assert!(labels.get("org.opencontainers.image.description").is_none(), "--description sets io.k8s.description only: {labels}");
    assert!(labels.get("org.opencontainers.image.source").is_none(), "a host path is no source URL: {labels}");
    assert!(labels.get("org.opencontainers.image.base.digest").is_none(), "a builder made here has no registry digest: {labels}");
    assert_eq!(label("io.openshift.s2i.build.commit.id"), head, "the reference's labels stay");
    env.assert_clean();
}

#[test]
fn the_oci_engine_writes_them_as_manifest_annotations_with_the_pulled_builders_digest() {
    let t = Oci::new("oci-annotations");
    let registry = TestRegistry::start();
    let (builder, builder_digest) = registry.docker_push(&fixture("sti-fake"), "oci-test/annotated-builder:v1");
    let (src, head) = repo(&t.env);
    let out = registry.image("oci-test/annotated:v1");
    let mut cmd = t.command(&["build", &src, &builder, &out, "--push", "--output=json"]);
    cmd.env("DOCKER_CONFIG", registry.docker_config_dir());
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    t.note_containers(&stderr);
    assert!(run.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&run.stdout).unwrap();
    let pushed = doc["pushed"][0]["digest"].as_str().unwrap().to_string();
    let manifest_path = t.store_dir().join("blobs/sha256").join(pushed.trim_start_matches("sha256:"));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let annotations = &manifest["annotations"];
    assert_eq!(annotations["org.opencontainers.image.base.digest"], builder_digest.as_str(), "{manifest}");
    assert_eq!(annotations["org.opencontainers.image.base.name"], builder.as_str(), "{manifest}");
    assert_eq!(annotations["org.opencontainers.image.revision"], head.as_str(), "{manifest}");
    assert!(annotations.get("org.opencontainers.image.ref.name").is_none(), "ref.name is an index's: {manifest}");
    let config_path = t.store_dir().join("blobs/sha256").join(manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:"));
    let config: Value = serde_json::from_slice(&std::fs::read(config_path).unwrap()).unwrap();
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.base.digest"], builder_digest.as_str());
    t.assert_clean();
}
