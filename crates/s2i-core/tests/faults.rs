//! Robustness as a figure: every flow is run once to record the engine calls it makes, then once
//! per call and per fault that call can have (fail, hang, a stream cut half-way). Each run must end
//! with an error that says something (or survive the fault), leave no container, move no tag and
//! leave no temp dir, in bounded time. A hang is ended the way a user ends one: the build is dropped
//! (Ctrl-C) and the engine's leftovers are removed.
//!
//! This binary holds one test: it points the temp dir of the whole process at its own directory.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use s2i_core::config::{BuildConfig, BuildMethod};
use s2i_core::config::SourceSpec;
use s2i_engine::Engine;
use s2i_testkit::fake::{Call, FakeEngine};

/// How long one faulted run may take (the fake answers in microseconds).
const BOUND: Duration = Duration::from_secs(5);

struct Flow {
    name: &'static str,
    /// Prepares the engine (images a flow needs, a previous build) and the config.
    setup: fn(&FakeEngine, &Path) -> BuildConfig,
}

fn standard(_: &FakeEngine, dir: &Path) -> BuildConfig {
    config(&dir.join("src"), BUILDER, Some("app:v1"))
}

fn archive(_: &FakeEngine, dir: &Path) -> BuildConfig {
    // A tar source: read in a first pass into a temp dir that must go on every path.
    let tar = dir.join("app.tar");
    let mut b = tar::Builder::new(std::fs::File::create(&tar).unwrap());
    b.append_dir_all(".", dir.join("src")).unwrap();
    b.finish().unwrap();
    let mut cfg = config(&dir.join("src"), BUILDER, Some("app:v1"));
    cfg.source.spec = SourceSpec::Local(tar.clone());
    cfg.source.location = tar.display().to_string();
    cfg
}

fn previous_build(engine: &FakeEngine, tag: &str) {
    engine.add_image(tag, builder().label("io.openshift.s2i.build.image", BUILDER));
}

fn incremental(engine: &FakeEngine, dir: &Path) -> BuildConfig {
    previous_build(engine, "app:v1");
    let mut cfg = config(&dir.join("src"), BUILDER, Some("app:v1"));
    cfg.incremental = true;
    cfg.remove_previous = true;
    cfg
}

fn runtime_incremental(engine: &FakeEngine, dir: &Path) -> BuildConfig {
    previous_build(engine, "app:v1-build");
    let mut cfg = with_runtime(config(&dir.join("src"), BUILDER, Some("app:v1")));
    cfg.incremental = true;
    cfg
}

fn inject(_: &FakeEngine, dir: &Path) -> BuildConfig {
    std::fs::write(dir.join("secret"), "s3cr3t").unwrap();
    let mut cfg = config(&dir.join("src"), BUILDER, Some("app:v1"));
    cfg.injections = s2i_core::mapping::parse_specs(&format!("{}:/tmp/secret", dir.join("secret").display()), "--inject").unwrap();
    cfg
}

fn onbuild(_: &FakeEngine, dir: &Path) -> BuildConfig {
    config(&dir.join("src"), ONBUILD, Some("app:v1"))
}

fn dockerfile(_: &FakeEngine, dir: &Path) -> BuildConfig {
    let mut cfg = config(&dir.join("src"), BUILDER, Some("app:v1"));
    cfg.build_method = BuildMethod::Dockerfile;
    cfg
}

fn no_tar(engine: &FakeEngine, dir: &Path) -> BuildConfig {
    engine.add_image("notar:latest", builder().without("/bin/tar"));
    config(&dir.join("src"), "notar", Some("app:v1"))
}

const FLOWS: &[Flow] = &[
    Flow { name: "standard", setup: standard },
    Flow { name: "archive source", setup: archive },
    Flow { name: "incremental", setup: incremental },
    Flow { name: "runtime, incremental", setup: runtime_incremental },
    Flow { name: "inject", setup: inject },
    Flow { name: "onbuild", setup: onbuild },
    Flow { name: "dockerfile", setup: dockerfile },
    Flow { name: "builder without tar", setup: no_tar },
];

/// What one run ended with.
enum Ending {
    Built,
    Failed(String),
    Interrupted,
}

/// Run a build; returns how it ended and the containers it left before the binary's last-resort
/// clean-up (`remove_leftovers`), which then runs as on every path of the binary.
async fn run(engine: &Arc<FakeEngine>, cfg: &BuildConfig) -> (Ending, Vec<String>) {
    let hung = engine.hung();
    let reporter = Recorder::new();
    let ending = {
        let services = services(engine.as_ref(), reporter);
        let build = s2i_core::build(cfg, &services);
        tokio::select! {
            built = build => match built {
                Ok(_) => Ending::Built,
                Err(e) => Ending::Failed(s2i_engine::error_chain(&e)),
            },
            // The build is dropped here, as on Ctrl-C.
            _ = hung.notified() => Ending::Interrupted,
        }
    };
    let left = engine.containers();
    // As the binary does on every path.
    engine.remove_leftovers().await;
    (ending, left)
}

fn temp_entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect()
}

/// Blocking work of a dropped build (a tar writer, an archive pass) may need a moment to see it.
async fn wait_empty(dir: &Path) -> Vec<PathBuf> {
    let start = Instant::now();
    loop {
        let left = temp_entries(dir);
        if left.is_empty() || start.elapsed() > Duration::from_secs(2) {
            return left;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_of_every_flow_is_refused_or_survived_and_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let temp = work.path().join("tmp");
    std::fs::create_dir(&temp).unwrap();
    tempfile::env::override_temp_dir(&temp).unwrap();
    let fixtures = work.path().join("fixtures");
    source(&fixtures.join("src"));

    let mut points = 0;
    let mut report = Vec::new();
    for flow in FLOWS {
        // The trace of a run without faults.
        let clean = Arc::new(engine());
        let cfg = (flow.setup)(&clean, &fixtures);
        let (ending, left) = run(&clean, &cfg).await;
        assert!(matches!(ending, Ending::Built), "{}: the flow works without faults", flow.name);
        assert!(left.is_empty(), "{}: the flow removes its containers itself", flow.name);
        let trace = clean.calls();
        let (mut failed, mut survived, mut interrupted) = (0, 0, 0);
        for (i, call) in trace.iter().enumerate() {
            let nth = trace[..i].iter().filter(|c| *c == call).count();
            for fault in call.faults() {
                points += 1;
                let what = format!("{}: {call:?} #{nth} {fault:?}", flow.name);
                let engine = Arc::new(engine());
                let cfg = (flow.setup)(&engine, &fixtures);
                let tags_before: Vec<(String, Option<String>)> = engine.tags().into_iter().map(|t| (t.clone(), engine.image_id(&t))).collect();
                engine.inject(*call, nth, *fault);
                let started = Instant::now();
                let (ending, left_by_build) = tokio::time::timeout(BOUND, run(&engine, &cfg)).await.unwrap_or_else(|_| panic!("{what}: not ended within {BOUND:?}"));
                assert!(started.elapsed() < BOUND, "{what}");
                // A build that returns removes what it made, unless the engine refused the removal.
                if !matches!(ending, Ending::Interrupted) && *call != Call::RemoveContainer {
                    assert!(left_by_build.is_empty(), "{what}: the build left containers: {left_by_build:?}");
                }
                assert!(engine.containers().is_empty(), "{what}: containers left: {:?}", engine.containers());
                let left = wait_empty(&temp).await;
                assert!(left.is_empty(), "{what}: temp entries left: {left:?}");
                let tags_after: Vec<(String, Option<String>)> = engine.tags().into_iter().map(|t| (t.clone(), engine.image_id(&t))).collect();
                match ending {
                    Ending::Built => survived += 1,
                    Ending::Failed(message) => {
                        failed += 1;
                        assert!(message.len() > 10, "{what}: a clear error, not {message:?}");
                        assert!(!message.contains("panicked"), "{what}: {message}");
                        assert_eq!(tags_after, tags_before, "{what}: a failed build moved no tag");
                    }
                    Ending::Interrupted => {
                        interrupted += 1;
                        // Interrupted after its image was made, a build may have moved its tag to
                        // that (whole) image; before, it may not.
                        let calls = engine.calls();
                        let made = calls[..calls.len() - 1].iter().any(|c| matches!(c, Call::CommitContainer | Call::BuildImage));
                        if !made {
                            assert_eq!(tags_after, tags_before, "{what}: an interrupted build moved no tag");
                        }
                    }
                }
            }
        }
        report.push(format!("{:<22} {:>3} calls, {failed:>3} refused, {survived:>3} survived, {interrupted:>3} interrupted", flow.name, trace.len()));
    }
    eprintln!("fault points walked: {points}\n{}", report.join("\n"));
    assert!(points >= 150, "{points} fault points: fewer than expected, did a flow stop early?");
}
