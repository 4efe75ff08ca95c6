//! Tar streams into and out of a container's root file system (the Engine's upload_archive and
//! download_archive), done by s2i itself on the mounted rootfs. Every path, and every link
//! target, is resolved inside the rootfs ([`RootDir`]); a name with `..` is refused, as Docker
//! refuses it; the last component of a name is never followed.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tracing::warn;

use super::error::{IoContext, Result, RunError};
use super::fsroot::RootDir;

/// The entries of a tar stream. Behind this function so that the `s2i-tar` crate's bounded
/// reader can replace the `tar` crate's here in one place.
fn entries<R: Read>(archive: &mut tar::Archive<R>) -> std::io::Result<tar::Entries<'_, R>> {
    archive.entries()
}

/// A name from an archive as a relative path, or a refusal. `None`: the archive's root itself.
fn clean_name(raw: &[u8]) -> Result<Option<PathBuf>> {
    let shown = || String::from_utf8_lossy(raw).into_owned();
    if raw.contains(&0) {
        return Err(RunError::BadEntry { entry: shown(), reason: "the name holds a NUL byte".into() });
    }
    let mut out = PathBuf::new();
    for c in Path::new(OsStr::from_bytes(raw)).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(RunError::BadEntry { entry: shown(), reason: "the name climbs out with '..'".into() })
            }
        }
    }
    Ok((!out.as_os_str().is_empty()).then_some(out))
}

fn timestamps(mtime: u64) -> Timestamps {
    let t = Timespec { tv_sec: mtime.min(i64::MAX as u64) as i64, tv_nsec: 0 };
    Timestamps { last_access: t, last_modification: t }
}

/// Unpack the tar `input` into the directory `dest` of the root (`dest` must exist; a symlink
/// there is followed inside the root). Owners and modes come from the archive, as with Docker.
pub fn extract(root: &RootDir, dest: &Path, input: impl Read) -> Result<()> {
    let dest_fd = root
        .open_in(dest, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
        .map_err(|e| RunError::io(format!("opening {}", root.describe(dest)), e))?;
    let dest = root.path_in_root(&dest_fd)?;
    let mut archive = tar::Archive::new(input);
    let mut dir_times: Vec<(PathBuf, u64)> = Vec::new();
    let read_err = |e: std::io::Error| RunError::io("reading the archive", e);
    for entry in entries(&mut archive).map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        let raw = entry.path_bytes().into_owned();
        let Some(rel) = clean_name(&raw)? else { continue };
        let shown = rel.display().to_string();
        let full = dest.join(&rel);
        let header = entry.header();
        let (uid, gid) = (header.uid().map_err(read_err)?, header.gid().map_err(read_err)?);
        let mode = header.mode().map_err(read_err)? & 0o7777;
        let mtime = header.mtime().unwrap_or(0);
        let kind = header.entry_type();
        let owner = (
            Some(Uid::from_raw(u32::try_from(uid).unwrap_or(0))),
            Some(Gid::from_raw(u32::try_from(gid).unwrap_or(0))),
        );
        let parent_path = full.parent().unwrap_or(Path::new("/"));
        let parent = root.mkdir_all(parent_path, 0o755)?;
        let name = full.file_name().ok_or_else(|| RunError::BadEntry { entry: shown.clone(), reason: "no file name".into() })?;
        let fail = |what: &str, e: Errno| RunError::io(format!("{what} {}", root.describe(&full)), e.into());

        if kind.is_dir() {
            match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let st = rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail("checking", e))?;
                    if FileType::from_raw_mode(st.st_mode) != FileType::Directory {
                        replace_non_dir(&parent, name, &shown)?;
                        rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o700)).map_err(|e| fail("creating", e))?;
                    }
                }
                Err(e) => return Err(fail("creating", e)),
            }
            let fd = rustix::fs::openat(&parent, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| fail("opening", e))?;
            rustix::fs::fchown(&fd, owner.0, owner.1).map_err(|e| fail("setting the owner of", e))?;
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| fail("setting the mode of", e))?;
            dir_times.push((full.clone(), mtime));
            continue;
        }

        remove_existing(&parent, name, &shown)?;
        if kind.is_file() || kind == tar::EntryType::Continuous {
            let fd = rustix::fs::openat(
                &parent,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
            .map_err(|e| fail("creating", e))?;
            let mut file = std::fs::File::from(fd);
            std::io::copy(&mut entry, &mut file).map_err(|e| RunError::io(format!("writing {}", root.describe(&full)), e))?;
            // Owner first: chown clears setuid and setgid, which the mode then sets.
            rustix::fs::fchown(&file, owner.0, owner.1).map_err(|e| fail("setting the owner of", e))?;
            rustix::fs::fchmod(&file, Mode::from_raw_mode(mode)).map_err(|e| fail("setting the mode of", e))?;
            rustix::fs::futimens(&file, &timestamps(mtime)).map_err(|e| fail("setting the time of", e))?;
        } else if kind.is_symlink() {
            let target = entry.link_name_bytes().ok_or_else(|| RunError::BadEntry { entry: shown.clone(), reason: "a symlink without a target".into() })?;
            if target.contains(&0) || target.is_empty() {
                return Err(RunError::BadEntry { entry: shown, reason: "an empty symlink target or one with a NUL byte".into() });
            }
            // The target is stored as it is: it is only ever resolved inside the root.
            rustix::fs::symlinkat(OsStr::from_bytes(&target), &parent, name).map_err(|e| fail("creating", e))?;
            rustix::fs::chownat(&parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail("setting the owner of", e))?;
            rustix::fs::utimensat(&parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail("setting the time of", e))?;
        } else if kind.is_hard_link() {
            let target = entry.link_name_bytes().ok_or_else(|| RunError::BadEntry { entry: shown.clone(), reason: "a hard link without a target".into() })?;
            let Some(target_rel) = clean_name(&target)? else {
                return Err(RunError::BadEntry { entry: shown, reason: "a hard link to the archive's root".into() });
            };
            let target_full = dest.join(target_rel);
            let Some((tparent, tname)) = root.parent_of(&target_full)? else {
                return Err(RunError::BadEntry { entry: shown, reason: "a hard link to /".into() });
            };
            rustix::fs::linkat(&tparent, tname, &parent, name, AtFlags::empty())
                .map_err(|e| RunError::io(format!("linking {} to {}", root.describe(&full), root.describe(&target_full)), e.into()))?;
        } else if kind == tar::EntryType::Fifo {
            rustix::fs::mknodat(&parent, name, FileType::Fifo, Mode::from_raw_mode(mode), 0).map_err(|e| fail("creating", e))?;
            rustix::fs::chownat(&parent, name, owner.0, owner.1, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| fail("setting the owner of", e))?;
        } else if matches!(kind, tar::EntryType::Char | tar::EntryType::Block) {
            warn!("skipping the device node {shown} in an archive copied into the container");
        } else if matches!(kind, tar::EntryType::XGlobalHeader | tar::EntryType::XHeader | tar::EntryType::GNULongName | tar::EntryType::GNULongLink) {
        } else {
            warn!("skipping {shown}: an archive entry of unknown type {:?}", kind.as_byte() as char);
        }
    }
    // Directory times last: writing their entries changed them.
    for (dir, mtime) in dir_times.into_iter().rev() {
        if let Some((parent, name)) = root.parent_of(&dir)? {
            let _ = rustix::fs::utimensat(&parent, name, &timestamps(mtime), AtFlags::SYMLINK_NOFOLLOW);
        }
    }
    Ok(())
}

/// Make room for a non-directory: remove what is there unless it is a directory.
fn remove_existing(parent: &OwnedFd, name: &OsStr, shown: &str) -> Result<()> {
    match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Err(Errno::NOENT) => Ok(()),
        Err(e) => Err(RunError::io(format!("checking {shown}"), e.into())),
        Ok(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => Err(RunError::BadEntry {
            entry: shown.to_string(),
            reason: "would replace a directory with a non-directory".into(),
        }),
        Ok(_) => rustix::fs::unlinkat(parent, name, AtFlags::empty()).context(|| format!("replacing {shown}")),
    }
}

fn replace_non_dir(parent: &OwnedFd, name: &OsStr, shown: &str) -> Result<()> {
    rustix::fs::unlinkat(parent, name, AtFlags::empty()).context(|| format!("replacing {shown} with a directory"))
}

/// Whether `path` exists in the root (not following its last component).
pub fn exists(root: &RootDir, path: &Path) -> Result<bool> {
    let Some((parent, name)) = (match root.parent_of(path) {
        Ok(p) => p,
        Err(RunError::Io { source, .. }) if matches!(source.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR)) => {
            return Ok(false)
        }
        Err(e) => return Err(e),
    }) else {
        return Ok(true);
    };
    match rustix::fs::statat(&parent, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(_) => Ok(true),
        Err(Errno::NOENT) => Ok(false),
        Err(e) => Err(RunError::io(format!("checking {}", root.describe(path)), e.into())),
    }
}

/// Write a tar of `path` (its last component as the top entry, a symlink there kept as a
/// symlink, as `docker cp` does) to `out`. Entries are sorted by name; hard links are kept.
pub fn archive(root: &RootDir, path: &Path, out: impl Write) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut links = HashMap::new();
    match root.parent_of(path)? {
        Some((parent, name)) => {
            add(root, &mut builder, &parent, name, Path::new(name), &mut links)?;
        }
        None => {
            let fd = root.open_in(Path::new("/"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).context(|| "opening /".into())?;
            add_dir_children(root, &mut builder, &fd, Path::new("."), &mut links)?;
        }
    }
    builder.into_inner().and_then(|mut w| w.flush()).context(|| "writing the archive".into())?;
    Ok(())
}

fn header_for(st: &rustix::fs::Stat, kind: tar::EntryType) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

fn add<W: Write>(
    root: &RootDir,
    b: &mut tar::Builder<W>,
    dir: &impl AsFd,
    name: &OsStr,
    tar_path: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let shown = || tar_path.display().to_string();
    let io = |what: &str, e: Errno| RunError::io(format!("{what} {}", shown()), e.into());
    let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| io("checking", e))?;
    let werr = |e: std::io::Error| RunError::io("writing the archive", e);
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => {
            let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io("opening", e))?;
            let mut h = header_for(&st, tar::EntryType::Directory);
            b.append_data(&mut h, tar_path, std::io::empty()).map_err(werr)?;
            add_dir_children(root, b, &fd, tar_path, links)?;
        }
        FileType::RegularFile => {
            let key = (st.st_dev, st.st_ino);
            if st.st_nlink > 1 {
                if let Some(first) = links.get(&key) {
                    let mut h = header_for(&st, tar::EntryType::Link);
                    b.append_link(&mut h, tar_path, first).map_err(werr)?;
                    return Ok(());
                }
                links.insert(key, tar_path.to_path_buf());
            }
            let fd = rustix::fs::openat(dir, name, OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
                .map_err(|e| io("opening", e))?;
            let mut h = header_for(&st, tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            // Exactly the size announced: a file that grows meanwhile must not break the stream.
            let file = std::fs::File::from(fd).take(st.st_size as u64);
            b.append_data(&mut h, tar_path, file).map_err(werr)?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| io("reading", e))?;
            let mut h = header_for(&st, tar::EntryType::Symlink);
            b.append_link(&mut h, tar_path, OsStr::from_bytes(target.as_bytes())).map_err(werr)?;
        }
        t @ (FileType::Fifo | FileType::CharacterDevice | FileType::BlockDevice) => {
            let kind = match t {
                FileType::Fifo => tar::EntryType::Fifo,
                FileType::CharacterDevice => tar::EntryType::Char,
                _ => tar::EntryType::Block,
            };
            let mut h = header_for(&st, kind);
            h.set_device_major(rustix::fs::major(st.st_rdev)).map_err(werr)?;
            h.set_device_minor(rustix::fs::minor(st.st_rdev)).map_err(werr)?;
            b.append_data(&mut h, tar_path, std::io::empty()).map_err(werr)?;
        }
        _ => warn!("leaving the socket {} out of the archive", shown()),
    }
    let _ = root;
    Ok(())
}

fn add_dir_children<W: Write>(
    root: &RootDir,
    b: &mut tar::Builder<W>,
    fd: &OwnedFd,
    tar_path: &Path,
    links: &mut HashMap<(u64, u64), PathBuf>,
) -> Result<()> {
    let mut names: Vec<Vec<u8>> = Vec::new();
    let dir = rustix::fs::Dir::read_from(fd).context(|| format!("reading the directory {}", tar_path.display()))?;
    for e in dir {
        let e = e.context(|| format!("reading the directory {}", tar_path.display()))?;
        let n = e.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort();
    for n in names {
        let name = OsStr::from_bytes(&n);
        add(root, b, fd, name, &tar_path.join(name), links)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn tar_of(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_uid(1001);
            h.set_gid(0);
            h.set_mtime(1_600_000_000);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_size(0);
                b.append_link(&mut h, name, data).unwrap();
            } else {
                h.set_size(data.len() as u64);
                // Names with '..' need the raw header field, which append_data refuses.
                h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    #[test]
    fn hostile_names_and_links_stay_inside_the_root() {
        let host = tempfile::tempdir().unwrap();
        let rootdir = host.path().join("root");
        std::fs::create_dir_all(rootdir.join("tmp/dest")).unwrap();
        let root = RootDir::open(&rootdir).unwrap();
        let canary = host.path().join("canary");

        // `..` in a name is refused outright.
        let bad = tar_of(&[("../../canary", tar::EntryType::Regular, "x")]);
        let err = extract(&root, Path::new("/tmp/dest"), &bad[..]).unwrap_err();
        assert!(err.to_string().contains(".."), "{err}");
        assert!(!canary.exists());

        // A symlink to an absolute host path, then a file under it: written inside the root.
        let host_dir = host.path().display().to_string();
        let t = tar_of(&[
            ("esc", tar::EntryType::Symlink, host_dir.as_str()),
            ("esc/canary", tar::EntryType::Regular, "inside"),
            ("up", tar::EntryType::Symlink, "../../../../.."),
            ("up/canary2", tar::EntryType::Regular, "inside2"),
            ("hl", tar::EntryType::Link, "esc/canary"),
            ("f", tar::EntryType::Regular, "data"),
        ]);
        extract(&root, Path::new("/tmp/dest"), &t[..]).unwrap();
        assert!(!canary.exists() && !host.path().join("canary2").exists());
        let inside = rootdir.join(host.path().strip_prefix("/").unwrap()).join("canary");
        assert_eq!(std::fs::read_to_string(&inside).unwrap(), "inside");
        assert_eq!(std::fs::read_to_string(rootdir.join("canary2")).unwrap(), "inside2");
        assert_eq!(std::fs::read_to_string(rootdir.join("tmp/dest/hl")).unwrap(), "inside");
        let meta = std::fs::metadata(rootdir.join("tmp/dest/f")).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o7777, meta.mtime()), (1001, 0o644, 1_600_000_000));

        // A hard link whose target climbs out is refused.
        let t = tar_of(&[("hl2", tar::EntryType::Link, "../../../canary")]);
        assert!(extract(&root, Path::new("/tmp/dest"), &t[..]).is_err());
        // A file replacing a directory is refused.
        std::fs::create_dir(rootdir.join("tmp/dest/d")).unwrap();
        let t = tar_of(&[("d", tar::EntryType::Regular, "x")]);
        assert!(extract(&root, Path::new("/tmp/dest"), &t[..]).unwrap_err().to_string().contains("directory"));
    }

    #[test]
    fn archive_keeps_links_and_names_entries_after_the_last_component() {
        let host = tempfile::tempdir().unwrap();
        let rootdir = host.path().join("root");
        std::fs::create_dir_all(rootdir.join("tmp/art/sub")).unwrap();
        std::fs::write(rootdir.join("tmp/art/b"), "bee").unwrap();
        std::fs::set_permissions(rootdir.join("tmp/art/b"), std::fs::Permissions::from_mode(0o4755)).unwrap();
        std::fs::hard_link(rootdir.join("tmp/art/b"), rootdir.join("tmp/art/sub/b2")).unwrap();
        symlink("/etc/shadow", rootdir.join("tmp/art/a")).unwrap();
        symlink("/tmp", rootdir.join("lnk")).unwrap();
        let root = RootDir::open(&rootdir).unwrap();

        let mut out = Vec::new();
        archive(&root, Path::new("/lnk/art"), &mut out).unwrap();
        let mut ar = tar::Archive::new(&out[..]);
        let got: Vec<(String, tar::EntryType, String)> = ar
            .entries()
            .unwrap()
            .map(|e| {
                let mut e = e.unwrap();
                let link = e.link_name().unwrap().map(|l| l.display().to_string()).unwrap_or_default();
                let mut data = String::new();
                e.read_to_string(&mut data).unwrap();
                (e.path().unwrap().display().to_string(), e.header().entry_type(), link + &data)
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("art".into(), tar::EntryType::Directory, "".into()),
                ("art/a".into(), tar::EntryType::Symlink, "/etc/shadow".into()),
                ("art/b".into(), tar::EntryType::Regular, "bee".into()),
                ("art/sub".into(), tar::EntryType::Directory, "".into()),
                ("art/sub/b2".into(), tar::EntryType::Link, "art/b".into()),
            ]
        );
        assert!(exists(&root, Path::new("/lnk/art/a")).unwrap());
        assert!(!exists(&root, Path::new("/lnk/nope/x")).unwrap());
    }
}
