//! Commits: the layer made from an overlay upper dir (or a changed flattened rootfs), its
//! reproducibility, and the config it gets.

use std::collections::HashMap;
use std::fs;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use super::store::docker_archive;
use super::*;
use crate::image::{CommitChanges, Diff, Image, Store};

fn base(store: &Store) -> Image {
    let layers = vec![raw_tar(&[
        Raw::dir("etc/"),
        Raw::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"),
        Raw::file("a", "1"),
        Raw::file("b", "2"),
        Raw::dir("opq/"),
        Raw::file("opq/old", "old"),
    ])];
    store.import_archive(&mut &docker_archive(&layers, &["base:1"], "/bin/sh")[..]).unwrap().remove(0)
}

fn mknod(path: &Path, major: u32, minor: u32) {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::from_raw_mode(0o600), rustix::fs::makedev(major, minor)).unwrap();
}

/// An upper dir as overlay leaves it after a build.
fn make_upper(dir: &Path) {
    fs::create_dir_all(dir.join("etc")).unwrap();
    fs::write(dir.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1001:0::/app:/bin/sh\n").unwrap();
    fs::write(dir.join("etc/hosts"), "127.0.0.1 runc-made\n").unwrap();
    fs::create_dir_all(dir.join("proc/self")).unwrap();
    mknod(&dir.join("a"), 0, 0);
    fs::create_dir(dir.join("opq")).unwrap();
    rustix::fs::setxattr(dir.join("opq"), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    fs::write(dir.join("opq/new"), "new").unwrap();
    fs::create_dir_all(dir.join("app/bin")).unwrap();
    fs::write(dir.join("app/bin/tool"), "#!/bin/sh\n").unwrap();
    fs::set_permissions(dir.join("app/bin/tool"), std::os::unix::fs::PermissionsExt::from_mode(0o4755)).unwrap();
    let cap: Vec<u8> = vec![0, 0, 0, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    rustix::fs::setxattr(dir.join("app/bin/tool"), "security.capability", &cap, rustix::fs::XattrFlags::empty()).unwrap();
    fs::hard_link(dir.join("app/bin/tool"), dir.join("app/bin/tool2")).unwrap();
    std::os::unix::fs::symlink("/app/bin/tool", dir.join("app/link")).unwrap();
    std::os::unix::fs::chown(dir.join("app"), Some(1001), Some(0)).unwrap();
}

/// (path, type, mtime, uid, link, xattr names) of each entry of a gzip layer blob.
fn layer_entries(store: &Store, image: &Image) -> Vec<(String, tar::EntryType, u64, u64, String, Vec<String>)> {
    let digest = &image.manifest.layers.last().unwrap().digest;
    let blob = fs::read(store.blob_path(digest)).unwrap();
    assert_eq!(&blob[..2], &[0x1f, 0x8b]);
    assert_eq!(&blob[4..8], &[0, 0, 0, 0], "no timestamp in the gzip header");
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    let mut out = Vec::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        let xattrs = e
            .pax_extensions()
            .unwrap()
            .map(|p| p.map(|x| x.unwrap().key().unwrap().to_string()).collect())
            .unwrap_or_default();
        let h = e.header();
        assert_eq!(h.username_bytes().unwrap_or_default(), b"", "no user names");
        out.push((
            e.path().unwrap().to_string_lossy().into_owned(),
            h.entry_type(),
            h.mtime().unwrap(),
            h.uid().unwrap(),
            e.link_name().unwrap().map(|l| l.to_string_lossy().into_owned()).unwrap_or_default(),
            xattrs,
        ));
    }
    out
}

fn changes(epoch: u64) -> CommitChanges {
    CommitChanges {
        cmd: vec!["/usr/libexec/s2i/run".into()],
        user: "1001".into(),
        env: vec!["APP=1".into()],
        labels: HashMap::from([("io.openshift.s2i.build.image".to_string(), "base:1".to_string())]),
        created: Some(UNIX_EPOCH + Duration::from_secs(epoch)),
        comment: "built by s2i".into(),
        ..Default::default()
    }
}

#[test]
fn an_overlay_upper_dir_becomes_one_reproducible_layer() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let base = base(&store);
    let upper = tmp.path().join("upper");
    make_upper(&upper);
    let exclude: Vec<String> = crate::image::RUNTIME_MOUNT_POINTS.iter().map(|s| s.to_string()).collect();
    let diff = Diff::OverlayUpper { upper: &upper, exclude: &exclude };
    let epoch = 1_700_000_000;
    let img = store.commit(&base, diff, &changes(epoch), Some("out:1")).unwrap();

    let entries = layer_entries(&store, &img);
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(
        paths,
        [".wh.a", "app/", "app/bin/", "app/bin/tool", "app/bin/tool2", "app/link", "etc/", "etc/passwd", "opq/", "opq/.wh..wh..opq", "opq/new"],
        "sorted; whiteouts translated; /proc and /etc/hosts left out"
    );
    assert!(entries.iter().all(|e| e.2 <= epoch), "mtimes clamped to SOURCE_DATE_EPOCH");
    let get = |p: &str| entries.iter().find(|e| e.0 == p).unwrap();
    assert_eq!((get("app/bin/tool2").1, get("app/bin/tool2").4.as_str()), (tar::EntryType::Link, "app/bin/tool"));
    assert_eq!((get("app/link").1, get("app/link").4.as_str()), (tar::EntryType::Symlink, "/app/bin/tool"));
    assert_eq!(get("app/").3, 1001);
    assert_eq!(get("app/bin/tool").5, ["SCHILY.xattr.security.capability"]);

    // The config: Docker's commit merge, history, diff ids, the created time.
    let cfg = img.config_json();
    assert_eq!(cfg["created"], "2023-11-14T22:13:20Z");
    assert_eq!(cfg["config"]["Cmd"], serde_json::json!(["/usr/libexec/s2i/run"]));
    assert_eq!(cfg["config"]["Env"], serde_json::json!(["APP=1", "PATH=/bin"]));
    assert_eq!(cfg["config"]["User"], "1001");
    assert_eq!(cfg["config"]["ExposedPorts"], serde_json::json!({"8080/tcp": {}}));
    assert_eq!(cfg["config"]["Labels"]["from"], "test");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
    assert_eq!(cfg["history"].as_array().unwrap().last().unwrap()["comment"], "built by s2i");
    assert_eq!(img.names, ["docker.io/library/out:1"]);

    // Same input, same image; another SOURCE_DATE_EPOCH, another image.
    let again = store.commit(&base, diff, &changes(epoch), None).unwrap();
    assert_eq!((&again.id, &again.manifest_digest), (&img.id, &img.manifest_digest));
    let later = store.commit(&base, diff, &changes(epoch + 1), None).unwrap();
    assert_ne!(later.id, img.id);
    assert_ne!(later.manifest.layers.last().unwrap().digest, img.manifest.layers.last().unwrap().digest, "mtimes differ in the layer");

    // The new image unpacks: overlay whiteouts in its top layer dir, deletions when flattened.
    let dirs = store.layer_dirs(&img).unwrap();
    let wh = fs::symlink_metadata(dirs[0].join("a")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    let flat = tmp.path().join("flat");
    store.flatten_into(&img, &flat).unwrap();
    assert!(!flat.join("a").exists() && flat.join("b").exists() && !flat.join("opq/old").exists() && flat.join("opq/new").exists());
    assert!(!flat.join("proc").exists() && !flat.join("etc/hosts").exists());
    assert_eq!(fs::metadata(flat.join("app/bin/tool")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::metadata(flat.join("app/bin/tool")).unwrap().ino(), fs::metadata(flat.join("app/bin/tool2")).unwrap().ino());
}

#[test]
fn a_changed_flattened_rootfs_gives_only_its_changes() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let base = base(&store);
    let dir = tmp.path().join("rootfs");
    store.flatten_into(&base, &dir).unwrap();
    fs::write(dir.join("etc/passwd"), "changed\n").unwrap();
    fs::remove_file(dir.join("b")).unwrap();
    fs::remove_dir_all(dir.join("opq")).unwrap();
    fs::create_dir_all(dir.join("tmp/src")).unwrap();
    fs::write(dir.join("tmp/src/app.py"), "print()\n").unwrap();
    fs::create_dir_all(dir.join("proc")).unwrap();
    let exclude = vec!["/proc".to_string()];
    let img = store.commit(&base, Diff::Rootfs { dir: &dir, exclude: &exclude }, &changes(1_700_000_000), None).unwrap();
    let entries = layer_entries(&store, &img);
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).filter(|p| *p != "etc/").collect();
    assert_eq!(paths, [".wh.b", ".wh.opq", "etc/passwd", "tmp/", "tmp/src/", "tmp/src/app.py"]);
    let flat = tmp.path().join("flat");
    store.flatten_into(&img, &flat).unwrap();
    assert_eq!(fs::read_to_string(flat.join("etc/passwd")).unwrap(), "changed\n");
    assert!(flat.join("a").exists() && !flat.join("b").exists() && !flat.join("opq").exists());
}

/// fuse-overlayfs marks a directory made anew where one was opaque three ways at once: its xattr,
/// a `.wh..wh..opq` file and a `.wh..opq` whiteout device. The layer names the marker once (as
/// `docker load` demands) and neither of fuse-overlayfs's own entries; a `.wh..wh..opq` file
/// alone is enough to mark the directory.
#[test]
fn fuse_overlayfs_opaque_markers_become_one() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let base = base(&store);
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("opq")).unwrap();
    rustix::fs::setxattr(upper.join("opq"), "user.fuseoverlayfs.opaque", b"y", rustix::fs::XattrFlags::empty()).unwrap();
    fs::write(upper.join("opq/.wh..wh..opq"), "").unwrap();
    mknod(&upper.join("opq/.wh..opq"), 0, 0);
    fs::write(upper.join("opq/new"), "new").unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/.wh..wh..opq"), "").unwrap();
    fs::write(upper.join("etc/passwd"), "x\n").unwrap();
    let img = store.commit(&base, Diff::OverlayUpper { upper: &upper, exclude: &[] }, &changes(1_700_000_000), None).unwrap();
    let entries = layer_entries(&store, &img);
    let paths: Vec<&str> = entries.iter().map(|e| e.0.as_str()).collect();
    assert_eq!(paths, ["etc/", "etc/.wh..wh..opq", "etc/passwd", "opq/", "opq/.wh..wh..opq", "opq/new"]);
    assert!(entries.iter().all(|e| e.5.is_empty()), "fuse-overlayfs's xattr is not carried: {entries:?}");
    let flat = tmp.path().join("flat");
    store.flatten_into(&img, &flat).unwrap();
    assert!(!flat.join("opq/old").exists() && flat.join("opq/new").exists() && !flat.join("opq/.wh..opq").exists());
}

#[test]
fn an_upper_dir_with_overlay_redirects_is_refused() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let base = base(&store);
    let upper = tmp.path().join("upper");
    fs::create_dir_all(upper.join("moved")).unwrap();
    rustix::fs::setxattr(upper.join("moved"), "trusted.overlay.redirect", b"/opq", rustix::fs::XattrFlags::empty()).unwrap();
    let err = store.commit(&base, Diff::OverlayUpper { upper: &upper, exclude: &[] }, &changes(1), None).unwrap_err();
    assert!(err.to_string().contains("redirect_dir=off"), "{err}");
}

#[test]
fn exported_archives_are_the_same_bytes_each_time_and_import_back() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let base = base(&store);
    let mut one = Vec::new();
    let mut two = Vec::new();
    store.export(&base, s2i_engine::ArchiveFormat::DockerArchive, &mut one).unwrap();
    store.export(&base, s2i_engine::ArchiveFormat::DockerArchive, &mut two).unwrap();
    assert_eq!(one, two);
    let fresh = Store::open(&tmp.path().join("fresh")).unwrap();
    let back = fresh.import_archive(&mut &one[..]).unwrap().remove(0);
    assert_eq!((&back.id, &back.names), (&base.id, &base.names));
    let mut oci = Vec::new();
    store.export(&base, s2i_engine::ArchiveFormat::OciArchive, &mut oci).unwrap();
    let mut names = Vec::new();
    for e in tar::Archive::new(&oci[..]).entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    assert!(names.contains(&"index.json".to_string()) && !names.contains(&"manifest.json".to_string()));
    let mut r = &oci[..];
    let mut sink = Vec::new();
    r.read_to_end(&mut sink).unwrap();
    let fresh2 = Store::open(&tmp.path().join("fresh2")).unwrap();
    assert_eq!(fresh2.import_archive(&mut &sink[..]).unwrap()[0].id, base.id);
}
