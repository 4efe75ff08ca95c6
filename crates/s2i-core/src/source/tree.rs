//! A source directory (local, or a clone), walked once and written as tar entries, with `.s2iignore`,
//! `--exclude` and the scripts moved out of `.s2i/bin` left out during the walk.

use std::collections::HashSet;
use std::fs::{self, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use regex::Regex;
use tracing::{trace, warn};

use crate::ignore::IgnoreRules;
use crate::tar_stream::{TarPart, TarSink};

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

impl SourceTree {
    /// A stream part that writes every entry below the root under `prefix/`, in name order.
    pub fn part(self, prefix: impl Into<PathBuf>) -> Box<dyn TarPart> {
        Box::new(TreePart { tree: self, prefix: prefix.into() })
    }

    fn walk_dir(&self, dir: &Path, rel: &Path, out: &mut Walk<'_, '_, '_>) -> io::Result<()> {
        let mut entries = fs::read_dir(dir)
            .map_err(|e| annotate(e, dir))?
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| annotate(e, dir))?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let abs = entry.path();
            let rel_child = rel.join(entry.file_name());
            if self.skip.contains(&rel_child) || self.ignore.is_ignored(&rel_child.to_string_lossy()) {
                out.sink.left_out();
                continue;
            }
            if let Some(re) = &self.exclude {
                if re.is_match(&abs.to_string_lossy()) {
                    out.sink.left_out();
                    continue;
                }
            }
            let meta = fs::symlink_metadata(&abs).map_err(|e| annotate(e, &abs))?;
            self.append_entry(&abs, &rel_child, meta, out)?;
        }
        Ok(())
    }

    fn append_entry(&self, abs: &Path, rel: &Path, meta: Metadata, out: &mut Walk<'_, '_, '_>) -> io::Result<()> {
        let name = out.prefix.join(rel);
        let mtime = Some(meta.mtime().max(0) as u64);
        let ft = meta.file_type();
        if ft.is_symlink() {
            let target = fs::read_link(abs).map_err(|e| annotate(e, abs))?;
            // Broken links are kept as links; valid ones are followed unless --keep-symlinks.
            let followed = if self.keep_symlinks { None } else { fs::metadata(abs).ok() };
            let Some(target_meta) = followed else {
                return out.sink.symlink(&name, &target, mtime).map_err(|e| annotate(e, abs));
            };
            if target_meta.is_dir() && out.ancestors.contains(&(target_meta.dev(), target_meta.ino())) {
                warn!("Skipping {}: the link leads back into a directory that contains it", abs.display());
                out.sink.left_out();
                return Ok(());
            }
            return self.append_entry(abs, rel, target_meta, out);
        }
        if ft.is_dir() {
            let mode = if self.world_writable { 0o777 } else { meta.mode() };
            out.sink.dir(&name, mode, mtime).map_err(|e| annotate(e, abs))?;
            out.ancestors.push((meta.dev(), meta.ino()));
            let walked = self.walk_dir(abs, rel, out);
            out.ancestors.pop();
            return walked;
        }
        if ft.is_file() {
            // Opened only if it still is a regular file: a FIFO put there since the walk saw it
            // must not hold the build (and its Ctrl-C) for ever.
            let file = match crate::fsutil::open_regular(abs) {
                Ok(Some(f)) => f,
                Ok(None) => {
                    warn!("Skipping {}: it is no longer a regular file", abs.display());
                    out.sink.left_out();
                    return Ok(());
                }
                Err(e) => {
                    warn!("Skipping unreadable file {}: {e}", abs.display());
                    out.sink.left_out();
                    return Ok(());
                }
            };
            let mode = if self.world_writable { 0o666 } else { meta.mode() };
            out.sink.file(&name, mode, mtime, meta.len(), file.take(meta.len())).map_err(|e| annotate(e, abs))?;
            trace!("F {}", name.display());
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
        out.sink.left_out();
        Ok(())
    }
}

struct TreePart {
    tree: SourceTree,
    prefix: PathBuf,
}

/// The state of one walk: where entries go, and the directories above the current one (to stop
/// at links that lead back into them).
struct Walk<'s, 'w, 'p> {
    sink: &'s mut TarSink<'w>,
    prefix: &'p Path,
    ancestors: Vec<(u64, u64)>,
}

impl TarPart for TreePart {
    fn append(self: Box<Self>, sink: &mut TarSink<'_>) -> io::Result<()> {
        let root_meta = fs::metadata(&self.tree.root).map_err(|e| annotate(e, &self.tree.root))?;
        let mut walk = Walk { sink, prefix: &self.prefix, ancestors: vec![(root_meta.dev(), root_meta.ino())] };
        self.tree.walk_dir(&self.tree.root, Path::new(""), &mut walk)
    }
}

fn annotate(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar_stream::{self, WalkStats};
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

    /// The walk's output as the build container would get it.
    fn stream(t: SourceTree) -> (Vec<u8>, WalkStats) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            use tokio::io::AsyncReadExt;
            let mut s = tar_stream::spawn(vec![t.part("src")], Default::default());
            let mut bytes = Vec::new();
            s.reader.read_to_end(&mut bytes).await.unwrap();
            (bytes, s.done.written().await.unwrap())
        })
    }

    fn listing(t: SourceTree) -> Vec<(String, tar::EntryType, String)> {
        let (bytes, _) = stream(t);
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
        t.ignore = IgnoreRules::load(r, &Default::default()).unwrap();
        t.skip.insert(PathBuf::from(".s2i/bin/assemble"));
        let names: Vec<String> = listing(t).into_iter().map(|(p, _, _)| p).collect();
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
        let l = listing(tree(r));
        assert!(l.contains(&("src/link".into(), tar::EntryType::Regular, "content".into())), "{l:?}");
        assert!(l.contains(&("src/broken".into(), tar::EntryType::Symlink, "missing".into())));
        assert!(!l.iter().any(|(p, _, _)| p.starts_with("src/dir/loop")), "{l:?}");

        let mut keep = tree(r);
        keep.keep_symlinks = true;
        let l = listing(keep);
        assert!(l.contains(&("src/link".into(), tar::EntryType::Symlink, "real".into())));
        assert!(l.contains(&("src/dir/loop".into(), tar::EntryType::Symlink, "..".into())));
    }

    #[test]
    fn modes_are_preserved_and_unreadable_files_skipped() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        fs::write(r.join("exe"), "x").unwrap();
        fs::set_permissions(r.join("exe"), fs::Permissions::from_mode(0o750)).unwrap();
        let (bytes, stats) = stream(tree(r));
        assert_eq!(stats.files, 1);
        let mut a = tar::Archive::new(&bytes[..]);
        let e = a.entries().unwrap().next().unwrap().unwrap();
        assert_eq!(e.header().mode().unwrap(), 0o750);
    }
}
