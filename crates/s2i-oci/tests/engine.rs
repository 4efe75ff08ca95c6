//! The daemonless engine driven through the `Engine` trait against real parts: runc, the kernel's
//! overlay, fuse-overlayfs, cgroups, and Docker (only to make the base archive and to load and run
//! what the engine committed). Needs root; fails loudly when runc or fuse-overlayfs is missing.

mod support;

use std::collections::HashMap;
use std::path::Path;

use s2i_engine::{ArchiveFormat, CommitSpec, ContainerSpec, Engine, EngineError};
use s2i_oci::run::rootfs::RootfsDriver;
use support::*;
use tokio::io::AsyncReadExt;

/// What the standard strategy does: the source as a tar on stdin, an assemble script that
/// prints to both streams, deletes a file of the image and exits with its own code, then a
/// commit with the run command, labels and env; Docker loads and runs the result.
async fn assemble_commit_and_load(driver: RootfsDriver) {
    let t = TestEngine::new(Some(driver)).await;
    let env = s2i_testkit::TestEnv::new(&format!("oci-assemble-{driver}"));
    let source = tar_files(&[("src/hello.txt", "hello from the source\n", 0o644), ("src/run", "#!/bin/sh\ncat /opt/app/hello.txt\n", 0o755)]);
    let script = "mkdir -p /tmp && tar -C /tmp -xf - && echo to-stdout && echo to-stderr >&2 \
        && mkdir -p /opt/app && cp /tmp/src/hello.txt /tmp/src/run /opt/app/ && rm /etc/group \
        && chown -R 1001:0 /opt/app && exit 0";
    let (code, out, err, id) = run(&t.engine, &sh(script), Some(source)).await;
    assert_eq!((code, out.as_str(), err.as_str()), (0, "to-stdout\n", "to-stderr\n"));

    let tag = env.tag("out");
    let labels: HashMap<String, String> = [("io.k8s.display-name".to_string(), "hello".to_string())].into();
    let (repo, version) = tag.rsplit_once(':').unwrap();
    let spec = CommitSpec {
        repo: Some(repo.to_string()),
        tag: Some(version.to_string()),
        cmd: vec!["/opt/app/run".into()],
        entrypoint: vec![],
        user: "1001".into(),
        env: vec!["GREETING=hi there".into()],
        labels,
    };
    let image_id = t.engine.commit_container(&id, &spec).await.unwrap();
    assert!(image_id.starts_with("sha256:") && image_id.len() == 71, "{image_id}");
    let info = t.engine.inspect_image(&tag).await.unwrap().expect("the committed image is in the store");
    assert_eq!(info.id, image_id);
    assert_eq!(info.cmd, Some(vec!["/opt/app/run".to_string()]));
    assert_eq!(info.user, "1001");
    assert!(info.env.contains(&"GREETING=hi there".to_string()), "{:?}", info.env);
    t.engine.remove_container(&id).await.unwrap();

    // Saved as Docker writes it, loaded by Docker, run by Docker.
    let archive = t.dir.path().join("out.tar");
    let file = tokio::fs::File::create(&archive).await.unwrap();
    t.engine.save_image(&tag, ArchiveFormat::DockerArchive, Box::new(file)).await.unwrap();
    let loaded = docker_load(&archive);
    assert_eq!(loaded, tag);
    let (code, stdout, stderr) = s2i_testkit::docker_run(&tag, &[]);
    assert_eq!((code, stdout.as_str()), (0, "hello from the source\n"), "{stderr}");
    let (code, stdout, _) = s2i_testkit::docker_run(&tag, &["sh", "-c", "id -u; ls /etc/group 2>&1; echo $GREETING; ls -d /proc /tmp/src"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("1001\n"), "{stdout}");
    assert!(stdout.contains("No such file"), "the deleted /etc/group came back: {stdout}");
    assert!(stdout.contains("hi there\n"), "{stdout}");
    let config = s2i_testkit::image_config(&tag);
    assert_eq!(config["Labels"]["io.k8s.display-name"], "hello");
    t.finish().await;
    env.assert_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_kernel_overlay() {
    assemble_commit_and_load(RootfsDriver::Overlay).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_fuse_overlayfs() {
    assemble_commit_and_load(RootfsDriver::FuseOverlayfs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn assemble_commit_and_load_on_a_copy() {
    assemble_commit_and_load(RootfsDriver::Copy).await;
}
