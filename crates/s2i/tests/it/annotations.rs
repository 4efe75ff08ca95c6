//! The standard OCI keys on a result: labels on every engine, and the manifest's annotations
//! where s2i writes the manifest (`--engine oci`, and what it pushes); and `--provenance`, checked
//! against the in-toto Statement v1 and SLSA Provenance v1 schemas kept in tests/data.

use s2i_testkit::{fixture, git, image_config, write_file, TestEngine, TestEnv, TestRegistry};
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
    match s2i_testkit::test_engine() {
        // Docker gives an image it only built no repo digest.
        TestEngine::Docker => assert!(labels.get("org.opencontainers.image.base.digest").is_none(), "a builder made here has no registry digest: {labels}"),
        // Podman gives every image the digest of the manifest it stores for it.
        TestEngine::Podman => assert!(label("org.opencontainers.image.base.digest").starts_with("sha256:"), "{labels}"),
    }
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
    let provenance = t.env.work().join("provenance.json");
    let mut cmd = t.command(&["build", &src, &builder, &out, "--push", "--output=json", "--provenance", provenance.to_str().unwrap()]);
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

    // The provenance names what was pushed, by the pushed digest, and the pulled builder's.
    assert_eq!(doc["provenance"], provenance.to_str().unwrap());
    let statement = valid_statement(&provenance);
    assert_eq!(statement["subject"][0]["name"], out.as_str());
    assert_eq!(statement["subject"][0]["digest"]["sha256"], pushed.trim_start_matches("sha256:"));
    let builder_dep = &statement["predicate"]["buildDefinition"]["resolvedDependencies"][0];
    assert_eq!(builder_dep["digest"]["sha256"], builder_digest.trim_start_matches("sha256:"), "{statement}");
    assert_eq!(statement["predicate"]["buildDefinition"]["internalParameters"]["engine"], "oci");
    t.assert_clean();
}

/// The statement in `path`, checked against both schemas (the predicate against SLSA's).
fn valid_statement(path: &std::path::Path) -> Value {
    let statement: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    let schema = |name: &str| -> Value {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/provenance").join(name);
        serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
    };
    let in_toto = jsonschema::validator_for(&schema("in-toto-statement-v1.schema.json")).unwrap();
    let slsa = jsonschema::validator_for(&schema("slsa-provenance-v1.schema.json")).unwrap();
    let errors: Vec<String> = in_toto.iter_errors(&statement).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not an in-toto Statement v1: {errors:?}\n{statement}");
    assert_eq!(statement["predicateType"], "https://slsa.dev/provenance/v1");
    let errors: Vec<String> = slsa.iter_errors(&statement["predicate"]).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "not a SLSA Provenance v1 predicate: {errors:?}\n{statement}");
    // The schemas are not empty words: a statement without its type, or a predicate without a
    // builder, is refused.
    let mut broken = statement.clone();
    broken.as_object_mut().unwrap().remove("_type");
    assert!(!in_toto.is_valid(&broken));
    let mut broken = statement["predicate"].clone();
    broken["runDetails"].as_object_mut().unwrap().remove("builder");
    assert!(!slsa.is_valid(&broken));
    statement
}

#[test]
fn provenance_names_the_source_builder_and_names_of_env_and_secrets_never_values() {
    let env = TestEnv::new("provenance");
    let builder = env.alias(&fixture("sti-fake"));
    let (src, head) = repo(&env);
    let out = env.tag("app");
    let secret = env.work().join("token.txt");
    std::fs::write(&secret, "tok-3f9a1c-value").unwrap();
    let provenance = env.work().join("out/provenance.json");
    std::fs::create_dir_all(provenance.parent().unwrap()).unwrap();
    let mut cmd = env.s2i();
    cmd.args(["build", &src, &builder, &out, "-e", "API_KEY=env-7c1d-value", "--output=json"]);
    cmd.args(["--secret", &format!("id=token,src={}", secret.display()), "--provenance", provenance.to_str().unwrap()]);
    let run = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    let doc: Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(doc["provenance"], provenance.to_str().unwrap());
    let text = std::fs::read_to_string(&provenance).unwrap();
    assert!(!text.contains("tok-3f9a1c-value") && !text.contains("env-7c1d-value"), "{text}");
    let statement = valid_statement(&provenance);
    let image_id = doc["image_id"].as_str().unwrap();
    assert_eq!(statement["subject"][0]["name"], out.as_str());
    assert_eq!(statement["subject"][0]["digest"]["sha256"], image_id.trim_start_matches("sha256:"), "nothing pushed: the image id");
    let external = &statement["predicate"]["buildDefinition"]["externalParameters"];
    assert_eq!(external["source"]["location"], src.as_str());
    assert_eq!(external["source"]["commit"], head.as_str());
    assert_eq!(external["builderImage"]["reference"], builder.as_str());
    assert_eq!(external["env"], serde_json::json!(["API_KEY"]));
    assert_eq!(external["secrets"], serde_json::json!(["token"]));
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    assert!(deps.iter().any(|d| d["digest"]["gitCommit"] == head.as_str()), "{statement}");
    let meta = &statement["predicate"]["runDetails"]["metadata"];
    assert!(meta["startedOn"].as_str().unwrap() <= meta["finishedOn"].as_str().unwrap());
    let leftovers: Vec<_> = std::fs::read_dir(provenance.parent().unwrap()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(leftovers.len(), 1, "only the statement, no temporary file: {leftovers:?}");
    env.assert_clean();
}

/// A scripts URL's scripts are resolved dependencies with the digest of what was fetched (and
/// run), each by its own URL; what the URL did not have (run, from the image) is not named.
#[test]
fn provenance_gives_the_digest_of_each_script_fetched_from_the_scripts_url() {
    let env = TestEnv::new("provenance-scripts");
    let builder = env.alias(&fixture("sti-fake"));
    let scripts = env.work().join("scripts");
    let assemble = "#!/bin/sh\nset -e\ncp -R /tmp/src/. ./\necho assembled by the fetched script\n";
    s2i_testkit::write_file(&scripts.join("assemble"), assemble, 0o755);
    let server = s2i_testkit::HttpServer::serve_dir(&scripts);
    let (src, _) = repo(&env);
    let provenance = env.work().join("provenance.json");
    let url = format!("{}/", server.url());
    let (code, _, stderr) = env.run(&["build", &src, &builder, &env.tag("app"), "--scripts-url", &url, "--provenance", provenance.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("assembled by the fetched script"), "{stderr}");
    let statement = valid_statement(&provenance);
    let deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"].as_array().unwrap();
    let fetched: Vec<&Value> = deps.iter().filter(|d| d["name"].as_str().is_some_and(|n| n.starts_with("scripts"))).collect();
    assert_eq!(fetched.len(), 1, "only assemble came from the URL: {statement}");
    assert_eq!(fetched[0]["uri"], format!("{}/assemble", server.url().trim_end_matches('/')).as_str(), "{statement}");
    assert_eq!(fetched[0]["digest"]["sha256"], crate::secrets::sha256_hex(assemble).as_str(), "the digest of what was fetched");
    env.assert_clean();
}

/// Nothing pushed, an OCI archive written: the subject's digest is the archive's manifest digest
/// (what a registry will store when the archive is copied there), not the image id.
#[test]
fn provenance_of_an_oci_archive_names_its_manifest_digest() {
    let t = Oci::new("provenance-oci-archive");
    let builder = crate::oci::archive_of(&fixture("sti-fake"));
    let (src, _) = repo(&t.env);
    let archive = t.env.tmpdir().join("out.tar");
    let provenance = t.env.work().join("provenance.json");
    let target = format!("oci-archive:{}", archive.display());
    let (code, stdout, stderr) =
        t.run(&["build", &src, &builder, &t.env.tag("app"), "--output-archive", &target, "--provenance", provenance.to_str().unwrap(), "--output=json"]);
    assert_eq!(code, 0, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let mut tar = tar::Archive::new(std::fs::File::open(&archive).unwrap());
    let index: Value = tar
        .entries()
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.path().unwrap().to_string_lossy().trim_start_matches("./") == "index.json")
        .map(|e| serde_json::from_reader(e).unwrap())
        .expect("an index.json in the archive");
    let manifest = index["manifests"][0]["digest"].as_str().unwrap();
    let statement = valid_statement(&provenance);
    assert_eq!(statement["subject"][0]["digest"]["sha256"], manifest.trim_start_matches("sha256:"), "{statement}");
    assert_ne!(manifest, doc["image_id"].as_str().unwrap(), "the manifest's digest, not the config's");
    std::fs::remove_file(&archive).unwrap();
    t.assert_clean();
}
