//! Copying entries of an untrusted tar stream (a previous image's save-artifacts output, files
//! copied out of a container) into our own stream under a prefix, refusing anything that could
//! land outside it: absolute paths, `..`, links whose target leaves the root, special files.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use tracing::{trace, warn};

/// Why an entry was refused.
#[derive(Debug, thiserror::Error)]
#[error("refusing entry {entry:?}: {reason}")]
pub struct UnsafeEntry {
    pub entry: String,
    pub reason: &'static str,
}

/// A relative, normalised path inside the root, or why not. `.` components are dropped.
pub fn safe_relative(path: &Path) -> Result<PathBuf, &'static str> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => return Err("it climbs out with '..'"),
            Component::RootDir | Component::Prefix(_) => return Err("its path is absolute"),
        }
    }
    Ok(out)
}

/// Where a symlink at `rel` pointing at `target` leads, if it stays inside the root.
fn link_stays_inside(rel: &Path, target: &Path) -> bool {
    if target.is_absolute() {
        return false;
    }
    let mut depth: i64 = rel.parent().map_or(0, |p| p.components().count() as i64);
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            Component::CurDir => {}
            _ => return false,
        }
    }
    true
}

/// What one copy did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyStats {
    pub entries: u64,
    pub bytes: u64,
}

/// Copy every entry of the tar read from `input` into `out` under `prefix`, checked as above.
/// Files are streamed entry by entry; nothing is unpacked. The input is drained to its end
/// (tar writers pad their output, and the writer must not block on a full pipe). With
/// `normalize_modes`, directories become 0755 and files 0755 or 0644 (by their owner's x bit).
pub fn copy_checked<R: Read, W: Write>(
    input: R,
    out: &mut tar::Builder<W>,
    prefix: &Path,
    normalize_modes: bool,
) -> io::Result<CopyStats> {
    let mut archive = tar::Archive::new(input);
    let mut stats = CopyStats::default();
    let refuse = |entry: &Path, reason| io::Error::other(UnsafeEntry { entry: entry.display().to_string(), reason });
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = entry.path()?.into_owned();
        let rel = safe_relative(&raw).map_err(|reason| refuse(&raw, reason))?;
        if rel.as_os_str().is_empty() {
            continue;
        }
        let kind = entry.header().entry_type();
        let mut header = entry.header().clone();
        if normalize_modes && kind != tar::EntryType::Symlink {
            let mode = header.mode()?;
            header.set_mode(if kind.is_dir() || mode & 0o100 != 0 { 0o755 } else { 0o644 });
        }
        let name = prefix.join(&rel);
        match kind {
            tar::EntryType::Symlink => {
                let target = entry.link_name()?.ok_or_else(|| refuse(&raw, "a link without a target"))?.into_owned();
                if !link_stays_inside(&rel, &target) {
                    return Err(refuse(&raw, "it is a link that leads out of the tree"));
                }
                out.append_link(&mut header, &name, &target)?;
            }
            tar::EntryType::Link => {
                let target = entry.link_name()?.ok_or_else(|| refuse(&raw, "a link without a target"))?.into_owned();
                let target = safe_relative(&target).map_err(|_| refuse(&raw, "it is a hard link to a file outside the tree"))?;
                out.append_link(&mut header, &name, prefix.join(target))?;
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::Directory => {
                stats.bytes += header.size()?;
                out.append_data(&mut header, &name, &mut entry)?;
            }
            other => {
                warn!("Skipping {} in the archive: unsupported entry type {other:?}", raw.display());
                continue;
            }
        }
        trace!("A {}", name.display());
        stats.entries += 1;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink())?;
    Ok(stats)
}

/// The refusal inside an I/O error, if that is what it is.
pub fn as_unsafe_entry(e: &io::Error) -> Option<&UnsafeEntry> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<UnsafeEntry>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn archive(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // set_path refuses '..', so hostile names are written into the raw header bytes.
        let name = &mut h.as_old_mut().name;
        name[..path.len()].copy_from_slice(path.as_bytes());
        h.set_cksum();
        b.append(&h, data).unwrap();
    }

    fn link(b: &mut tar::Builder<Vec<u8>>, path: &str, target: &str, kind: tar::EntryType) {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(0);
        h.set_link_name(target).unwrap_or_else(|_| {
            let l = &mut h.as_old_mut().linkname;
            l[..target.len()].copy_from_slice(target.as_bytes());
        });
        b.append_link(&mut h, path, target).unwrap_or_else(|_| {
            let name = &mut h.as_old_mut().name;
            name[..path.len()].copy_from_slice(path.as_bytes());
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        });
    }

    fn copy(input: &[u8]) -> io::Result<Vec<(String, String)>> {
        let mut out = tar::Builder::new(Vec::new());
        copy_checked(input, &mut out, Path::new("artifacts"), false)?;
        let bytes = out.into_inner().unwrap();
        let mut a = tar::Archive::new(&bytes[..]);
        Ok(a.entries()
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let target = e.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default();
                (e.path().unwrap().display().to_string(), target)
            })
            .collect())
    }

    #[test]
    fn good_entries_are_reprefixed_and_padding_is_drained() {
        let mut input = archive(|b| {
            file(b, "./deps/lib.txt", b"lib");
            link(b, "deps/current", "lib.txt", tar::EntryType::Symlink);
            link(b, "deps/up", "../deps/lib.txt", tar::EntryType::Symlink);
            link(b, "deps/hard", "deps/lib.txt", tar::EntryType::Link);
        });
        input.extend_from_slice(&[0u8; 4096]);
        let entries = copy(&input).unwrap();
        assert_eq!(
            entries,
            vec![
                ("artifacts/deps/lib.txt".to_string(), String::new()),
                ("artifacts/deps/current".into(), "lib.txt".into()),
                ("artifacts/deps/up".into(), "../deps/lib.txt".into()),
                ("artifacts/deps/hard".into(), "artifacts/deps/lib.txt".into()),
            ]
        );
    }

    #[test]
    fn hostile_entries_are_refused_by_name() {
        for (what, input) in [
            ("dotdot", archive(|b| file(b, "../evil", b"x"))),
            ("absolute", archive(|b| file(b, "/etc/evil", b"x"))),
            ("abs link", archive(|b| link(b, "etc", "/etc", tar::EntryType::Symlink))),
            ("climbing link", archive(|b| link(b, "a/b", "../../x", tar::EntryType::Symlink))),
            ("hard link out", archive(|b| link(b, "h", "../../etc/passwd", tar::EntryType::Link))),
        ] {
            let err = copy(&input).unwrap_err();
            let refused = as_unsafe_entry(&err).unwrap_or_else(|| panic!("{what}: {err}"));
            assert!(!refused.entry.is_empty(), "{what}");
        }
    }

    #[test]
    fn link_checks() {
        assert!(link_stays_inside(Path::new("a/b"), Path::new("../c")));
        assert!(!link_stays_inside(Path::new("a/b"), Path::new("../../c")));
        assert!(!link_stays_inside(Path::new("a"), Path::new("/etc")));
        assert!(link_stays_inside(Path::new("a"), Path::new("./b/../c")));
    }
}
