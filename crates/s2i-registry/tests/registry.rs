//! The registry client and credential look-up against a real registry (distribution 2.8 with TLS
//! and htpasswd, from the test kit), with images pushed and pulled by the real Docker daemon.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use s2i_registry::digest::Digest;
use s2i_registry::oci::{Descriptor, ImageManifest, DOCKER_CONFIG, DOCKER_LAYER_GZIP, DOCKER_MANIFEST};
use s2i_registry::client::{sha256_digest, BlobPush, CaFile, ClientOptions, Limits, MANIFEST_MAX_ENV, REQUEST_TIMEOUT_ENV};
use s2i_registry::credentials::{ConfigLocation, CredentialSource, CredentialsError, DockerConfig, LookupOptions, Resolved};
use s2i_registry::{Credentials, ImageRef, RegistryClient, RegistryError};
use s2i_testkit::{base_image, docker_run, image_inspect, write_docker_config, FakeCredentialHelper, RegistryOptions, RegistryUser, TestRegistry};
use sha2::Digest as _;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap()
}

fn client() -> RegistryClient {
    RegistryClient::new(ClientOptions::default()).unwrap()
}

fn lookup(config: &Path, registry: &str, opts: &LookupOptions) -> Result<Resolved, CredentialsError> {
    let config = DockerConfig::load(&ConfigLocation::Explicit(config.to_path_buf()))?;
    rt().block_on(config.resolve(registry, opts))
}

fn creds_of(reg: &TestRegistry, user: &RegistryUser) -> Resolved {
    Resolved::given(Credentials {
        username: user.name.clone(),
        password: user.password.clone(),
        identity_token: None,
        server: reg.host(),
    })
}

/// The base image pushed to `reg` as `repo:tag`; returns its reference and Docker's digest.
fn pushed_base(reg: &TestRegistry, repo_tag: &str) -> (ImageRef, String) {
    let (name, digest) = reg.docker_push(&base_image(), repo_tag);
    (ImageRef::parse(&name).unwrap(), digest)
}

/// Fetch `image`'s manifest with `creds`: the error or the manifest digest.
fn fetch(client: &RegistryClient, image: &ImageRef, creds: Resolved) -> Result<String, RegistryError> {
    rt().block_on(async { client.repository_of(image, creds).image_manifest(image.reference()).await.map(|m| m.raw.digest) })
}

/// sha256 of a gzip stream's uncompressed content, fed chunk by chunk.
struct GunzipDigest(flate2::write::GzDecoder<HashWriter>);
struct HashWriter(sha2::Sha256);
impl Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl GunzipDigest {
    fn new() -> Self {
        GunzipDigest(flate2::write::GzDecoder::new(HashWriter(sha2::Sha256::new())))
    }
    fn finish(self) -> String {
        format!("sha256:{}", hex::encode(self.0.finish().unwrap().0.finalize()))
    }
}

#[test]
fn pulls_what_docker_pushed_and_verifies_every_blob() {
    let reg = TestRegistry::start();
    let (image, docker_digest) = pushed_base(&reg, "s2i/pull-test:v1");
    // The config.json `docker login` wrote.
    let resolved = lookup(&reg.docker_config_dir().join("config.json"), &reg.host(), &LookupOptions::default()).unwrap();
    assert!(matches!(&resolved.source, CredentialSource::File { key, .. } if *key == reg.host()), "{:?}", resolved.source);
    let client = client();
    rt().block_on(async {
        let repo = client.repository_of(&image, resolved);
        let m = repo.image_manifest("v1").await.unwrap();
        assert_eq!(m.raw.digest, docker_digest);
        assert_eq!(m.raw.media_type, DOCKER_MANIFEST);
        assert!(m.index.is_none());
        // The config is the image Docker has: its digest is Docker's image id.
        assert_eq!(m.config().digest.as_str(), image_inspect(&base_image())["Id"].as_str().unwrap());
        let config: serde_json::Value = serde_json::from_slice(&repo.config(&m).await.unwrap()).unwrap();
        let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"].as_array().unwrap().iter().map(|d| d.as_str().unwrap()).collect();
        assert_eq!(diff_ids.len(), m.layers().len());
        // Each layer streams verified; its uncompressed content is the layer Docker has.
        for (layer, diff_id) in m.layers().iter().zip(&diff_ids) {
            let mut stream = repo.blob(layer).await.unwrap();
            let mut gunzip = GunzipDigest::new();
            let mut total = 0;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.unwrap();
                total += chunk.len() as u64;
                gunzip.0.write_all(&chunk).unwrap();
            }
            assert_eq!(total, layer.size);
            assert_eq!(&gunzip.finish(), diff_id);
        }
        // By digest too, byte for byte the same.
        let by_digest = repo.raw_manifest(&docker_digest).await.unwrap();
        assert_eq!(by_digest.bytes, m.raw.bytes);
        assert!(repo.manifest_exists("v1").await.unwrap());
        assert!(!repo.manifest_exists("v9").await.unwrap());

        // A blob altered in the registry's storage: the stream ends in an error, not in success.
        let layer = m.layers()[0].clone();
        let file = reg.blob_file(layer.digest.as_str());
        let mut data = std::fs::read(&file).unwrap();
        let last = data.len() - 1;
        data[last] ^= 0xff;
        std::fs::write(&file, &data).unwrap();
        let mut stream = repo.blob(&layer).await.unwrap();
        let mut outcome = Ok(());
        while let Some(chunk) = stream.next().await {
            if let Err(e) = chunk {
                outcome = Err(e);
                break;
            }
        }
        let err = outcome.expect_err("a tampered blob must fail");
        let inner = err.get_ref().and_then(|e| e.downcast_ref::<RegistryError>()).unwrap();
        assert!(matches!(inner, RegistryError::DigestMismatch { expected, .. } if *expected == layer.digest.as_str()), "{inner}");
    });
}

/// A gzip'd tar holding one file, and its uncompressed digest.
fn layer_with_file(name: &str, content: &str) -> (Bytes, String) {
    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(content.len() as u64);
    header.set_mode(0o644);
    header.set_mtime(0);
    header.set_cksum();
    tar.append_data(&mut header, name, content.as_bytes()).unwrap();
    let raw = tar.into_inner().unwrap();
    let diff_id = sha256_digest(&raw);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&raw).unwrap();
    (Bytes::from(gz.finish().unwrap()), diff_id)
}

fn once(bytes: Bytes) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    futures_util::stream::once(async move { Ok(bytes) })
}

#[test]
fn pushes_an_image_that_docker_pulls_and_runs() {
    let reg = TestRegistry::start();
    let (base, _) = pushed_base(&reg, "s2i/base:v1");
    let creds = creds_of(&reg, reg.user());
    let client = client();
    let marker = format!("pushed by s2i {}", std::process::id());
    let target = ImageRef::parse(&reg.image("s2i/pushed:v2")).unwrap();
    let (pushed_digest, manifest_bytes) = rt().block_on(async {
        let from = client.repository_of(&base, creds.clone());
        let to = client.repository_of(&target, creds.clone());
        let m = from.image_manifest("v1").await.unwrap();
        let mut config: serde_json::Value = serde_json::from_slice(&from.config(&m).await.unwrap()).unwrap();

        // The base's layers stream from one repository into the other, never whole in memory.
        for layer in m.layers() {
            let stream = from.blob(layer).await.unwrap();
            assert_eq!(to.push_blob(layer, stream).await.unwrap(), BlobPush::Uploaded);
        }
        let (layer, diff_id) = layer_with_file("hello.txt", &marker);
        let layer_desc = Descriptor {
            media_type: DOCKER_LAYER_GZIP.into(),
            digest: Digest::of(&layer),
            size: layer.len() as u64,
            urls: vec![],
            annotations: Default::default(),
            platform: None,
        };
        assert_eq!(to.push_blob(&layer_desc, once(layer.clone())).await.unwrap(), BlobPush::Uploaded);
        config["rootfs"]["diff_ids"].as_array_mut().unwrap().push(diff_id.into());
        config["config"]["Cmd"] = serde_json::json!(["cat", "/hello.txt"]);
        if let Some(history) = config["history"].as_array_mut() {
            history.push(serde_json::json!({"created_by": "s2i test"}));
        }
        let config = Bytes::from(serde_json::to_vec(&config).unwrap());
        let config_desc = Descriptor { media_type: DOCKER_CONFIG.into(), digest: Digest::of(&config), size: config.len() as u64, ..layer_desc.clone() };
        assert_eq!(to.push_blob(&config_desc, once(config.clone())).await.unwrap(), BlobPush::Uploaded);
        let mut layers = m.layers().to_vec();
        layers.push(layer_desc.clone());
        let manifest = ImageManifest { schema_version: 2, media_type: Some(DOCKER_MANIFEST.into()), config: config_desc.clone(), layers, annotations: Default::default() };
        let bytes = Bytes::from(serde_json::to_vec(&manifest).unwrap());
        let digest = to.push_manifest("v2", DOCKER_MANIFEST, bytes.clone()).await.unwrap();
        assert_eq!(digest, sha256_digest(&bytes));

        // A second push sends nothing: every blob exists.
        assert_eq!(to.push_blob(&layer_desc, once(layer)).await.unwrap(), BlobPush::Exists);
        assert_eq!(to.push_blob(&config_desc, once(config)).await.unwrap(), BlobPush::Exists);
        (digest, bytes)
    });
    let pulled = reg.docker_pull(&target.normalized());
    let (code, stdout, stderr) = docker_run(pulled.name(), &[]);
    assert_eq!((code, stdout.as_str()), (0, marker.as_str()), "{stderr}");
    let repo_digests = image_inspect(pulled.name())["RepoDigests"].to_string();
    assert!(repo_digests.contains(&pushed_digest), "{repo_digests} should hold {pushed_digest}");
    // And the client reads back exactly what it pushed.
    let back = rt().block_on(client.repository_of(&target, creds).raw_manifest("v2")).unwrap();
    assert_eq!(back.bytes, manifest_bytes);
}

#[test]
fn every_credential_source_works_and_failures_name_their_source() {
    let reg = TestRegistry::start();
    let (image, digest) = pushed_base(&reg, "s2i/creds:v1");
    let client = client();
    let dir = tempfile::tempdir().unwrap();
    let host = reg.host();
    let user = reg.user();
    let default_opts = LookupOptions::default();
    let pull_with = |config: &Path, opts: &LookupOptions| -> Result<String, RegistryError> {
        let resolved = lookup(config, &host, opts).expect("look-up");
        fetch(&client, &image, resolved)
    };

    // auths, under the host, a URL of it, and with username/password fields.
    for (i, key) in [host.clone(), format!("https://{host}"), format!("http://{host}/v1/")].iter().enumerate() {
        let config = write_docker_config(&dir.path().join(format!("auths{i}")), &reg.auths_config(key, user));
        assert_eq!(pull_with(&config, &default_opts).unwrap(), digest, "key {key}");
    }
    let fields = serde_json::json!({"auths": {host.clone(): {"username": user.name, "password": user.password}}});
    let config = write_docker_config(&dir.path().join("fields"), &fields);
    assert_eq!(pull_with(&config, &default_opts).unwrap(), digest);
    // The legacy ~/.dockercfg format, named explicitly.
    let legacy_path = dir.path().join("dockercfg");
    let legacy = reg.auths_config(&host, user)["auths"].clone();
    std::fs::write(&legacy_path, legacy.to_string()).unwrap();
    assert_eq!(pull_with(&legacy_path, &default_opts).unwrap(), digest);

    // credHelpers and credsStore, with a helper found on the given PATH.
    let helper = FakeCredentialHelper::new(&host, user);
    let opts = LookupOptions { helper_path: Some(helper.path_env()), ..Default::default() };
    let config = write_docker_config(&dir.path().join("helpers"), &reg.cred_helpers_config(helper.name()));
    let resolved = lookup(&config, &host, &opts).unwrap();
    assert_eq!(resolved.source, CredentialSource::Helper { program: format!("docker-credential-{}", helper.name()), config: config.clone() });
    assert_eq!(fetch(&client, &image, resolved).unwrap(), digest);
    assert_eq!(helper.calls(), vec![format!("get {host}")]);
    let store = write_docker_config(&dir.path().join("store"), &TestRegistry::creds_store_config(helper.name()));
    assert_eq!(pull_with(&store, &opts).unwrap(), digest);

    // The store knows nothing of another registry: anonymous, and the error says where we looked.
    let other = FakeCredentialHelper::new("registry.example.com", user);
    let opts_other = LookupOptions { helper_path: Some(other.path_env()), ..Default::default() };
    let store_other = write_docker_config(&dir.path().join("store-other"), &TestRegistry::creds_store_config(other.name()));
    let resolved = lookup(&store_other, &host, &opts_other).unwrap();
    assert_eq!(resolved.credentials, None);
    let err = fetch(&client, &image, resolved).unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&host) && text.contains(&format!("docker-credential-{}", other.name())), "{text}");

    // A failing helper is an error naming it, with what it said.
    helper.fail_with("keychain is locked");
    let err = lookup(&store, &host, &opts).unwrap_err();
    assert!(matches!(err, CredentialsError::HelperFailed { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&format!("docker-credential-{}", helper.name())) && text.contains("keychain is locked") && text.contains("exit status 3"), "{text}");
    // A hanging one is stopped at the time limit, which the hint says how to raise.
    helper.hang();
    let quick = LookupOptions { helper_timeout: Duration::from_secs(1), ..opts.clone() };
    let started = Instant::now();
    let err = lookup(&store, &host, &quick).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert!(matches!(err, CredentialsError::HelperTimeout { .. }), "{err}");
    assert!(err.hint().contains("S2I_CREDENTIAL_HELPER_TIMEOUT"), "{}", err.hint());
    // A helper that is not installed.
    let missing = write_docker_config(&dir.path().join("missing"), &TestRegistry::creds_store_config("s2itest-not-installed"));
    let err = lookup(&missing, &host, &opts).unwrap_err();
    assert!(matches!(err, CredentialsError::HelperNotFound { .. }), "{err}");
}

/// What bollard sends as `X-Registry-Auth` for these credentials, before the engine's re-encoding.
fn bollard_registry_auth(creds: &Credentials) -> String {
    use base64::Engine as _;
    let json = serde_json::to_string(&bollard::auth::DockerCredentials {
        username: Some(creds.username.clone()),
        password: Some(creds.password.clone()),
        serveraddress: Some(creds.server.clone()),
        ..Default::default()
    })
    .unwrap();
    base64::engine::general_purpose::STANDARD.encode(json)
}

#[test]
fn a_password_whose_encodings_hold_plus_and_slash() {
    let reg = TestRegistry::start();
    let (image, digest) = pushed_base(&reg, "s2i/tricky:v1");
    let tricky = reg.tricky_user();
    let creds = creds_of(&reg, tricky).credentials.unwrap();
    let header = bollard_registry_auth(&creds);
    assert!(header.contains('+') && header.contains('/'), "the fixture must exercise both characters: {header}");

    // The client, with the password from a config.json (whose base64 holds them too).
    let dir = tempfile::tempdir().unwrap();
    let config = write_docker_config(dir.path(), &reg.auths_config(&reg.host(), tricky));
    let auth = std::fs::read_to_string(&config).unwrap();
    assert!(auth.contains('+') || auth.contains('/'), "{auth}");
    let resolved = lookup(&config, &reg.host(), &LookupOptions::default()).unwrap();
    assert_eq!(fetch(&client(), &image, resolved).unwrap(), digest);

    // The Docker engine: main's registry_auth_url_safe makes the daemon read these credentials.
    // (Without it the daemon decodes the standard alphabet as URL-safe, gets no credentials, and
    // fails as an anonymous pull does.)
    let name = image.normalized();
    let _cleanup = s2i_testkit::PulledImage::from_name(&name);
    rt().block_on(async {
        let engine = s2i_docker::DockerEngine::connect(&s2i_docker::ConnectOptions::from_env().unwrap()).await.unwrap();
        use s2i_engine::Engine as _;
        let mut events = Vec::new();
        let mut sink = |p: s2i_engine::Progress<'_>| events.push(format!("{p:?}"));
        engine.pull_image(&name, Some(&creds), &mut sink).await.unwrap_or_else(|e| panic!("pull with the tricky password: {e}\n{}", reg.log()));
        assert!(events.iter().any(|e| e.contains(&digest)), "{events:?}");
    });
    assert!(s2i_testkit::image_exists(&name));
}

#[test]
fn failures_are_typed_and_diagnose_says_why() {
    let reg = TestRegistry::start();
    let (image, _) = pushed_base(&reg, "s2i/diag:v1");
    let client = client();
    let host = reg.host();
    let diagnose = |image: &ImageRef, creds: &Resolved| rt().block_on(client.diagnose(image, creds));
    let good = creds_of(&reg, reg.user());
    let secret = reg.user().password.clone();
    let check_secret_free = |e: &RegistryError| {
        eprintln!("error: {e}\nhint: {}", e.hint());
        let text = format!("{e} {e:?} {}", e.hint());
        assert!(!text.contains(&secret), "the password leaked: {text}");
    };

    // Served: nothing to diagnose.
    assert!(diagnose(&image, &good).is_none());

    // No credentials: the registry wants some, and the error says where we looked.
    let anonymous = Resolved::anonymous(format!("no credentials for {host} in /nowhere/config.json"));
    let err = fetch(&client, &image, anonymous.clone()).unwrap_err();
    check_secret_free(&err);
    match &err {
        RegistryError::AuthRequired { registry, looked_in } => {
            assert_eq!(registry, &host);
            assert!(looked_in.contains("/nowhere/config.json"), "{looked_in}");
        }
        other => panic!("expected AuthRequired, got {other:?}"),
    }
    assert!(err.hint().contains(&format!("docker login {host}")), "{}", err.hint());
    assert!(matches!(diagnose(&image, &anonymous), Some(RegistryError::AuthRequired { .. })));

    // Wrong password.
    let wrong = creds_of(&reg, &RegistryUser { name: reg.user().name.clone(), password: "wrong-password".into() });
    let err = fetch(&client, &image, wrong.clone()).unwrap_err();
    check_secret_free(&err);
    assert!(matches!(&err, RegistryError::CredentialsRejected { username, .. } if *username == reg.user().name), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-password"));
    assert!(matches!(diagnose(&image, &wrong), Some(RegistryError::CredentialsRejected { .. })));

    // A missing tag, and a missing repository.
    for missing in [reg.image("s2i/diag:nope"), reg.image("s2i/never-pushed:v1")] {
        let missing = ImageRef::parse(&missing).unwrap();
        let err = fetch(&client, &missing, good.clone()).unwrap_err();
        assert!(err.is_not_found(), "{err:?}");
        assert!(err.to_string().contains(&missing.path), "{err}");
        check_secret_free(&err);
        assert!(matches!(diagnose(&missing, &good), Some(RegistryError::NotFound { .. })));
    }

    // A port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let gone = ImageRef::parse(&format!("{closed}/s2i/diag:v1")).unwrap();
    let err = fetch(&client, &gone, good.clone()).unwrap_err();
    check_secret_free(&err);
    assert!(matches!(&err, RegistryError::Unreachable { registry, .. } if *registry == closed.to_string()), "{err:?}");
    assert!(err.to_string().contains("refused"), "{err}");
    assert!(matches!(diagnose(&gone, &good), Some(RegistryError::Unreachable { .. })));

    // What Docker 20.10 says about the anonymous pull misleads; diagnose says what is wrong.
    rt().block_on(async {
        let engine = s2i_docker::DockerEngine::connect(&s2i_docker::ConnectOptions::from_env().unwrap()).await.unwrap();
        use s2i_engine::Engine as _;
        let name = image.normalized();
        let _cleanup = s2i_testkit::PulledImage::from_name(&name);
        let err = engine.pull_image(&name, None, &mut |_: s2i_engine::Progress<'_>| {}).await.expect_err("an anonymous pull must fail");
        eprintln!("the engine's own words: {err}");
        let why = client.diagnose(&image, &anonymous).await;
        assert!(matches!(why, Some(RegistryError::AuthRequired { .. })), "{why:?}");
    });
}

#[test]
fn tls_is_verified_when_asked_and_a_ca_file_makes_it_pass() {
    let reg = TestRegistry::start();
    let (image, digest) = pushed_base(&reg, "s2i/tls:v1");
    let creds = creds_of(&reg, reg.user());
    let strict = RegistryClient::new(ClientOptions { verify_loopback: true, ..Default::default() }).unwrap();
    let err = fetch(&strict, &image, creds.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::Tls { .. }), "{err:?}");
    eprintln!("error: {err}\nhint: {}", err.hint());
    assert!(err.to_string().to_lowercase().contains("certificate"), "{err}");
    let with_ca = RegistryClient::new(ClientOptions { verify_loopback: true, ca_files: vec![CaFile::new(reg.ca_cert(), "--ca-file")], ..Default::default() }).unwrap();
    assert_eq!(fetch(&with_ca, &image, creds).unwrap(), digest);
    let err = RegistryClient::new(ClientOptions { ca_files: vec![CaFile::new("/nonexistent/ca.pem", "--ca-file")], ..Default::default() }).err().unwrap();
    assert!(matches!(err, RegistryError::CaFile { .. }) && err.to_string().contains("/nonexistent/ca.pem"), "{err}");
}

#[test]
fn limits_have_errors_that_name_them() {
    let reg = TestRegistry::start();
    let (image, _) = pushed_base(&reg, "s2i/limits:v1");
    let creds = creds_of(&reg, reg.user());
    let small = RegistryClient::new(ClientOptions { limits: Limits { manifest_max_bytes: 64, ..Default::default() }, ..Default::default() }).unwrap();
    let err = fetch(&small, &image, creds.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::TooLarge { max: 64, .. }), "{err:?}");
    assert!(err.to_string().contains("manifest size limit") && err.hint().contains(MANIFEST_MAX_ENV), "{err} / {}", err.hint());

    // A server that accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let hold = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(3));
        drop(conns);
    });
    let quick = RegistryClient::new(ClientOptions { limits: Limits { request_timeout: Duration::from_secs(1), ..Default::default() }, ..Default::default() }).unwrap();
    let mute = ImageRef::parse(&format!("{addr}/s2i/limits:v1")).unwrap();
    let started = Instant::now();
    let err = fetch(&quick, &mute, creds).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());
    assert!(matches!(err, RegistryError::Timeout { limit: "request timeout", .. }), "{err:?}");
    assert!(err.hint().contains(REQUEST_TIMEOUT_ENV), "{}", err.hint());
    hold.join().unwrap();
}

#[test]
fn token_auth_with_passwords_identity_tokens_and_refusals() {
    let reg = TestRegistry::start_with_token_auth();
    // Docker itself logs in and pushes through the token service.
    let (image, digest) = pushed_base(&reg, "s2i/token:v1");
    let client = client();
    assert_eq!(fetch(&client, &image, creds_of(&reg, reg.user())).unwrap(), digest);
    // A refresh token (config.json's identitytoken) instead of a password.
    let dir = tempfile::tempdir().unwrap();
    let config = write_docker_config(dir.path(), &serde_json::json!({"auths": {reg.host(): {"identitytoken": reg.identity_token()}}}));
    let resolved = lookup(&config, &reg.host(), &LookupOptions::default()).unwrap();
    assert!(resolved.credentials.as_ref().unwrap().identity_token.is_some());
    assert_eq!(fetch(&client, &image, resolved).unwrap(), digest);

    // Anonymous: the service hands out a token without access, and the registry refuses it.
    let anonymous = Resolved::anonymous(format!("no credentials for {} in {}", reg.host(), config.display()));
    let err = fetch(&client, &image, anonymous.clone()).unwrap_err();
    assert!(matches!(err, RegistryError::AuthRequired { .. }), "{err:?}");
    assert!(matches!(rt().block_on(client.diagnose(&image, &anonymous)), Some(RegistryError::AuthRequired { .. })));
    // A wrong password: the token service refuses it.
    let wrong = creds_of(&reg, &RegistryUser { name: reg.user().name.clone(), password: "nope".into() });
    let err = fetch(&client, &image, wrong).unwrap_err();
    assert!(matches!(err, RegistryError::CredentialsRejected { .. }), "{err:?}");
    let bad_refresh = Resolved::given(Credentials { identity_token: Some("expired".into()), server: reg.host(), ..Default::default() });
    let err = fetch(&client, &image, bad_refresh).unwrap_err();
    assert!(matches!(&err, RegistryError::CredentialsRejected { username, .. } if username == "<identity token>"), "{err:?}");
    assert!(!format!("{err} {err:?}").contains(&reg.identity_token()));

    // A user who may only pull: pulls, and is denied a push.
    let reader = creds_of(&reg, reg.tricky_user());
    assert_eq!(fetch(&client, &image, reader.clone()).unwrap(), digest);
    let blob = Bytes::from_static(b"{}");
    let desc = Descriptor { media_type: DOCKER_CONFIG.into(), digest: Digest::of(&blob), size: 2, urls: vec![], annotations: Default::default(), platform: None };
    let err = rt().block_on(client.repository_of(&image, reader).push_blob(&desc, once(blob.clone()))).unwrap_err();
    assert!(matches!(&err, RegistryError::Denied { action: "pull,push", .. }), "{err:?}");
    // The ordinary user may push, with a token for pull and push.
    let pushed = rt().block_on(client.repository_of(&image, creds_of(&reg, reg.user())).push_blob(&desc, once(blob))).unwrap();
    assert_eq!(pushed, BlobPush::Uploaded);
}

/// A registry that is overloaded (429) or failing (5xx) is told apart from one that answers
/// something wrong: the error says so with the status, and callers may try again
/// (`is_transient`); a 404 and a malformed answer are not worth another try.
#[test]
fn overloaded_and_failing_registries_are_transient_errors() {
    use s2i_testkit::{Answer, HttpServer};
    let server = HttpServer::scripted(|req| match req.path.as_str() {
        "/v2/" => Answer::ok("{}"),
        "/v2/busy/app/manifests/v1" => Answer::Status { status: "429 Too Many Requests".into(), headers: Vec::new(), body: Vec::new() },
        "/v2/down/app/manifests/v1" => Answer::Status {
            status: "503 Service Unavailable".into(),
            headers: Vec::new(),
            body: br#"{"errors":[{"code":"UNAVAILABLE","message":"storage is read-only"}]}"#.to_vec(),
        },
        "/v2/odd/app/manifests/v1" => Answer::Status { status: "418 I'm a teapot".into(), headers: Vec::new(), body: Vec::new() },
        _ => Answer::Status { status: "404 Not Found".into(), headers: Vec::new(), body: Vec::new() },
    });
    let host = format!("127.0.0.1:{}", server.port());
    let client = client();
    let get = |repo: &str| {
        let image = ImageRef::parse(&format!("{host}/{repo}:v1")).unwrap();
        fetch(&client, &image, Resolved::anonymous("nowhere")).unwrap_err()
    };
    let busy = get("busy/app");
    assert!(matches!(busy, RegistryError::Unavailable { .. }) && busy.is_transient(), "{busy:?}");
    assert!(busy.to_string().contains("429 too many requests (rate limited)"), "{busy}");
    let down = get("down/app");
    assert!(matches!(down, RegistryError::Unavailable { .. }) && down.is_transient(), "{down:?}");
    assert!(down.to_string().contains("503 Service Unavailable: storage is read-only (UNAVAILABLE)"), "{down}");
    assert!(down.hint().contains("try again later"), "{}", down.hint());
    let odd = get("odd/app");
    assert!(matches!(odd, RegistryError::Protocol { .. }) && !odd.is_transient(), "{odd:?}");
    let missing = get("missing/app");
    assert!(missing.is_not_found() && !missing.is_transient(), "{missing:?}");
}

/// Another host, standing in for a registry's storage or a second registry: records every request
/// (headers included), takes any PUT as distribution takes an upload (201 with the body's digest)
/// and answers anything else with `blob`.
fn other_host(blob: Bytes) -> s2i_testkit::HttpServer {
    use s2i_testkit::Answer;
    s2i_testkit::HttpServer::scripted(move |req| {
        if req.method == "PUT" {
            Answer::Status { status: "201 Created".into(), headers: vec![("Docker-Content-Digest".into(), sha256_digest(&req.body))], body: Vec::new() }
        } else {
            Answer::ok(blob.to_vec())
        }
    })
}

#[track_caller]
fn assert_no_credentials(server: &s2i_testkit::HttpServer, what: &str) {
    for req in server.received() {
        assert_eq!(req.header("authorization"), None, "{what}: {} {} reached another host with credentials", req.method, req.path);
    }
}

fn descriptor_of(bytes: &Bytes) -> Descriptor {
    Descriptor { media_type: DOCKER_LAYER_GZIP.into(), digest: Digest::of(bytes), size: bytes.len() as u64, urls: vec![], annotations: Default::default(), platform: None }
}

/// An upload whose `Location` names another host (the registry's external URL points there) is
/// sent there without the registry's credentials, Basic or a token; from HTTPS to plain HTTP it
/// is not sent at all. Before, the upload carried the registry's Authorization wherever it went.
#[test]
fn an_upload_sent_elsewhere_gets_no_credentials() {
    let blob = Bytes::from_static(b"a layer uploaded elsewhere");
    let desc = descriptor_of(&blob);
    for token_auth in [false, true] {
        let what = if token_auth { "token auth" } else { "basic auth" };
        let other = other_host(Bytes::new());
        let reg = TestRegistry::start_with_options(RegistryOptions { token_auth, plain_http: true, external_url: Some(other.url()), ..Default::default() });
        let image = ImageRef::parse(&reg.image("s2i/elsewhere:v1")).unwrap();
        let pushed = rt().block_on(client().repository_of(&image, creds_of(&reg, reg.user())).push_blob(&desc, once(blob.clone())));
        assert_eq!(pushed.unwrap(), BlobPush::Uploaded, "{what}: the other host took the upload");
        let received = other.received();
        assert_eq!(received.iter().map(|r| r.method.as_str()).collect::<Vec<_>>(), ["PUT"], "{what}");
        assert_eq!(received[0].body, blob.to_vec(), "{what}");
        assert_no_credentials(&other, what);
    }

    // An HTTPS registry whose uploads would go to plain HTTP.
    let other = other_host(Bytes::new());
    let reg = TestRegistry::start_with_options(RegistryOptions { external_url: Some(other.url()), ..Default::default() });
    let image = ImageRef::parse(&reg.image("s2i/downgrade:v1")).unwrap();
    let err = rt().block_on(client().repository_of(&image, creds_of(&reg, reg.user())).push_blob(&desc, once(blob))).unwrap_err();
    assert!(matches!(&err, RegistryError::Downgrade { to, .. } if *to == other.url()), "{err:?}");
    assert!(err.to_string().contains("from HTTPS to plain HTTP") && !err.is_transient(), "{err}");
    assert!(other.received().is_empty(), "nothing goes to plain HTTP: {:?}", other.requests());
}

/// A blob download that the registry redirects to its storage (S3-style, here distribution's
/// redirect middleware) is fetched there without credentials, and verified; the push before it,
/// at the registry's own origin, is authenticated. A redirect from HTTPS to plain HTTP is refused.
#[test]
fn a_blob_redirected_to_storage_is_fetched_without_credentials() {
    let (layer, _) = layer_with_file("stored.txt", "kept in the storage\n");
    let desc = descriptor_of(&layer);
    let fetch_blob = |reg: &TestRegistry, repo: &str| {
        let image = ImageRef::parse(&reg.image(repo)).unwrap();
        let client = client();
        rt().block_on(async {
            let repo = client.repository_of(&image, creds_of(reg, reg.user()));
            assert_eq!(repo.push_blob(&desc, once(layer.clone())).await.unwrap(), BlobPush::Uploaded);
            let mut stream = repo.blob(&desc).await?;
            let mut body = Vec::new();
            while let Some(chunk) = stream.next().await {
                body.extend_from_slice(&chunk.unwrap());
            }
            Ok::<_, RegistryError>(body)
        })
    };
    let storage = other_host(layer.clone());
    let reg = TestRegistry::start_with_options(RegistryOptions { plain_http: true, blob_redirect: Some(storage.url()), ..Default::default() });
    assert_eq!(fetch_blob(&reg, "s2i/stored:v1").unwrap(), layer.to_vec());
    assert!(storage.received().iter().any(|r| r.method == "GET"), "the download went to the storage: {:?}", storage.requests());
    assert_no_credentials(&storage, "a redirected blob download");

    let storage = other_host(layer.clone());
    let reg = TestRegistry::start_with_options(RegistryOptions { blob_redirect: Some(storage.url()), ..Default::default() });
    let err = fetch_blob(&reg, "s2i/stored:v1").unwrap_err();
    assert!(matches!(&err, RegistryError::Downgrade { to, .. } if *to == storage.url()), "{err:?}");
    assert!(storage.received().is_empty(), "nothing goes to plain HTTP: {:?}", storage.requests());
}

/// A registry (here a scripted one with Basic auth) that answers a manifest PUT with `307` to
/// another host: the PUT is sent again there, body and all, without the credentials.
#[test]
fn a_put_redirected_elsewhere_carries_no_credentials() {
    use s2i_testkit::{Answer, HttpServer};
    let other = other_host(Bytes::new());
    let user = Credentials { username: "front-user".into(), password: "front-secret".into(), identity_token: None, server: String::new() };
    let expected = {
        use base64::Engine as _;
        format!("Basic {}", base64::engine::general_purpose::STANDARD.encode("front-user:front-secret"))
    };
    let target = other.url();
    let front = HttpServer::scripted(move |req| match (req.method.as_str(), req.header("authorization") == Some(expected.as_str())) {
        (_, false) => Answer::Status {
            status: "401 Unauthorized".into(),
            headers: vec![("WWW-Authenticate".into(), r#"Basic realm="front""#.into())],
            body: Vec::new(),
        },
        ("PUT", true) => Answer::Status {
            status: "307 Temporary Redirect".into(),
            headers: vec![("Location".into(), format!("{target}{}", req.path))],
            body: Vec::new(),
        },
        _ => Answer::ok("{}"),
    });
    let host = format!("127.0.0.1:{}", front.port());
    let image = ImageRef::parse(&format!("{host}/s2i/redirected:v1")).unwrap();
    let manifest = Bytes::from_static(br#"{"schemaVersion":2}"#);
    let creds = Resolved::given(Credentials { server: host.clone(), ..user });
    let digest = rt().block_on(client().repository_of(&image, creds).push_manifest("v1", DOCKER_MANIFEST, manifest.clone())).unwrap();
    assert_eq!(digest, sha256_digest(&manifest));
    let put = front.received().into_iter().find(|r| r.method == "PUT").expect("the PUT reached the registry");
    assert!(put.header("authorization").is_some(), "the registry's own origin gets the credentials");
    let moved = other.received();
    assert_eq!((moved.len(), moved[0].method.as_str(), moved[0].body.as_slice()), (1, "PUT", &manifest[..]));
    assert_no_credentials(&other, "a redirected PUT");
}
