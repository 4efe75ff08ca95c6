//! The shape of the crate, checked: no file of s2i-core imports, directly or through others, a
//! file that imports it back; and the pipeline's stages point one way (docs/architecture.md):
//! config, then source, scripts, plan and strategy, each importing only its own stage, earlier
//! ones and the shared modules, which import no stage but config (plain data).
//!
//! Imports are read from `crate::…` and `super::…` paths (in `use` lines and inline), test
//! modules (`#[cfg(test)]` to the end of a file) left out.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Module path (`["source", "tree"]`) of every file.
fn modules() -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src()).unwrap();
            let mut parts: Vec<String> = rel.iter().map(|p| p.to_string_lossy().into_owned()).collect();
            let last = parts.pop().unwrap();
            match last.as_str() {
                "lib.rs" | "mod.rs" => {}
                other => parts.push(other.trim_end_matches(".rs").to_string()),
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The file a module path names: the longest prefix that is a module.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<Vec<String>> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| modules.contains_key(p))
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Every path a file names from `crate::`/`super::`, expanded (`crate::{a, b::c}` gives two).
fn paths_in(text: &str, own: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    let text = text.split("#[cfg(test)]").next().unwrap_or(text);
    let mut out = Vec::new();
    for (anchor, base) in [("crate::", Vec::new()), ("super::", parent_of(own, is_mod_file))] {
        let mut rest = text;
        while let Some(i) = rest.find(anchor) {
            let before = rest[..i].chars().last();
            rest = &rest[i + anchor.len()..];
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            for p in expand(rest) {
                let mut full = base.clone();
                full.extend(p);
                out.push(full);
            }
        }
    }
    out
}

/// The module `super` means in a file: the parent of the file's module (a `mod.rs`'s module is
/// its directory, whose parent is one up).
fn parent_of(own: &[String], _is_mod_file: bool) -> Vec<String> {
    let mut p = own.to_vec();
    p.pop();
    p
}

/// The paths at the start of `s`: `a::b::C`, or a brace group `{a, b::{c, d}}`.
fn expand(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(inner) = s.strip_prefix('{') {
        let mut depth = 1;
        let mut end = 0;
        for (i, c) in inner.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        return split_top(&inner[..end]).into_iter().flat_map(expand).collect();
    }
    let mut parts = Vec::new();
    let mut rest = s;
    loop {
        let ident: String = rest.chars().take_while(|c| is_ident(*c)).collect();
        if ident.is_empty() {
            if let Some(inner) = rest.strip_prefix('{') {
                let _ = inner;
                return expand(rest).into_iter().map(|p| parts.iter().cloned().chain(p).collect()).collect();
            }
            break;
        }
        rest = &rest[ident.len()..];
        parts.push(ident);
        match rest.strip_prefix("::") {
            Some(r) => rest = r,
            None => break,
        }
    }
    if parts.is_empty() || parts[0] == "self" {
        return Vec::new();
    }
    vec![parts]
}

/// Split on commas that are not inside braces.
fn split_top(s: &str) -> Vec<&str> {
    let (mut out, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in s.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn graph() -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules = modules();
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod = file.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        let targets = edges.entry(module.clone()).or_default();
        for path in paths_in(&text, module, is_mod) {
            if let Some(target) = resolve(&path, &modules) {
                // A module using what it declares (lib.rs, mod.rs) is not an import back.
                if target != *module && !target.starts_with(module) {
                    targets.insert(target);
                }
            }
        }
    }
    edges
}

fn find_cycle(edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>) -> Option<Vec<Vec<String>>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        n: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        marks: &mut BTreeMap<Vec<String>, Mark>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        match marks.get(n) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let start = stack.iter().position(|s| s == n).unwrap();
                let mut cycle = stack[start..].to_vec();
                cycle.push(n.clone());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(n.clone(), Mark::Open);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, marks, stack) {
                return Some(c);
            }
        }
        stack.pop();
        marks.insert(n.clone(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

fn show(m: &[String]) -> String {
    if m.is_empty() {
        "lib".into()
    } else {
        m.join("::")
    }
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let edges = graph();
    assert!(edges.len() > 20, "the crate's files were found: {}", edges.len());
    if let Some(cycle) = find_cycle(&edges) {
        let shown: Vec<String> = cycle.iter().map(|m| show(m)).collect();
        panic!("import cycle: {}", shown.join(" -> "));
    }
}

/// The pipeline's stages in order, by top-level module.
const STAGES: &[&[&str]] = &[
    &["config"],
    &["source", "ignore"],
    &["scripts"],
    &["plan", "env", "images", "inject", "users"],
    &["strategy"],
];

/// Modules every stage may use: errors, limits, streams, containers, registries, reporting.
const SHARED: &[&str] = &[
    "artifacts", "cache", "callback", "container", "error", "fsutil", "http", "image_ref", "labels", "limits", "mapping", "redact",
    "registry", "report", "result", "services", "tar_stream",
];

/// Entry points beside the pipeline (lib is `""`): they may use anything; only lib names them.
const ENTRIES: &[&str] = &["", "create", "rebuild", "run_image", "usage", "verify"];

#[derive(Debug, Clone, Copy, PartialEq)]
enum Layer {
    Stage(usize),
    Shared,
    Entry,
}

fn layer(top: &str) -> Option<Layer> {
    if let Some(i) = STAGES.iter().position(|s| s.contains(&top)) {
        return Some(Layer::Stage(i));
    }
    if SHARED.contains(&top) {
        return Some(Layer::Shared);
    }
    ENTRIES.contains(&top).then_some(Layer::Entry)
}

/// Whether a module of layer `from` may import one of layer `to`.
fn allowed(from: Layer, to: Layer) -> bool {
    match (from, to) {
        (_, Layer::Entry) => false,
        (Layer::Entry, _) => true,
        (Layer::Stage(i), Layer::Stage(j)) => j <= i,
        (Layer::Stage(_), Layer::Shared) | (Layer::Shared, Layer::Shared) => true,
        (Layer::Shared, Layer::Stage(j)) => j == 0,
    }
}

/// Every import that goes against the order, as `from -> to` (by top-level module).
fn order_violations(modules: &BTreeMap<Vec<String>, PathBuf>) -> Vec<String> {
    let mut out = Vec::new();
    for (module, file) in modules {
        let from = module.first().map(String::as_str).unwrap_or("");
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod = file.file_name().is_some_and(|n| n == "mod.rs" || n == "lib.rs");
        for path in paths_in(&text, module, is_mod) {
            let to = path[0].as_str();
            if to == from || from.is_empty() {
                continue;
            }
            match (layer(from), layer(to)) {
                (Some(f), Some(t)) if allowed(f, t) => {}
                (f, t) => out.push(format!("{} ({f:?}) -> {to} ({t:?})", show(module))),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

#[test]
fn stages_import_only_earlier_stages_and_shared_modules() {
    let modules = modules();
    let tops: BTreeSet<&str> = modules.keys().map(|m| m.first().map(String::as_str).unwrap_or("")).collect();
    let unplaced: Vec<&&str> = tops.iter().filter(|t| layer(t).is_none()).collect();
    assert!(unplaced.is_empty(), "modules without a place in STAGES, SHARED or ENTRIES: {unplaced:?}");
    let wrong = order_violations(&modules);
    assert!(wrong.is_empty(), "imports against the order of the stages:\n{}", wrong.join("\n"));
}

#[test]
fn the_checker_sees_paths_and_cycles() {
    let own = vec!["source".to_string(), "tree".to_string()];
    let paths = paths_in("use crate::{a, b::{c, d}};\nuse super::spec::X;\nfn f() { crate::e::g(); }", &own, false);
    let want: Vec<Vec<String>> = vec![
        vec!["a".into()],
        vec!["b".into(), "c".into()],
        vec!["b".into(), "d".into()],
        vec!["e".into(), "g".into()],
        vec!["source".into(), "spec".into(), "X".into()],
    ];
    assert_eq!(paths, want);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    edges.entry(vec!["a".into()]).or_default().insert(vec!["b".into()]);
    edges.entry(vec!["b".into()]).or_default().insert(vec!["a".into()]);
    assert!(find_cycle(&edges).is_some());
    // The order: a later stage may import an earlier one, not the reverse; shared modules only config.
    assert!(allowed(layer("plan").unwrap(), layer("source").unwrap()));
    assert!(!allowed(layer("source").unwrap(), layer("plan").unwrap()));
    assert!(allowed(layer("container").unwrap(), layer("config").unwrap()));
    assert!(!allowed(layer("container").unwrap(), layer("source").unwrap()));
    assert!(!allowed(layer("strategy").unwrap(), layer("usage").unwrap()));
    assert!(layer("nonesuch").is_none());
}
