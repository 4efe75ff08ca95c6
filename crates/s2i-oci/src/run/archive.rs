//! Tar streams out of a container's root file system (the Engine's download_archive), made by
//! s2i itself from the mounted rootfs: the path is resolved inside the rootfs ([`RootDir`]),
//! and nothing below it is ever followed (symlinks are archived as symlinks). Streams into a
//! container go through the image side's [`crate::image::unpack`], the same code as layers.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use rustix::io::Errno;
use tracing::warn;

use super::error::{IoContext, Result, RunError};
use crate::fsroot::RootDir;

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
    use std::os::unix::fs::{symlink, PermissionsExt};

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
