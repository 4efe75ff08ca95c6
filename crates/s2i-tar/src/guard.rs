//! The one policy every untrusted tar stream goes through before s2i passes it on.
//!
//! The guard sees parsed headers in stream order and answers, for each: refuse, skip (special
//! files, unknown types, the root itself) or accept with a clean description to rebuild the
//! header from. It remembers every path seen (given, or implied as a parent) in a trie with its
//! kind; each check walks the entry's path once, so it is linear in the path's length.
//!
//! # The rules
//!
//! Paths: empty and `.` components are dropped; an absolute path, a `..` anywhere, a NUL are
//! refused; the root itself is skipped when it is a directory, refused otherwise.
//!
//! - T1: an entry with a proper ancestor that is now a symlink or a file is refused.
//! - T2: a non-directory at a path that is now a directory (given, or implied by an entry under
//!   it) is refused.
//! - T3: a directory at a path that is now a file or a symlink is refused; so is a file or a
//!   hard link at a path that is now a symlink.
//! - L1: a symlink's target is relative, non-empty, has `.` components dropped, and is a leading
//!   run of k `..` followed by names only, with k at most the depth of the link's parent
//!   (`a/b/l -> ../../x` yes, `a/l -> ../../x` no, `l -> a/../b` no).
//! - L2: a hard link's target is a clean path (as above) that is a file right now, and not the
//!   link itself.
//!
//! # Why every accepted entry and link stays inside the root, whatever the order
//!
//! Assumed of the extractor (GNU tar, busybox tar, Docker's archive API and the `tar` crate all
//! do this): it starts from a root without symlinks at the paths the archive names; it creates
//! missing parents as directories; when it writes an entry it does not follow a symlink in the
//! last component (it unlinks first, or opens with `O_EXCL`/`O_NOFOLLOW`); it resolves a hard
//! link's target from the root; and `..` is resolved by the kernel, to the real parent.
//!
//! Invariant I: once a path is a directory in the trie it stays one, and symlinks and files in the
//! trie never have children. T2 and T3 stop any later entry from turning a directory into
//! anything else, and T1 stops any entry from appearing under a symlink or a file. So when an
//! accepted entry is extracted, its proper ancestors are real directories that the extractor
//! made: a symlink or file there would either have come before it (T1 refuses the entry) or come
//! after it (T2 refuses the symlink or file, since the entry makes the path a directory). The
//! entry lands at exactly root/path, and a directory of n components sits at depth n.
//!
//! Symlinks: take any resolution the kernel makes from a real directory D inside the root (at
//! depth(D)) through names in the tree. Each name is a directory (one level deeper, still
//! inside), the end of the walk, or a symlink S. S's parent is a real directory P at depth d (I),
//! and by L1 S's target is k ≤ d times `..` then names: `..` from a real directory goes to its
//! real parent, so after k steps the walk is at P's ancestor at depth d − k ≥ 0, inside the root,
//! and goes on with names, the same kind of walk. By induction on the kernel's steps (finitely
//! many, or it fails with ELOOP), no step leaves the root, at any time during the extraction: a
//! link made earlier cannot be re-pointed by a later entry into something that escapes, because
//! whatever replaces it is checked by the same rules from its own position.
//!
//! Hard links: by L2 the target's ancestors are real directories (I) and the target is a file
//! right now, so the link is a second name for a file inside the root. Never for a symlink (a
//! hard link to a symlink carries its relative target to another directory, where it means
//! something else) and never for a directory.
//!
//! Order: T1 and T2 refuse the same pair of entries whichever comes first, T3 and L2 look at
//! what is at a path when the entry comes (which is what the extractor sees then), and L1 looks
//! only at the link's own path.
//!
//! Beyond the brief: T3 also refuses a file over a symlink (so no extractor that writes through
//! a last-component symlink can be led out), a hard link to a symlink, and a directory over a
//! file (GNU tar keeps a symlink to a directory when a directory entry comes for it).
//!
//! Not covered: two guards writing under the same prefix (share one [`Guard`] instead); a root
//! that already holds symlinks at the archive's paths before extraction; and file systems that
//! fold case or normalise Unicode (macOS, Windows), where two names the trie tells apart are one
//! on disk (`d/L -> ..` then `d/l/e/f/s -> ../../..` escapes there). Containers' file systems
//! are case-sensitive; on such a host, extract with a tool that checks parents itself (the
//! `tar` crate's `unpack_in` does).

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::{lossy, GuardError, Limit, LimitExceeded, PathKind, Refusal, RefusalReason};
use crate::reader::{EntryHeader, EntryKind, EntryMeta, Limits};

/// The uid and gid every entry gets (their names are cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner {
    pub uid: u64,
    pub gid: u64,
}

/// What the guard changes in what it accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardOptions {
    /// Give every entry this owner.
    pub owner: Option<Owner>,
    /// Drop setuid and setgid from files and hard links (on by default). Directories keep
    /// setgid: it only makes new files inherit the directory's group.
    pub strip_setid: bool,
    /// Directories 0755; files 0755 or 0644 by their owner's x bit (copies out of containers).
    pub normalize_modes: bool,
}

impl Default for GuardOptions {
    fn default() -> Self {
        GuardOptions { owner: None, strip_setid: true, normalize_modes: false }
    }
}

/// What to do with one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Write this instead of what the archive said.
    Accept(CleanEntry),
    /// Leave it out (the caller counts and warns, except for [`Skipped::Root`]).
    Skip(Skipped),
}

/// Why an entry was left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Skipped {
    /// The root itself (`./`): it exists already.
    Root,
    CharDevice,
    BlockDevice,
    Fifo,
    /// An entry type the reader does not know (its type flag).
    Unknown(u8),
}

impl std::fmt::Display for Skipped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Skipped::Root => f.write_str("the root directory"),
            Skipped::CharDevice => f.write_str("a character device"),
            Skipped::BlockDevice => f.write_str("a block device"),
            Skipped::Fifo => f.write_str("a fifo"),
            Skipped::Unknown(t) => write!(f, "an entry of unknown type {:?}", *t as char),
        }
    }
}

/// An accepted entry, as it is to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanEntry {
    /// Relative, normalised (no `.`, `..` or empty components), never empty.
    pub path: PathBuf,
    pub kind: CleanKind,
    pub meta: EntryMeta,
    /// Setuid or setgid was dropped from the mode.
    pub setid_stripped: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanKind {
    File,
    Dir,
    /// The normalised target to write (`../../a/b`).
    Symlink { target: PathBuf },
    /// The target, relative to the root (the copy puts its prefix in front).
    HardLink { target: PathBuf },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NodeKind {
    Dir,
    File,
    Symlink,
}

impl From<NodeKind> for PathKind {
    fn from(k: NodeKind) -> Self {
        match k {
            NodeKind::Dir => PathKind::Directory,
            NodeKind::File => PathKind::File,
            NodeKind::Symlink => PathKind::Symlink,
        }
    }
}

struct Node {
    kind: NodeKind,
    children: HashMap<Box<[u8]>, u32>,
}

const ROOT: usize = 0;

/// Checks entries against the rules above and remembers what it accepted. One guard per tree:
/// entries written under the same prefix from several streams must share it.
pub struct Guard {
    options: GuardOptions,
    max_paths: u64,
    nodes: Vec<Node>,
}

impl Guard {
    pub fn new(options: GuardOptions, limits: &Limits) -> Self {
        let root = Node { kind: NodeKind::Dir, children: HashMap::new() };
        Guard { options, max_paths: limits.max_paths.min(u64::from(u32::MAX - 1)), nodes: vec![root] }
    }

    pub fn options(&self) -> &GuardOptions {
        &self.options
    }

    /// Distinct paths seen so far (given or implied).
    pub fn paths(&self) -> u64 {
        self.nodes.len() as u64 - 1
    }

    /// Decide about one entry. A refused entry changes nothing in what the guard remembers.
    pub fn check(&mut self, header: &EntryHeader) -> Result<Verdict, GuardError> {
        let refuse = |reason| -> GuardError { Refusal { entry: header.display_path(), reason }.into() };
        let comps = clean_components(&header.path).map_err(refuse)?;
        let wanted = match header.kind {
            EntryKind::File => Wanted::File,
            EntryKind::Dir => Wanted::Dir,
            EntryKind::Symlink => Wanted::Symlink,
            EntryKind::HardLink => Wanted::HardLink,
            EntryKind::CharDevice => return Ok(Verdict::Skip(Skipped::CharDevice)),
            EntryKind::BlockDevice => return Ok(Verdict::Skip(Skipped::BlockDevice)),
            EntryKind::Fifo => return Ok(Verdict::Skip(Skipped::Fifo)),
            EntryKind::Unknown(t) => return Ok(Verdict::Skip(Skipped::Unknown(t))),
        };
        if comps.is_empty() {
            return match wanted {
                Wanted::Dir => Ok(Verdict::Skip(Skipped::Root)),
                other => Err(refuse(RefusalReason::ReplacesRoot(other.path_kind()))),
            };
        }

        // T1: walk what exists of the path; every proper ancestor must be a directory.
        let mut node = ROOT;
        let mut found = 0;
        for (i, name) in comps.iter().enumerate() {
            let Some(&child) = self.nodes[node].children.get(*name) else { break };
            let child = child as usize;
            if i + 1 < comps.len() {
                match self.nodes[child].kind {
                    NodeKind::Dir => {}
                    NodeKind::Symlink => return Err(refuse(RefusalReason::ThroughSymlink(joined(&comps[..=i])))),
                    NodeKind::File => {
                        let path = joined(&comps[..=i]);
                        return Err(refuse(RefusalReason::ThroughNonDirectory { path, kind: PathKind::File }));
                    }
                }
            }
            node = child;
            found = i + 1;
        }

        // T2, T3: what is at the path now.
        let existing = (found == comps.len()).then(|| self.nodes[node].kind);
        match (existing, wanted) {
            (None, _) | (Some(NodeKind::Dir), Wanted::Dir) => {}
            (Some(NodeKind::Dir), _) => return Err(refuse(RefusalReason::ReplacesDirectory(joined(&comps)))),
            (Some(was), Wanted::Dir) => return Err(refuse(RefusalReason::BecomesDirectory { path: joined(&comps), was: was.into() })),
            (Some(NodeKind::Symlink), Wanted::File | Wanted::HardLink) => {
                return Err(refuse(RefusalReason::ReplacesSymlink(joined(&comps))))
            }
            (Some(_), _) => {}
        }

        let kind = match wanted {
            Wanted::File => CleanKind::File,
            Wanted::Dir => CleanKind::Dir,
            Wanted::Symlink => {
                let target = header.link_target.as_deref().ok_or_else(|| refuse(RefusalReason::MissingTarget))?;
                let target = clean_symlink_target(target, comps.len() - 1).map_err(refuse)?;
                CleanKind::Symlink { target: to_path(target) }
            }
            Wanted::HardLink => {
                let target = header.link_target.as_deref().ok_or_else(|| refuse(RefusalReason::MissingTarget))?;
                let target = self.hard_link_target(target, &comps).map_err(refuse)?;
                CleanKind::HardLink { target: to_path(target) }
            }
        };

        let new_nodes = (comps.len() - found) as u64;
        if self.paths() + new_nodes > self.max_paths {
            let entry = Some(header.display_path());
            return Err(LimitExceeded { limit: Limit::Paths, entry, actual: self.paths() + new_nodes, max: self.max_paths }.into());
        }
        // Accepted: remember it (implied parents as directories).
        for name in &comps[found..] {
            let id = self.nodes.len() as u32;
            self.nodes.push(Node { kind: NodeKind::Dir, children: HashMap::new() });
            self.nodes[node].children.insert((*name).into(), id);
            node = id as usize;
        }
        self.nodes[node].kind = match wanted {
            Wanted::Dir => NodeKind::Dir,
            Wanted::File | Wanted::HardLink => NodeKind::File,
            Wanted::Symlink => NodeKind::Symlink,
        };

        let mut mode = header.meta.mode & 0o7777;
        let mut setid_stripped = false;
        match wanted {
            Wanted::Symlink => mode = 0o777,
            Wanted::Dir if self.options.normalize_modes => mode = 0o755,
            Wanted::Dir => {}
            // Hard links too: Docker's archive API applies a hard link's mode to the shared file.
            Wanted::File | Wanted::HardLink => {
                if self.options.strip_setid && mode & 0o6000 != 0 {
                    mode &= !0o6000;
                    setid_stripped = true;
                }
                if self.options.normalize_modes {
                    mode = if mode & 0o100 != 0 { 0o755 } else { 0o644 };
                }
            }
        }
        let (uid, gid, uname, gname) = match self.options.owner {
            Some(o) => (o.uid, o.gid, None, None),
            None => (header.meta.uid, header.meta.gid, header.meta.uname.clone(), header.meta.gname.clone()),
        };
        Ok(Verdict::Accept(CleanEntry {
            path: to_path(comps.join(&b'/')),
            kind,
            meta: EntryMeta {
                mode,
                uid,
                gid,
                uname,
                gname,
                mtime: header.meta.mtime,
                size: if wanted == Wanted::File { header.meta.size } else { 0 },
            },
            setid_stripped,
        }))
    }

    /// L2: the target, cleaned, if it is a file right now and not `link` itself.
    fn hard_link_target(&self, target: &[u8], link: &[&[u8]]) -> Result<Vec<u8>, RefusalReason> {
        if target.contains(&0) {
            return Err(RefusalReason::NulInTarget);
        }
        let comps = clean_components(target).map_err(|_| RefusalReason::HardLinkOutside(lossy(target)))?;
        if comps.is_empty() {
            return Err(RefusalReason::HardLinkNotFile { target: lossy(target), kind: PathKind::Directory });
        }
        if comps == link {
            return Err(RefusalReason::HardLinkSelf);
        }
        // Symlinks and files have no children in the trie (I), so a path that reaches a node
        // went through directories only.
        let mut node = ROOT;
        for name in &comps {
            node = *self.nodes[node].children.get(*name).ok_or_else(|| RefusalReason::HardLinkUnknown(lossy(target)))? as usize;
        }
        match self.nodes[node].kind {
            NodeKind::File => Ok(comps.join(&b'/')),
            other => Err(RefusalReason::HardLinkNotFile { target: lossy(target), kind: other.into() }),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    File,
    Dir,
    Symlink,
    HardLink,
}

impl Wanted {
    fn path_kind(self) -> PathKind {
        match self {
            Wanted::Dir => PathKind::Directory,
            Wanted::File | Wanted::HardLink => PathKind::File,
            Wanted::Symlink => PathKind::Symlink,
        }
    }
}

/// A path's components with empty and `.` ones dropped; absolute, `..` and NUL refused.
fn clean_components(path: &[u8]) -> Result<Vec<&[u8]>, RefusalReason> {
    if path.contains(&0) {
        return Err(RefusalReason::NulInPath);
    }
    if path.first() == Some(&b'/') {
        return Err(RefusalReason::AbsolutePath);
    }
    let mut comps = Vec::new();
    for name in path.split(|b| *b == b'/') {
        match name {
            b"" | b"." => {}
            b".." => return Err(RefusalReason::ParentDir),
            name => comps.push(name),
        }
    }
    Ok(comps)
}

/// L1: a symlink target as `../../a/b`, with at most `parent_depth` leading `..`.
fn clean_symlink_target(target: &[u8], parent_depth: usize) -> Result<Vec<u8>, RefusalReason> {
    if target.contains(&0) {
        return Err(RefusalReason::NulInTarget);
    }
    if target.first() == Some(&b'/') {
        return Err(RefusalReason::SymlinkAbsolute(lossy(target)));
    }
    let mut ups = 0;
    let mut names: Vec<&[u8]> = Vec::new();
    for name in target.split(|b| *b == b'/') {
        match name {
            b"" | b"." => {}
            b".." if names.is_empty() => ups += 1,
            b".." => return Err(RefusalReason::SymlinkInnerParent(lossy(target))),
            name => names.push(name),
        }
    }
    if ups == 0 && names.is_empty() {
        return Err(RefusalReason::SymlinkEmpty(lossy(target)));
    }
    if ups > parent_depth {
        return Err(RefusalReason::SymlinkClimbsOut { target: lossy(target), ups, depth: parent_depth });
    }
    let mut out: Vec<&[u8]> = vec![b".."; ups];
    out.extend(names);
    Ok(out.join(&b'/'))
}

fn joined(comps: &[&[u8]]) -> String {
    lossy(&comps.join(&b'/'))
}

fn to_path(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(OsString::from_vec(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn entry(path: &str, kind: EntryKind, target: Option<&str>) -> EntryHeader {
        let mut header = EntryHeader { link_target: target.map(|t| t.as_bytes().to_vec()), ..EntryHeader::new(path, kind) };
        header.meta.mode = 0o644;
        header
    }
    fn file(path: &str) -> EntryHeader {
        entry(path, EntryKind::File, None)
    }
    fn dir(path: &str) -> EntryHeader {
        entry(path, EntryKind::Dir, None)
    }
    fn symlink(path: &str, target: &str) -> EntryHeader {
        entry(path, EntryKind::Symlink, Some(target))
    }
    fn hardlink(path: &str, target: &str) -> EntryHeader {
        entry(path, EntryKind::HardLink, Some(target))
    }

    fn guard() -> Guard {
        Guard::new(GuardOptions::default(), &Limits::default())
    }

    /// Check entries in order; the first refusal, as (index, entry, reason).
    fn run(entries: &[EntryHeader]) -> Result<Vec<Verdict>, (usize, String, RefusalReason)> {
        let mut g = guard();
        let mut out = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            match g.check(e) {
                Ok(v) => out.push(v),
                Err(GuardError::Refused(r)) => return Err((i, r.entry, r.reason)),
                Err(other) => panic!("{other}"),
            }
        }
        Ok(out)
    }

    fn refused(entries: &[EntryHeader]) -> (usize, RefusalReason) {
        let (i, _, reason) = run(entries).expect_err("must be refused");
        (i, reason)
    }

    fn accepted(entries: &[EntryHeader]) -> Vec<CleanEntry> {
        run(entries)
            .unwrap_or_else(|e| panic!("refused: {e:?}"))
            .into_iter()
            .filter_map(|v| match v {
                Verdict::Accept(c) => Some(c),
                Verdict::Skip(_) => None,
            })
            .collect()
    }

    #[test]
    fn paths_are_cleaned_and_escapes_refused() {
        let clean = accepted(&[file("./a//b/./c/")]);
        assert_eq!(clean[0].path, Path::new("a/b/c"));
        assert_eq!(run(&[dir("./")]).unwrap(), [Verdict::Skip(Skipped::Root)]);
        assert_eq!(run(&[dir("")]).unwrap(), [Verdict::Skip(Skipped::Root)]);
        assert_eq!(refused(&[file(".")]), (0, RefusalReason::ReplacesRoot(PathKind::File)));
        assert_eq!(refused(&[symlink("./", "a")]), (0, RefusalReason::ReplacesRoot(PathKind::Symlink)));
        assert_eq!(refused(&[file("/etc/passwd")]), (0, RefusalReason::AbsolutePath));
        assert_eq!(refused(&[file("a/../b")]), (0, RefusalReason::ParentDir));
        assert_eq!(refused(&[file("a/..")]), (0, RefusalReason::ParentDir));
        assert_eq!(refused(&[file("a\0b")]), (0, RefusalReason::NulInPath));
    }

    /// Finding 2, first checker: `x -> .` made `x/x/x/x` the root again.
    #[test]
    fn a_link_to_its_own_directory_cannot_be_used_to_reach_deeper_links() {
        let x = symlink("x", ".");
        let deep = symlink("x/x/x/x/y", "../../../..");
        let through = file("x/x/x/x/y/anything");
        assert_eq!(refused(&[x, deep.clone(), through.clone()]), (0, RefusalReason::SymlinkEmpty(".".into())));
        assert_eq!(refused(&[symlink("x", "./")]), (0, RefusalReason::SymlinkEmpty("./".into())));
        // A valid link at x: nothing may go through it, before or after.
        assert_eq!(refused(&[symlink("x", "a"), deep.clone()]), (1, RefusalReason::ThroughSymlink("x".into())));
        assert_eq!(refused(&[deep, symlink("x", "a")]), (1, RefusalReason::ReplacesDirectory("x".into())));
        // On its own, y's target is fine where real directories hold it.
        assert_eq!(accepted(&[symlink("x/x/x/x/y", "../../../..")]).len(), 1);
    }

    /// Finding 2, second checker: `s -> d/e/f/x/../../../..` then `d/e/f/x -> ../..`.
    #[test]
    fn dot_dot_after_a_name_in_a_target_is_refused_whatever_comes_later() {
        let s = symlink("s", "d/e/f/x/../../../..");
        assert_eq!(refused(&[s.clone(), symlink("d/e/f/x", "../..")]), (0, RefusalReason::SymlinkInnerParent("d/e/f/x/../../../..".into())));
        assert_eq!(refused(&[symlink("d/e/f/x", "../.."), s]).0, 1);
    }

    #[test]
    fn ancestors_must_be_directories_in_either_order() {
        let through_link = RefusalReason::ThroughSymlink("a".into());
        assert_eq!(refused(&[symlink("a", "b"), file("a/f")]), (1, through_link.clone()));
        assert_eq!(refused(&[symlink("a", "b"), dir("a/d/")]), (1, through_link));
        assert_eq!(refused(&[file("a/f"), symlink("a", "b")]), (1, RefusalReason::ReplacesDirectory("a".into())));
        let through_file = RefusalReason::ThroughNonDirectory { path: "a".into(), kind: PathKind::File };
        assert_eq!(refused(&[file("a"), file("a/b/c")]), (1, through_file));
        assert_eq!(refused(&[file("a/b/c"), file("a")]), (1, RefusalReason::ReplacesDirectory("a".into())));
        assert_eq!(refused(&[file("a/b/c"), hardlink("a/b", "x")]), (1, RefusalReason::ReplacesDirectory("a/b".into())));
        assert_eq!(refused(&[dir("a"), symlink("a", ".")]).0, 1);
        assert_eq!(refused(&[dir("a"), symlink("a", "b")]), (1, RefusalReason::ReplacesDirectory("a".into())));
        // Deep: the symlink is found wherever it sits on the path.
        let deep = "p/".repeat(50) + "l";
        let below = format!("{deep}/q/r");
        assert_eq!(refused(&[symlink(&deep, "t"), file(&below)]), (1, RefusalReason::ThroughSymlink(deep.clone())));
        assert_eq!(refused(&[file(&below), symlink(&deep, "t")]), (1, RefusalReason::ReplacesDirectory(deep)));
    }

    #[test]
    fn what_a_path_is_may_change_only_in_safe_ways() {
        let becomes = |was| RefusalReason::BecomesDirectory { path: "a".into(), was };
        assert_eq!(refused(&[symlink("a", "b"), dir("a")]), (1, becomes(PathKind::Symlink)));
        assert_eq!(refused(&[file("a"), dir("a")]), (1, becomes(PathKind::File)));
        assert_eq!(refused(&[symlink("a", "b"), file("a")]), (1, RefusalReason::ReplacesSymlink("a".into())));
        assert_eq!(refused(&[file("f"), symlink("a", "b"), hardlink("a", "f")]), (2, RefusalReason::ReplacesSymlink("a".into())));
        // Same kind again, or a file becoming a symlink: nothing can go through either.
        assert_eq!(accepted(&[file("a"), file("a"), symlink("a", "b"), symlink("a", "c"), dir("d"), dir("d/")]).len(), 6);
    }

    #[test]
    fn symlink_targets_stay_inside_from_where_the_link_is() {
        let target = |v: &CleanEntry| match &v.kind {
            CleanKind::Symlink { target } => target.display().to_string(),
            other => panic!("{other:?}"),
        };
        let ok = accepted(&[symlink("a/b/l", "../../x"), symlink("a/l", ".."), symlink("l", "a/./b//c/"), symlink("a/m", "./../b")]);
        assert_eq!(ok.iter().map(target).collect::<Vec<_>>(), ["../../x", "..", "a/b/c", "../b"]);
        assert!(ok.iter().all(|c| c.meta.mode == 0o777));
        let climbs = |target: &str, ups, depth| RefusalReason::SymlinkClimbsOut { target: target.into(), ups, depth };
        assert_eq!(refused(&[symlink("a/l", "../../x")]), (0, climbs("../../x", 2, 1)));
        assert_eq!(refused(&[symlink("l", "..")]), (0, climbs("..", 1, 0)));
        assert_eq!(refused(&[symlink("l", "/etc")]), (0, RefusalReason::SymlinkAbsolute("/etc".into())));
        assert_eq!(refused(&[symlink("l", "")]), (0, RefusalReason::SymlinkEmpty("".into())));
        assert_eq!(refused(&[symlink("l", "a/\0")]), (0, RefusalReason::NulInTarget));
        assert_eq!(refused(&[entry("l", EntryKind::Symlink, None)]), (0, RefusalReason::MissingTarget));
        assert_eq!(refused(&[symlink("a/b/l", "c/../../..")]), (0, RefusalReason::SymlinkInnerParent("c/../../..".into())));
    }

    #[test]
    fn hard_links_point_at_files_seen_before() {
        let ok = accepted(&[file("d/f"), hardlink("h", "./d//f"), hardlink("h2", "h")]);
        assert_eq!(ok[1].kind, CleanKind::HardLink { target: "d/f".into() });
        assert_eq!(ok[2].kind, CleanKind::HardLink { target: "h".into() });
        assert_eq!(refused(&[hardlink("h", "f"), file("f")]), (0, RefusalReason::HardLinkUnknown("f".into())));
        assert_eq!(refused(&[hardlink("h", "../etc/passwd")]), (0, RefusalReason::HardLinkOutside("../etc/passwd".into())));
        assert_eq!(refused(&[hardlink("h", "/etc/passwd")]), (0, RefusalReason::HardLinkOutside("/etc/passwd".into())));
        let not_file = |kind| RefusalReason::HardLinkNotFile { target: "d".into(), kind };
        assert_eq!(refused(&[dir("d"), hardlink("h", "d")]), (1, not_file(PathKind::Directory)));
        assert_eq!(refused(&[file("d/f"), hardlink("h", "d")]), (1, not_file(PathKind::Directory)));
        // A file later replaced by a symlink can no longer be hard-linked.
        assert_eq!(refused(&[file("d"), symlink("d", "../x/y"), hardlink("h", "d")]).0, 1);
        assert_eq!(refused(&[file("d"), symlink("d", "x"), hardlink("h", "d")]), (2, not_file(PathKind::Symlink)));
        assert_eq!(refused(&[file("f"), hardlink("f", "f")]), (1, RefusalReason::HardLinkSelf));
        assert_eq!(refused(&[file("f"), hardlink("h", "f\0")]), (1, RefusalReason::NulInTarget));
        assert_eq!(refused(&[entry("h", EntryKind::HardLink, None)]), (0, RefusalReason::MissingTarget));
        // Nothing goes below a hard link.
        let through = RefusalReason::ThroughNonDirectory { path: "h".into(), kind: PathKind::File };
        assert_eq!(refused(&[file("f"), hardlink("h", "f"), file("h/x")]), (2, through));
    }

    #[test]
    fn special_files_are_skipped_and_leave_no_trace() {
        let fifo = entry("p", EntryKind::Fifo, None);
        let verdicts = run(&[
            fifo,
            entry("c", EntryKind::CharDevice, None),
            entry("b", EntryKind::BlockDevice, None),
            entry("u", EntryKind::Unknown(b'Z'), None),
            file("p/x"),
        ])
        .unwrap();
        assert_eq!(verdicts[..4], [Skipped::Fifo, Skipped::CharDevice, Skipped::BlockDevice, Skipped::Unknown(b'Z')].map(Verdict::Skip));
        assert!(matches!(verdicts[4], Verdict::Accept(_)));
        // A hostile path is refused even on a special file.
        assert_eq!(refused(&[entry("../dev/sda", EntryKind::BlockDevice, None)]), (0, RefusalReason::ParentDir));
    }

    #[test]
    fn a_refused_entry_changes_nothing() {
        let mut g = guard();
        assert!(g.check(&symlink("a/b/l", "/etc")).is_err());
        assert_eq!(g.paths(), 0);
        assert!(matches!(g.check(&file("a")), Ok(Verdict::Accept(_))), "a was not made a directory");
    }

    #[test]
    fn owner_modes_and_setid() {
        let mut e = file("bin/tool");
        e.meta.mode = 0o6755;
        e.meta.uid = 0;
        e.meta.uname = Some(b"root".to_vec());
        let mut d = dir("shared");
        d.meta.mode = 0o2775;
        let mut private = file("key");
        private.meta.mode = 0o600;
        let mut link = hardlink("bin/alias", "bin/tool");
        link.meta.mode = 0o4755;

        let plain = accepted(&[e.clone(), d.clone(), private.clone(), link.clone()]);
        assert_eq!(plain.iter().map(|c| (c.meta.mode, c.setid_stripped)).collect::<Vec<_>>(), [(0o755, true), (0o2775, false), (0o600, false), (0o755, true)]);
        assert_eq!((plain[0].meta.uid, plain[0].meta.uname.as_deref()), (0, Some(&b"root"[..])));
        assert_eq!((plain[0].meta.size, plain[1].meta.size), (0, 0));

        let options = GuardOptions { owner: Some(Owner { uid: 1001, gid: 0 }), strip_setid: false, normalize_modes: true };
        let mut g = Guard::new(options, &Limits::default());
        let modes: Vec<(u32, u64, bool)> = [e.clone(), d, private, link]
            .iter()
            .map(|h| match g.check(h).unwrap() {
                Verdict::Accept(c) => {
                    assert_eq!((c.meta.gid, c.meta.uname.as_ref(), c.meta.gname.as_ref()), (0, None, None));
                    (c.meta.mode, c.meta.uid, c.setid_stripped)
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(modes, [(0o755, 1001, false), (0o755, 1001, false), (0o644, 1001, false), (0o755, 1001, false)]);

        let options = GuardOptions { strip_setid: false, ..GuardOptions::default() };
        let mut g = Guard::new(options, &Limits::default());
        assert!(matches!(g.check(&e).unwrap(), Verdict::Accept(CleanEntry { meta: EntryMeta { mode: 0o6755, .. }, setid_stripped: false, .. })));
    }

    #[test]
    fn sizes_are_kept_for_files_only() {
        let mut f = file("f");
        f.meta.size = 42;
        assert_eq!(accepted(&[f])[0].meta.size, 42);
    }

    #[test]
    fn the_number_of_paths_is_capped() {
        let limits = Limits { max_paths: 3, ..Limits::default() };
        let mut g = Guard::new(GuardOptions::default(), &limits);
        assert!(g.check(&file("a/b/c")).is_ok());
        assert!(g.check(&file("a/b/c")).is_ok(), "paths seen before cost nothing");
        match g.check(&file("a/d")) {
            Err(GuardError::Limit(l)) => {
                assert_eq!((l.limit, l.max, l.entry.as_deref()), (Limit::Paths, 3, Some("a/d")));
                assert!(l.to_string().contains("more than 3 distinct paths; raise s2i_tar::Limits::max_paths"), "{l}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn very_deep_paths_are_checked_in_one_walk() {
        // 20,000 components: an ancestor check that rebuilt each prefix would copy ~400 MB here.
        let deep = "d/".repeat(20_000);
        let mut g = guard();
        assert!(g.check(&file(&format!("{deep}f"))).is_ok());
        assert!(g.check(&symlink(&format!("{deep}l"), &"../".repeat(20_000))).is_ok());
        assert!(matches!(g.check(&file(&format!("{deep}l/x"))), Err(GuardError::Refused(_))));
        assert_eq!(g.paths(), 20_002);
    }
}
