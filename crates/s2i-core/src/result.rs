//! What a finished build produced, and how long each phase took.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::image_ref::ImageRef;
use crate::registry::Pushed;
use crate::report::{Phase, Reporter};
use crate::tar_stream::WalkStats;

/// What a finished build produced.
#[derive(Debug, Clone)]
pub struct BuildResult {
    pub image_id: String,
    /// The output tag as given, if any.
    pub tag: Option<String>,
    pub builder_image: String,
    pub labels: BTreeMap<String, String>,
    pub timings: Timings,
    /// What went into `src/` (and `artifacts/`).
    pub source_stats: WalkStats,
    /// The image's size in bytes, when the engine says.
    pub size: Option<u64>,
    /// The builder stage kept for the next incremental build (`<tag>-build`), by an incremental
    /// build with a runtime image.
    pub builder_stage: Option<ImageRef>,
    /// What `--push` pushed: the tag, then the builder stage if one was kept.
    pub pushed: Vec<Pushed>,
    /// The scripts fetched from an HTTP(S) scripts URL, with the digests of what was fetched.
    pub scripts_fetched: Vec<FetchedScript>,
}

/// A script fetched from a URL: where (credentials removed) and the SHA-256 (hex) of what came.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedScript {
    pub uri: String,
    pub sha256: String,
}

/// Wall time per phase, in the order the phases ran.
#[derive(Debug, Clone, Default)]
pub struct Timings {
    pub phases: Vec<(Phase, Duration)>,
}

/// Times phases and tells the reporter when each starts and ends.
pub struct Phases {
    reporter: Arc<dyn Reporter>,
    timings: Timings,
}

/// A phase under way; hand it back to [`Phases::end`].
#[must_use]
pub struct Running {
    phase: Phase,
    since: Instant,
}

impl Phases {
    pub fn new(reporter: Arc<dyn Reporter>) -> Phases {
        Phases { reporter, timings: Timings::default() }
    }

    pub fn start(&self, phase: Phase) -> Running {
        self.reporter.phase_started(phase);
        Running { phase, since: Instant::now() }
    }

    pub fn end(&mut self, running: Running) {
        let took = running.since.elapsed();
        tracing::debug!("phase {} took {:.3}s", running.phase.as_str(), took.as_secs_f64());
        self.reporter.phase_finished(running.phase, took);
        self.timings.phases.push((running.phase, took));
    }

    pub fn into_timings(self) -> Timings {
        self.timings
    }
}
