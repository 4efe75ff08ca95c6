//! The one place that writes to the terminal. Log lines (from `tracing`), the scripts' output,
//! progress, the summary, errors and the JSON document all go through [`Ui`].
//!
//! On a terminal (stderr is a tty), and only there, long steps show a live line, an `indicatif`
//! spinner redrawn in place below everything else (streaming the source, pulls, pushes, an OCI
//! engine unpacking an image or taking a container's snapshot, the engine committing), and colours
//! mark errors, warnings and the summary, unless `NO_COLOR` is set. Without a terminal the same
//! events give a few plain lines. Nothing but the JSON document (and `s2i usage`'s output) ever
//! goes to stdout.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use s2i_core::report::{Phase, Reporter, StreamProgress, Transfer};
use s2i_core::BuildResult;
use s2i_engine::{EngineTask, LayerPhase, OutputStream, Progress, TaskState};

/// How often the live line's text is brought up to date (its spinner turns on its own).
const TICK: Duration = Duration::from_millis(200);
/// How often the spinner turns.
const SPIN: Duration = Duration::from_millis(100);

const RED: &str = "\x1b[1;31m";
const YELLOW: &str = "\x1b[33m";
const GREEN: &str = "\x1b[32m";
const CYAN: &str = "\x1b[36m";
const DIM: &str = "\x1b[2m";
const RESET: &str = "\x1b[0m";

/// The process's terminal writer (one per process; `tracing` writes through it too).
pub fn ui() -> &'static Arc<Ui> {
    static UI: OnceLock<Arc<Ui>> = OnceLock::new();
    UI.get_or_init(|| Arc::new(Ui::detect()))
}

pub struct Ui {
    tty: bool,
    color: bool,
    /// Colours in a report written to stdout (`s2i verify`): only when stdout is a terminal.
    report_color: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// `-q`: no progress lines (errors, warnings and the scripts' stderr still show).
    quiet: bool,
    /// `s2i usage`: the script's stdout is the command's stdout.
    container_stdout_to_stdout: bool,
    /// The live line, while one is on screen.
    bar: Option<ProgressBar>,
    streaming: Option<(Arc<StreamProgress>, Instant)>,
    transfers: BTreeMap<String, TransferState>,
    /// Steps that move no counted bytes (an engine unpacking or snapshotting, a commit), by what
    /// the live line says of them, with when each started.
    steps: Vec<(String, Instant)>,
    ticker: bool,
}

struct TransferState {
    kind: Transfer,
    started: Instant,
    /// Per layer: (current, total) bytes.
    layers: BTreeMap<String, (u64, Option<u64>, bool)>,
}

impl TransferState {
    fn totals(&self) -> (usize, usize, u64, u64) {
        let done = self.layers.values().filter(|(_, _, d)| *d).count();
        let current: u64 = self.layers.values().map(|(c, t, d)| if *d { t.unwrap_or(*c) } else { *c }).sum();
        let total: u64 = self.layers.values().filter_map(|(_, t, _)| *t).sum();
        (done, self.layers.len(), current, total)
    }
}

impl Ui {
    fn detect() -> Ui {
        let tty = std::io::stderr().is_terminal();
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let report_color = std::io::stdout().is_terminal() && !no_color;
        Ui { tty, color: tty && !no_color, report_color, state: Mutex::new(State::default()) }
    }

    pub fn set_quiet(&self, quiet: bool) {
        self.state.lock().unwrap().quiet = quiet;
    }

    pub fn set_container_stdout_to_stdout(&self, on: bool) {
        self.state.lock().unwrap().container_stdout_to_stdout = on;
    }

    fn paint(&self, color: &str, text: &str) -> String {
        if self.color {
            format!("{color}{text}{RESET}")
        } else {
            text.to_string()
        }
    }

    /// Write bytes that end in a newline to stderr, keeping the live line below them.
    fn write_err(&self, state: &mut State, bytes: &[u8]) {
        // A live line whose step just ended goes first: redrawn under these bytes, it would
        // flash its last text once more.
        if Self::live_text(state).is_none() {
            self.clear_live(state);
        }
        let write = || {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(bytes);
            let _ = err.flush();
        };
        match &state.bar {
            Some(bar) => bar.suspend(write),
            None => write(),
        }
        self.redraw(state);
    }

    /// One plain line on stderr.
    pub fn line(&self, text: &str) {
        let mut state = self.state.lock().unwrap();
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(b'\n');
        self.write_err(&mut state, &bytes);
    }

    /// A formatted log event (from `tracing`), which already ends in a newline.
    pub fn log(&self, bytes: &[u8]) {
        let mut state = self.state.lock().unwrap();
        let text = String::from_utf8_lossy(bytes);
        let painted = match text.strip_prefix("WARNING: ") {
            Some(rest) if self.color => format!("{}{rest}", self.paint(YELLOW, "WARNING: ")),
            _ => match text.strip_prefix("ERROR: ") {
                Some(rest) if self.color => format!("{}{rest}", self.paint(RED, "ERROR: ")),
                _ => text.into_owned(),
            },
        };
        self.write_err(&mut state, painted.as_bytes());
    }

    /// A failure, rendered once: `error: …`, its causes, and `hint: …`.
    pub fn error(&self, message: &str, hint: Option<&str>) {
        self.line(&format!("{} {message}", self.paint(RED, "error:")));
        if let Some(hint) = hint {
            self.line(&format!("{} {hint}", self.paint(CYAN, "hint:")));
        }
    }

    /// The machine interface: one JSON document on stdout.
    pub fn json<T: serde::Serialize>(&self, doc: &T) {
        let text = serde_json::to_string(doc).expect("the document is plain data");
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Whether a report on stdout may use colours.
    pub fn report_color(&self) -> bool {
        self.report_color
    }

    /// A command's report (`s2i verify`'s), on stdout: the command's answer, as `s2i usage`'s
    /// output is, while its progress stays on stderr.
    pub fn report(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    }

    /// The line a finished build ends with: image, size, time per phase.
    pub fn summary(&self, result: &BuildResult, took: Duration) {
        if self.state.lock().unwrap().quiet {
            return;
        }
        let image = match &result.tag {
            Some(tag) => format!("{tag} ({})", short_id(&result.image_id)),
            None => format!("{} (untagged)", short_id(&result.image_id)),
        };
        let size = result.size.map(|s| format!(", {}", bytes(s))).unwrap_or_default();
        let phases: Vec<String> = result.timings.phases.iter().map(|(p, d)| format!("{} {:.1}s", p.as_str(), d.as_secs_f64())).collect();
        let text = format!("Built {image}{size} in {:.1}s: {}", took.as_secs_f64(), phases.join(", "));
        self.line(&self.paint(GREEN, &text));
    }

    /// The live line for what is under way now, if anything.
    fn live_text(state: &State) -> Option<String> {
        if let Some((image, t)) = state.transfers.iter().next() {
            let (done, layers, current, total) = t.totals();
            let verb = if t.kind == Transfer::Pull { "Pulling" } else { "Pushing" };
            let bytes_done = if total > 0 { format!("{} of {}", bytes(current), bytes(total)) } else { bytes(current) };
            return Some(format!("{verb} {image}: {done}/{layers} layers, {bytes_done}, {:.0}s", t.started.elapsed().as_secs_f64()));
        }
        if let Some((progress, since)) = state.streaming.as_ref() {
            let (files, sent) = progress.get();
            let secs = since.elapsed().as_secs_f64().max(0.001);
            return Some(format!("Streaming the source: {files} entries, {} ({}/s)", bytes(sent), bytes((sent as f64 / secs) as u64)));
        }
        let (what, since) = state.steps.last()?;
        Some(format!("{what}, {:.0}s", since.elapsed().as_secs_f64()))
    }

    /// Bring the live line up to date: shown, changed, or gone when nothing is under way.
    fn redraw(&self, state: &mut State) {
        let text = if self.tty && !state.quiet { Self::live_text(state) } else { None };
        match (text, &state.bar) {
            (Some(text), Some(bar)) => bar.set_message(self.paint(DIM, &text)),
            (Some(text), None) => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
                    .with_style(ProgressStyle::with_template("{spinner} {wide_msg}").expect("a valid template"))
                    .with_message(self.paint(DIM, &text));
                // Drawn now, however short the step: the spinner's own ticks come later.
                bar.tick();
                bar.enable_steady_tick(SPIN);
                state.bar = Some(bar);
            }
            (None, Some(_)) => self.clear_live(state),
            (None, None) => {}
        }
    }

    fn clear_live(&self, state: &mut State) {
        if let Some(bar) = state.bar.take() {
            bar.finish_and_clear();
        }
    }

    fn busy(state: &State) -> bool {
        state.streaming.is_some() || !state.transfers.is_empty() || !state.steps.is_empty()
    }

    /// A step of the engine's own ([`Progress::Task`], from the OCI engine): on the live line
    /// while it runs; a plain line when it ends, without a terminal.
    pub fn engine_task(self: &Arc<Self>, event: Progress<'_>) {
        let Progress::Task { task, subject, state: task_state } = event else { return };
        let what = match task {
            EngineTask::Unpack => format!("Unpacking {subject}"),
            EngineTask::Snapshot => format!("Taking the snapshot of container {subject}"),
        };
        let mut state = self.state.lock().unwrap();
        if task_state == TaskState::Started {
            self.step_started(&mut state, what);
            return;
        }
        let Some(took) = Self::step_finished(&mut state, &what) else { return };
        // A failed step says nothing more: its error is told once, by the command.
        if task_state == TaskState::Done && !self.tty && !state.quiet {
            let done = match task {
                EngineTask::Unpack => format!("Unpacked {subject}"),
                EngineTask::Snapshot => format!("Took the snapshot of container {subject}"),
            };
            let line = format!("{done} in {:.1}s\n", took.as_secs_f64());
            self.write_err(&mut state, line.as_bytes());
        } else {
            self.redraw(&mut state);
        }
    }

    fn step_started(self: &Arc<Self>, state: &mut State, what: String) {
        state.steps.push((what, Instant::now()));
        self.redraw(state);
        self.start_ticker(state);
    }

    fn step_finished(state: &mut State, what: &str) -> Option<Duration> {
        let i = state.steps.iter().rposition(|(w, _)| w == what)?;
        Some(state.steps.remove(i).1.elapsed())
    }

    /// Keep redrawing the live line while something is under way (a terminal only).
    fn start_ticker(self: &Arc<Self>, state: &mut State) {
        if !self.tty || state.ticker {
            return;
        }
        state.ticker = true;
        let ui = Arc::clone(self);
        std::thread::spawn(move || loop {
            std::thread::sleep(TICK);
            let mut state = ui.state.lock().unwrap();
            if !Self::busy(&state) {
                state.ticker = false;
                ui.clear_live(&mut state);
                return;
            }
            ui.redraw(&mut state);
        });
    }
}

/// What a piece of a report says, for its colour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Good,
    Bad,
    Warn,
    Dim,
}

/// `text` in the colour of `tone` when `on`.
pub fn tint(on: bool, tone: Tone, text: &str) -> String {
    if !on {
        return text.to_string();
    }
    let color = match tone {
        Tone::Good => GREEN,
        Tone::Bad => RED,
        Tone::Warn => YELLOW,
        Tone::Dim => DIM,
    };
    format!("{color}{text}{RESET}")
}

/// What the live line says while the engine commits.
const COMMITTING: &str = "Committing the image";

/// The [`Reporter`] of a command: the process's [`Ui`].
pub struct UiReporter(pub Arc<Ui>);

impl Reporter for UiReporter {
    fn container_output(&self, stream: OutputStream, line: &[u8]) {
        let ui = &self.0;
        let mut state = ui.state.lock().unwrap();
        if stream == OutputStream::Stdout && state.container_stdout_to_stdout {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(line);
            let _ = out.write_all(b"\n");
            let _ = out.flush();
            return;
        }
        let mut bytes = line.to_vec();
        bytes.push(b'\n');
        ui.write_err(&mut state, &bytes);
    }

    fn phase_started(&self, phase: Phase) {
        // The engine commits without a word (Docker's daemon can take seconds): a spinner says so.
        if phase == Phase::Commit {
            let ui = &self.0;
            ui.step_started(&mut ui.state.lock().unwrap(), COMMITTING.to_string());
        }
    }

    fn phase_finished(&self, phase: Phase, took: Duration) {
        if phase == Phase::Commit {
            let ui = &self.0;
            let mut state = ui.state.lock().unwrap();
            Ui::step_finished(&mut state, COMMITTING);
            ui.redraw(&mut state);
        }
        tracing::info!("{}: {:.2}s", phase.as_str(), took.as_secs_f64());
    }

    fn streaming(&self, progress: Arc<StreamProgress>) {
        let ui = &self.0;
        let mut state = ui.state.lock().unwrap();
        state.streaming = Some((progress, Instant::now()));
        ui.redraw(&mut state);
        ui.start_ticker(&mut state);
    }

    fn streamed(&self) {
        let ui = &self.0;
        let mut state = ui.state.lock().unwrap();
        let Some((progress, since)) = state.streaming.take() else { return };
        if state.quiet {
            return;
        }
        let (files, sent) = progress.get();
        let text = format!("Streamed {files} entries ({}) into the build in {:.1}s", bytes(sent), since.elapsed().as_secs_f64());
        let mut line = text.into_bytes();
        line.push(b'\n');
        ui.write_err(&mut state, &line);
    }

    fn transfer_started(&self, kind: Transfer, image: &str) {
        let ui = &self.0;
        let mut state = ui.state.lock().unwrap();
        state.transfers.insert(image.to_string(), TransferState { kind, started: Instant::now(), layers: BTreeMap::new() });
        if !state.quiet {
            let verb = if kind == Transfer::Pull { "Pulling" } else { "Pushing" };
            let line = format!("{verb} {image}\n");
            ui.write_err(&mut state, line.as_bytes());
        }
        ui.start_ticker(&mut state);
    }

    fn transfer(&self, _kind: Transfer, image: &str, event: Progress<'_>) {
        let mut state = self.0.state.lock().unwrap();
        let Some(t) = state.transfers.get_mut(image) else { return };
        if let Progress::Layer { id, phase, current, total } = event {
            let entry = t.layers.entry(id.to_string()).or_insert((0, None, false));
            match phase {
                LayerPhase::Done | LayerPhase::Exists => entry.2 = true,
                LayerPhase::Downloading | LayerPhase::Pushing => {
                    entry.0 = current;
                    if total.is_some() {
                        entry.1 = total;
                    }
                }
                _ => {}
            }
        }
    }

    fn transfer_finished(&self, kind: Transfer, image: &str, ok: bool) {
        let ui = &self.0;
        let mut state = ui.state.lock().unwrap();
        let Some(t) = state.transfers.remove(image) else { return };
        if !ok || state.quiet {
            return;
        }
        let (_, layers, current, total) = t.totals();
        let verb = if kind == Transfer::Pull { "Pulled" } else { "Pushed" };
        let took = t.started.elapsed().as_secs_f64();
        let line = match (kind, layers) {
            // An engine that reads only the manifest and config (the in-place engine) moved no layer.
            (Transfer::Pull, 0) => format!("Read the manifest and config of {image} (no layer pulled) in {took:.1}s\n"),
            _ => format!("{verb} {image}: {layers} layers, {} in {took:.1}s\n", bytes(total.max(current))),
        };
        ui.write_err(&mut state, line.as_bytes());
    }
}

/// `tracing`'s writer: every formatted event goes through the [`Ui`].
pub struct LogWriter;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> EventBuffer {
        EventBuffer(Vec::new())
    }
}

/// One event's bytes, handed to the [`Ui`] when the event is written out.
pub struct EventBuffer(Vec<u8>);

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        if !self.0.is_empty() {
            ui().log(&self.0);
        }
    }
}

pub use s2i_registry::digest::short_id;

/// Bytes for people: `512 B`, `12.3 KB`, `45.6 MB`, `1.2 GB` (powers of 1000, as registries show them).
pub fn bytes(n: u64) -> String {
    let n = n as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} KB", n / 1e3),
        n => format!("{n} B"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_read_well() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_345), "12.3 KB");
        assert_eq!(bytes(45_600_000), "45.6 MB");
        assert_eq!(bytes(1_200_000_000), "1.2 GB");
    }

    #[test]
    fn transfer_totals_count_finished_layers_whole() {
        let mut t = TransferState { kind: Transfer::Pull, started: Instant::now(), layers: BTreeMap::new() };
        t.layers.insert("a".into(), (10, Some(100), false));
        t.layers.insert("b".into(), (0, Some(50), true));
        assert_eq!(t.totals(), (1, 2, 60, 150));
    }
}
