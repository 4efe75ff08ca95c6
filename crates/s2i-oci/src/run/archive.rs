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
use crate::cancel::Cancel;
use crate::fsroot::{self, Regular, RootDir};

/// [`exists`] in the directory `root` given by path (`/` for the in-place engine, whose
/// "container" is the process's own root).
pub fn exists_under(root: &Path, path: &Path) -> Result<bool> {
    exists(&RootDir::open(root)?, path)
}

/// [`archive`] of `path` in the directory `root` given by path.
pub fn archive_under(root: &Path, path: &Path, out: impl Write, cancel: &Cancel) -> Result<()> {
    archive(&RootDir::open(root)?, path, out, cancel)
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
/// FIFOs and devices are archived as such, never opened. `cancel` is checked before each entry
/// and each read.
pub fn archive(root: &RootDir, path: &Path, out: impl Write, cancel: &Cancel) -> Result<()> {
    let mut builder = tar::Builder::new(out);
    builder.follow_symlinks(false);
    let mut walk = Walk { links: HashMap::new(), cancel };
    match root.parent_of(path)? {
        Some((parent, name)) => {
            walk.add(&mut builder, &parent, name, Path::new(name))?;
        }
        None => {
            let fd = root.open_in(Path::new("/"), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).context(|| "opening /".into())?;
            walk.add_dir_children(&mut builder, &fd, Path::new("."))?;
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

/// One archive's walk: the first path of each multiply-linked inode, and the work's cancel.
struct Walk<'a> {
    links: HashMap<(u64, u64), PathBuf>,
    cancel: &'a Cancel,
}

impl Walk<'_> {
    fn add<W: Write>(&mut self, b: &mut tar::Builder<W>, dir: &impl AsFd, name: &OsStr, tar_path: &Path) -> Result<()> {
        self.cancel.check()?;
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
                self.add_dir_children(b, &fd, tar_path)?;
            }
            FileType::RegularFile => {
                let key = (st.st_dev, st.st_ino);
                if st.st_nlink > 1 {
                    if let Some(first) = self.links.get(&key) {
                        let mut h = header_for(&st, tar::EntryType::Link);
                        b.append_link(&mut h, tar_path, first).map_err(werr)?;
                        return Ok(());
                    }
                    self.links.insert(key, tar_path.to_path_buf());
                }
                // Opened only if it still is a regular file: a FIFO put there since the stat (the
                // container may still be running) would block the open, a device would open the host's.
                let file = match fsroot::open_regular_at(dir, name).map_err(|e| RunError::io(format!("opening {}", shown()), e))? {
                    Regular::File(file, _) => file,
                    Regular::Not(kind) => {
                        return Err(RunError::BadEntry { entry: shown(), reason: format!("it became {} while it was archived", fsroot::kind_name(kind)) })
                    }
                };
                let mut h = header_for(&st, tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // Exactly the size announced: a file that grows meanwhile must not break the stream.
                let file = self.cancel.reader(file).take(st.st_size as u64);
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
        Ok(())
    }

    fn add_dir_children<W: Write>(&mut self, b: &mut tar::Builder<W>, fd: &OwnedFd, tar_path: &Path) -> Result<()> {
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
            self.add(b, fd, name, &tar_path.join(name))?;
        }
        Ok(())
    }
}

