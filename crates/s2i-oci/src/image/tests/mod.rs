//! Tests of the image side against real parts: the Docker daemon (`docker save`/`docker load`),
//! skopeo and umoci as oracles of the OCI layout, kernel overlayfs, and hostile layers made by
//! hand. Unpacking needs root: the tests fail (not skip) when not run as root.

mod commit;
mod docker;
mod hostile;
mod store;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// One entry of a hand-made tar; paths are written as raw bytes, so `..` and absolute paths
/// get through (as they would in a hostile layer).
pub struct Raw {
    pub path: String,
    pub kind: tar::EntryType,
    pub link: Option<String>,
    pub data: Vec<u8>,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub dev: (u32, u32),
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Raw {
    fn new(path: &str, kind: tar::EntryType) -> Raw {
        let mode = if kind == tar::EntryType::Directory { 0o755 } else { 0o644 };
        Raw { path: path.into(), kind, link: None, data: Vec::new(), mode, uid: 0, gid: 0, mtime: 1_600_000_000, dev: (0, 0), xattrs: Vec::new() }
    }
    pub fn dir(path: &str) -> Raw {
        Raw::new(path, tar::EntryType::Directory)
    }
    pub fn file(path: &str, data: &str) -> Raw {
        Raw { data: data.as_bytes().to_vec(), ..Raw::new(path, tar::EntryType::Regular) }
    }
    pub fn symlink(path: &str, target: &str) -> Raw {
        Raw { link: Some(target.into()), mode: 0o777, ..Raw::new(path, tar::EntryType::Symlink) }
    }
    pub fn hardlink(path: &str, target: &str) -> Raw {
        Raw { link: Some(target.into()), ..Raw::new(path, tar::EntryType::Link) }
    }
    pub fn mode(mut self, mode: u32) -> Raw {
        self.mode = mode;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Raw {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn xattr(mut self, k: &str, v: &[u8]) -> Raw {
        self.xattrs.push((k.into(), v.to_vec()));
        self
    }
}

/// A tar of `entries`, headers written byte for byte (no path checks).
pub fn raw_tar(entries: &[Raw]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        if !e.xattrs.is_empty() {
            let pax: Vec<(String, &[u8])> = e.xattrs.iter().map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice())).collect();
            b.append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v))).unwrap();
        }
        let mut h = tar::Header::new_ustar();
        {
            let u = h.as_ustar_mut().unwrap();
            assert!(e.path.len() <= 100, "raw_tar: keep test paths short");
            u.name = [0; 100];
            u.name[..e.path.len()].copy_from_slice(e.path.as_bytes());
            if let Some(l) = &e.link {
                u.linkname = [0; 100];
                u.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(e.kind);
        h.set_mode(e.mode);
        h.set_uid(e.uid);
        h.set_gid(e.gid);
        h.set_mtime(e.mtime);
        h.set_size(e.data.len() as u64);
        if e.dev != (0, 0) {
            h.set_device_major(e.dev.0).unwrap();
            h.set_device_minor(e.dev.1).unwrap();
        }
        h.set_cksum();
        b.append(&h, e.data.as_slice()).unwrap();
    }
    b.into_inner().unwrap()
}

pub fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "these tests unpack layers with owners and device nodes: run them as root (sudo -E cargo test -p s2i-oci)"
    );
}

pub fn require_tool(name: &str, package: &str) {
    let found = Command::new("sh").args(["-c", &format!("command -v {name}")]).output().is_ok_and(|o| o.status.success());
    assert!(found, "{name} is missing: install it with `apt-get install {package}` (scripts/test.sh does)");
}

/// Runs a command; panics with its output when it fails. Returns stdout.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A directory on the host that hostile layers aim at: it must look the same afterwards.
pub struct Canary {
    pub dir: PathBuf,
    before: Vec<(PathBuf, u32, u64, Vec<u8>)>,
}

impl Canary {
    pub fn new(base: &Path) -> Canary {
        let dir = base.join("canary");
        fs::create_dir(&dir).unwrap();
        fs::write(dir.join("secret"), "original").unwrap();
        fs::create_dir(dir.join("sub")).unwrap();
        let mut c = Canary { dir, before: Vec::new() };
        c.before = c.snapshot();
        c
    }

    fn snapshot(&self) -> Vec<(PathBuf, u32, u64, Vec<u8>)> {
        let mut out = Vec::new();
        for p in [self.dir.clone(), self.dir.join("secret"), self.dir.join("sub")] {
            let m = fs::symlink_metadata(&p).unwrap();
            let data = if m.is_file() { fs::read(&p).unwrap() } else { Vec::new() };
            out.push((p, m.mode(), m.nlink(), data));
        }
        for d in [&self.dir, &self.dir.join("sub")] {
            let mut names: Vec<_> = fs::read_dir(d).unwrap().map(|e| e.unwrap().file_name()).collect();
            names.sort();
            out.push((d.clone(), names.len() as u32, 0, format!("{names:?}").into_bytes()));
        }
        out
    }

    pub fn assert_untouched(&self) {
        assert_eq!(self.snapshot(), self.before, "a layer changed the host directory {}", self.dir.display());
    }
}

pub fn mode_of(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode()
}
