//! A source directory (local, or a clone), walked once and written as tar entries, with `.s2iignore`,
//! `--exclude` and the scripts moved out of `.s2i/bin` left out during the walk.

use std::collections::HashSet;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use regex::Regex;
use tracing::{trace, warn};

use crate::ignore::IgnoreRules;

/// The default `--exclude`: any path component named exactly `.git`.
pub const DEFAULT_EXCLUDE: &str = r"(^|/)\.git(/|$)";

/// What the walk of a source tree puts into the stream.
#[derive(Debug)]
pub struct SourceTree {
    /// The application root (the source, or its `--context-dir`), absolute.
    pub root: PathBuf,
    pub ignore: IgnoreRules,
    /// Matched against each entry's absolute path with forward slashes.
    pub exclude: Option<Regex>,
    pub keep_symlinks: bool,
    /// Paths relative to the root that are left out (scripts moved to `scripts/`).
    pub skip: HashSet<PathBuf>,
    /// Files 0666 and directories 0777 whatever their host modes (injections: any user may
    /// empty them after assemble).
    pub world_writable: bool,
}

/// Counts from one walk, for the log and the result.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WalkStats {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
    pub left_out: u64,
}

impl WalkStats {
    pub(crate) fn add(&mut self, s: WalkStats) {
        self.files += s.files;
        self.dirs += s.dirs;
        self.symlinks += s.symlinks;
        self.bytes += s.bytes;
        self.left_out += s.left_out;
    }
}

impl SourceTree {
    /// Append every entry below the root to `tar` under `prefix/`, in name order.
    pub fn append_to<W: Write>(&self, tar: &mut tar::Builder<W>, prefix: &Path) -> io::Result<WalkStats> {
        let mut stats = WalkStats::default();
        let root_meta = fs::metadata(&self.root)?;
        let mut ancestors = vec![(root_meta.dev(), root_meta.ino())];
        self.walk_dir(&self.root, Path::new(""), tar, prefix, &mut stats, &mut ancestors)?;
        Ok(stats)
    }

    fn walk_dir<W: Write>(
        &self,
        dir: &Path,
        rel: &Path,
        tar: &mut tar::Builder<W>,
        prefix: &Path,
        stats: &mut WalkStats,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> io::Result<()> {
        let mut entries = fs::read_dir(dir)
            .map_err(|e| annotate(e, dir))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| annotate(e, dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let abs = entry.path();
            let rel_child = rel.join(entry.file_name());
            if self.skip.contains(&rel_child) || self.ignore.is_ignored(&rel_child.to_string_lossy()) {
                stats.left_out += 1;
                continue;
            }
            if let Some(re) = &self.exclude {
                if re.is_match(&abs.to_string_lossy()) {
                    stats.left_out += 1;
                    continue;
                }
            }
            let meta = fs::symlink_metadata(&abs).map_err(|e| annotate(e, &abs))?;
            self.append_entry(&abs, &rel_child, meta, tar, prefix, stats, ancestors)?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn append_entry<W: Write>(
        &self,
        abs: &Path,
        rel: &Path,
        meta: Metadata,
        tar: &mut tar::Builder<W>,
        prefix: &Path,
        stats: &mut WalkStats,
        ancestors: &mut Vec<(u64, u64)>,
    ) -> io::Result<()> {
        let name = prefix.join(rel);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(|e| annotate(e, abs))?;
            // Broken links are kept as links; valid ones are followed unless --keep-symlinks.
            let followed = if self.keep_symlinks { None } else { fs::metadata(abs).ok() };
            let Some(target_meta) = followed else {
                let mut header = header_for(&meta, tar::EntryType::Symlink);
                tar.append_link(&mut header, &name, &target).map_err(|e| annotate(e, abs))?;
                stats.symlinks += 1;
                return Ok(());
            };
            if target_meta.is_dir() && ancestors.contains(&(target_meta.dev(), target_meta.ino())) {
                warn!("Skipping {}: the link leads back into a directory that contains it", abs.display());
                stats.left_out += 1;
                return Ok(());
            }
            return self.append_entry(abs, rel, target_meta, tar, prefix, stats, ancestors);
        }
        if ft.is_dir() {
            let mut header = header_for(&meta, tar::EntryType::Directory);
            if self.world_writable {
                header.set_mode(0o777);
            }
            tar.append_data(&mut header, &name, io::empty()).map_err(|e| annotate(e, abs))?;
            stats.dirs += 1;
            ancestors.push((meta.dev(), meta.ino()));
            let walked = self.walk_dir(abs, rel, tar, prefix, stats, ancestors);
            ancestors.pop();
            return walked;
        }
        if ft.is_file() {
            let file = match File::open(abs) {
                Ok(f) => f,
                Err(e) => {
                    warn!("Skipping unreadable file {}: {e}", abs.display());
                    stats.left_out += 1;
                    return Ok(());
                }
            };
            let mut header = header_for(&meta, tar::EntryType::Regular);
            header.set_size(meta.len());
            if self.world_writable {
                header.set_mode(0o666);
            }
            let reader = ExactReader { inner: file.take(meta.len()), remaining: meta.len(), path: abs };
            tar.append_data(&mut header, &name, reader).map_err(|e| annotate(e, abs))?;
            trace!("F {}", name.display());
            stats.files += 1;
            stats.bytes += meta.len();
            return Ok(());
        }
        let kind = if ft.is_fifo() {
            "fifo"
        } else if ft.is_socket() {
            "socket"
        } else {
            "device"
        };
        warn!("Skipping special file {} ({kind})", abs.display());
        stats.left_out += 1;
        Ok(())
    }
}

/// A tar header carrying the host's mode, owner and mtime, as the reference does.
pub(crate) fn header_for(meta: &Metadata, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(meta.mode() & 0o7777);
    h.set_uid(meta.uid() as u64);
    h.set_gid(meta.gid() as u64);
    h.set_mtime(meta.mtime().max(0) as u64);
    h.set_size(0);
    h
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Yields exactly the size the header announced, or fails: a file that shrinks while it is read
/// would otherwise corrupt the archive.
struct ExactReader<'a> {
    inner: io::Take<File>,
    remaining: u64,
    path: &'a Path,
}

impl Read for ExactReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && self.remaining > 0 && !buf.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{} shrank while it was being read", self.path.display()),
            ));
        }
        self.remaining -= n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    fn tree(root: &Path) -> SourceTree {
        SourceTree {
            root: root.to_path_buf(),
            ignore: IgnoreRules::default(),
            exclude: Some(Regex::new(DEFAULT_EXCLUDE).unwrap()),
            keep_symlinks: false,
            skip: HashSet::new(),
            world_writable: false,
        }
    }

    fn listing(t: &SourceTree) -> Vec<(String, tar::EntryType, String)> {
        let mut b = tar::Builder::new(Vec::new());
        t.append_to(&mut b, Path::new("src")).unwrap();
        let bytes = b.into_inner().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        a.entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let path = e.path().unwrap().to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let mut content = String::new();
                if kind == tar::EntryType::Symlink {
                    content = e.link_name().unwrap().unwrap().to_string_lossy().into_owned();
                } else {
                    e.read_to_string(&mut content).unwrap();
                }
                (path, kind, content)
            })
            .collect()
    }

    #[test]
    fn walks_in_order_and_leaves_out_git_ignored_and_skipped() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::create_dir_all(r.join(".git/objects")).unwrap();
        fs::write(r.join(".git/HEAD"), "ref").unwrap();
        fs::create_dir_all(r.join(".s2i/bin")).unwrap();
        fs::write(r.join(".s2i/bin/assemble"), "#!/bin/sh").unwrap();
        fs::write(r.join("b.txt"), "bee").unwrap();
        fs::write(r.join("a.md"), "ay").unwrap();
        fs::create_dir(r.join("docs")).unwrap();
        fs::write(r.join("docs/x.md"), "x").unwrap();
        fs::write(r.join(".s2iignore"), "*.md\n").unwrap();
        let mut t = tree(r);
        t.ignore = IgnoreRules::load(r).unwrap();
        t.skip.insert(PathBuf::from(".s2i/bin/assemble"));
        let names: Vec<String> = listing(&t).into_iter().map(|(p, _, _)| p).collect();
        assert_eq!(names, vec!["src/.s2i", "src/.s2i/bin", "src/.s2iignore", "src/b.txt", "src/docs", "src/docs/x.md"]);
    }

    #[test]
    fn symlinks_are_followed_unless_kept_and_broken_ones_stay_links() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("real"), "content").unwrap();
        symlink("real", r.join("link")).unwrap();
        symlink("missing", r.join("broken")).unwrap();
        fs::create_dir(r.join("dir")).unwrap();
        symlink("..", r.join("dir/loop")).unwrap();
        let t = tree(r);
        let l = listing(&t);
        assert!(l.contains(&("src/link".into(), tar::EntryType::Regular, "content".into())), "{l:?}");
        assert!(l.contains(&("src/broken".into(), tar::EntryType::Symlink, "missing".into())));
        assert!(!l.iter().any(|(p, _, _)| p.starts_with("src/dir/loop")), "{l:?}");

        let mut keep = tree(r);
        keep.keep_symlinks = true;
        let l = listing(&keep);
        assert!(l.contains(&("src/link".into(), tar::EntryType::Symlink, "real".into())));
        assert!(l.contains(&("src/dir/loop".into(), tar::EntryType::Symlink, "..".into())));
    }

    #[test]
    fn modes_are_preserved_and_unreadable_files_skipped() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("exe"), "x").unwrap();
        fs::set_permissions(r.join("exe"), fs::Permissions::from_mode(0o750)).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        let stats = tree(r).append_to(&mut b, Path::new("src")).unwrap();
        assert_eq!(stats.files, 1);
        let bytes = b.into_inner().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mode().unwrap(), 0o750);
    }
}
