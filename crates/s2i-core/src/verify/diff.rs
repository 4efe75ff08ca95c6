//! What differs between two images, to explain a difference in what they do: their
//! configuration, the builders' versions, the files their top layers hold, and their scripts.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::image::{FileEntry, FileKind, ImageFacts};

/// How many entries of each kind (added, removed, changed) a listing names; the rest are counted.
pub const FILES_LISTED: usize = 50;

/// One field or key that differs, or (for versions) that is shown either way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    pub name: String,
    pub a: Option<String>,
    pub b: Option<String>,
    /// A difference every pair of builds has (the builder's name, the build's time): shown, not
    /// counted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub expected: bool,
}

impl FieldDiff {
    fn new(name: impl Into<String>, a: Option<String>, b: Option<String>) -> FieldDiff {
        FieldDiff { name: name.into(), a, b, expected: false }
    }
}

/// What differs between two images.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ImageDiff {
    /// The builders' versions, as the images record them (shown whether or not they differ).
    pub versions: Vec<FieldDiff>,
    /// `user`, `workdir`, `entrypoint`, `cmd`, `exposed ports` that differ.
    pub config: Vec<FieldDiff>,
    /// Environment variables that differ.
    pub env: Vec<FieldDiff>,
    /// Labels that differ.
    pub labels: Vec<FieldDiff>,
    /// What the builds added (each image's top layer).
    pub files: FilesDiff,
    /// Scripts (assemble, run…) whose content differs.
    pub scripts: Vec<ScriptDiff>,
}

impl ImageDiff {
    /// Differences other than the expected ones and the versions.
    pub fn counted(&self) -> usize {
        let fields = self.config.iter().chain(&self.env).chain(&self.labels).filter(|f| !f.expected).count();
        fields + self.files.counts.added + self.files.counts.removed + self.files.counts.changed + self.scripts.len()
    }
}

/// A script that differs: its content on each side (`None`: missing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScriptDiff {
    pub path: String,
    pub a: Option<String>,
    pub b: Option<String>,
}

/// The files of two layers compared by path.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FilesDiff {
    pub counts: FileCounts,
    /// Only on side B (a directory with everything in it is one line).
    pub added: Vec<FileChange>,
    /// Only on side A.
    pub removed: Vec<FileChange>,
    /// On both, with another kind, content, size, mode, owner or target.
    pub changed: Vec<FileChange>,
    /// Lines left out of the three lists above (each lists at most [`FILES_LISTED`]).
    pub not_listed: usize,
}

/// Entries counted one by one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FileCounts {
    pub added: usize,
    pub removed: usize,
    pub changed: usize,
    /// On both sides alike but for their modification time.
    pub mtime_only: usize,
    pub same: usize,
}

/// One line of a listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    pub path: String,
    /// Side A's entry (absent when added).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub a: Option<FileState>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<FileState>,
    /// A directory added or removed whole: how many entries it holds and their bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entries: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// For a change: what differs (`kind`, `content`, `size`, `mode`, `owner`, `target`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub what: Vec<&'static str>,
}

/// An entry as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileState {
    pub kind: FileKind,
    pub size: u64,
    /// Octal, `0644`.
    pub mode: String,
    /// `uid:gid`.
    pub owner: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// The first 12 hex digits of the content's SHA-256.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl From<&FileEntry> for FileState {
    fn from(e: &FileEntry) -> FileState {
        FileState {
            kind: e.kind,
            size: e.size,
            mode: format!("{:04o}", e.mode),
            owner: format!("{}:{}", e.uid, e.gid),
            target: e.target.clone(),
            sha256: e.sha256.as_ref().map(|h| h.chars().take(12).collect()),
        }
    }
}

/// Labels whose value names the build itself, not what it made.
fn expected_label(name: &str) -> bool {
    name.starts_with("io.openshift.s2i.build.")
}

/// Compare two images. `own_names` are the names each side was built as: a label that holds its
/// own side's name (the display name s2i sets from the tag) differs as expected.
pub fn diff_images(a: &ImageFacts, b: &ImageFacts, own_names: [&str; 2]) -> ImageDiff {
    let (ca, cb) = (&a.config, &b.config);
    let join = |v: &Option<Vec<String>>| v.as_ref().map(|v| serde_json::to_string(v).unwrap_or_default());
    let mut config = Vec::new();
    for (name, va, vb) in [
        ("user", Some(ca.user.clone()), Some(cb.user.clone())),
        ("workdir", Some(ca.working_dir.clone()), Some(cb.working_dir.clone())),
        ("entrypoint", join(&ca.entrypoint), join(&cb.entrypoint)),
        ("cmd", join(&ca.cmd), join(&cb.cmd)),
        ("exposed ports", Some(ca.exposed_ports.join(" ")), Some(cb.exposed_ports.join(" "))),
    ] {
        if va != vb {
            config.push(FieldDiff::new(name, va, vb));
        }
    }
    let env = map_diff(&ca.env_map(), &cb.env_map());
    let mut labels = map_diff(&ca.labels, &cb.labels);
    for l in &mut labels {
        let own = l.a.as_deref() == Some(own_names[0]) && l.b.as_deref() == Some(own_names[1]);
        l.expected = expected_label(&l.name) || own;
    }
    ImageDiff { versions: versions(a, b), config, env, labels, files: diff_files(&a.top_layer, &b.top_layer), scripts: diff_scripts(a, b) }
}

/// Keys whose values differ (or that only one side has).
fn map_diff(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> Vec<FieldDiff> {
    let keys: BTreeSet<&String> = a.keys().chain(b.keys()).collect();
    keys.into_iter()
        .filter(|k| a.get(*k) != b.get(*k))
        .map(|k| FieldDiff::new(k.as_str(), a.get(k).cloned(), b.get(k).cloned()))
        .collect()
}

/// What the images say of the builders' versions: the builder's name (s2i records it), version
/// labels, and `*_VERSION` variables (`PYTHON_VERSION`, `NODEJS_VERSION`), which builders set.
fn versions(a: &ImageFacts, b: &ImageFacts) -> Vec<FieldDiff> {
    const LABELS: [&str; 4] = ["io.openshift.s2i.build.image", "org.opencontainers.image.version", "version", "release"];
    let mut rows = Vec::new();
    for label in LABELS {
        let (va, vb) = (a.config.labels.get(label).cloned(), b.config.labels.get(label).cloned());
        if va.is_some() || vb.is_some() {
            let name = if label == "io.openshift.s2i.build.image" { "builder".to_string() } else { format!("label {label}") };
            rows.push(FieldDiff::new(name, va, vb));
        }
    }
    let (ea, eb) = (a.config.env_map(), b.config.env_map());
    let names: BTreeSet<&String> = ea.keys().chain(eb.keys()).filter(|k| k.ends_with("_VERSION")).collect();
    for name in names {
        rows.push(FieldDiff::new(name.as_str(), ea.get(name).cloned(), eb.get(name).cloned()));
    }
    rows
}

fn diff_scripts(a: &ImageFacts, b: &ImageFacts) -> Vec<ScriptDiff> {
    let get = |f: &ImageFacts, p: &str| f.scripts.iter().find(|(path, _)| path == p).map(|(_, c)| c.clone()).filter(|c| c != "(missing)");
    let paths: BTreeSet<&String> = a.scripts.iter().chain(&b.scripts).map(|(p, _)| p).collect();
    paths
        .into_iter()
        .map(|p| ScriptDiff { path: p.clone(), a: get(a, p), b: get(b, p) })
        .filter(|d| d.a != d.b)
        .collect()
}

/// Compare two listings by path.
pub fn diff_files(a: &[FileEntry], b: &[FileEntry]) -> FilesDiff {
    let ma: BTreeMap<&str, &FileEntry> = a.iter().map(|e| (e.path.as_str(), e)).collect();
    let mb: BTreeMap<&str, &FileEntry> = b.iter().map(|e| (e.path.as_str(), e)).collect();
    let mut d = FilesDiff::default();
    let mut changed = Vec::new();
    for (path, ea) in &ma {
        let Some(eb) = mb.get(path) else { continue };
        let mut what = Vec::new();
        if ea.kind != eb.kind {
            what.push("kind");
        } else {
            if ea.sha256 != eb.sha256 {
                what.push("content");
            }
            if ea.size != eb.size && ea.kind == FileKind::File {
                what.push("size");
            }
            if ea.target != eb.target {
                what.push("target");
            }
        }
        if ea.mode != eb.mode {
            what.push("mode");
        }
        if (ea.uid, ea.gid) != (eb.uid, eb.gid) {
            what.push("owner");
        }
        if !what.is_empty() {
            changed.push(FileChange { path: path.to_string(), a: Some((*ea).into()), b: Some((*eb).into()), entries: None, bytes: None, what });
        } else if ea.mtime != eb.mtime {
            d.counts.mtime_only += 1;
        } else {
            d.counts.same += 1;
        }
    }
    d.counts.changed = changed.len();
    let (added, n_added) = only_in(&mb, &ma, false);
    let (removed, n_removed) = only_in(&ma, &mb, true);
    d.counts.added = n_added;
    d.counts.removed = n_removed;
    for (list, all) in [(&mut d.added, added), (&mut d.removed, removed), (&mut d.changed, changed)] {
        d.not_listed += all.len().saturating_sub(FILES_LISTED);
        list.extend(all.into_iter().take(FILES_LISTED));
    }
    d
}

/// The entries of `this` that `other` lacks, with each directory that the other side has
/// nothing of collapsed into one line; and how many entries that is in all.
fn only_in(this: &BTreeMap<&str, &FileEntry>, other: &BTreeMap<&str, &FileEntry>, side_a: bool) -> (Vec<FileChange>, usize) {
    let other_has_under = |dir: &str| other.range(format!("{dir}/").as_str()..).next().is_some_and(|(p, _)| p.starts_with(&format!("{dir}/")));
    let mut lines: Vec<FileChange> = Vec::new();
    let mut count = 0;
    // A collapsed directory → its line.
    let mut collapsed: BTreeMap<String, usize> = BTreeMap::new();
    for (path, e) in this {
        if other.contains_key(path) {
            continue;
        }
        count += 1;
        let mut ancestor = *path;
        let mut inside = None;
        while let Some((parent, _)) = ancestor.rsplit_once('/') {
            if let Some(i) = collapsed.get(parent) {
                inside = Some(*i);
                break;
            }
            ancestor = parent;
        }
        if let Some(i) = inside {
            *lines[i].entries.as_mut().expect("a collapsed line counts") += 1;
            *lines[i].bytes.as_mut().expect("a collapsed line counts") += e.size;
            continue;
        }
        let state: FileState = (*e).into();
        let mut line = FileChange { path: path.to_string(), a: None, b: None, entries: None, bytes: None, what: Vec::new() };
        if e.kind == FileKind::Dir && !other_has_under(path) {
            line.entries = Some(0);
            line.bytes = Some(0);
            collapsed.insert(path.to_string(), lines.len());
        }
        if side_a {
            line.a = Some(state);
        } else {
            line.b = Some(state);
        }
        lines.push(line);
    }
    (lines, count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::image::ImageConfig;

    fn entry(path: &str, kind: FileKind, size: u64, content: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind,
            size,
            mode: if kind == FileKind::Dir { 0o775 } else { 0o644 },
            uid: 1001,
            gid: 0,
            mtime: 1,
            target: None,
            sha256: (kind == FileKind::File).then(|| content.to_string()),
        }
    }

    #[test]
    fn files_are_added_removed_changed_and_whole_directories_are_one_line() {
        let dir = |p: &str| entry(p, FileKind::Dir, 0, "");
        let file = |p: &str, size: u64, c: &str| entry(p, FileKind::File, size, c);
        let a = vec![
            dir("venv"),
            dir("venv/lib"),
            dir("venv/lib/python3.11"),
            file("venv/lib/python3.11-x", 1, "z"),
            file("venv/lib/python3.11/a.py", 10, "a"),
            file("venv/lib/python3.11/b.py", 20, "b"),
            file("app.py", 5, "x"),
            file("data.txt", 3, "d"),
            file("same.txt", 1, "s"),
        ];
        let mut b = vec![dir("venv"), dir("venv/lib"), dir("venv/lib/python3.13"), file("venv/lib/python3.13/a.py", 11, "a2"), file("app.py", 6, "y"), file("same.txt", 1, "s")];
        b[5].mtime = 2;
        let mut mode_only = file("new.sh", 1, "n");
        mode_only.mode = 0o755;
        b.push(mode_only);
        let d = diff_files(&a, &b);
        assert_eq!(d.counts, FileCounts { added: 3, removed: 5, changed: 1, mtime_only: 1, same: 2 });
        let added: Vec<(&str, Option<usize>, Option<u64>)> = d.added.iter().map(|l| (l.path.as_str(), l.entries, l.bytes)).collect();
        assert_eq!(added, [("new.sh", None, None), ("venv/lib/python3.13", Some(1), Some(11))]);
        let removed: Vec<(&str, Option<usize>)> = d.removed.iter().map(|l| (l.path.as_str(), l.entries)).collect();
        assert_eq!(removed, [("data.txt", None), ("venv/lib/python3.11", Some(2)), ("venv/lib/python3.11-x", None)]);
        assert_eq!(d.removed[1].bytes, Some(30));
        assert_eq!(d.changed[0].path, "app.py");
        assert_eq!(d.changed[0].what, ["content", "size"]);
        assert_eq!(d.changed[0].a.as_ref().unwrap().size, 5);
        assert_eq!(d.not_listed, 0);
    }

    #[test]
    fn listings_are_capped_and_the_rest_counted() {
        let many: Vec<FileEntry> = (0..FILES_LISTED + 7).map(|i| entry(&format!("f{i:03}"), FileKind::File, 1, "c")).collect();
        let d = diff_files(&[], &many);
        assert_eq!((d.added.len(), d.not_listed, d.counts.added), (FILES_LISTED, 7, FILES_LISTED + 7));
    }

    #[test]
    fn config_env_labels_versions_and_scripts_are_compared() {
        let facts = |env: &[&str], labels: &[(&str, &str)], run: &str, name: &str| ImageFacts {
            name: name.into(),
            config: ImageConfig {
                user: "1001".into(),
                env: env.iter().map(|s| s.to_string()).collect(),
                cmd: Some(vec!["/usr/libexec/s2i/run".into()]),
                labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
                ..Default::default()
            },
            scripts: vec![("/usr/libexec/s2i/run".into(), run.into()), ("/usr/libexec/s2i/assemble".into(), "(missing)".into())],
            ..Default::default()
        };
        let a = facts(
            &["PATH=/bin", "PYTHON_VERSION=3.11.2", "X=1"],
            &[("io.openshift.s2i.build.image", "py:3.11"), ("io.k8s.display-name", "tmp/a"), ("team", "x")],
            "echo a",
            "tmp/a",
        );
        let mut b = facts(&["PATH=/bin", "PYTHON_VERSION=3.13.5"], &[("io.openshift.s2i.build.image", "py:3.13"), ("io.k8s.display-name", "tmp/b"), ("team", "y")], "echo b", "tmp/b");
        b.config.exposed_ports = vec!["8080/tcp".into()];
        let d = diff_images(&a, &b, ["tmp/a", "tmp/b"]);
        assert_eq!(d.config, [FieldDiff::new("exposed ports", Some(String::new()), Some("8080/tcp".into()))]);
        assert_eq!(d.env.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(), ["PYTHON_VERSION", "X"]);
        assert_eq!(d.env[1].b, None);
        let labels: Vec<(&str, bool)> = d.labels.iter().map(|f| (f.name.as_str(), f.expected)).collect();
        assert_eq!(labels, [("io.k8s.display-name", true), ("io.openshift.s2i.build.image", true), ("team", false)]);
        let versions: Vec<(&str, Option<&str>, Option<&str>)> = d.versions.iter().map(|f| (f.name.as_str(), f.a.as_deref(), f.b.as_deref())).collect();
        assert_eq!(versions, [("builder", Some("py:3.11"), Some("py:3.13")), ("PYTHON_VERSION", Some("3.11.2"), Some("3.13.5"))]);
        assert_eq!(d.scripts, [ScriptDiff { path: "/usr/libexec/s2i/run".into(), a: Some("echo a".into()), b: Some("echo b".into()) }]);
        // exposed ports, 2 env, 1 label, 1 script.
        assert_eq!(d.counted(), 5);
    }
}
