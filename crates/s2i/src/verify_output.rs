//! `s2i verify`'s report: a table for people (at most [`WIDTH`] columns, colours only on a
//! terminal) and, with `--json`, one document for tools ([`VerifyDocument`], described in
//! docs/verify.md).

use std::time::Duration;

use s2i_core::verify::image::FileKind;
use s2i_core::verify::{AspectReport, AspectVerdict, FieldDiff, FileChange, FilesDiff, ImageDiff, Outcomes, Report, SideInfo, Twice, Verdict};
use s2i_core::BuildError;
use serde::Serialize;

use crate::json_output::{EngineReport, ErrorReport};
use crate::ui::{bytes, short_id, tint, Tone};

/// No line of the report is wider.
pub const WIDTH: usize = 100;
/// Widths of the outcome table's columns: what was observed, side A, side B (then the verdict).
const LABEL: usize = 22;
const VALUE: usize = 31;
/// Lines of one unified diff shown; the rest are counted.
const DIFF_LINES: usize = 40;
/// Lines of each file listing shown (added, removed, changed).
const FILE_LINES: usize = 12;

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct VerifyDocument<'a> {
    /// `same`, `differ` or `error`.
    pub verdict: &'static str,
    /// The process's exit code: 0, 1 or 2.
    pub exit_code: u8,
    /// Wall time of the whole command, in seconds (to the millisecond).
    pub seconds: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<EngineReport>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub sides: &'a [SideInfo],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<&'a Outcomes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<&'a ImageDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twice: Option<&'a Twice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
}

impl<'a> VerifyDocument<'a> {
    pub fn report(report: &'a Report, engine: Option<EngineReport>, took: Duration) -> VerifyDocument<'a> {
        VerifyDocument {
            verdict: match report.verdict {
                Verdict::Same => "same",
                Verdict::Differ => "differ",
            },
            exit_code: report.exit_code() as u8,
            seconds: (took.as_secs_f64() * 1000.0).round() / 1000.0,
            engine,
            sides: &report.sides,
            outcomes: report.outcomes.as_ref(),
            image: report.image.as_ref(),
            twice: report.twice.as_ref(),
            error: None,
        }
    }

    pub fn failure(e: &BuildError, engine: Option<EngineReport>, took: Duration) -> VerifyDocument<'static> {
        let exit_code = crate::commands::VERIFY_ERROR_EXIT;
        VerifyDocument {
            verdict: "error",
            exit_code,
            seconds: (took.as_secs_f64() * 1000.0).round() / 1000.0,
            engine,
            sides: &[],
            outcomes: None,
            image: None,
            twice: None,
            error: Some(ErrorReport { message: s2i_core::redact::text(&s2i_engine::error_chain(e)), hint: e.hint(), exit_code: exit_code as i32 }),
        }
    }
}

/// The report as people read it, every line at most [`WIDTH`] columns; `color` for a terminal.
pub fn render(report: &Report, color: bool) -> String {
    let mut out = Out { lines: Vec::new(), color };
    headline(&mut out, report);
    if let (Some(outcomes), Some(image)) = (&report.outcomes, &report.image) {
        versions(&mut out, image);
        outcome_table(&mut out, outcomes);
        outcome_diffs(&mut out, outcomes);
        image_section(&mut out, image, outcomes.differences > 0);
        out.blank();
        let masks: Vec<String> = outcomes.masks.iter().map(|m| format!("<{}>", m.name)).chain(std::iter::once("<hostname>".to_string())).collect();
        out.wrapped("Masked before comparing: ", &masks.join(" "), Tone::Dim);
    }
    if let Some(twice) = &report.twice {
        twice_section(&mut out, twice);
    }
    let mut text = out.lines.join("\n");
    text.push('\n');
    text
}

/// The report's lines, each fitted to [`WIDTH`] before it is coloured.
struct Out {
    lines: Vec<String>,
    color: bool,
}

impl Out {
    fn line(&mut self, text: &str) {
        self.lines.push(fit(text, WIDTH));
    }

    fn toned(&mut self, text: &str, tone: Tone) {
        let fitted = fit(text, WIDTH);
        self.lines.push(tint(self.color, tone, &fitted));
    }

    fn blank(&mut self) {
        if self.lines.last().is_some_and(|l| !l.is_empty()) {
            self.lines.push(String::new());
        }
    }

    /// `lead` then `words`, broken at spaces to fit.
    fn wrapped(&mut self, lead: &str, words: &str, tone: Tone) {
        let mut line = lead.to_string();
        for word in words.split(' ') {
            if line.chars().count() + word.chars().count() + 1 > WIDTH && line.trim() != lead.trim() {
                self.toned(&line, tone);
                line = " ".repeat(lead.chars().count());
            }
            if !line.ends_with(' ') {
                line.push(' ');
            }
            line.push_str(word);
        }
        self.toned(&line, tone);
    }
}

/// At most `width` characters: cut with `…`. What the images printed is untrusted: a control
/// character (an escape sequence's start, a carriage return) is shown as `\xNN`, never sent to
/// the terminal.
fn fit(text: &str, width: usize) -> String {
    let text = printable(text);
    if text.chars().count() <= width {
        return text;
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// Padded or cut to exactly `width` characters.
fn cell(text: &str, width: usize) -> String {
    let fitted = fit(text, width);
    let pad = width.saturating_sub(fitted.chars().count());
    format!("{fitted}{}", " ".repeat(pad))
}

fn headline(out: &mut Out, report: &Report) {
    let (word, tone) = match report.verdict {
        Verdict::Same => ("SAME", Tone::Good),
        Verdict::Differ => ("DIFFER", Tone::Bad),
    };
    let detail = match (&report.outcomes, &report.twice) {
        (Some(o), _) => {
            let mut d = format!("{} of {} aspects differ", o.differences, o.aspects.len());
            if o.flaky > 0 {
                d.push_str(&format!(", {} flaky on both sides", o.flaky));
            }
            d
        }
        (None, Some(t)) if t.identical => "the two builds are the same image".into(),
        (None, Some(_)) => "the two builds are different images".into(),
        (None, None) => String::new(),
    };
    let head = format!("s2i verify: {word}");
    let rest = format!(" ({detail}; exit {})", report.exit_code());
    let fitted_rest = fit(&rest, WIDTH - head.chars().count());
    out.lines.push(format!("{}{fitted_rest}", tint(out.color, tone, &head)));
    for side in &report.sides {
        let built = match &side.builder {
            Some(builder) => format!("{builder} → {}", side.image),
            None => side.image.clone(),
        };
        out.line(&format!("  {:<3}{built} ({})", side.side, short_id(&side.id)));
    }
}

fn versions(out: &mut Out, image: &ImageDiff) {
    if image.versions.is_empty() {
        return;
    }
    out.blank();
    out.line(&format!("{}  {}  B", cell("Builders", LABEL + 2), cell("A", VALUE)));
    for row in &image.versions {
        // The builder's name as s2i records it spells out Docker Hub; the rest tells the builders apart.
        let shown = |v: &Option<String>| match v.as_deref() {
            None => "(none)".to_string(),
            Some(v) => v.strip_prefix("docker.io/library/").or_else(|| v.strip_prefix("docker.io/")).unwrap_or(v).to_string(),
        };
        let (a, b) = (&shown(&row.a), &shown(&row.b));
        let text = format!("  {}  {}  {}", cell(&row.name, LABEL), cell(a, VALUE), fit(b, VALUE));
        if a == b {
            out.line(&text);
        } else {
            out.toned(&text, Tone::Warn);
        }
    }
}

fn outcome_table(out: &mut Out, outcomes: &Outcomes) {
    out.blank();
    let runs = if outcomes.runs == 1 { "1 run of each side".to_string() } else { format!("{} runs of each side", outcomes.runs) };
    out.line(&format!("Outcomes ({runs})"));
    out.line(&format!("{}  {}  B", cell("", LABEL + 2), cell("A", VALUE)));
    let mut check = "";
    for aspect in &outcomes.aspects {
        if aspect.check != check {
            check = &aspect.check;
            out.line(&format!("  {check}"));
        }
        let (word, tone) = verdict_word(aspect.verdict);
        let row = format!("    {}  {}  {}  ", cell(&aspect.field, LABEL - 2), cell(&side_summary(&aspect.a), VALUE), cell(&side_summary(&aspect.b), VALUE));
        let row = fit(&row, WIDTH - word.len());
        out.lines.push(format!("{row}{}", tint(out.color, tone, word)));
    }
}

fn verdict_word(v: AspectVerdict) -> (&'static str, Tone) {
    match v {
        AspectVerdict::Same => ("same", Tone::Good),
        AspectVerdict::Differ => ("DIFFER", Tone::Bad),
        AspectVerdict::Flaky => ("flaky", Tone::Warn),
        AspectVerdict::FlakyA => ("FLAKY A", Tone::Bad),
        AspectVerdict::FlakyB => ("FLAKY B", Tone::Bad),
    }
}

/// One side's value in a table cell: its first line (and how many more), or how many values it
/// took over the runs.
fn side_summary(side: &s2i_core::verify::report::SideValues) -> String {
    if side.values.len() > 1 {
        return format!("(varies: {} values)", side.values.len());
    }
    value_summary(side.values.first().map(String::as_str).unwrap_or(""))
}

fn value_summary(value: &str) -> String {
    let lines: Vec<&str> = value.lines().collect();
    match lines.as_slice() {
        [] => "(empty)".into(),
        [one] => one.to_string(),
        [first, rest @ ..] => {
            let more = format!(" (+{} lines)", rest.len());
            format!("{}{more}", fit(first, VALUE.saturating_sub(more.chars().count())))
        }
    }
}

fn outcome_diffs(out: &mut Out, outcomes: &Outcomes) {
    for aspect in outcomes.aspects.iter().filter(|a| a.verdict != AspectVerdict::Same) {
        out.blank();
        explain_aspect(out, aspect);
    }
}

fn explain_aspect(out: &mut Out, aspect: &AspectReport) {
    let title = format!("{} {}", aspect.check, aspect.field);
    match aspect.verdict {
        AspectVerdict::Differ => {
            out.toned(&format!("A and B differ: {title}"), Tone::Bad);
            unified(out, &aspect.a.values[0], &aspect.b.values[0], "A", "B");
        }
        v => {
            let (what, tone) = match v {
                AspectVerdict::Flaky => ("Changes between runs on both sides (not counted)", Tone::Warn),
                AspectVerdict::FlakyA => ("Changes between runs on side A only", Tone::Bad),
                _ => ("Changes between runs on side B only", Tone::Bad),
            };
            out.toned(&format!("{what}: {title}"), tone);
            for (name, side) in [("A", &aspect.a), ("B", &aspect.b)] {
                if side.values.len() > 1 {
                    let runs: Vec<String> = side.runs.iter().map(u32::to_string).collect();
                    out.line(&format!("  side {name}: {} values (runs: {}); the first two:", side.values.len(), runs.join(", ")));
                    unified(out, &side.values[0], &side.values[1], &format!("{name} (1st value)"), &format!("{name} (2nd value)"));
                }
            }
        }
    }
}

/// A unified diff of two values, indented, each line fitted, at most [`DIFF_LINES`] lines.
fn unified(out: &mut Out, a: &str, b: &str, name_a: &str, name_b: &str) {
    // Values are compared whole; a last line without its newline is no news here.
    let ended = |v: &str| if v.is_empty() || v.ends_with('\n') { v.to_string() } else { format!("{v}\n") };
    let (a, b) = (&ended(a), &ended(b));
    let diff = similar::TextDiff::from_lines(a, b);
    let text = diff.unified_diff().context_radius(3).header(name_a, name_b).to_string();
    let lines: Vec<&str> = text.lines().collect();
    for line in lines.iter().take(DIFF_LINES) {
        let tone = match line.chars().next() {
            Some('+') if !line.starts_with("+++") => Some(Tone::Good),
            Some('-') if !line.starts_with("---") => Some(Tone::Bad),
            Some('@') => Some(Tone::Dim),
            _ => None,
        };
        let shown = format!("    {line}");
        match tone {
            Some(t) => out.toned(&shown, t),
            None => out.line(&shown),
        }
    }
    if lines.len() > DIFF_LINES {
        out.line(&format!("    … {} more lines of diff (--json has both values whole)", lines.len() - DIFF_LINES));
    }
    if a.is_empty() != b.is_empty() {
        out.line(&format!("    ({} is empty)", if a.is_empty() { name_a } else { name_b }));
    }
}

fn image_section(out: &mut Out, image: &ImageDiff, outcomes_differ: bool) {
    out.blank();
    let counted = image.counted();
    let lead = if counted == 0 {
        "The images differ in nothing else that s2i compares".to_string()
    } else if outcomes_differ {
        "What differs between the images, which may explain it:".to_string()
    } else {
        "The images differ, though not in anything the checks saw:".to_string()
    };
    out.line(&lead);
    for (kind, rows) in [("config", &image.config), ("env", &image.env), ("label", &image.labels)] {
        for row in rows.iter().filter(|r| !r.expected) {
            field_row(out, kind, row);
        }
    }
    let expected: Vec<&str> = image.labels.iter().filter(|r| r.expected).map(|r| r.name.as_str()).collect();
    if !expected.is_empty() {
        out.wrapped("  as expected, the builds' own labels differ: ", &expected.join(" "), Tone::Dim);
    }
    files_section(out, &image.files, "files the build added (the top layers)");
    for script in &image.scripts {
        out.line(&format!("  script {} differs:", script.path));
        let (a, b) = (script.a.as_deref().unwrap_or(""), script.b.as_deref().unwrap_or(""));
        unified(out, a, b, "A", "B");
    }
}

/// `kind name  a → b`, or, when that does not fit, A's and B's values on lines of their own.
fn field_row(out: &mut Out, kind: &str, row: &FieldDiff) {
    let none = "(none)";
    let (a, b) = (row.a.as_deref().unwrap_or(none), row.b.as_deref().unwrap_or(none));
    let lead = format!("  {:<7}{}  ", kind, cell(&row.name, LABEL));
    let one = format!("{lead}{a} → {b}");
    if printable(&one).chars().count() <= WIDTH {
        out.line(&one);
        return;
    }
    out.line(&format!("{lead}A: {a}"));
    out.line(&format!("{}B: {b}", " ".repeat(lead.chars().count())));
}

fn files_section(out: &mut Out, files: &FilesDiff, what: &str) {
    let c = &files.counts;
    let mut counts = format!("{} added, {} removed, {} changed", c.added, c.removed, c.changed);
    if c.mtime_only > 0 {
        counts.push_str(&format!(", {} differ only in modification time", c.mtime_only));
    }
    counts.push_str(&format!(", {} the same", c.same));
    out.wrapped(&format!("  {what}:"), &counts, Tone::Dim);
    for (mark, list, tone) in [("+", &files.added, Tone::Good), ("-", &files.removed, Tone::Bad), ("~", &files.changed, Tone::Warn)] {
        for change in list.iter().take(FILE_LINES) {
            out.toned(&format!("    {mark} {}", file_line(change)), tone);
        }
        if list.len() > FILE_LINES {
            out.line(&format!("      … {} more", list.len() - FILE_LINES));
        }
    }
    if files.not_listed > 0 {
        out.line(&format!("    … and {} more entries not listed", files.not_listed));
    }
}

fn file_line(change: &FileChange) -> String {
    match (change.entries, change.bytes) {
        (Some(0), _) => return format!("{}/  (an empty directory)", change.path),
        (Some(n), Some(size)) => return format!("{}/  (a directory: {n} entries, {})", change.path, bytes(size)),
        _ => {}
    }
    match (&change.a, &change.b) {
        (Some(a), Some(b)) => {
            let mut parts = Vec::new();
            for what in &change.what {
                parts.push(match *what {
                    "size" if bytes(a.size) == bytes(b.size) => format!("size {} B → {} B", a.size, b.size),
                    "size" => format!("size {} → {}", bytes(a.size), bytes(b.size)),
                    "mode" => format!("mode {} → {}", a.mode, b.mode),
                    "owner" => format!("owner {} → {}", a.owner, b.owner),
                    "target" => format!("target {} → {}", a.target.as_deref().unwrap_or(""), b.target.as_deref().unwrap_or("")),
                    "kind" => format!("{} → {}", kind_word(a.kind), kind_word(b.kind)),
                    other => other.to_string(),
                });
            }
            format!("{}  ({})", change.path, parts.join(", "))
        }
        (Some(s), None) | (None, Some(s)) => match (&s.target, s.kind) {
            (Some(t), _) => format!("{} -> {t}", change.path),
            (None, FileKind::File) => format!("{}  ({})", change.path, bytes(s.size)),
            (None, kind) => format!("{}  ({})", change.path, kind_word(kind)),
        },
        (None, None) => change.path.clone(),
    }
}

fn kind_word(kind: FileKind) -> &'static str {
    match kind {
        FileKind::File => "file",
        FileKind::Dir => "directory",
        FileKind::Symlink => "symlink",
        FileKind::HardLink => "hard link",
        FileKind::Whiteout => "deleted",
        FileKind::Opaque => "directory emptied",
        FileKind::Other => "device or fifo",
    }
}

fn twice_section(out: &mut Out, twice: &Twice) {
    out.blank();
    if twice.identical {
        out.toned(&format!("Built twice with A: the same image ({})", short_id(&twice.ids[0])), Tone::Good);
        return;
    }
    out.toned(&format!("Built twice with A: different images ({} and {})", short_id(&twice.ids[0]), short_id(&twice.ids[1])), Tone::Warn);
    for row in &twice.config {
        field_row(out, "config", row);
    }
    files_section(out, &twice.files, "files of the two builds");
    let only_created = !twice.config.is_empty() && twice.config.iter().all(|r| r.name == "created");
    if only_created && twice.files.counts.added + twice.files.counts.removed + twice.files.counts.changed == 0 {
        out.line("  Only times differ: with the oci engine, SOURCE_DATE_EPOCH makes such builds the same image.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use s2i_core::verify::report::SideValues;
    use s2i_core::verify::{FileCounts, MaskInfo};

    fn values(v: &[&str]) -> SideValues {
        SideValues { values: v.iter().map(|s| s.to_string()).collect(), runs: vec![1; v.len()] }
    }

    fn aspect(check: &str, field: &str, verdict: AspectVerdict, a: &[&str], b: &[&str]) -> AspectReport {
        AspectReport { check: check.into(), field: field.into(), verdict, a: values(a), b: values(b) }
    }

    /// A report with everything in it: `long` characters in the values that may need cutting,
    /// `added` files added.
    pub(crate) fn sample(long: usize, added: usize) -> Report {
        let long = "x".repeat(long);
        let aspects = vec![
            aspect("run", "exit", AspectVerdict::Same, &["still running after the checks"], &["still running after the checks"]),
            aspect("run", "stdout", AspectVerdict::Differ, &["GREETING=hello\nline 2\n"], &["GREETING=bonjour\nline 2\n"]),
            aspect("run", "stderr", AspectVerdict::Flaky, &["a", "b"], &["c", "d"]),
            aspect(&format!("exec: {long}"), "stdout", AspectVerdict::FlakyB, &[&long], &[&long, "y"]),
            aspect("GET :8080/", "body", AspectVerdict::Differ, &[&format!("{long}\n")], &["short\n"]),
        ];
        let masks = vec![MaskInfo { name: "timestamp".into(), pattern: "...".into(), default: true }];
        let file = |size: u64| s2i_core::verify::diff::FileState {
            kind: s2i_core::verify::image::FileKind::File,
            size,
            mode: "0644".into(),
            owner: "1001:0".into(),
            target: None,
            sha256: Some("3f1c2b4a5d6e".into()),
        };
        let change = |path: &str| FileChange { path: path.into(), a: None, b: Some(file(12)), entries: None, bytes: None, what: vec![] };
        let image = ImageDiff {
            versions: vec![FieldDiff { name: "PYTHON_VERSION".into(), a: Some("3.11.2".into()), b: Some("3.13.5".into()), expected: false }],
            env: vec![FieldDiff { name: "GREETING".into(), a: Some("hello".into()), b: Some(long.clone()), expected: false }],
            labels: vec![FieldDiff { name: "io.openshift.s2i.build.image".into(), a: Some("a".into()), b: Some("b".into()), expected: true }],
            files: FilesDiff {
                counts: FileCounts { added, removed: 1, changed: 0, mtime_only: 0, same: 4 },
                added: (0..added).map(|i| change(&format!("opt/app-root/src/{long}/{i}"))).collect(),
                removed: vec![FileChange { path: "venv/lib/python3.11".into(), a: Some(s2i_core::verify::diff::FileState { kind: FileKind::Dir, mode: "0775".into(), sha256: None, ..file(0) }), b: None, entries: Some(1532), bytes: Some(21_300_000), what: vec![] }],
                changed: vec![],
                not_listed: 0,
            },
            ..Default::default()
        };
        let sides = vec![
            SideInfo { side: "A".into(), image: "s2i-verify-1a2b3c4d/a:latest".into(), id: "sha256:3f1c2b4a5d6e7f80".into(), builder: Some("s2i-python:bookworm".into()) },
            SideInfo { side: "B".into(), image: "s2i-verify-1a2b3c4d/b:latest".into(), id: "sha256:9a8b7c6d5e4f3a2b".into(), builder: Some(long.clone()) },
        ];
        let twice = Twice {
            identical: false,
            ids: ["sha256:1111".into(), "sha256:2222".into()],
            config: vec![FieldDiff { name: "created".into(), a: Some("2024-01-02T03:04:05Z".into()), b: Some("2024-01-02T03:04:09Z".into()), expected: false }],
            files: FilesDiff { counts: FileCounts { mtime_only: 14, same: 3, ..Default::default() }, ..Default::default() },
        };
        Report::new(sides, Some(Outcomes::new(2, masks, aspects)), Some(image), Some(twice))
    }

    #[test]
    fn every_line_fits_in_100_columns_with_and_without_colour() {
        let report = sample(300, 30);
        let plain = render(&report, false);
        for line in plain.lines() {
            assert!(line.chars().count() <= WIDTH, "{} columns: {line}", line.chars().count());
        }
        assert!(!plain.contains('\x1b'), "no colour off a terminal");
        let coloured = render(&report, true);
        assert!(coloured.contains("\x1b[1;31m"));
        let strip = regex::Regex::new("\x1b\\[[0-9;]*m").unwrap();
        for line in coloured.lines() {
            let visible = strip.replace_all(line, "");
            assert!(visible.chars().count() <= WIDTH, "{visible}");
        }
        assert_eq!(strip.replace_all(&coloured, ""), plain);
    }

    #[test]
    fn the_report_names_the_verdict_the_differences_and_their_causes() {
        let text = render(&sample(300, 30), false);
        assert!(text.starts_with("s2i verify: DIFFER (3 of 5 aspects differ, 1 flaky on both sides; exit 1)\n"), "{text}");
        assert!(text.contains("  A  s2i-python:bookworm → s2i-verify-1a2b3c4d/a:latest (3f1c2b4a5d6e)"), "{text}");
        assert!(text.contains("-GREETING=hello\n    +GREETING=bonjour"), "{text}");
        assert!(text.contains("Changes between runs on both sides (not counted): run stderr"), "{text}");
        assert!(text.contains("Changes between runs on side B only: exec: xxx"), "{text}");
        assert!(text.contains("A and B differ: GET :8080/ body"), "{text}");
        assert!(text.contains(&format!("  {:<LABEL$}  {:<VALUE$}  3.13.5", "PYTHON_VERSION", "3.11.2")), "{text}");
        assert!(!text.contains("No newline at end of file"), "{text}");
        assert!(text.contains("  env    GREETING                A: hello\n                                 B: xxx"), "{text}");
        assert!(text.contains("- venv/lib/python3.11/  (a directory: 1532 entries, 21.3 MB)"), "{text}");
        assert!(text.contains("      … 18 more"), "{text}");
        assert!(text.contains("as expected, the builds' own labels differ: io.openshift.s2i.build.image"), "{text}");
        assert!(text.contains("Built twice with A: different images"), "{text}");
        assert!(text.contains("Only times differ"), "{text}");
        assert!(text.contains("Masked before comparing: <timestamp> <hostname>"), "{text}");
    }

    #[test]
    fn control_characters_from_the_images_never_reach_the_terminal() {
        let mut report = sample(8, 1);
        let outcomes = report.outcomes.as_mut().unwrap();
        outcomes.aspects[1].a.values[0] = "\x1b]0;pwned\x07\x1b[2Jred\r\nnext\n".into();
        report.sides[0].image = "evil\x1b[31m".into();
        let text = render(&report, false);
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "{text:?}");
        assert!(text.contains("\\x1b]0;pwned\\x07\\x1b[2Jred"), "{text}");
        assert!(text.contains("evil\\x1b[31m"), "{text}");
    }

    #[test]
    fn the_json_document_has_a_stable_shape() {
        let report = sample(8, 1);
        let doc = VerifyDocument::report(&report, Some(EngineReport::kind_only("docker")), Duration::from_millis(1234));
        insta::assert_snapshot!("verify-json-report", serde_json::to_string_pretty(&doc).unwrap());
        let err = BuildError::VerifySide { side: "B".into(), image: "broken-builder".into(), source: Box::new(BuildError::ScriptFailed { script: "assemble".into(), image: "broken-builder".into(), code: 3, stderr_tail: String::new() }) };
        let doc = VerifyDocument::failure(&err, None, Duration::from_millis(5));
        insta::assert_snapshot!("verify-json-failure", serde_json::to_string_pretty(&doc).unwrap());
    }
}
