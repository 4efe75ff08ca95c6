//! Layers that try to leave their root filesystem, and layers that exercise every entry kind.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::*;
use crate::cancel::Cancel;
use crate::image::{unpack, ImageError, Unpack, Whiteouts};

fn apply(root: &Path, tar: &[u8], whiteouts: Whiteouts) -> Result<(), ImageError> {
    let opts = Unpack { name: "test layer", whiteouts, under: "", lowers: &[], cancel: &Cancel::never() };
    unpack(root, tar, &opts).map(|_| ())
}

/// Each hostile layer, in each whiteout mode: refused, or applied inside the root only.
#[test]
fn hostile_layers_never_write_outside_the_root() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = Canary::new(tmp.path());
    let c = canary.dir.to_str().unwrap().trim_start_matches('/').to_string();
    let abs = format!("/{c}");
    let up = "../".repeat(12);

    // (name, entries, must it be refused?)
    let cases: Vec<(&str, Vec<Raw>, bool)> = vec![
        ("dotdot file", vec![Raw::file(&format!("{up}{c}/pwned"), "x")], true),
        ("dotdot in the middle", vec![Raw::dir("a/"), Raw::file(&format!("a/../../{c}/pwned"), "x")], true),
        ("absolute path", vec![Raw::file(&format!("{abs}/pwned"), "x")], false),
        ("var/run -> /run then var/run/x", vec![Raw::dir("var/"), Raw::symlink("var/run", &abs), Raw::file("var/run/pwned", "x")], false),
        ("symlink to /etc-like dir then etc2/secret", vec![Raw::symlink("etc2", &abs), Raw::file("etc2/secret", "overwritten")], false),
        ("relative climbing symlink", vec![Raw::symlink("up", &format!("{up}{c}")), Raw::file("up/secret", "overwritten")], false),
        ("nested symlinks", vec![Raw::symlink("a", "/"), Raw::symlink("b", &format!("a/{up}{c}")), Raw::file("b/sub/pwned", "x")], false),
        ("symlink replaced by a file", vec![Raw::symlink("f", &format!("{abs}/secret")), Raw::file("f", "overwritten")], false),
        ("symlink replaced by a dir", vec![Raw::symlink("d", &abs), Raw::dir("d/").mode(0o777)], false),
        ("hard link out by ..", vec![Raw::hardlink("h", &format!("{up}{c}/secret"))], true),
        ("hard link to an absolute host path", vec![Raw::hardlink("h", &format!("{abs}/secret"))], true),
        ("hard link through a symlink", vec![Raw::symlink("l", &abs), Raw::hardlink("h", "l/secret")], true),
        ("whiteout naming ..", vec![Raw::file(".wh..", "")], true),
        ("whiteout naming nothing", vec![Raw::file("a/.wh.", "")], true),
        ("whiteout through a symlink", vec![Raw::symlink("w", &abs), Raw::file("w/.wh.secret", "")], false),
        ("opaque dir through a symlink", vec![Raw::symlink("o", &abs), Raw::file("o/.wh..wh..opq", "")], false),
        ("device through a symlink", vec![Raw::symlink("dv", &abs), Raw { dev: (1, 3), ..Raw::new("dv/null", tar::EntryType::Char) }], false),
        ("chmod through a symlink to the root", vec![Raw::symlink("r", &abs), Raw::dir("r/").mode(0o777).owner(1234, 1234)], false),
    ];
    for mode in [Whiteouts::Overlay, Whiteouts::Apply, Whiteouts::Plain] {
        for (name, entries, refused) in &cases {
            let root = tmp.path().join("root");
            fs::create_dir(&root).unwrap();
            let result = apply(&root, &raw_tar(entries), mode);
            // Without whiteout semantics, `.wh.` names are ordinary file names.
            let refused = &(*refused && !(mode == Whiteouts::Plain && name.starts_with("whiteout naming")));
            match (refused, &result) {
                (true, Err(ImageError::Layer { .. })) | (false, Ok(())) => {}
                _ => panic!("{name} ({mode:?}): expected {}, got {result:?}", if *refused { "a refusal" } else { "success" }),
            }
            canary.assert_untouched();
            crate::image::unpack::remove_tree(&root).unwrap();
        }
    }
}

#[test]
fn entries_land_inside_the_root_where_the_container_would_see_them() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    let layer = raw_tar(&[
        Raw::dir("var/"),
        Raw::symlink("var/run", "/run"),
        Raw::file("var/run/x", "in run"),
        Raw::symlink("etc2", "/etc"),
        Raw::file("etc2/passwd", "root:x:0:0::/root:/bin/sh\n"),
        Raw::file("/abs", "absolute"),
    ]);
    apply(&root, &layer, Whiteouts::Apply).unwrap();
    assert_eq!(fs::read_to_string(root.join("run/x")).unwrap(), "in run");
    assert_eq!(fs::read_to_string(root.join("etc/passwd")).unwrap(), "root:x:0:0::/root:/bin/sh\n");
    assert_eq!(fs::read_to_string(root.join("abs")).unwrap(), "absolute");
    assert_eq!(fs::read_link(root.join("var/run")).unwrap(), Path::new("/run"));
}

#[test]
fn owners_modes_xattrs_devices_and_hard_links_are_kept() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir(&root).unwrap();
    // A file capability (cap_net_bind_service+ep), in the VFS v2 format.
    let cap: Vec<u8> = vec![0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let layer = raw_tar(&[
        Raw::dir("bin/").owner(0, 0),
        Raw::file("bin/su", "#!/bin/sh\n").mode(0o4755).owner(0, 0),
        Raw::file("bin/ping", "ping").mode(0o755).xattr("security.capability", &cap),
        Raw::file("bin/user-x", "u").xattr("user.note", b"kept").xattr("trusted.overlay.opaque", b"y"),
        Raw::hardlink("bin/su2", "bin/su"),
        Raw::dir("home/app/").owner(1001, 0).mode(0o2770),
        Raw::file("home/app/f", "f").owner(1001, 1001).mode(0o600),
        Raw { dev: (1, 3), mode: 0o666, ..Raw::new("dev/null", tar::EntryType::Char) },
        Raw { mode: 0o600, ..Raw::new("run/fifo", tar::EntryType::Fifo) },
    ]);
    apply(&root, &layer, Whiteouts::Apply).unwrap();
    let su = fs::metadata(root.join("bin/su")).unwrap();
    assert_eq!((su.mode() & 0o7777, su.uid(), su.nlink()), (0o4755, 0, 2), "setuid kept, hard link made");
    assert_eq!(su.ino(), fs::metadata(root.join("bin/su2")).unwrap().ino());
    assert_eq!(su.mtime(), 1_600_000_000);
    let got = rustix::fs::getxattr(root.join("bin/ping"), "security.capability", &mut [0u8; 64][..]).unwrap();
    assert_eq!(got, cap.len());
    let mut buf = [0u8; 16];
    let n = rustix::fs::getxattr(root.join("bin/user-x"), "user.note", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"kept");
    assert!(rustix::fs::getxattr(root.join("bin/user-x"), "trusted.overlay.opaque", &mut buf[..]).is_err(), "trusted xattrs from a layer are left out");
    let home = fs::metadata(root.join("home/app")).unwrap();
    assert_eq!((home.uid(), home.gid(), home.mode() & 0o7777), (1001, 0, 0o2770));
    let f = fs::metadata(root.join("home/app/f")).unwrap();
    assert_eq!((f.uid(), f.gid(), f.mode() & 0o7777), (1001, 1001, 0o600));
    let null = fs::metadata(root.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev()), null.mode() & 0o777), (1, 3, 0o666));
    assert!(fs::metadata(root.join("run/fifo")).unwrap().file_type().is_fifo());
    // Implied parents are made root-owned 0755.
    assert_eq!(mode_of(&root.join("run")) & 0o7777, 0o755);
}

#[test]
fn whiteouts_become_overlay_ones_or_deletions() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let lower = raw_tar(&[Raw::file("gone", "x"), Raw::dir("opq/"), Raw::file("opq/old", "x"), Raw::dir("keep/"), Raw::file("keep/k", "k")]);
    let upper = raw_tar(&[
        Raw::file(".wh.gone", ""),
        Raw::dir("opq/"),
        Raw::file("opq/new", "new"),
        Raw::file("opq/.wh..wh..opq", ""),
        Raw::file("keep/.wh.absent", ""),
    ]);

    // Applied in order into one directory.
    let flat = tmp.path().join("flat");
    fs::create_dir(&flat).unwrap();
    apply(&flat, &lower, Whiteouts::Apply).unwrap();
    apply(&flat, &upper, Whiteouts::Apply).unwrap();
    assert!(!flat.join("gone").exists());
    assert!(!flat.join("opq/old").exists());
    assert_eq!(fs::read_to_string(flat.join("opq/new")).unwrap(), "new", "an opaque dir keeps its own layer's entries");
    assert!(flat.join("keep/k").exists());
    assert!(!flat.join("keep/.wh.absent").exists());

    // Unpacked alone, in overlay's format; then mounted with the kernel's overlayfs.
    let l1 = tmp.path().join("l1");
    let l2 = tmp.path().join("l2");
    fs::create_dir(&l1).unwrap();
    fs::create_dir(&l2).unwrap();
    apply(&l1, &lower, Whiteouts::Overlay).unwrap();
    apply(&l2, &upper, Whiteouts::Overlay).unwrap();
    let wh = fs::symlink_metadata(l2.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "a 0:0 character device");
    let mut buf = [0u8; 4];
    let n = rustix::fs::getxattr(l2.join("opq"), "trusted.overlay.opaque", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"y");

    let merged = tmp.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let opts = format!("lowerdir={}:{}", l2.display(), l1.display());
    run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&merged));
    let seen = (merged.join("gone").exists(), merged.join("opq/old").exists(), merged.join("opq/new").exists(), merged.join("keep/k").exists());
    run(Command::new("umount").arg(&merged));
    assert_eq!(seen, (false, false, true, true), "(gone, opq/old, opq/new, keep/k) as overlay shows them");
}

#[test]
fn plain_mode_and_a_prefix_for_archives_copied_into_a_container() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = Canary::new(tmp.path());
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("tmp")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    std::os::unix::fs::symlink(&canary.dir, root.join("tmp/link")).unwrap();
    let tar = raw_tar(&[Raw::file(".wh.kept", "a file"), Raw::file("link/pwned", "x"), Raw::file("src/app.py", "print()")]);
    let opts = Unpack { name: "upload", whiteouts: Whiteouts::Plain, under: "/tmp", lowers: &[], cancel: &Cancel::never() };
    unpack(&root, &tar[..], &opts).unwrap();
    assert_eq!(fs::read_to_string(root.join("tmp/.wh.kept")).unwrap(), "a file");
    assert_eq!(fs::read_to_string(root.join("tmp/src/app.py")).unwrap(), "print()");
    assert!(root.join(canary.dir.strip_prefix("/").unwrap()).join("pwned").exists(), "resolved inside the root");
    canary.assert_untouched();
}

#[test]
fn unsupported_entries_are_refused_with_their_name() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let tar = raw_tar(&[Raw::new("sparse", tar::EntryType::GNUSparse)]);
    let err = apply(tmp.path(), &tar, Whiteouts::Apply).unwrap_err().to_string();
    assert!(err.contains("sparse"), "{err}");
}

/// A GNU long-name record that claims 1 GiB is refused by its size, before anything is read
/// into memory (the reader is s2i-tar's bounded one); a layer cut short before its end-of-archive
/// marker is an error too, not a smaller image.
#[test]
fn oversized_records_and_cut_layers_are_refused() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::GNULongName);
    h.set_path("././@LongLink").unwrap();
    h.set_size(1 << 30);
    h.set_cksum();
    let mut tar = h.as_bytes().to_vec();
    tar.extend_from_slice(&[b'a'; 4096]);
    let err = apply(tmp.path(), &tar, Whiteouts::Apply).unwrap_err().to_string();
    assert!(err.contains("over the limit"), "{err}");

    let mut cut = raw_tar(&[Raw::file("a", "x")]);
    cut.truncate(cut.len() - 1024);
    let err = apply(tmp.path(), &cut, Whiteouts::Apply).unwrap_err().to_string();
    assert!(err.contains("cut short"), "{err}");
}

/// Layer 1 holds a FIFO (or a device node), layer 2 a hard link to it. Unpacked as overlay lower
/// dirs, the link's target is in another directory and was copied: the FIFO's open blocked the
/// unpack for ever (and Ctrl-C could not end it), the device's opened the host's device (here
/// /dev/zero's numbers, 1:5, and /dev/null's, 1:3) as root. Now each is refused at once, naming
/// the entry, its target and what it is; never opened. Applied in order into one directory (the
/// copy driver), where a link would open nothing, it is refused alike: an image gives the same
/// root filesystem, or the same error, whichever driver puts it together. Within one layer, a
/// hard link to a FIFO is an ordinary link in both.
#[test]
fn hard_links_to_fifos_and_devices_of_an_earlier_layer_are_refused_never_opened() {
    require_root();
    let cases = [
        ("FIFO", Raw::new("a/fifo", tar::EntryType::Fifo), "a FIFO"),
        ("/dev/zero", Raw { dev: (1, 5), ..Raw::new("a/fifo", tar::EntryType::Char) }, "a character device"),
        ("/dev/null", Raw { dev: (1, 3), ..Raw::new("a/fifo", tar::EntryType::Char) }, "a character device"),
        ("a block device", Raw { dev: (7, 0), ..Raw::new("a/fifo", tar::EntryType::Block) }, "a block device"),
    ];
    for (what, special, named) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let (l1, l2, flat) = (tmp.path().join("l1"), tmp.path().join("l2"), tmp.path().join("flat"));
        for d in [&l1, &l2, &flat] {
            fs::create_dir(d).unwrap();
        }
        let lower = raw_tar(&[Raw::dir("a/"), special]);
        let upper = raw_tar(&[Raw::dir("b/"), Raw::hardlink("b/link", "a/fifo")]);
        let (l1c, l2c, flatc) = (l1.clone(), l2.clone(), flat.clone());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            apply(&l1c, &lower, Whiteouts::Overlay).unwrap();
            let lowers = [l1c.clone()];
            let opts = Unpack { name: "layer 2", whiteouts: Whiteouts::Overlay, under: "", lowers: &lowers, cancel: &Cancel::never() };
            let overlay = unpack(&l2c, &upper[..], &opts).map(|_| ());
            apply(&flatc, &lower, Whiteouts::Apply).unwrap();
            let flat = apply(&flatc, &upper, Whiteouts::Apply);
            let _ = tx.send((overlay, flat));
        });
        let (overlay, flat_result) =
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap_or_else(|_| panic!("{what}: the unpack hung on the hard link's target"));
        let expected = format!("entry \"b/link\": a hard link to {named} of an earlier layer (a/fifo)");
        for (mode, result) in [("overlay", overlay), ("flat", flat_result)] {
            let err = result.expect_err(what);
            assert!(matches!(err, ImageError::Layer { .. }) && err.to_string().contains(&expected), "{what}, {mode}: {err}");
        }
        assert!(!l2.join("b/link").exists() && !flat.join("b/link").exists(), "{what}: nothing is made at the link");
    }

    let tmp = tempfile::tempdir().unwrap();
    let one_layer = raw_tar(&[Raw::new("fifo", tar::EntryType::Fifo), Raw::hardlink("link", "fifo")]);
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        let root = tmp.path().join(format!("{mode:?}"));
        fs::create_dir(&root).unwrap();
        apply(&root, &one_layer, mode).unwrap();
        let (a, b) = (fs::symlink_metadata(root.join("fifo")).unwrap(), fs::symlink_metadata(root.join("link")).unwrap());
        assert_eq!((a.ino(), a.nlink(), b.file_type().is_fifo()), (b.ino(), 2, true), "{mode:?}: one FIFO, two names");
    }
}

/// Names over the kernel's limits (a 256-byte name; a path of 20 names of 255 bytes, over
/// PATH_MAX) are refused with the entry named, in each whiteout mode, and nothing is written
/// outside the root.
#[test]
fn names_over_the_kernels_limits_are_refused_with_the_entry() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = Canary::new(tmp.path());
    let long = "n".repeat(256);
    let deep = vec!["d".repeat(255); 20].join("/");
    for mode in [Whiteouts::Overlay, Whiteouts::Apply, Whiteouts::Plain] {
        for (what, path) in [("a 256-byte name", long.clone()), ("a path over PATH_MAX", deep.clone())] {
            let root = tmp.path().join("root");
            fs::create_dir(&root).unwrap();
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_size(1);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, &path, &b"x"[..]).unwrap();
            let err = apply(&root, &b.into_inner().unwrap(), mode).expect_err(what).to_string();
            assert!(err.contains(&path[..255]) && err.contains("name too long"), "{what} ({mode:?}): {err}");
            canary.assert_untouched();
            crate::image::unpack::remove_tree(&root).unwrap();
        }
    }
}

/// A regular file gets exactly its header's mode and owner whether or not the process's umask
/// and ids already give them (the unpacker skips `fchmod`/`fchown` only when they do), replaces
/// whatever was at its name, and lands where its parent path leads now, not where it led for the
/// file before it (the parent directory kept from one file to the next).
#[test]
fn files_get_their_own_mode_and_owner_and_follow_their_parent_path() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    fs::create_dir_all(root.join("d/x/deep")).unwrap();
    fs::write(root.join("d/x/deep/old"), "old").unwrap();
    let tar = raw_tar(&[
        Raw::dir("d"),
        Raw::file("d/a", "a").mode(0o644),
        Raw::file("d/b", "b").mode(0o666),
        Raw::file("d/c", "c").mode(0o4755),
        Raw::file("d/e", "e").mode(0o640).owner(1234, 5678),
        Raw::file("d/x", "a file where a tree was"),
        Raw::dir("g").mode(0o2775).owner(0, 4321),
        Raw::file("g/f", "f"),
        Raw::file("g/.wh.plain", "an ordinary file in plain mode"),
        Raw::dir("p"),
        Raw::file("p/one", "1"),
        Raw::dir("q"),
        Raw::symlink("p", "q"),
        Raw::file("p/two", "2"),
    ]);
    apply(&root, &tar, Whiteouts::Plain).unwrap();
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(meta("d/a").mode() & 0o7777, 0o644);
    assert_eq!(meta("d/b").mode() & 0o7777, 0o666, "a mode the umask would narrow");
    assert_eq!(meta("d/c").mode() & 0o7777, 0o4755, "set-user-ID kept");
    assert_eq!((meta("d/a").uid(), meta("d/a").gid()), (0, 0));
    assert_eq!((meta("d/e").uid(), meta("d/e").gid(), meta("d/e").mode() & 0o7777), (1234, 5678, 0o640));
    assert_eq!(fs::read_to_string(root.join("d/x")).unwrap(), "a file where a tree was");
    assert_eq!(meta("g/f").gid(), 0, "the header's group, not the set-group-ID directory's");
    assert_eq!(meta("g/.wh.plain").gid(), 0, "the header's group, not the set-group-ID directory's");
    assert!(meta("p").file_type().is_symlink());
    assert_eq!(fs::read_to_string(root.join("q/two")).unwrap(), "2", "through the symlink that replaced p");
    assert!(!root.join("q/one").exists());
    for f in ["d/a", "d/b", "d/e", "g/f", "q/two"] {
        assert_eq!(meta(f).mtime(), 1_600_000_000, "{f}: the header's mtime");
    }
}
