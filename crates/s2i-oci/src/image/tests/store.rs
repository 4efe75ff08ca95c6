//! The store: imports, names and ids, layer dirs, the sweep, several processes at once, and
//! skopeo/umoci reading what we wrote.

use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::*;
use crate::image::{Digest, ImageError, Store};

/// A `docker save` archive in the legacy form (`<id>/layer.tar`, `<config>.json`,
/// `manifest.json` last), of plain layers.
pub fn docker_archive(layers: &[Vec<u8>], tags: &[&str], cmd: &str) -> Vec<u8> {
    let config = serde_json::json!({"Env": ["PATH=/bin"], "Cmd": [cmd], "Labels": {"from": "test"}, "ExposedPorts": {"8080/tcp": {}}});
    s2i_testkit::docker_archive(layers, tags, config)
}

fn simple_layers() -> Vec<Vec<u8>> {
    vec![
        raw_tar(&[Raw::dir("etc/"), Raw::file("etc/passwd", "root:x:0:0::/root:/bin/sh\n"), Raw::file("a", "1")]),
        raw_tar(&[Raw::file(".wh.a", ""), Raw::file("b", "2")]),
    ]
}

#[test]
fn imported_images_are_found_by_name_id_and_prefix() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let archive = docker_archive(&simple_layers(), &["busybox:latest", "127.0.0.1:5000/team/app:v1"], "/bin/sh");
    let images = store.import_archive(&mut &archive[..]).unwrap();
    assert_eq!(images.len(), 1);
    let img = &images[0];
    assert_eq!(img.names, ["docker.io/library/busybox:latest", "127.0.0.1:5000/team/app:v1"]);
    assert_eq!(img.config.cmd.as_deref(), Some(&["/bin/sh".to_string()][..]));
    assert_eq!(img.info().labels["from"], "test");
    assert_eq!(img.config.exposed_ports, ["8080/tcp"]);
    for r in ["busybox", "busybox:latest", "docker.io/library/busybox", "127.0.0.1:5000/team/app:v1", &img.id, &img.id[7..19]] {
        assert_eq!(store.find_or_import(r).unwrap().map(|i| i.id), Some(img.id.clone()), "{r}");
    }
    let by_digest = format!("busybox@{}", img.manifest_digest);
    assert_eq!(store.find_or_import(&by_digest).unwrap().unwrap().id, img.id);
    assert!(store.find_or_import("busybox:other").unwrap().is_none());
    assert!(store.find_or_import("sha256:0000").unwrap().is_none());
    // The id is the config digest, as Docker's.
    let config = fs::read(store.root().join("blobs/sha256").join(&img.id[7..])).unwrap();
    assert_eq!(Digest::of(&config).to_string(), img.id);
}

#[test]
fn tags_move_and_removal_sweeps_what_nothing_uses() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let a = store.import_archive(&mut &docker_archive(&simple_layers(), &["app:1"], "a")[..]).unwrap().remove(0);
    let other = vec![raw_tar(&[Raw::file("only-b", "b")])];
    let b = store.import_archive(&mut &docker_archive(&other, &["app:2"], "b")[..]).unwrap().remove(0);
    store.tag(&b, "app:1").unwrap();
    assert_eq!(store.find_or_import("app:1").unwrap().unwrap().id, b.id, "the tag moved");
    assert_eq!(store.find_or_import(&a.id).unwrap().unwrap().names, Vec::<String>::new(), "a is untagged but kept");
    let blob_count = || fs::read_dir(store.root().join("blobs/sha256")).unwrap().count();
    let before = blob_count();
    store.remove(&a.id).unwrap();
    assert!(store.find_or_import(&a.id).unwrap().is_none());
    assert_eq!(blob_count(), before - 4, "a's manifest, config and two layers are gone");
    store.remove("app:1").unwrap();
    assert_eq!(store.find_or_import("app:2").unwrap().unwrap().id, b.id, "removing one name keeps the image");
    store.remove("app:2").unwrap();
    assert_eq!(blob_count(), 0);
    assert!(matches!(store.remove("app:2"), Err(ImageError::NotFound(_))));
    // While a lease is held, removal untags but leaves the blobs.
    let c = store.import_archive(&mut &docker_archive(&other, &["app:3"], "c")[..]).unwrap().remove(0);
    let lease = store.lease().unwrap();
    store.remove(&c.id).unwrap();
    assert_eq!(blob_count(), 3);
    drop(lease);
    store.sweep().unwrap();
    assert_eq!(blob_count(), 0);
}

#[test]
fn layer_dirs_are_unpacked_once_and_checked_against_the_diff_ids() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let img = store.import_archive(&mut &docker_archive(&simple_layers(), &["app:1"], "a")[..]).unwrap().remove(0);
    let dirs = store.layer_dirs(&img).unwrap();
    assert_eq!(dirs.len(), 2);
    assert!(dirs[0].join("b").is_file(), "top layer first");
    assert!(dirs[1].join("etc/passwd").is_file());
    assert_eq!(mode_of(&dirs[1]) & 0o7777, 0o755);
    let ino = fs::metadata(&dirs[0]).unwrap().ino();
    assert_eq!(store.layer_dirs(&img).unwrap(), dirs);
    assert_eq!(fs::metadata(&dirs[0]).unwrap().ino(), ino, "not unpacked again");

    let flat = tmp.path().join("flat");
    store.flatten_into(&img, &flat).unwrap();
    assert!(!flat.join("a").exists() && flat.join("b").is_file() && flat.join("etc/passwd").is_file());

    // A layer whose content is not what the config's diff id says is refused, and nothing is kept.
    let layers = simple_layers();
    let mut archive = docker_archive(&layers, &["bad:1"], "a");
    let wrong = raw_tar(&[Raw::file(".wh.a", ""), Raw::file("b", "3")]);
    assert_eq!(wrong.len(), layers[1].len());
    let pos = archive.windows(layers[1].len()).position(|w| w == layers[1].as_slice()).unwrap();
    archive[pos..pos + wrong.len()].copy_from_slice(&wrong);
    // (In the same store, its layer dirs are the good ones, by diff id, already checked.)
    assert_eq!(store.layer_dirs(&store.import_archive(&mut &archive[..]).unwrap()[0]).unwrap(), dirs);
    let fresh = Store::open(&tmp.path().join("fresh")).unwrap();
    let bad = fresh.import_archive(&mut &archive[..]).unwrap().remove(0);
    let err = fresh.layer_dirs(&bad).unwrap_err();
    assert!(matches!(err, ImageError::DigestMismatch { .. }), "{err}");
    assert_eq!(fs::read_dir(fresh.root().join("s2i/tmp")).unwrap().count(), 0, "the failed unpack left nothing");
    assert_eq!(fs::read_dir(fresh.root().join("s2i/layers")).unwrap().filter(|e| e.as_ref().unwrap().path().is_dir()).count(), 1, "only the good bottom layer");
}

#[test]
fn a_hostile_layer_in_an_image_stays_in_its_layer_dir() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let canary = Canary::new(tmp.path());
    let abs = canary.dir.to_str().unwrap().to_string();
    let store = Store::open(&tmp.path().join("store")).unwrap();
    let layers = vec![
        raw_tar(&[Raw::dir("var/"), Raw::symlink("var/run", &abs), Raw::symlink("etc2", &abs)]),
        raw_tar(&[Raw::file("var/run/pwned", "x"), Raw::file("etc2/secret", "overwritten"), Raw::file("etc2/.wh.sub", "")]),
    ];
    let img = store.import_archive(&mut &docker_archive(&layers, &["evil:1"], "a")[..]).unwrap().remove(0);
    // Each layer unpacks into its own dir (as Docker's overlay2 does): the symlinks of the layer
    // below are not there to follow.
    let dirs = store.layer_dirs(&img).unwrap();
    canary.assert_untouched();
    assert_eq!(fs::read_to_string(dirs[0].join("etc2/secret")).unwrap(), "overwritten");
    // Applied in order, they are followed, inside the root.
    let flat = tmp.path().join("flat");
    store.flatten_into(&img, &flat).unwrap();
    canary.assert_untouched();
    let inside = flat.join(abs.trim_start_matches('/'));
    assert_eq!(fs::read_to_string(inside.join("secret")).unwrap(), "overwritten");
    assert!(inside.join("pwned").is_file() && !inside.join("sub").exists());
}

#[test]
fn json_over_the_limit_is_refused_with_the_way_to_raise_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut store = Store::open(&tmp.path().join("store")).unwrap();
    store.set_limits(crate::image::Limits { max_json_bytes: 64, ..store.limits() });
    let err = store.import_archive(&mut &docker_archive(&simple_layers(), &["app:1"], "a")[..]).unwrap_err();
    assert!(matches!(err, ImageError::Limit { .. }), "{err}");
    assert!(err.to_string().contains("S2I_OCI_MAX_JSON_BYTES"), "{err}");
    let err = store.import_archive(&mut &b"not a tar at all, just text"[..]).unwrap_err();
    assert!(err.to_string().contains("image archive"), "{err}");
}

/// The child half of the concurrency test: imports the archive named by the environment.
#[test]
#[ignore = "run by concurrent_imports_from_two_processes"]
fn concurrent_import_child() {
    // Only as that test's child (not in a run with --include-ignored).
    let Some(store_dir) = std::env::var_os("S2I_OCI_TEST_STORE") else { return };
    let store = Store::open(Path::new(&store_dir)).unwrap();
    let archive = std::env::var("S2I_OCI_TEST_ARCHIVE").unwrap();
    for _ in 0..5 {
        let img = store.find_or_import(&format!("docker-archive:{archive}")).unwrap().unwrap();
        if rustix::process::geteuid().is_root() {
            store.layer_dirs(&img).unwrap();
        }
        store.tag(&img, &format!("child-{}:latest", std::process::id())).unwrap();
    }
}

#[test]
fn concurrent_imports_from_two_processes() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let archive = tmp.path().join("a.tar");
    let big: String = "x".repeat(4 << 20);
    let layers = vec![raw_tar(&[Raw::file("big", &big)]), raw_tar(&[Raw::file("small", "s")])];
    fs::write(&archive, docker_archive(&layers, &["shared:1"], "a")).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..3)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "image::tests::store::concurrent_import_child", "--nocapture"])
                .env("S2I_OCI_TEST_STORE", &store_dir)
                .env("S2I_OCI_TEST_ARCHIVE", &archive)
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success(), "a child import failed (see its output above)");
    }
    let store = Store::open(&store_dir).unwrap();
    let images = store.images().unwrap();
    assert_eq!(images.len(), 1, "one image, whoever imported it");
    assert_eq!(images[0].names.len(), 4, "shared:1 and one tag per child: {:?}", images[0].names);
    let dirs = store.layer_dirs(&images[0]).unwrap();
    assert_eq!(fs::metadata(dirs[1].join("big")).unwrap().len(), 4 << 20);
    assert_eq!(fs::read_dir(store.root().join("s2i/tmp")).unwrap().count(), 0);
}

#[test]
fn skopeo_and_umoci_read_the_store() {
    require_root();
    require_tool("skopeo", "skopeo");
    require_tool("umoci", "umoci");
    let tmp = tempfile::tempdir().unwrap();
    let store_dir = tmp.path().join("store");
    let store = Store::open(&store_dir).unwrap();
    let img = store.import_archive(&mut &docker_archive(&simple_layers(), &["app:1"], "a")[..]).unwrap().remove(0);
    let name = &img.names[0];
    let out = run(Command::new("skopeo").arg("inspect").arg(format!("oci:{}:{name}", store_dir.display())));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Digest"], img.manifest_digest.as_str());
    assert_eq!(v["Layers"].as_array().unwrap().len(), 2);
    let bundle = tmp.path().join("bundle");
    run(Command::new("umoci").args(["unpack", "--image"]).arg(format!("{}:{name}", store_dir.display())).arg(&bundle));
    assert!(bundle.join("rootfs/b").is_file() && !bundle.join("rootfs/a").exists());

    // And the other way: an OCI archive written by skopeo comes in with its name.
    let oci_archive = tmp.path().join("copy.tar");
    run(Command::new("skopeo").arg("copy").arg(format!("oci:{}:{name}", store_dir.display())).arg(format!("oci-archive:{}:other/app:2", oci_archive.display())));
    let fresh = Store::open(&tmp.path().join("fresh")).unwrap();
    let copy = fresh.find_or_import(&format!("oci-archive:{}", oci_archive.display())).unwrap().unwrap();
    assert_eq!(copy.id, img.id);
    assert_eq!(copy.names, ["docker.io/other/app:2"]);
    let mut flat = Vec::new();
    fs::File::open(&oci_archive).unwrap().read_to_end(&mut flat).unwrap();
    assert_eq!(fresh.import_archive(&mut &flat[..]).unwrap()[0].id, img.id);
}

/// The store root is private to the user s2i runs as: a new one (and the parents s2i makes for
/// it) is 0700 whatever the umask, an existing one open to others is tightened, and one that
/// belongs to another user is refused before anything is written into it.
#[test]
fn the_store_is_private_to_its_owner() {
    require_root();
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let root = tmp.path().join("data/s2i/oci");
    let store = Store::open(&root).unwrap();
    for dir in [tmp.path().join("data"), tmp.path().join("data/s2i"), root.clone()] {
        assert_eq!(mode_of(&dir) & 0o7777, 0o700, "{}", dir.display());
    }
    drop(store);

    // A store made before (or by hand) with the usual 0755 is closed again.
    fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).unwrap();
    Store::open(&root).unwrap();
    assert_eq!(mode_of(&root) & 0o7777, 0o700);

    // Another user's directory is not taken over, and nothing is written into it.
    let theirs = tmp.path().join("theirs");
    fs::create_dir(&theirs).unwrap();
    std::os::unix::fs::chown(&theirs, Some(65534), Some(65534)).unwrap();
    let err = Store::open(&theirs).err().expect("another user's store is refused");
    assert!(matches!(err, ImageError::StoreNotOwned { owner: 65534, user: 0, .. }), "{err}");
    assert!(err.to_string().contains("--oci-store"), "{err}");
    assert_eq!(fs::read_dir(&theirs).unwrap().count(), 0);
    assert_eq!(mode_of(&theirs) & 0o7777, 0o755);
}
