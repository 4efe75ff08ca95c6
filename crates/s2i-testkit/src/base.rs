//! The base images every test builder starts from, made from the host's static busybox (no
//! registry is needed): [`base_image`], and [`no_tar_image`] for builders without tar.

use std::fs::{self, File};
use std::io::Write;
use std::process::Command;
use std::sync::OnceLock;

use crate::engine::*;
use crate::lock::daemon_lock;

/// Name of the base image made by [`base_image`].
pub const BASE_IMAGE: &str = "s2i-test/busybox:latest";

/// The import message (the image's `Comment`, which, unlike a label, images
/// built from it do not inherit). Bump the version when the base image's
/// layout changes, so that an image left in the daemon by an older testkit is
/// replaced rather than reused.
const BASE_COMMENT: &str = "s2i-testkit base image v1";
const BUSYBOX: &str = "/bin/busybox";
const PATH_ENV: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Ensures the image `s2i-test/busybox:latest` exists and returns its name.
///
/// It is imported once from a root filesystem holding the host's static
/// busybox (`/bin/busybox`, from Debian's `busybox-static`) with a symlink per
/// applet, `/tmp` (1777), `/etc/passwd` and `/etc/group` with `root` (0) and
/// `default` (1001, group 0, home `/home/default`), and `/home/default`,
/// `/opt/app-root/src` owned by 1001:0. `PATH` is set, `CMD` is `/bin/sh`,
/// there are no labels. An image of that name already in the daemon (from an
/// earlier run) is reused. Panics if busybox-static is not installed.
///
/// Beware: Debian's static busybox runs its applets directly from `sh` (and
/// `env`), without looking at `PATH`: deleting `/bin/tar` or putting a fake
/// `tar` first in `PATH` changes nothing for `sh -c 'tar …'`. Use
/// [`no_tar_image`] for an image without tar, and full paths for fakes.
pub fn base_image() -> String {
    static BASE: OnceLock<String> = OnceLock::new();
    BASE.get_or_init(|| ensure_imported(BASE_IMAGE, BASE_COMMENT, Variant::Plain))
        .clone()
}

/// Name of the image made by [`no_tar_image`].
pub const NO_TAR_IMAGE: &str = "s2i-test/busybox-no-tar:latest";
const NO_TAR_COMMENT: &str = "s2i-testkit base image without tar v1";

/// Ensures `s2i-test/busybox-no-tar:latest` exists and returns its name: the
/// base image's layout, but no `/bin/tar` and a busybox whose `tar` applet is
/// renamed (`tas`), so that `sh -c 'tar …'` fails with status 127 (`tar:
/// applet not found` / `sh: tar: not found`). For testing images without tar.
pub fn no_tar_image() -> String {
    static NO_TAR: OnceLock<String> = OnceLock::new();
    NO_TAR
        .get_or_init(|| ensure_imported(NO_TAR_IMAGE, NO_TAR_COMMENT, Variant::NoTar))
        .clone()
}

/// Name of the image made by [`alt_base_image`].
pub const ALT_BASE_IMAGE: &str = "s2i-test/busybox-alt:latest";
const ALT_COMMENT: &str = "s2i-testkit merged-usr base image v1";
const ALT_PATH_ENV: &str = "/usr/bin:/bin";

/// Ensures `s2i-test/busybox-alt:latest` exists and returns its name: another base that runs
/// the same busybox but is laid out otherwise, for tests of builders on different bases. It is
/// merged-usr: busybox and every applet are in `/usr/bin`, and `/bin`, `/sbin` and `/usr/sbin`
/// are symlinks to it; `/etc/os-release` names it (`ID=s2i-test-alt`); `PATH` is
/// `/usr/bin:/bin` and `BASE_FLAVOUR=merged-usr` is set. Users, `/tmp` and `/opt/app-root/src`
/// are as in [`base_image`].
pub fn alt_base_image() -> String {
    static ALT: OnceLock<String> = OnceLock::new();
    ALT.get_or_init(|| ensure_imported(ALT_BASE_IMAGE, ALT_COMMENT, Variant::MergedUsr)).clone()
}

/// What a base image is made of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Variant {
    Plain,
    NoTar,
    MergedUsr,
}

/// Imports `image` unless the Docker daemon already has it with this `comment`, and makes it
/// available to the engine under test.
fn ensure_imported(image: &str, comment: &str, variant: Variant) -> String {
    let _lock = daemon_lock();
    let current = factory_image_id(image).is_some()
        && factory_output(&["image", "inspect", "--format", "{{.Comment}}", image]) == comment;
    if !current {
        import_base(image, comment, variant);
    }
    provide(image);
    image.to_string()
}

fn import_base(image: &str, comment: &str, variant: Variant) {
    let without_tar = variant == Variant::NoTar;
    let mut busybox = fs::read(BUSYBOX).unwrap_or_else(|e| {
        panic!("{BUSYBOX} not readable ({e}): the test images need a static busybox; run `apt-get install busybox-static`")
    });
    if elf_is_dynamic(&busybox) {
        panic!("{BUSYBOX} is dynamically linked (Debian's `busybox` package?): run `apt-get install busybox-static`");
    }
    let list = Command::new(BUSYBOX)
        .arg("--list-full")
        .output()
        .unwrap_or_else(|e| {
            panic!("running {BUSYBOX} --list-full: {e}; run `apt-get install busybox-static`")
        });
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    // `bin/busybox` is the binary itself; `linuxrc` (at /) is only for initrds.
    let applets: Vec<&str> = list
        .lines()
        .map(str::trim)
        .filter(|l| l.contains('/') && *l != "bin/busybox")
        .filter(|l| !(without_tar && *l == "bin/tar"))
        .collect();
    assert!(
        applets.len() > 100,
        "{BUSYBOX} --list-full listed only {} applets",
        applets.len()
    );
    if without_tar {
        rename_tar_applet(&mut busybox);
    }

    let mut tarball = tempfile::NamedTempFile::new().expect("temp file for the base rootfs");
    let written = match variant {
        Variant::MergedUsr => write_merged_usr_tar(tarball.as_file_mut(), &busybox, &applets),
        _ => write_base_tar(tarball.as_file_mut(), &busybox, &applets),
    };
    written.unwrap_or_else(|e| panic!("writing the base rootfs tar: {e}"));
    let old_id = factory_image_id(image);
    let path = tarball
        .path()
        .to_str()
        .expect("utf-8 temp path")
        .to_string();
    let env_change = format!("ENV PATH={}", if variant == Variant::MergedUsr { ALT_PATH_ENV } else { PATH_ENV });
    let mut args = vec!["import", "--change", &env_change, "--change", "CMD [\"/bin/sh\"]"];
    if variant == Variant::MergedUsr {
        args.extend(["--change", "ENV BASE_FLAVOUR=merged-usr"]);
    }
    args.extend(["--message", comment, &path, image]);
    factory_output(&args);
    if let Some(old) = old_id {
        // An outdated image from an older testkit: drop it unless images use it.
        let _ = factory_cmd(&["rmi", &old]);
    }
}

/// Renames the `tar` applet to `tas` in busybox's sorted, NUL-separated table
/// of applet names (`…\0tail\0tar\0taskset\0…`; `tas` keeps it sorted for the
/// binary search), so that no `tar` command exists at all.
fn rename_tar_applet(busybox: &mut [u8]) {
    let needle = b"\0tail\0tar\0taskset\0";
    let at = busybox
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("busybox's applet table does not have tail, tar, taskset in a row");
    busybox[at + b"\0tail\0ta".len()] = b's';
}

/// Whether an ELF file has a PT_INTERP program header (needs a dynamic loader).
pub(crate) fn elf_is_dynamic(elf: &[u8]) -> bool {
    let u16_at = |o: usize| u16::from_le_bytes([elf[o], elf[o + 1]]) as usize;
    let u32_at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap());
    let u64_at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    // Only 64-bit little-endian ELF is inspected; anything else is assumed fine.
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let (phoff, phentsize, phnum) = (u64_at(0x20), u16_at(0x36), u16_at(0x38));
    (0..phnum).any(|i| {
        let o = phoff + i * phentsize;
        o + 4 <= elf.len() && u32_at(o) == 3 // PT_INTERP
    })
}

fn write_base_tar(out: &mut File, busybox: &[u8], applets: &[&str]) -> std::io::Result<()> {
    // Fixed mtime: the same busybox gives the same layer digest on every import.
    const MTIME: u64 = 1_600_000_000;
    let mut b = tar::Builder::new(out);
    let mut dirs_done: Vec<String> = Vec::new();
    let mut dir = |b: &mut tar::Builder<&mut File>, path: &str, mode: u32, uid: u64| {
        dirs_done.push(path.to_string());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        b.append_data(&mut h, format!("{path}/"), std::io::empty())
    };
    for d in [
        "bin",
        "sbin",
        "usr",
        "usr/bin",
        "usr/sbin",
        "usr/local",
        "usr/local/bin",
        "etc",
        "dev",
        "proc",
        "sys",
        "var",
        "home",
        "opt",
    ] {
        dir(&mut b, d, 0o755, 0)?;
    }
    dir(&mut b, "tmp", 0o1777, 0)?;
    dir(&mut b, "var/tmp", 0o1777, 0)?;
    dir(&mut b, "root", 0o700, 0)?;
    dir(&mut b, "home/default", 0o775, 1001)?;
    dir(&mut b, "opt/app-root", 0o775, 1001)?;
    dir(&mut b, "opt/app-root/src", 0o775, 1001)?;

    let file = |b: &mut tar::Builder<&mut File>, path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data)
    };
    file(&mut b, "bin/busybox", 0o755, busybox)?;
    file(
        &mut b,
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\n\
          default:x:1001:0::/home/default:/bin/sh\n\
          nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    )?;
    file(&mut b, "etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n")?;

    for applet in applets {
        if let Some((parent, _)) = applet.rsplit_once('/') {
            assert!(
                dirs_done.iter().any(|d| d == parent),
                "busybox applet {applet} is in an unexpected directory"
            );
        }
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(0);
        b.append_link(&mut h, applet, BUSYBOX)?;
    }
    b.into_inner()?.flush()
}


/// The merged-usr layout of [`alt_base_image`]: one `/usr/bin` holding busybox and its applets.
fn write_merged_usr_tar(out: &mut File, busybox: &[u8], applets: &[&str]) -> std::io::Result<()> {
    const MTIME: u64 = 1_600_000_000;
    const ALT_BUSYBOX: &str = "/usr/bin/busybox";
    let mut b = tar::Builder::new(out);
    let header = |kind: tar::EntryType, mode: u32, uid: u64, size: u64| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(uid);
        h.set_gid(0);
        h.set_mtime(MTIME);
        h.set_size(size);
        h
    };
    for (dir, mode, uid) in [
        ("usr", 0o755, 0),
        ("usr/bin", 0o755, 0),
        ("etc", 0o755, 0),
        ("dev", 0o755, 0),
        ("proc", 0o755, 0),
        ("sys", 0o755, 0),
        ("var", 0o755, 0),
        ("home", 0o755, 0),
        ("opt", 0o755, 0),
        ("tmp", 0o1777, 0),
        ("var/tmp", 0o1777, 0),
        ("root", 0o700, 0),
        ("home/default", 0o775, 1001),
        ("opt/app-root", 0o775, 1001),
        ("opt/app-root/src", 0o775, 1001),
    ] {
        b.append_data(&mut header(tar::EntryType::Directory, mode, uid, 0), format!("{dir}/"), std::io::empty())?;
    }
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/bin"), ("usr/sbin", "bin")] {
        b.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0, 0), link, target)?;
    }
    let files: [(&str, &[u8]); 4] = [
        ("usr/bin/busybox", busybox),
        ("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\ndefault:x:1001:0::/home/default:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"),
        ("etc/group", b"root:x:0:\nnogroup:x:65534:\n"),
        ("etc/os-release", b"NAME=\"s2i test alt\"\nID=s2i-test-alt\nVERSION_ID=2\n"),
    ];
    for (path, data) in files {
        let mode = if path.ends_with("busybox") { 0o755 } else { 0o644 };
        b.append_data(&mut header(tar::EntryType::Regular, mode, 0, data.len() as u64), path, data)?;
    }
    let mut names: Vec<&str> = applets.iter().filter_map(|a| a.rsplit('/').next()).filter(|n| *n != "busybox").collect();
    names.sort_unstable();
    names.dedup();
    for name in names {
        b.append_link(&mut header(tar::EntryType::Symlink, 0o777, 0, 0), format!("usr/bin/{name}"), ALT_BUSYBOX)?;
    }
    b.into_inner()?.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn base_image_runs_busybox() {
        let t = Instant::now();
        let image = base_image();
        eprintln!("base_image() took {:?}", t.elapsed());
        assert_eq!(image, BASE_IMAGE);
        assert!(image_exists(&image));
        let (code, out, err) =
            docker_run(&image, &["sh", "-c", "tar --help >/dev/null 2>&1; echo ok"]);
        assert_eq!((code, out.as_str()), (0, "ok\n"), "stderr: {err}");
        let (code, out, err) = docker_run(
            &image,
            &[
                "sh",
                "-c",
                "echo $PATH; id -u default; stat -c '%a %u' /tmp /opt/app-root/src; which env tar",
            ],
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(
            out,
            format!("{PATH_ENV}\n1001\n1777 0\n775 1001\n/usr/bin/env\n/bin/tar\n")
        );
        let inspect = image_inspect(&image);
        assert_eq!(inspect["Config"]["Cmd"][0], "/bin/sh");
        assert_eq!(inspect["Comment"], BASE_COMMENT);
        // No labels of its own: builder and output images inherit labels.
        assert!(
            inspect["Config"]["Labels"]
                .as_object()
                .filter(|m| !m.is_empty())
                .is_none(),
            "{inspect}"
        );
    }

    #[test]
    fn the_alt_base_runs_the_same_busybox_laid_out_otherwise() {
        let image = alt_base_image();
        assert_eq!(image, ALT_BASE_IMAGE);
        let (code, out, err) = docker_run(
            &image,
            &["sh", "-c", "echo $PATH $BASE_FLAVOUR; readlink /bin; . /etc/os-release; echo $ID; id -u default; stat -c '%a %u' /tmp /opt/app-root/src; ls /usr/bin/tar"],
        );
        assert_eq!(code, 0, "stderr: {err}");
        assert_eq!(out, "/usr/bin:/bin merged-usr\nusr/bin\ns2i-test-alt\n1001\n1777 0\n775 1001\n/usr/bin/tar\n");
    }

    #[test]
    fn no_tar_image_has_no_tar() {
        let image = no_tar_image();
        assert_eq!(image, NO_TAR_IMAGE);
        let (code, out, _) = docker_run(&image, &["sh", "-c", "tar -xf - </dev/null"]);
        assert_eq!(code, 127, "{out}");
        let (code, out, err) = docker_run(
            &image,
            &["sh", "-c", "test ! -e /bin/tar && wc -l </etc/passwd"],
        );
        assert_eq!((code, out.trim()), (0, "3"), "{err}");
    }
}
