//! Helpers for the integration tests: a tar writer that writes whatever it is told (hostile names,
//! sizes that lie, PAX records), and a model of a POSIX extractor to check where things land.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

pub const BLOCK: usize = 512;

/// A tar stream written block by block, without any of `tar::Builder`'s checks.
#[derive(Default, Clone)]
pub struct RawTar {
    pub bytes: Vec<u8>,
}

/// A GNU header with these fields written verbatim (names cut at their field's size).
pub fn header(name: &[u8], flag: u8, size: u64, link: &[u8]) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    {
        let old = h.as_old_mut();
        let n = name.len().min(100);
        old.name[..n].copy_from_slice(&name[..n]);
        let l = link.len().min(100);
        old.linkname[..l].copy_from_slice(&link[..l]);
    }
    h.set_mode(0o644);
    h.set_uid(1000);
    h.set_gid(1000);
    h.set_mtime(1_700_000_000);
    h.set_size(size);
    h.set_entry_type(tar::EntryType::new(flag));
    h.set_cksum();
    h
}

impl RawTar {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn block(&mut self, block: &[u8; BLOCK]) -> &mut Self {
        self.bytes.extend_from_slice(block);
        self
    }

    pub fn header(&mut self, h: &tar::Header) -> &mut Self {
        self.bytes.extend_from_slice(h.as_bytes());
        self
    }

    /// Data and its padding.
    pub fn data(&mut self, data: &[u8]) -> &mut Self {
        self.bytes.extend_from_slice(data);
        let pad = (BLOCK - data.len() % BLOCK) % BLOCK;
        self.bytes.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    /// An entry whose size field is the data's length (a name over 100 bytes goes in a GNU
    /// long-name record first).
    pub fn entry(&mut self, name: &[u8], flag: u8, data: &[u8]) -> &mut Self {
        if name.len() > 100 {
            self.long(b'L', name);
        }
        self.header(&header(name, flag, data.len() as u64, b"")).data(data)
    }

    fn link(&mut self, name: &str, flag: u8, target: &str) -> &mut Self {
        if name.len() > 100 {
            self.long(b'L', name.as_bytes());
        }
        if target.len() > 100 {
            self.long(b'K', target.as_bytes());
        }
        self.header(&header(name.as_bytes(), flag, 0, target.as_bytes()))
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(name.as_bytes(), b'0', data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(name.as_bytes(), b'5', b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, b'2', target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(name, b'1', target)
    }

    /// A PAX `x` record set.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let data: Vec<u8> = records.iter().flat_map(|(k, v)| pax_record(k, v)).collect();
        self.header(&header(b"PaxHeaders/x", b'x', data.len() as u64, b"")).data(&data)
    }

    /// A GNU `L` (flag b'L') or `K` (b'K') record, NUL-terminated.
    pub fn long(&mut self, flag: u8, name: &[u8]) -> &mut Self {
        let mut data = name.to_vec();
        data.push(0);
        self.header(&header(b"././@LongLink", flag, data.len() as u64, b"")).data(&data)
    }

    /// The end-of-archive marker.
    pub fn end(&mut self) -> &mut Self {
        self.bytes.extend_from_slice(&[0u8; 2 * BLOCK]);
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        self.end();
        std::mem::take(&mut self.bytes)
    }
}

/// `"<len> key=value\n"`, the length counting itself.
pub fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + 1;
    while len.to_string().len() + rest != len {
        len = len.to_string().len() + rest;
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

/// The names in a tar as the `tar` crate lists them (its own reading of sizes and records).
pub fn names_in(tar: &[u8]) -> Vec<String> {
    let mut a = tar::Archive::new(tar);
    a.entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect()
}

/// A program the tests need, or a loud failure that says how to get it.
pub fn require(program: &str, package: &str) {
    let found = Command::new(program).arg("--help").output().is_ok();
    assert!(found, "`{program}` is needed by this test and is not installed: apt-get install {package}");
}

/// Every path under `dir` (relative, sorted), symlinks not followed.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            out.push(p.strip_prefix(dir).unwrap().display().to_string());
            if e.file_type().unwrap().is_dir() {
                stack.push(p);
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------------
// A model of a POSIX extractor (GNU tar's defaults): missing parents are made as directories,
// symlinks in parent components are followed, the last component is replaced (unlinked) unless
// both are directories, and a directory entry over a symlink to a directory keeps the symlink.
// Hard link targets are resolved from the extraction directory; a hard link to a symlink makes a
// copy of the symlink. Every step of every resolution is checked to stay inside `root`.

#[derive(Debug, Clone)]
pub enum Node {
    Dir(BTreeMap<Vec<u8>, usize>),
    File,
    Symlink(Vec<u8>),
}

pub struct Model {
    pub nodes: Vec<Node>,
    pub parent: Vec<usize>,
    /// The extraction directory (`tar -C`); its parent is itself, like `/`.
    pub top: usize,
    /// The guarded tree: `top/<prefix>`.
    pub root: usize,
    pub escapes: Vec<String>,
}

#[derive(Debug)]
pub enum Fail {
    Escape(String),
    Missing,
    NotDir,
    Loop,
    Exists,
}

impl Model {
    /// An extraction directory holding `prefix` as an empty directory.
    pub fn new(prefix: &str) -> Model {
        let mut m = Model { nodes: vec![Node::Dir(BTreeMap::new())], parent: vec![0], top: 0, root: 0, escapes: Vec::new() };
        m.root = m.add(0, prefix.as_bytes(), Node::Dir(BTreeMap::new()));
        m
    }

    fn add(&mut self, dir: usize, name: &[u8], node: Node) -> usize {
        let id = self.nodes.len();
        self.nodes.push(node);
        self.parent.push(dir);
        if let Node::Dir(children) = &mut self.nodes[dir] {
            children.insert(name.to_vec(), id);
        }
        id
    }

    fn inside(&self, mut n: usize) -> bool {
        loop {
            if n == self.root {
                return true;
            }
            if n == self.top {
                return false;
            }
            n = self.parent[n];
        }
    }

    fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        match &self.nodes[dir] {
            Node::Dir(c) => c.get(name).copied(),
            _ => None,
        }
    }

    /// Resolve `path` from directory `dir`, following symlinks (the last one only if
    /// `follow_last`). `Ok((dir, Some(node)))` when it exists, `Ok((dir, None))` when only
    /// the last component is missing.
    pub fn resolve(&self, mut dir: usize, path: &[u8], follow_last: bool, budget: &mut u32, context: &str) -> Result<(usize, Option<usize>), Fail> {
        if path.first() == Some(&b'/') {
            return Err(Fail::Escape(format!("{context}: absolute path {:?}", String::from_utf8_lossy(path))));
        }
        let comps: Vec<&[u8]> = path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        if comps.is_empty() {
            return Ok((self.parent[dir], Some(dir)));
        }
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            if *c == b".." {
                dir = self.parent[dir];
                if !self.inside(dir) {
                    return Err(Fail::Escape(format!("{context}: '..' leaves the root")));
                }
                if last {
                    return Ok((self.parent[dir], Some(dir)));
                }
                continue;
            }
            let Some(node) = self.child(dir, c) else {
                return if last { Ok((dir, None)) } else { Err(Fail::Missing) };
            };
            match &self.nodes[node] {
                Node::Symlink(target) if !last || follow_last => {
                    if *budget == 0 {
                        return Err(Fail::Loop);
                    }
                    *budget -= 1;
                    let target = target.clone();
                    let (_, found) = self.resolve(dir, &target, true, budget, context)?;
                    let found = found.ok_or(Fail::Missing)?;
                    if last {
                        return Ok((self.parent[found], Some(found)));
                    }
                    if !matches!(self.nodes[found], Node::Dir(_)) {
                        return Err(Fail::NotDir);
                    }
                    dir = found;
                }
                _ if last => return Ok((dir, Some(node))),
                Node::Dir(_) => dir = node,
                _ => return Err(Fail::NotDir),
            }
            if !self.inside(dir) {
                return Err(Fail::Escape(format!("{context}: resolution left the root")));
            }
        }
        unreachable!()
    }

    /// The directory that will hold `path`'s last component, making missing parents.
    fn parent_dir(&mut self, path: &[u8], context: &str) -> Result<(usize, Vec<u8>), Fail> {
        let comps: Vec<&[u8]> = path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
        let (last, parents) = comps.split_last().ok_or(Fail::Exists)?;
        let mut dir = self.top;
        for c in parents {
            let mut budget = 40;
            dir = match self.resolve(dir, c, true, &mut budget, context)? {
                (_, Some(n)) if matches!(self.nodes[n], Node::Dir(_)) => n,
                (_, Some(_)) => return Err(Fail::NotDir),
                (d, None) => self.add(d, c, Node::Dir(BTreeMap::new())),
            };
            if !self.inside(dir) && dir != self.top {
                return Err(Fail::Escape(format!("{context}: parent outside the root")));
            }
        }
        Ok((dir, last.to_vec()))
    }

    /// Extract one entry of a tar we produced. Escapes are recorded; other failures are what
    /// the extractor would report, and the entry is left out.
    pub fn extract(&mut self, path: &[u8], kind: &tar::EntryType, link: Option<&[u8]>) {
        let context = String::from_utf8_lossy(path).into_owned();
        if let Err(Fail::Escape(e)) = self.try_extract(path, kind, link, &context) {
            self.escapes.push(e);
        }
    }

    fn try_extract(&mut self, path: &[u8], kind: &tar::EntryType, link: Option<&[u8]>, context: &str) -> Result<(), Fail> {
        let (dir, name) = self.parent_dir(path, context)?;
        if !self.inside(dir) {
            return Err(Fail::Escape(format!("{context}: written outside the root")));
        }
        let existing = self.child(dir, &name);
        let new = match kind {
            tar::EntryType::Directory => {
                if let Some(e) = existing {
                    match &self.nodes[e] {
                        Node::Dir(_) => return Ok(()),
                        Node::Symlink(_) => {
                            // GNU tar keeps a symlink that leads to a directory.
                            let mut budget = 40;
                            match self.resolve(dir, &name, true, &mut budget, context) {
                                Ok((_, Some(t))) if matches!(self.nodes[t], Node::Dir(_)) => return Ok(()),
                                Err(escape @ Fail::Escape(_)) => return Err(escape),
                                _ => {}
                            }
                        }
                        Node::File => {}
                    }
                }
                Node::Dir(BTreeMap::new())
            }
            tar::EntryType::Symlink => Node::Symlink(link.unwrap().to_vec()),
            tar::EntryType::Link => {
                let mut budget = 40;
                let (_, target) = self.resolve(self.top, link.unwrap(), false, &mut budget, context)?;
                match &self.nodes[target.ok_or(Fail::Missing)?] {
                    Node::Dir(_) => return Err(Fail::NotDir),
                    Node::File => Node::File,
                    // link(2) does not follow: the new name is the same symlink, elsewhere.
                    Node::Symlink(t) => Node::Symlink(t.clone()),
                }
            }
            _ => Node::File,
        };
        if let Some(e) = existing {
            if let Node::Dir(children) = &self.nodes[e] {
                if !children.is_empty() {
                    return Err(Fail::Exists);
                }
            }
            if let Node::Dir(c) = &mut self.nodes[dir] {
                c.remove(&name);
            }
        }
        self.add(dir, &name, new);
        Ok(())
    }

    /// Resolve every symlink in the tree, and every path in it: all must stay inside.
    pub fn check_all_links(&mut self) {
        for id in 0..self.nodes.len() {
            if !self.reachable(id) {
                continue;
            }
            if let Node::Symlink(target) = &self.nodes[id] {
                let target = target.clone();
                let mut budget = 40;
                if let Err(Fail::Escape(e)) = self.resolve(self.parent[id], &target, true, &mut budget, &format!("symlink -> {}", String::from_utf8_lossy(&target))) {
                    self.escapes.push(e);
                }
            }
        }
        if let Node::Dir(c) = &self.nodes[self.top] {
            if c.len() != 1 {
                self.escapes.push(format!("the extraction directory holds {} entries besides the root", c.len() - 1));
            }
        }
    }

    fn reachable(&self, mut id: usize) -> bool {
        loop {
            if id == self.top {
                return true;
            }
            let p = self.parent[id];
            match &self.nodes[p] {
                Node::Dir(c) if c.values().any(|v| *v == id) => id = p,
                _ => return false,
            }
        }
    }

    /// Extract a whole tar (as produced by `copy_guarded`) into the model.
    pub fn extract_tar(&mut self, tar: &[u8]) {
        let mut a = tar::Archive::new(tar);
        // A copy cut by an error ends where it ends: what came before was already extracted.
        for e in a.entries().unwrap() {
            let Ok(e) = e else { break };
            let path = e.path_bytes().into_owned();
            let link = e.link_name_bytes().map(|l| l.into_owned());
            self.extract(&path, &e.header().entry_type(), link.as_deref());
        }
        self.check_all_links();
    }
}
