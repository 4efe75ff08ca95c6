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
//! Not covered: two guards writing under the same prefix (share one [`Guard`] instead), and a
//! root that already holds symlinks at the archive's paths before extraction.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

use crate::error::{lossy, GuardError, Limit, LimitExceeded, PathKind, Refusal, RefusalReason};
use crate::reader::{EntryHeader, EntryKind, Limits};

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
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub uname: Option<Vec<u8>>,
    pub gname: Option<Vec<u8>>,
    pub mtime: u64,
    /// Bytes of data to copy: the entry's size for files, 0 for everything else.
    pub size: u64,
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

        let mut mode = header.mode & 0o7777;
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
            None => (header.uid, header.gid, header.uname.clone(), header.gname.clone()),
        };
        Ok(Verdict::Accept(CleanEntry {
            path: to_path(comps.join(&b'/')),
            kind,
            mode,
            uid,
            gid,
            uname,
            gname,
            mtime: header.mtime,
            size: if wanted == Wanted::File { header.size } else { 0 },
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
