//! The layer unpacker against a reference model of the union of its layers.
//!
//! Each case stacks 1 to 4 generated layers: files, directories, symlinks (chains, loops,
//! absolute and `..` targets, one aimed at a host directory), hard links (within a layer and to
//! earlier layers), whiteouts and opaque directories (valid and not), FIFOs and device nodes,
//! names of 255 bytes and names that are not UTF-8, `..`, `./` and `/` in paths, duplicate
//! entries, and xattrs (kept and forged). Every case is unpacked the two ways the engine does:
//! each layer alone into its own overlay lower dir (with the lower dirs for hard links), then
//! mounted with the kernel's overlayfs as a container sees it; and all layers in order into one
//! directory (the copy driver). The model, written from the rules the unpacker promises and not
//! from its code, says for each way which layer is refused (if any) and what every path holds:
//! type, content, mode, owner, mtime, link target, device numbers, whiteouts and opaque
//! markers of the lower dirs, and the merged view. And every case must end (a watchdog aborts
//! the run, printing the case, if one takes more than a minute), and write nothing outside its
//! roots: a host directory beside them, aimed at by absolute symlinks, stays as it was.
//!
//! The few cases through the store itself (`Store::layer_dirs`, `Store::flatten_into` of an
//! imported archive) check that it stacks layers as these calls do.
//!
//! Runs `S2I_UNPACK_CASES` cases (default 100 000; a million by hand, in release mode):
//!
//! ```sh
//! S2I_UNPACK_CASES=1000000 cargo test --release -p s2i-oci --test unpack_properties
//! ```
//!
//! Needs root (owners, device nodes, trusted xattrs, overlay mounts).

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use s2i_oci::cancel::Cancel;
use s2i_oci::image::{unpack, Store, Unpack, Whiteouts};
use s2i_oci::run::rootfs::{mount_overlay, OverlayDirs};

// ---------------------------------------------------------------------------------------------
// What is generated.

/// The names paths are made of: few, so that entries collide (duplicates, replacements, links
/// to what exists). One has 255 bytes (the most a name may have), one is not UTF-8.
fn names() -> &'static [Vec<u8>] {
    static NAMES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    NAMES.get_or_init(|| vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec(), b"caf\xe9".to_vec(), vec![b'n'; 255]])
}

const MODES: [u32; 8] = [0o755, 0o644, 0o600, 0o4755, 0o2750, 0o1777, 0o700, 0o555];
const IDS: [u32; 4] = [0, 1, 1001, 65534];
const MTIMES: [u64; 3] = [1_600_000_000, 1_700_000_000, 86_400];
/// Never 0:0, which overlay takes for a whiteout.
const DEVICES: [(u32, u32); 4] = [(1, 3), (1, 5), (5, 1), (7, 0)];

/// A path of the pool's names; `lead` is nothing, `./` or `/`; `up` puts a `..` after that
/// many components (which the unpacker refuses).
#[derive(Clone)]
struct GenPath {
    comps: Vec<usize>,
    lead: u8,
    up: Option<usize>,
}

#[derive(Debug, Clone)]
enum Target {
    /// Relative to the symlink's directory, `ups` levels up first.
    Relative { ups: usize, path: GenPath },
    Absolute(GenPath),
    /// The host directory beside the roots, by its absolute path.
    Host,
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File { data: Vec<u8>, note: Option<u8> },
    Symlink(Target),
    HardLink(LinkTo),
    Fifo,
    Char(usize),
    Block(usize),
    /// `.wh.NAME` in the entry's directory (NAME from the pool), or a malformed one.
    Whiteout(Option<usize>),
    /// `.wh..wh..opq` in the entry's directory.
    Opaque,
    /// A directory that claims overlay's opaque xattr itself (it must be dropped).
    ForgedOpaque,
}

/// A hard link's target: mostly the path of an entry before it (of any layer), so that most
/// links find something; else any path.
#[derive(Debug, Clone)]
enum LinkTo {
    Earlier(usize),
    Path(GenPath),
}

#[derive(Clone)]
struct Entry {
    path: GenPath,
    kind: Kind,
    mode: usize,
    uid: usize,
    gid: usize,
    mtime: usize,
}

// Cases are shown as the entries' paths and kinds, short names for the long ones.
impl std::fmt::Debug for GenPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", shown(&render_path(self)))
    }
}

impl std::fmt::Debug for Entry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?} {:?} mode {:o} {}:{} mtime {}", self.path, self.kind, MODES[self.mode], IDS[self.uid], IDS[self.gid], MTIMES[self.mtime])
    }
}

/// A path with the 255-byte name written `N255`.
fn shown(path: &[u8]) -> String {
    String::from_utf8_lossy(path).replace(&"n".repeat(255), "N255")
}

fn gen_path(max_depth: usize) -> impl Strategy<Value = GenPath> {
    let name = prop_oneof![6 => 0..3usize, 1 => 3..5usize];
    (prop::collection::vec(name, 1..=max_depth), prop_oneof![8 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)], prop::option::weighted(0.004, 0..3usize))
        .prop_map(|(comps, lead, up)| GenPath { up: up.map(|u| u.min(comps.len())), comps, lead })
}

/// A path for an entry that is not a directory: its directories mostly `a` and `b`, its name
/// mostly the others, so that fewer entries are refused for going through a file (some still are).
fn gen_leaf_path() -> impl Strategy<Value = GenPath> {
    (gen_path(3), prop_oneof![1 => 0..2usize, 4 => 2..5usize], prop::collection::vec(prop_oneof![4 => 0..2usize, 1 => 2..5usize], 0..3))
        .prop_map(|(mut p, leaf, dirs)| {
            let depth = p.comps.len();
            p.comps = dirs.into_iter().take(depth - 1).chain([leaf]).collect();
            p.up = p.up.map(|u| u.min(p.comps.len()));
            p
        })
}

fn gen_target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => (0..3usize, gen_path(3)).prop_map(|(ups, path)| Target::Relative { ups, path: GenPath { lead: 0, up: None, ..path } }),
        3 => gen_path(3).prop_map(|p| Target::Absolute(GenPath { lead: 2, up: None, ..p })),
        1 => Just(Target::Host),
    ]
}

fn gen_kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        5 => Just(Kind::Dir),
        6 => (prop::collection::vec(any::<u8>(), 0..48), prop::option::weighted(0.2, any::<u8>())).prop_map(|(data, note)| Kind::File { data, note }),
        4 => gen_target().prop_map(Kind::Symlink),
        2 => any::<usize>().prop_map(|i| Kind::HardLink(LinkTo::Earlier(i))),
        1 => gen_path(3).prop_map(|p| Kind::HardLink(LinkTo::Path(GenPath { lead: 0, ..p }))),
        1 => Just(Kind::Fifo),
        1 => (0..DEVICES.len()).prop_map(Kind::Char),
        1 => (0..DEVICES.len()).prop_map(Kind::Block),
        3 => prop::option::weighted(0.98, 0..5usize).prop_map(Kind::Whiteout),
        2 => Just(Kind::Opaque),
        1 => Just(Kind::ForgedOpaque),
    ]
}

fn gen_entry() -> impl Strategy<Value = Entry> {
    (gen_path(3), gen_leaf_path(), gen_kind(), 0..MODES.len(), 0..IDS.len(), 0..IDS.len(), 0..MTIMES.len()).prop_map(
        |(dir_path, leaf_path, kind, mode, uid, gid, mtime)| {
            let path = if matches!(kind, Kind::Dir | Kind::ForgedOpaque) { dir_path } else { leaf_path };
            Entry { path, kind, mode, uid, gid, mtime }
        },
    )
}

fn gen_layers() -> impl Strategy<Value = Vec<Vec<Entry>>> {
    prop::collection::vec(prop::collection::vec(gen_entry(), 1..8), 1..=4)
}

// ---------------------------------------------------------------------------------------------
// Entries as bytes.

fn render_path(p: &GenPath) -> Vec<u8> {
    let mut parts: Vec<&[u8]> = Vec::new();
    for (i, c) in p.comps.iter().enumerate() {
        if p.up == Some(i) {
            parts.push(b"..");
        }
        parts.push(&names()[*c]);
    }
    if p.up == Some(p.comps.len()) {
        parts.push(b"..");
    }
    let lead: &[u8] = match p.lead {
        1 => b"./",
        2 => b"/",
        _ => b"",
    };
    [lead, &parts.join(&b'/')[..]].concat()
}

/// The directory part of an entry's path and the name in it.
fn dir_and_name(p: &GenPath) -> (Vec<u8>, Vec<u8>) {
    let full = render_path(p);
    match full.iter().rposition(|b| *b == b'/') {
        Some(i) => (full[..=i].to_vec(), full[i + 1..].to_vec()),
        None => (Vec::new(), full),
    }
}

fn render_target(t: &Target, host: &[u8]) -> Vec<u8> {
    match t {
        Target::Relative { ups, path } => [b"../".repeat(*ups), render_path(path)].concat(),
        Target::Absolute(path) => render_path(path),
        Target::Host => host.to_vec(),
    }
}

/// One entry as the tar says it: path, type flag, link, data, device, xattrs.
struct TarEntry {
    path: Vec<u8>,
    flag: u8,
    link: Vec<u8>,
    data: Vec<u8>,
    dev: (u32, u32),
    xattrs: Vec<(String, Vec<u8>)>,
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: u64,
}

/// `earlier`: the paths of the entries before this one, all layers.
fn tar_entry(e: &Entry, host: &[u8], earlier: &[Vec<u8>]) -> TarEntry {
    let mut t = TarEntry {
        path: render_path(&e.path),
        flag: b'0',
        link: Vec::new(),
        data: Vec::new(),
        dev: (0, 0),
        xattrs: Vec::new(),
        mode: MODES[e.mode],
        uid: IDS[e.uid],
        gid: IDS[e.gid],
        mtime: MTIMES[e.mtime],
    };
    match &e.kind {
        Kind::Dir => {
            t.flag = b'5';
            t.path.push(b'/');
        }
        Kind::File { data, note } => {
            t.data = data.clone();
            if let Some(n) = note {
                t.xattrs.push(("user.note".into(), vec![*n]));
                t.xattrs.push(("user.overlay.origin".into(), vec![*n]));
            }
        }
        Kind::Symlink(target) => {
            t.flag = b'2';
            t.link = render_target(target, host);
        }
        Kind::HardLink(target) => {
            t.flag = b'1';
            t.link = match target {
                LinkTo::Earlier(i) => {
                    // Not the link's own path: that is removed before the link is made.
                    let own = render_path(&e.path);
                    let others: Vec<&Vec<u8>> = earlier.iter().filter(|p| split(p) != split(&own)).collect();
                    if others.is_empty() {
                        b"nothing".to_vec()
                    } else {
                        others[i % others.len()].clone()
                    }
                }
                LinkTo::Path(p) => render_path(p),
            };
        }
        Kind::Fifo => t.flag = b'6',
        Kind::Char(d) => {
            t.flag = b'3';
            t.dev = DEVICES[*d];
        }
        Kind::Block(d) => {
            t.flag = b'4';
            t.dev = DEVICES[*d];
        }
        Kind::Whiteout(name) => {
            let (dir, _) = dir_and_name(&e.path);
            let name: &[u8] = match name {
                Some(n) => &names()[*n],
                None => b"..",
            };
            t.path = [&dir[..], b".wh.", name].concat();
        }
        Kind::Opaque => {
            let (dir, _) = dir_and_name(&e.path);
            t.path = [&dir[..], b".wh..wh..opq"].concat();
        }
        Kind::ForgedOpaque => {
            t.flag = b'5';
            t.path.push(b'/');
            t.xattrs.push(("trusted.overlay.opaque".into(), b"y".to_vec()));
        }
    }
    t
}

fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(&s.as_bytes()[s.len() - digits..]);
    field[digits] = 0;
}

fn header(name: &[u8], flag: u8, link: &[u8], size: u64, t: &TarEntry) -> [u8; 512] {
    let mut h = [0u8; 512];
    h[..name.len().min(100)].copy_from_slice(&name[..name.len().min(100)]);
    octal(&mut h[100..108], t.mode as u64);
    octal(&mut h[108..116], t.uid as u64);
    octal(&mut h[116..124], t.gid as u64);
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], t.mtime);
    h[156] = flag;
    h[157..157 + link.len().min(100)].copy_from_slice(&link[..link.len().min(100)]);
    h[257..265].copy_from_slice(b"ustar  \0");
    octal(&mut h[329..337], t.dev.0 as u64);
    octal(&mut h[337..345], t.dev.1 as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|b| *b as u64).sum();
    octal(&mut h[148..155], sum);
    h[155] = b' ';
    h
}

fn push_data(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

/// A GNU tar: `L`/`K` records for names over 100 bytes, a PAX record for xattrs.
fn tar_of(entries: &[TarEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for t in entries {
        if !t.xattrs.is_empty() {
            let mut records = Vec::new();
            for (k, v) in &t.xattrs {
                let body = [format!(" SCHILY.xattr.{k}=").as_bytes(), v, b"\n"].concat();
                let mut len = body.len() + 1;
                while format!("{len}").len() + body.len() != len {
                    len = format!("{len}").len() + body.len();
                }
                records.extend_from_slice(format!("{len}").as_bytes());
                records.extend_from_slice(&body);
            }
            out.extend_from_slice(&header(b"PaxHeaders/x", b'x', b"", records.len() as u64, t));
            push_data(&mut out, &records);
        }
        for (flag, long) in [(b'L', &t.path), (b'K', &t.link)] {
            if long.len() > 100 {
                let data = [&long[..], b"\0"].concat();
                out.extend_from_slice(&header(b"././@LongLink", flag, b"", data.len() as u64, t));
                push_data(&mut out, &data);
            }
        }
        out.extend_from_slice(&header(&t.path, t.flag, &t.link, t.data.len() as u64, t));
        push_data(&mut out, &t.data);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

// ---------------------------------------------------------------------------------------------
// The model.

type Name = Vec<u8>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// A node of a model tree, with the layer that wrote it and (for a directory) the last layer
/// that put an entry right in it.
#[derive(Debug, Clone)]
struct Node {
    layer: usize,
    touched: usize,
    what: What,
}

#[derive(Debug, Clone)]
enum What {
    Dir { meta: Meta, opaque: bool, children: BTreeMap<Name, Node> },
    File { meta: Meta, mtime: u64, data: Vec<u8>, note: Option<u8> },
    Symlink { target: Vec<u8>, uid: u32, gid: u32, mtime: u64 },
    Special { flag: u8, meta: Meta, mtime: u64, dev: (u32, u32) },
    Whiteout,
}

/// What a path holds, as read back from a directory or computed by the model.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Dir { meta: Meta, opaque: bool, children: BTreeMap<Name, Seen> },
    File { meta: Meta, mtime: u64, data: Vec<u8>, note: Option<u8> },
    Symlink { target: Vec<u8>, uid: u32, gid: u32, mtime: u64 },
    Special { flag: u8, meta: Meta, mtime: u64, dev: (u32, u32) },
    Whiteout,
}

fn seen(n: &Node) -> Seen {
    match &n.what {
        What::Dir { meta, opaque, children } => {
            Seen::Dir { meta: meta.clone(), opaque: *opaque, children: children.iter().map(|(k, v)| (k.clone(), seen(v))).collect() }
        }
        What::File { meta, mtime, data, note } => Seen::File { meta: meta.clone(), mtime: *mtime, data: data.clone(), note: *note },
        What::Symlink { target, uid, gid, mtime } => Seen::Symlink { target: target.clone(), uid: *uid, gid: *gid, mtime: *mtime },
        What::Special { flag, meta, mtime, dev } => Seen::Special { flag: *flag, meta: meta.clone(), mtime: *mtime, dev: *dev },
        What::Whiteout => Seen::Whiteout,
    }
}

fn new_dir(layer: usize, meta: Meta) -> Node {
    node(layer, What::Dir { meta, opaque: false, children: BTreeMap::new() })
}

fn node(layer: usize, what: What) -> Node {
    Node { layer, touched: usize::MAX, what }
}

/// A directory made by the unpacker for a path's missing component: 0755 and root's, but in a
/// setgid directory the kernel gives it the setgid bit and the directory's group.
fn implied_dir(layer: usize, parent: &Node) -> Node {
    match &parent.what {
        What::Dir { meta, .. } if meta.mode & 0o2000 != 0 => new_dir(layer, Meta { mode: 0o2755, uid: 0, gid: meta.gid }),
        _ => new_dir(layer, root_meta()),
    }
}

fn root_meta() -> Meta {
    Meta { mode: 0o755, uid: 0, gid: 0 }
}

/// How a path failed to resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Walk {
    NotFound,
    NotDir,
    Loop,
}

/// Components of a path as the unpacker splits an entry's: `.` and empty ones dropped, `..` kept.
fn split(path: &[u8]) -> Vec<Name> {
    path.split(|b| *b == b'/').filter(|c| !c.is_empty() && *c != b".").map(<[u8]>::to_vec).collect()
}

fn get<'a>(root: &'a Node, canon: &[Name]) -> Option<&'a Node> {
    let mut cur = root;
    for c in canon {
        match &cur.what {
            What::Dir { children, .. } => cur = children.get(c)?,
            _ => return None,
        }
    }
    Some(cur)
}

fn get_mut<'a>(root: &'a mut Node, canon: &[Name]) -> Option<&'a mut Node> {
    let mut cur = root;
    for c in canon {
        match &mut cur.what {
            What::Dir { children, .. } => cur = children.get_mut(c)?,
            _ => return None,
        }
    }
    Some(cur)
}

fn children_mut<'a>(root: &'a mut Node, dir: &[Name]) -> &'a mut BTreeMap<Name, Node> {
    match &mut get_mut(root, dir).expect("a resolved directory").what {
        What::Dir { children, .. } => children,
        _ => panic!("not a directory"),
    }
}

/// Where `path` leads as the kernel resolves it with `RESOLVE_IN_ROOT`: symlinks followed
/// (absolute ones from the root, at most 40), `..` stopping at the root, every component a
/// directory. A model tree holds no whiteouts in its directories' way (a whiteout is not a
/// directory).
fn resolve(root: &Node, path: &[Name]) -> Result<Vec<Name>, Walk> {
    let mut cur: Vec<Name> = Vec::new();
    let mut pending: VecDeque<Name> = path.iter().cloned().collect();
    let mut links = 0;
    while let Some(c) = pending.pop_front() {
        if c == b".." {
            cur.pop();
            continue;
        }
        let mut next = cur.clone();
        next.push(c);
        match get(root, &next).map(|n| &n.what) {
            None => return Err(Walk::NotFound),
            Some(What::Dir { .. }) => cur = next,
            Some(What::Symlink { target, .. }) => {
                links += 1;
                if links > 40 {
                    return Err(Walk::Loop);
                }
                if target.starts_with(b"/") {
                    cur.clear();
                }
                for t in split(target).into_iter().rev() {
                    pending.push_front(t);
                }
            }
            Some(_) => return Err(Walk::NotDir),
        }
    }
    Ok(cur)
}

/// `target` joined to `base` lexically, `..` stopping at the root.
fn clean(mut base: Vec<Name>, target: &[u8]) -> Vec<Name> {
    for c in split(target) {
        if c == b".." {
            base.pop();
        } else {
            base.push(c);
        }
    }
    base
}

/// One layer applied to a model tree, as the unpacker promises to apply it.
struct Apply<'a> {
    root: &'a mut Node,
    layer: usize,
    whiteouts: Whiteouts,
    /// Overlay mode: the lower layers' trees, top first (hard links find earlier layers' files
    /// in the union of these and this layer's own).
    lowers: &'a [Node],
}

type Outcome = Result<(), String>;

impl Apply<'_> {
    /// The directory `path` (the parent of an entry), made when missing: 0755 root for each
    /// missing component, and a dangling symlink's target (resolved inside the root) made first.
    fn ensure_dir(&mut self, path: &[Name], depth: u32) -> Result<Vec<Name>, String> {
        match resolve(self.root, path) {
            Ok(c) => return Ok(c),
            Err(Walk::NotFound) => {}
            Err(e) => return Err(format!("resolving {path:?}: {e:?}")),
        }
        if depth > 40 {
            return Err("symlink targets made too deep".into());
        }
        let mut cur: Vec<Name> = Vec::new();
        for i in 0..path.len() {
            match resolve(self.root, &path[..=i]) {
                Ok(c) => {
                    cur = c;
                    continue;
                }
                Err(Walk::NotFound) => {}
                Err(e) => return Err(format!("resolving {:?}: {e:?}", &path[..=i])),
            }
            let name = &path[i];
            let mut at = cur.clone();
            at.push(name.clone());
            match get(self.root, &at).map(|n| n.what.clone()) {
                None => {
                    let dir = implied_dir(self.layer, get(self.root, &cur).unwrap());
                    children_mut(self.root, &cur).insert(name.clone(), dir);
                }
                Some(What::Symlink { target, .. }) => {
                    let base = if target.starts_with(b"/") { Vec::new() } else { cur.clone() };
                    self.ensure_dir(&clean(base, &target), depth + 1)?;
                }
                // `..` resolved through a directory that is there (mkdir says EEXIST, and the
                // walk still misses): what is it? Nothing else can be missing here.
                Some(_) => return Err(format!("{at:?} is in the way")),
            }
            cur = resolve(self.root, &path[..=i]).map_err(|e| format!("resolving {:?} again: {e:?}", &path[..=i]))?;
        }
        Ok(cur)
    }

    fn entry(&mut self, t: &TarEntry) -> Outcome {
        let comps = split(&t.path);
        if comps.iter().any(|c| c == b"..") {
            return Err("a path with '..'".into());
        }
        let Some((name, parent)) = comps.split_last() else {
            return Ok(()); // the root's own entry: its metadata is not compared
        };
        let dir = self.ensure_dir(parent, 0)?;
        get_mut(self.root, &dir).unwrap().touched = self.layer;
        if self.whiteouts != Whiteouts::Plain && name.starts_with(b".wh.") {
            return self.whiteout(&dir, name);
        }
        let meta = Meta { mode: t.mode & 0o7777, uid: t.uid, gid: t.gid };
        let mut at = dir.clone();
        at.push(name.clone());
        let layer = self.layer;
        if t.flag == b'5' {
            match get_mut(self.root, &at).map(|n| &mut n.what) {
                Some(What::Dir { meta: m, .. }) => {
                    *m = meta;
                    get_mut(self.root, &at).unwrap().layer = layer;
                }
                Some(_) => {
                    // A directory where this layer put something else: in a lower dir it hides
                    // the lower layers' directory there, as that something did.
                    let opaque = self.whiteouts == Whiteouts::Overlay;
                    let dir_node = node(layer, What::Dir { meta, opaque, children: BTreeMap::new() });
                    children_mut(self.root, &dir).insert(name.clone(), dir_node);
                }
                None => {
                    children_mut(self.root, &dir).insert(name.clone(), new_dir(layer, meta));
                }
            }
            return Ok(());
        }
        children_mut(self.root, &dir).remove(name);
        let what = match t.flag {
            b'0' => {
                let note = t.xattrs.iter().find(|(k, _)| k == "user.note").map(|(_, v)| v[0]);
                What::File { meta, mtime: t.mtime, data: t.data.clone(), note }
            }
            b'2' => What::Symlink { target: t.link.clone(), uid: t.uid, gid: t.gid, mtime: t.mtime },
            b'1' => return self.hard_link(&dir, name, &t.link),
            flag => What::Special { flag, meta, mtime: t.mtime, dev: t.dev },
        };
        children_mut(self.root, &dir).insert(name.clone(), node(layer, what));
        Ok(())
    }

    fn whiteout(&mut self, dir: &[Name], name: &[u8]) -> Outcome {
        if name == b".wh..wh..opq" {
            let layer = self.layer;
            match self.whiteouts {
                Whiteouts::Overlay => match &mut get_mut(self.root, dir).unwrap().what {
                    What::Dir { opaque, .. } => *opaque = true,
                    _ => unreachable!(),
                },
                _ => {
                    let d = get_mut(self.root, dir).unwrap();
                    keep_layer(d, layer);
                }
            }
            return Ok(());
        }
        let gone = &name[4..];
        if gone.is_empty() || gone == b"." || gone == b".." || gone.starts_with(b".wh.") {
            return Err("a whiteout that names no file".into());
        }
        let children = children_mut(self.root, dir);
        children.remove(gone);
        if self.whiteouts == Whiteouts::Overlay {
            children.insert(gone.to_vec(), node(self.layer, What::Whiteout));
        }
        Ok(())
    }

    fn hard_link(&mut self, dir: &[Name], name: &[u8], link: &[u8]) -> Outcome {
        let target = split(link);
        if target.iter().any(|c| c == b"..") {
            return Err("a hard link target with '..'".into());
        }
        let Some((tname, tparent)) = target.split_last() else {
            return Err("a hard link to the root".into());
        };
        // Where the target is in the union of this layer's entries so far and the layers
        // below, and which layer holds it.
        let (found, from_this_layer) = match self.whiteouts {
            Whiteouts::Overlay => {
                let mut stack: Vec<Node> = vec![self.root.clone()];
                stack.extend(self.lowers.iter().cloned());
                let union = merge(&stack);
                let tdir = match resolve(&union, tparent) {
                    Ok(d) => d,
                    Err(Walk::NotFound) => return Err("a hard link to nothing".into()),
                    Err(e) => return Err(format!("a hard link through {e:?}")),
                };
                let mut at = tdir.clone();
                at.push(tname.clone());
                match get(&union, &at) {
                    None => return Err("a hard link to nothing".into()),
                    // `merge` marks each node with the index of its layer in the stack.
                    Some(n) => (n.clone(), n.layer == 0),
                }
            }
            _ => {
                let tdir = match resolve(self.root, tparent) {
                    Ok(d) => d,
                    Err(Walk::NotFound) => return Err("a hard link to nothing".into()),
                    Err(e) => return Err(format!("a hard link through {e:?}")),
                };
                let mut at = tdir.clone();
                at.push(tname.clone());
                match get(self.root, &at) {
                    None => return Err("a hard link to nothing".into()),
                    Some(n) => (n.clone(), n.layer == self.layer),
                }
            }
        };
        match &found.what {
            What::Dir { .. } => return Err("a hard link to a directory".into()),
            What::File { .. } => {}
            _ if !from_this_layer => return Err("a hard link to a special file of an earlier layer".into()),
            _ => {}
        }
        children_mut(self.root, dir).insert(name.to_vec(), node(self.layer, found.what));
        Ok(())
    }
}

/// An opaque directory applied in place: what the layer `layer` wrote under it stays, with the
/// directories it put entries in (a whiteout too) and those on the way to them; everything else
/// goes. Whether anything stayed.
fn keep_layer(dir: &mut Node, layer: usize) -> bool {
    let What::Dir { children, .. } = &mut dir.what else { return false };
    children.retain(|_, c| {
        let below = keep_layer(c, layer);
        c.layer == layer || c.touched == layer || below
    });
    !children.is_empty()
}

/// What overlay shows of `layers` (top first): per name, the topmost layer's entry; directories
/// merged down to an opaque one or to one that is not a directory; whiteouts hide. Each node is
/// marked with the index of the layer it comes from.
fn merge(layers: &[Node]) -> Node {
    merge_stack(&layers.iter().enumerate().collect::<Vec<_>>())
}

fn merge_stack(stack: &[(usize, &Node)]) -> Node {
    let (top, top_node) = stack[0];
    let What::Dir { meta, .. } = &top_node.what else { unreachable!() };
    let mut names: Vec<&Name> = Vec::new();
    for (_, d) in stack {
        if let What::Dir { children, .. } = &d.what {
            names.extend(children.keys());
        }
    }
    names.sort();
    names.dedup();
    let mut out = BTreeMap::new();
    for name in names {
        let mut sub: Vec<(usize, &Node)> = Vec::new();
        let mut shown: Option<Node> = None;
        for (i, d) in stack {
            let What::Dir { children, .. } = &d.what else { unreachable!() };
            let Some(c) = children.get(name) else { continue };
            match &c.what {
                What::Whiteout => break,
                What::Dir { opaque, .. } => {
                    sub.push((*i, c));
                    if *opaque {
                        break;
                    }
                }
                _ => {
                    if sub.is_empty() {
                        shown = Some(node(*i, c.what.clone()));
                    }
                    break;
                }
            }
        }
        if !sub.is_empty() {
            out.insert(name.clone(), merge_stack(&sub));
        } else if let Some(n) = shown {
            out.insert(name.clone(), n);
        }
    }
    node(top, What::Dir { meta: meta.clone(), opaque: false, children: out })
}

/// The model's verdict for one way of unpacking: the first layer refused, if one is, and why;
/// the trees of the layers done before it (overlay: one per layer; flat: the one tree, when no
/// layer is refused).
#[derive(Debug)]
struct Expected {
    refused: Option<(usize, String)>,
    trees: Vec<Node>,
}

fn model_overlay(layers: &[Vec<TarEntry>]) -> Expected {
    let mut done: Vec<Node> = Vec::new(); // bottom first
    for (i, entries) in layers.iter().enumerate() {
        let lowers: Vec<Node> = done.iter().rev().cloned().collect();
        let mut root = new_dir(0, root_meta());
        let mut a = Apply { root: &mut root, layer: 0, whiteouts: Whiteouts::Overlay, lowers: &lowers };
        for e in entries {
            if let Err(why) = a.entry(e) {
                return Expected { refused: Some((i, why)), trees: done };
            }
        }
        done.push(root);
    }
    Expected { refused: None, trees: done }
}

fn model_flat(layers: &[Vec<TarEntry>]) -> Expected {
    let mut root = new_dir(usize::MAX, root_meta());
    for (i, entries) in layers.iter().enumerate() {
        let mut a = Apply { root: &mut root, layer: i, whiteouts: Whiteouts::Apply, lowers: &[] };
        for e in entries {
            if let Err(why) = a.entry(e) {
                return Expected { refused: Some((i, why)), trees: Vec::new() };
            }
        }
    }
    Expected { refused: None, trees: vec![root] }
}

// ---------------------------------------------------------------------------------------------
// Reading back what the unpacker made.

fn meta_of(m: &fs::Metadata) -> Meta {
    Meta { mode: m.mode() & 0o7777, uid: m.uid(), gid: m.gid() }
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let mut buf = [0u8; 64];
    rustix::fs::lgetxattr(path, name, &mut buf[..]).ok().map(|n| buf[..n].to_vec())
}

/// The tree at `path`, never following a symlink. `layer_dir`: read overlay's whiteouts and
/// opaque markers (in a merged view they are not visible).
fn read_tree(path: &Path, layer_dir: bool) -> Seen {
    let m = fs::symlink_metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let ft = m.file_type();
    if ft.is_dir() {
        let mut children = BTreeMap::new();
        for e in fs::read_dir(path).unwrap() {
            let e = e.unwrap();
            // Overlay lists a whiteout of a directory that only one layer has, but finds nothing
            // there: the name is as good as absent.
            if !layer_dir && fs::symlink_metadata(e.path()).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound) {
                continue;
            }
            children.insert(e.file_name().as_bytes().to_vec(), read_tree(&e.path(), layer_dir));
        }
        let opaque = layer_dir && xattr(path, "trusted.overlay.opaque").as_deref() == Some(b"y");
        return Seen::Dir { meta: meta_of(&m), opaque, children };
    }
    let mtime = m.mtime() as u64;
    if ft.is_file() {
        let note = xattr(path, "user.note").map(|v| v[0]);
        return Seen::File { meta: meta_of(&m), mtime, data: fs::read(path).unwrap(), note };
    }
    if ft.is_symlink() {
        let target = fs::read_link(path).unwrap().into_os_string().into_vec();
        return Seen::Symlink { target, uid: m.uid(), gid: m.gid(), mtime };
    }
    let dev = (rustix::fs::major(m.rdev()), rustix::fs::minor(m.rdev()));
    if layer_dir && ft.is_char_device() && dev == (0, 0) {
        return Seen::Whiteout;
    }
    let flag = if ft.is_fifo() {
        b'6'
    } else if ft.is_char_device() {
        b'3'
    } else if ft.is_block_device() {
        b'4'
    } else {
        panic!("{}: a socket?", path.display())
    };
    Seen::Special { flag, meta: meta_of(&m), mtime, dev }
}

/// The first difference between two trees, as a path and the two sides.
fn diff(path: &mut Vec<Name>, want: &Seen, got: &Seen) -> Option<String> {
    match (want, got) {
        (Seen::Dir { meta: m1, opaque: o1, children: c1 }, Seen::Dir { meta: m2, opaque: o2, children: c2 }) => {
            if m1 != m2 || o1 != o2 {
                return Some(format!("{}: directory {m1:?} opaque {o1}, got {m2:?} opaque {o2}", show(path)));
            }
            for name in c1.keys().chain(c2.keys()) {
                path.push(name.clone());
                let d = match (c1.get(name), c2.get(name)) {
                    (Some(a), Some(b)) => diff(path, a, b),
                    (Some(a), None) => Some(format!("{}: missing; the model has {}", show(path), brief(a))),
                    (None, Some(b)) => Some(format!("{}: not in the model; found {}", show(path), brief(b))),
                    (None, None) => None,
                };
                path.pop();
                if d.is_some() {
                    return d;
                }
            }
            None
        }
        (a, b) if a == b => None,
        (a, b) => Some(format!("{}: the model has {}, found {}", show(path), brief(a), brief(b))),
    }
}

fn show(path: &[Name]) -> String {
    format!("/{}", String::from_utf8_lossy(&path.join(&b'/')))
}

fn brief(s: &Seen) -> String {
    match s {
        Seen::Dir { meta, opaque, children } => format!("a directory {meta:?} opaque {opaque} with {} entries", children.len()),
        other => format!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// The real unpacker.

/// What the unpacker did with a case's layers: all taken, or refused at a layer (`None`: the
/// store's flatten_into, which does not say which) with its error.
type Unpacked = Result<(), (Option<usize>, String)>;

/// Layers unpacked one by one until the first refusal.
fn each_layer(count: usize, mut unpack_one: impl FnMut(usize) -> Result<(), String>) -> Unpacked {
    for i in 0..count {
        unpack_one(i).map_err(|e| (Some(i), e))?;
    }
    Ok(())
}

/// How many cases each way ended with trees compared, and with a refusal (by the model's reason).
static COMPARED: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());
static REFUSALS: Mutex<BTreeMap<String, u64>> = Mutex::new(BTreeMap::new());

/// The model's verdict against the unpacker's.
fn same_verdict(way: &str, want: &Expected, got: &Unpacked) -> Result<(), TestCaseError> {
    match &want.refused {
        None => *COMPARED.lock().unwrap().entry(way.to_string()).or_default() += 1,
        Some((_, why)) => {
            let reason = why.split([':', '[']).next().unwrap_or(why).trim();
            *REFUSALS.lock().unwrap().entry(format!("{way}: {reason}")).or_default() += 1;
        }
    }
    match (&want.refused, got) {
        (Some((layer, why)), Err((got, err))) => {
            prop_assert!(got.is_none() || *got == Some(*layer), "{}: the model refuses layer {} ({}), the unpacker layer {:?}: {}", way, layer, why, got, err)
        }
        (Some((layer, why)), Ok(())) => prop_assert!(false, "{}: the model refuses layer {} ({}); the unpacker took it", way, layer, why),
        (None, Err((got, err))) => prop_assert!(false, "{}: the unpacker refused layer {:?}: {}", way, got, err),
        (None, Ok(())) => {}
    }
    Ok(())
}

fn unpack_layer(dir: &Path, tar: &[u8], whiteouts: Whiteouts, lowers: &[PathBuf]) -> Result<(), String> {
    // As the store does: the root of a layer dir is the container's `/` where no layer says otherwise.
    rustix::fs::chmod(dir, rustix::fs::Mode::from_raw_mode(0o755)).unwrap();
    let opts = Unpack { name: "generated", whiteouts, under: "", lowers, cancel: &Cancel::never() };
    unpack(dir, tar, &opts).map(|_| ()).map_err(|e| e.to_string())
}

/// The case's directories: layer dirs, the flat root, the overlay's, and the host directory
/// that absolute symlinks aim at, which must stay as it is.
struct CaseDirs {
    base: tempfile::TempDir,
}

impl CaseDirs {
    fn new() -> CaseDirs {
        let base = tempfile::Builder::new().prefix("s2i-unpack-prop-").tempdir_in(scratch()).unwrap();
        fs::create_dir(base.path().join("host")).unwrap();
        fs::write(base.path().join("host/secret"), "host").unwrap();
        CaseDirs { base }
    }

    fn host(&self) -> PathBuf {
        self.base.path().join("host")
    }

    fn assert_host_untouched(&self) -> Result<(), TestCaseError> {
        let names: Vec<_> = fs::read_dir(self.host()).unwrap().map(|e| e.unwrap().file_name()).collect();
        let m = fs::symlink_metadata(self.host()).unwrap();
        prop_assert_eq!(names, vec![std::ffi::OsString::from("secret")], "a layer wrote into the host directory");
        prop_assert_eq!(fs::read(self.host().join("secret")).unwrap(), b"host".to_vec());
        prop_assert_eq!(m.mode() & 0o7777, 0o755);
        Ok(())
    }
}

/// Where cases are unpacked: memory if the machine has /dev/shm (fast, and it takes overlay's
/// xattrs and device nodes as root), else the temp dir.
fn scratch() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// Removes a case's directory (owners and modes are whatever the layers said: as root that is
/// no obstacle).
fn remove(path: &Path) {
    if path.exists() {
        fs::remove_dir_all(path).unwrap_or_else(|e| panic!("removing {}: {e}", path.display()));
    }
}

fn check_case(layers: &[Vec<Entry>], through_store: bool) -> Result<(), TestCaseError> {
    let dirs = CaseDirs::new();
    let host = dirs.host();
    let mut earlier: Vec<Vec<u8>> = Vec::new();
    let mut tars: Vec<Vec<TarEntry>> = Vec::new();
    for layer in layers {
        let mut entries = Vec::new();
        for e in layer {
            let t = tar_entry(e, host.as_os_str().as_bytes(), &earlier);
            // What a link may name: an entry that is not a directory or a whiteout.
            if !matches!(e.kind, Kind::Dir | Kind::ForgedOpaque | Kind::Whiteout(_) | Kind::Opaque) {
                earlier.push(t.path.clone());
            }
            entries.push(t);
        }
        tars.push(entries);
    }
    let blobs: Vec<Vec<u8>> = tars.iter().map(|t| tar_of(t)).collect();
    let base = dirs.base.path();

    // Each layer alone, as overlay lower dirs.
    let want = model_overlay(&tars);
    let layer_dirs: Vec<PathBuf> = (0..blobs.len()).map(|i| base.join(format!("l{i}"))).collect();
    let got = if through_store {
        store_overlay(base, &blobs, &layer_dirs)
    } else {
        each_layer(blobs.len(), |i| {
            fs::create_dir(&layer_dirs[i]).unwrap();
            let lowers: Vec<PathBuf> = layer_dirs[..i].iter().rev().cloned().collect();
            unpack_layer(&layer_dirs[i], &blobs[i], Whiteouts::Overlay, &lowers)
        })
    };
    dirs.assert_host_untouched()?;
    same_verdict(if through_store { "store, overlay" } else { "overlay" }, &want, &got)?;
    // The layers before a refused one are done: their dirs are compared too (not through the
    // store, which keeps them under their chain ids).
    let done = if through_store && want.refused.is_some() { 0 } else { want.trees.len() };
    for (i, tree) in want.trees[..done].iter().enumerate() {
        let got = read_tree(&layer_dirs[i], true);
        if let Some(d) = diff(&mut Vec::new(), &seen(tree), &got) {
            prop_assert!(false, "overlay lower dir of layer {}: {}", i, d);
        }
    }
    match &want.refused {
        Some(_) => {}
        None => {
            let trees = &want.trees;
            // What a container sees: the kernel's overlay of them, with an empty upper dir.
            let mut stack = vec![new_dir(0, root_meta())];
            stack.extend(trees.iter().rev().cloned());
            let merged_model = merge(&stack);
            let (upper, work, merged) = (base.join("upper"), base.join("work"), base.join("merged"));
            for d in [&upper, &work, &merged] {
                fs::create_dir(d).unwrap();
            }
            let lower: Vec<PathBuf> = layer_dirs.iter().rev().cloned().collect();
            mount_overlay(&OverlayDirs { lower: &lower, upper: &upper, work: &work, target: &merged }).unwrap();
            let got = read_tree(&merged, false);
            rustix::mount::unmount(&merged, rustix::mount::UnmountFlags::empty()).unwrap();
            if let Some(d) = diff(&mut Vec::new(), &seen(&merged_model), &got) {
                prop_assert!(false, "the merged overlay: {}", d);
            }
        }
    }

    // All layers in order into one directory.
    let want = model_flat(&tars);
    let flat = base.join("flat");
    let got = if through_store {
        store_flat(base, &blobs, &flat)
    } else {
        fs::create_dir(&flat).unwrap();
        each_layer(blobs.len(), |i| unpack_layer(&flat, &blobs[i], Whiteouts::Apply, &[]))
    };
    dirs.assert_host_untouched()?;
    same_verdict(if through_store { "store, flat" } else { "flat" }, &want, &got)?;
    match &want.refused {
        Some(_) => {}
        None => {
            let trees = &want.trees;
            let got = read_tree(&flat, false);
            if let Some(d) = diff(&mut Vec::new(), &seen(&trees[0]), &got) {
                prop_assert!(false, "flat: {}", d);
            }
        }
    }
    remove(base);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Through the store: an imported archive, its layer dirs and its flattened root.

fn docker_archive(blobs: &[Vec<u8>]) -> Vec<u8> {
    s2i_testkit::docker_archive(blobs, &["generated:1"], serde_json::json!({"Cmd": ["/bin/sh"]}))
}

/// The layers through `Store::layer_dirs` of an imported archive; the dirs moved to
/// `layer_dirs` for reading.
fn store_overlay(base: &Path, blobs: &[Vec<u8>], layer_dirs: &[PathBuf]) -> Unpacked {
    let store = Store::open(&base.join("store")).unwrap();
    let image = store.import_archive(&mut &docker_archive(blobs)[..]).unwrap().remove(0);
    let dirs = store.layer_dirs(&image).map_err(|e| {
        // The refused layer: the store keeps those below it, unpacked, by chain id.
        let done = fs::read_dir(base.join("store/s2i/layers")).unwrap().flatten().filter(|e| e.path().is_dir()).count();
        (Some(done), e.to_string())
    })?;
    for (dir, to) in dirs.iter().rev().zip(layer_dirs) {
        fs::rename(dir, to).unwrap();
    }
    Ok(())
}

/// The layers through `Store::flatten_into` (which does not say which layer it refused).
fn store_flat(base: &Path, blobs: &[Vec<u8>], flat: &Path) -> Unpacked {
    let store = Store::open(&base.join("store")).unwrap();
    let image = store.import_archive(&mut &docker_archive(blobs)[..]).unwrap().remove(0);
    store.flatten_into(&image, flat).map_err(|e| (None, e.to_string()))
}

// ---------------------------------------------------------------------------------------------
// The properties.

/// The case each runner thread is on (by its index) and when it started, shown if it never ends.
static CURRENT: Mutex<BTreeMap<usize, (u64, String)>> = Mutex::new(BTreeMap::new());
const CASE_LIMIT: Duration = Duration::from_secs(60);

fn now_ms() -> u64 {
    static T0: OnceLock<Instant> = OnceLock::new();
    T0.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Aborts the whole run, printing the case, when one case runs longer than `CASE_LIMIT`.
fn start_watchdog() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            for (started, case) in CURRENT.lock().unwrap().values() {
                if now_ms().saturating_sub(*started) > CASE_LIMIT.as_millis() as u64 {
                    eprintln!("a case ran for more than {CASE_LIMIT:?}: the unpacker hung on\n{case}");
                    std::process::abort();
                }
            }
        });
    });
}

/// Puts this thread in a mount namespace of its own, its mounts private: a case's overlay mount is
/// seen by no other process (a container started meanwhile would copy it and could keep its
/// unmount busy), and goes with the thread if the run dies.
fn private_mounts() {
    // SAFETY: NEWNS (and the FS it implies) unshares no file descriptors.
    unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS) }.expect("a mount namespace of this thread's own");
    let private = rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC;
    rustix::mount::mount_change("/", private).expect("making this namespace's mounts private");
}

fn cases(default: u32) -> u32 {
    std::env::var("S2I_UNPACK_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Runs `cases` cases, split over one runner per core (the work is mostly the kernel's), each
/// with its own random seed.
fn run(cases: u32, through_store: bool) {
    assert!(rustix::process::geteuid().is_root(), "the unpack properties need root (owners, device nodes, overlay mounts): run them as root");
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    start_watchdog();
    static RUNNERS: AtomicU64 = AtomicU64::new(0);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8) as u32;
    let started = Instant::now();
    let results: Vec<_> = std::thread::scope(|scope| {
        let runners: Vec<_> = (0..threads)
            .map(|t| {
                let share = cases / threads + u32::from(t < cases % threads);
                scope.spawn(move || {
                    private_mounts();
                    let me = RUNNERS.fetch_add(1, Ordering::SeqCst) as usize;
                    let config = Config { cases: share, failure_persistence: None, ..Config::default() };
                    let result = TestRunner::new(config).run(&gen_layers(), |layers| {
                        CURRENT.lock().unwrap().insert(me, (now_ms(), format!("{layers:#?}")));
                        let r = check_case(&layers, through_store);
                        CURRENT.lock().unwrap().remove(&me);
                        r
                    });
                    result.map_err(|e| e.to_string())
                })
            })
            .collect();
        runners.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let result: Result<(), String> = results.into_iter().collect();
    let mine = |way: &String| way.starts_with("store") == through_store;
    let compared: BTreeMap<_, _> = COMPARED.lock().unwrap().iter().filter(|(k, _)| mine(k)).map(|(k, v)| (k.clone(), *v)).collect();
    let refused: BTreeMap<_, _> = REFUSALS.lock().unwrap().iter().filter(|(k, _)| mine(k)).map(|(k, v)| (k.clone(), *v)).collect();
    eprintln!(
        "{cases} cases{} in {:.1?} on {threads} threads: trees compared {compared:?}; refused: {refused:#?}",
        if through_store { " through the store" } else { "" },
        started.elapsed(),
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn unpacked_layers_match_the_model_of_their_union() {
    run(cases(100_000), false);
}

#[test]
fn the_store_stacks_layers_as_the_model_says() {
    run((cases(100_000) / 200).max(50), true);
}

/// What the property found, fixed in the unpacker, as cases of their own (each failed before
/// its fix).
#[test]
fn cases_the_property_found() {
    fn path(p: &str) -> GenPath {
        let comps = p.split('/').map(|n| ["a", "b", "c", "café", "N255"].iter().position(|x| *x == n).expect("a pool name")).collect();
        GenPath { comps, lead: 0, up: None }
    }
    fn entry(p: &str, kind: Kind) -> Entry {
        Entry { path: path(p), kind, mode: 0, uid: 0, gid: 0, mtime: 0 }
    }
    let file = |p: &str| entry(p, Kind::File { data: b"x".to_vec(), note: None });
    let dir = |p: &str| entry(p, Kind::Dir);
    let link = |p: &str, to: &str| entry(p, Kind::HardLink(LinkTo::Path(path(to))));
    let cases: Vec<(&str, Vec<Vec<Entry>>)> = vec![
        (
            "in one tree, an opaque directory (the root here) removed what its own layer wrote below \
             a directory it did not declare (a/a, under the implied a)",
            vec![vec![file("b")], vec![dir("a/a"), entry("b", Kind::Opaque)]],
        ),
        (
            "in one tree, an opaque directory removed the directory of its own layer's whiteout",
            vec![vec![dir("a"), file("a/b")], vec![entry("a/b", Kind::Whiteout(Some(0))), entry("b", Kind::Opaque)]],
        ),
        (
            "as a lower dir, a directory that replaced its own layer's file merged the lower \
             layers' directory there (a/b/c came back)",
            vec![vec![dir("a/b"), file("a/b/c")], vec![file("a/b"), dir("a/b")]],
        ),
        (
            "a hard link to a file of an earlier layer, copied, lost the file's xattrs (a file \
             capability, say)",
            vec![vec![entry("b", Kind::File { data: b"ping".to_vec(), note: Some(7) })], vec![link("a", "b")]],
        ),
        (
            "a hard link found a file that an opaque directory of its own layer hides",
            vec![vec![dir("a/N255"), file("a/N255/a")], vec![entry("a/a", Kind::Opaque), link("a/a", "a/N255/a")]],
        ),
        (
            "a hard link found a file whose directory a layer in between whited out",
            vec![vec![dir("a"), file("a/c")], vec![entry("c", Kind::Whiteout(Some(0)))], vec![link("b", "a/c")]],
        ),
        (
            "a hard link did not find a file through a symlink of another layer",
            vec![vec![dir("c"), file("c/c")], vec![entry("a", Kind::Symlink(Target::Absolute(GenPath { lead: 2, ..path("c") })))], vec![link("b", "a/c")]],
        ),
    ];
    assert!(rustix::process::geteuid().is_root(), "the unpack properties need root: run them as root");
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    private_mounts();
    for (what, layers) in cases {
        if let Err(e) = check_case(&layers, false) {
            panic!("{what}:\n{e}\n{layers:#?}");
        }
    }
}
