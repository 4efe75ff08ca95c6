//! Fixtures for the fake-engine tests: a builder, a runtime image, sources and configs.
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use s2i_core::config::{BuildConfig, RuntimeConfig, SourceConfig, SourceSpec};
use s2i_core::mapping::Mapping;
use s2i_core::registry::Registries;
use s2i_core::report::Reporter;
use s2i_core::Services;
use s2i_engine::{Engine, OutputStream};
use s2i_testkit::fake::{Exec, FakeEngine, FakeImage, Node};

pub const BUILDER: &str = "builder:latest";
pub const RUNTIME: &str = "runtime:latest";
pub const ONBUILD: &str = "onbuild:latest";
pub const SCRIPTS: &str = "io.openshift.s2i.scripts-url";

/// assemble: the source (and artifacts) into the workdir, then a marker; fails when the source
/// has `fail`. save-artifacts: a tar of the workdir's `deps`. run: prints.
fn assemble(e: &mut Exec<'_>) -> i64 {
    if e.fs.contains_key("/tmp/src/fail") {
        e.complain("assemble: told to fail");
        return 3;
    }
    let reused = e.fs.contains_key("/tmp/artifacts/deps/installed");
    e.copy_tree("/tmp/src", "/opt/app");
    if reused {
        e.copy_tree("/tmp/artifacts", "/opt/app");
        e.say("reused the artifacts");
    } else {
        e.fs.insert("/opt/app/deps".into(), Node::Dir { mode: 0o755, uid: 1001 });
        e.fs.insert("/opt/app/deps/installed".into(), Node::File { mode: 0o644, uid: 1001, data: b"yes".to_vec() });
        e.say("installed the dependencies");
    }
    if let Some(Node::File { data, .. }) = e.fs.get("/tmp/secret").cloned() {
        e.say(&format!("secret: {}", String::from_utf8_lossy(&data)));
    }
    0
}

pub fn builder() -> FakeImage {
    FakeImage::new()
        .program("/usr/libexec/s2i/assemble", assemble)
        .program("/usr/libexec/s2i/run", |e| {
            e.say("running");
            0
        })
        .program("/usr/libexec/s2i/save-artifacts", |e| {
            e.tar_to_stdout("/opt/app");
            0
        })
        .program("/usr/libexec/s2i/usage", |e| {
            e.say("usage: fake");
            0
        })
        .label(SCRIPTS, "image:///usr/libexec/s2i")
        .user("1001")
        .workdir("/opt/app")
}

pub fn runtime() -> FakeImage {
    FakeImage::new()
        .program("/usr/libexec/s2i/assemble-runtime", |e| {
            e.say("assemble-runtime");
            0
        })
        .program("/usr/libexec/s2i/run", |e| {
            e.say("running on the runtime image");
            0
        })
        .label(SCRIPTS, "image:///usr/libexec/s2i")
        .label("io.openshift.s2i.assemble-input-files", "/opt/app/deps")
        .user("1001")
        .workdir("/srv")
}

/// An engine with the builder, runtime and ONBUILD images.
pub fn engine() -> FakeEngine {
    let engine = FakeEngine::new();
    engine.add_image(BUILDER, builder());
    engine.add_image(RUNTIME, runtime());
    engine.add_image(ONBUILD, FakeImage::new().onbuild("COPY . /tmp/src").workdir("/tmp/src"));
    engine
}

/// A source directory with two files.
pub fn source(dir: &Path) {
    std::fs::create_dir_all(dir.join("lib")).unwrap();
    std::fs::write(dir.join("index.html"), "hello\n").unwrap();
    std::fs::write(dir.join("lib/util.sh"), "echo util\n").unwrap();
    std::fs::write(dir.join("run"), "#!/bin/sh\n").unwrap();
    let mut p = std::fs::metadata(dir.join("run")).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut p, 0o755);
    std::fs::set_permissions(dir.join("run"), p).unwrap();
}

pub fn config(src: &Path, builder: &str, tag: Option<&str>) -> BuildConfig {
    BuildConfig {
        source: SourceConfig {
            spec: SourceSpec::Local(src.to_path_buf()),
            location: src.display().to_string(),
            exclude: Some(regex::Regex::new(s2i_core::source::DEFAULT_EXCLUDE).unwrap()),
            ..Default::default()
        },
        builder_image: builder.into(),
        tag: tag.map(|t| s2i_core::config::parse_tag(t).unwrap()),
        ..Default::default()
    }
}

pub fn with_runtime(mut cfg: BuildConfig) -> BuildConfig {
    cfg.runtime = Some(RuntimeConfig { image: RUNTIME.into(), pull_policy: Default::default(), artifacts: Vec::<Mapping>::new(), assemble_user: None });
    cfg
}

/// The services of a test build: `engine`, credentials from Docker's places (none on a test
/// machine), and `reporter`.
pub fn services<'a>(engine: &'a dyn Engine, reporter: Arc<dyn Reporter>) -> Services<'a> {
    Services { engine, registries: Registries::default(), reporter }
}

/// A reporter that keeps the scripts' output.
#[derive(Default)]
pub struct Recorder(pub Mutex<Vec<String>>);

impl Reporter for Recorder {
    fn container_output(&self, _stream: OutputStream, line: &[u8]) {
        self.0.lock().unwrap().push(String::from_utf8_lossy(line).into_owned());
    }
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    pub fn text(&self) -> String {
        self.0.lock().unwrap().join("\n")
    }
}
