//! Round trips with the real Docker daemon: `docker save` of the test kit's busybox base in, a
//! commit, an export that `docker load` accepts, and the loaded image run by Docker.

use std::fs;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::image::{CommitChanges, Diff, Store};

#[test]
fn docker_save_imports_and_our_export_loads_and_runs_in_docker() {
    require_root();
    let env = s2i_testkit::TestEnv::new("oci-image-roundtrip");
    let base_name = s2i_testkit::base_image();
    let tmp = env.tmpdir();
    let saved = tmp.join("base.tar");
    s2i_testkit::docker_output(&["save", "-o", saved.to_str().unwrap(), &base_name]);

    let store = Store::open(&tmp.join("store")).unwrap();
    let base = store.find_or_import(&format!("docker-archive:{}", saved.display())).unwrap().unwrap();
    let docker_id = s2i_testkit::docker_output(&["image", "inspect", "--format", "{{.Id}}", &base_name]);
    assert_eq!(base.id, docker_id, "the image id is Docker's");
    assert_eq!(base.names, [format!("docker.io/{base_name}")]);
    assert_eq!(store.find_or_import(&base_name).unwrap().unwrap().id, base.id);
    // A second get of the same archive finds the blobs in place.
    assert_eq!(store.find_or_import(&format!("docker-archive:{}", saved.display())).unwrap().unwrap().id, base.id);

    // The busybox rootfs unpacks with its owners and modes.
    let dirs = store.layer_dirs(&base).unwrap();
    let bottom = dirs.last().unwrap();
    assert!(bottom.join("bin/busybox").is_file());
    assert_eq!(mode_of(&bottom.join("tmp")) & 0o7777, 0o1777);

    let upper = tmp.join("upper");
    fs::create_dir_all(upper.join("opt/app-root/src")).unwrap();
    fs::write(upper.join("opt/app-root/src/hello.txt"), "hello from the oci store\n").unwrap();
    std::os::unix::fs::chown(upper.join("opt/app-root/src/hello.txt"), Some(1001), Some(0)).unwrap();
    let tag = env.tag("committed");
    let changes = CommitChanges {
        cmd: vec!["/bin/cat".into(), "/opt/app-root/src/hello.txt".into()],
        user: "1001".into(),
        labels: [("io.openshift.s2i.build.image".to_string(), base_name.clone())].into(),
        created: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        ..Default::default()
    };
    let img = store.commit(&base, Diff::OverlayUpper { upper: &upper, exclude: &[] }, &changes, Some(&tag)).unwrap();

    let out = tmp.join("out.tar");
    let mut file = fs::File::create(&out).unwrap();
    store.export(&img, s2i_engine::ArchiveFormat::DockerArchive, &mut file).unwrap();
    drop(file);
    let loaded = s2i_testkit::docker_output(&["load", "-i", out.to_str().unwrap()]);
    assert!(loaded.contains(&tag.replace(":latest", "")), "docker load said: {loaded}");
    let (code, stdout, stderr) = s2i_testkit::docker_run(&tag, &[]);
    assert_eq!((code, stdout.as_str()), (0, "hello from the oci store\n"), "{stderr}");
    let inspected = s2i_testkit::image_inspect(&tag);
    assert_eq!(inspected["Id"], img.id.as_str(), "Docker computes the same id");
    assert_eq!(inspected["Config"]["User"], "1001");
    assert_eq!(inspected["Created"], "2023-11-14T22:13:20Z");
    let (_, owner, _) = s2i_testkit::docker_run(&tag, &["stat", "-c", "%u:%g %a", "/opt/app-root/src/hello.txt"]);
    assert_eq!(owner.trim(), "1001:0 644");
}
