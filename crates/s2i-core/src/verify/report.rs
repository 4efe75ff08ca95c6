//! The verdict and what it rests on: each aspect of what the images did, compared across sides
//! and across the runs of each side, and what differs between the images. This is the report's
//! model; the binary renders it (a table for people, JSON for tools).

use serde::Serialize;

use super::diff::{diff_files, FieldDiff, FilesDiff, ImageDiff};
use super::image::ImageFacts;
use super::mask::MaskInfo;
use super::observe::{Aspect, Observation};

/// The answer of a verify run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Nothing a user could notice differs (flakiness on both sides aside).
    Same,
    Differ,
}

/// How one aspect compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AspectVerdict {
    /// Every run of both sides gave the same value.
    Same,
    /// Each side is steady, and they differ.
    Differ,
    /// It changes between runs of the same image on both sides: not the builders' doing.
    Flaky,
    /// It changes between runs on side A only, where B is steady: a difference.
    FlakyA,
    /// On side B only.
    FlakyB,
}

impl AspectVerdict {
    /// Whether it counts as a difference between the builders.
    pub fn counts(self) -> bool {
        matches!(self, AspectVerdict::Differ | AspectVerdict::FlakyA | AspectVerdict::FlakyB)
    }
}

/// The values one side gave for an aspect over its runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideValues {
    /// The distinct (masked) values, in the order they first came.
    pub values: Vec<String>,
    /// How many runs gave each.
    pub runs: Vec<u32>,
}

impl SideValues {
    fn of(values: &[String]) -> SideValues {
        let mut out = SideValues { values: Vec::new(), runs: Vec::new() };
        for v in values {
            match out.values.iter().position(|x| x == v) {
                Some(i) => out.runs[i] += 1,
                None => {
                    out.values.push(v.clone());
                    out.runs.push(1);
                }
            }
        }
        out
    }

    fn steady(&self) -> bool {
        self.values.len() == 1
    }
}

/// One aspect, compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AspectReport {
    /// `run`, `exec: CMD`, `GET :8080/path`.
    pub check: String,
    /// `exit`, `stdout`, `stderr`, `status`, `header NAME`, `body`.
    pub field: String,
    pub verdict: AspectVerdict,
    pub a: SideValues,
    pub b: SideValues,
}

/// Compare what each side's runs gave, aspect by aspect (in the order they were observed). An
/// aspect a run did not give counts as `(absent)`.
pub fn compare(a: &[Observation], b: &[Observation]) -> Vec<AspectReport> {
    let mut aspects: Vec<&Aspect> = Vec::new();
    for obs in a.iter().chain(b) {
        for (aspect, _) in &obs.values {
            if !aspects.contains(&aspect) {
                aspects.push(aspect);
            }
        }
    }
    let values = |side: &[Observation], aspect: &Aspect| -> Vec<String> {
        side.iter()
            .map(|obs| obs.values.iter().find(|(x, _)| x == aspect).map(|(_, v)| v.clone()).unwrap_or_else(|| "(absent)".into()))
            .collect()
    };
    aspects
        .into_iter()
        .map(|aspect| {
            let (va, vb) = (SideValues::of(&values(a, aspect)), SideValues::of(&values(b, aspect)));
            let verdict = match (va.steady(), vb.steady()) {
                (true, true) if va.values == vb.values => AspectVerdict::Same,
                (true, true) => AspectVerdict::Differ,
                (false, false) => AspectVerdict::Flaky,
                (false, true) => AspectVerdict::FlakyA,
                (true, false) => AspectVerdict::FlakyB,
            };
            AspectReport { check: aspect.check.clone(), field: aspect.field.clone(), verdict, a: va, b: vb }
        })
        .collect()
}

/// One side, as the report names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SideInfo {
    /// `A` or `B` (`A2` for `--twice`'s second build).
    pub side: String,
    /// The image that was run (for builds: the temporary name it was built as, removed since).
    pub image: String,
    pub id: String,
    /// The builder it was built with; none for `--images`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
}

/// What the runs gave, compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcomes {
    /// Runs per side.
    pub runs: u32,
    /// The masks applied before comparing, in order.
    pub masks: Vec<MaskInfo>,
    pub aspects: Vec<AspectReport>,
    /// Aspects that count as differences.
    pub differences: usize,
    /// Aspects flaky on both sides (not counted).
    pub flaky: usize,
}

impl Outcomes {
    pub fn new(runs: u32, masks: Vec<MaskInfo>, aspects: Vec<AspectReport>) -> Outcomes {
        let differences = aspects.iter().filter(|a| a.verdict.counts()).count();
        let flaky = aspects.iter().filter(|a| a.verdict == AspectVerdict::Flaky).count();
        Outcomes { runs, masks, aspects, differences, flaky }
    }
}

/// `--twice`: the same source built twice with builder A.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Twice {
    /// The two images have the same id.
    pub identical: bool,
    pub ids: [String; 2],
    /// Configuration fields that differ (`created` included).
    pub config: Vec<FieldDiff>,
    /// The files of the two top layers, mtimes included.
    pub files: FilesDiff,
}

impl Twice {
    pub fn new(first: &ImageFacts, second: &ImageFacts) -> Twice {
        let mut config = super::diff::diff_images(first, second, [&first.name, &second.name]);
        let created = (first.config.created != second.config.created)
            .then(|| FieldDiff { name: "created".into(), a: first.config.created.clone(), b: second.config.created.clone(), expected: false });
        let mut fields: Vec<FieldDiff> = created.into_iter().collect();
        fields.append(&mut config.config);
        fields.append(&mut config.env);
        fields.append(&mut config.labels);
        Twice { identical: first.id == second.id, ids: [first.id.clone(), second.id.clone()], config: fields, files: diff_files(&first.top_layer, &second.top_layer) }
    }
}

/// Everything a verify run found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub verdict: Verdict,
    pub sides: Vec<SideInfo>,
    /// A against B (absent for a `--twice` of one builder).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcomes: Option<Outcomes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageDiff>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub twice: Option<Twice>,
}

impl Report {
    /// The verdict: the outcomes' when A was compared with B (`--twice` then only explains);
    /// else whether the two builds of A are identical.
    pub fn new(sides: Vec<SideInfo>, outcomes: Option<Outcomes>, image: Option<ImageDiff>, twice: Option<Twice>) -> Report {
        let differ = match (&outcomes, &twice) {
            (Some(o), _) => o.differences > 0,
            (None, Some(t)) => !t.identical,
            (None, None) => false,
        };
        Report { verdict: if differ { Verdict::Differ } else { Verdict::Same }, sides, outcomes, image, twice }
    }

    /// 0 same, 1 differ.
    pub fn exit_code(&self) -> i32 {
        match self.verdict {
            Verdict::Same => 0,
            Verdict::Differ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obs(pairs: &[(&str, &str)]) -> Observation {
        Observation { values: pairs.iter().map(|(f, v)| (Aspect { check: "run".into(), field: f.to_string() }, v.to_string())).collect() }
    }

    #[test]
    fn same_differ_and_flaky_on_one_or_both_sides() {
        let a = [obs(&[("exit", "exit 0"), ("stdout", "x"), ("stderr", "r1"), ("n", "1")]), obs(&[("exit", "exit 0"), ("stdout", "x"), ("stderr", "r2"), ("n", "2")])];
        let b = [obs(&[("exit", "exit 0"), ("stdout", "y"), ("stderr", "r3"), ("n", "1")]), obs(&[("exit", "exit 0"), ("stdout", "y"), ("stderr", "r4")])];
        let r = compare(&a, &b);
        let verdicts: Vec<(&str, AspectVerdict)> = r.iter().map(|x| (x.field.as_str(), x.verdict)).collect();
        assert_eq!(
            verdicts,
            [("exit", AspectVerdict::Same), ("stdout", AspectVerdict::Differ), ("stderr", AspectVerdict::Flaky), ("n", AspectVerdict::Flaky)]
        );
        assert_eq!(r[3].b, SideValues { values: vec!["1".into(), "(absent)".into()], runs: vec![1, 1] });
        let o = Outcomes::new(2, Vec::new(), r);
        assert_eq!((o.differences, o.flaky), (1, 2));
        assert_eq!(Report::new(Vec::new(), Some(o), None, None).exit_code(), 1);

        let steady = [obs(&[("stdout", "x")]), obs(&[("stdout", "x")])];
        let wobbly = [obs(&[("stdout", "x")]), obs(&[("stdout", "z")])];
        assert_eq!(compare(&wobbly, &steady)[0].verdict, AspectVerdict::FlakyA);
        assert_eq!(compare(&steady, &wobbly)[0].verdict, AspectVerdict::FlakyB);
        let both = Outcomes::new(2, Vec::new(), compare(&wobbly, &wobbly));
        assert_eq!(Report::new(Vec::new(), Some(both), None, None).verdict, Verdict::Same, "flaky on both sides is not the builders' doing");
        let one = Outcomes::new(2, Vec::new(), compare(&steady, &wobbly));
        assert_eq!(Report::new(Vec::new(), Some(one), None, None).verdict, Verdict::Differ);
    }
}
