//! The floor of s2i's benchmarks: for each workload, only the Engine API calls that cannot be
//! avoided to get the same resulting image, done the simple way. It is the yardstick, not a
//! competitor: no options, no checks, no clean-up beyond removing its containers.
//!
//! ```text
//! s2i-bench-floor standard    SRC BUILDER TAG [SKIP_DIR]       # stream SRC, assemble, commit
//! s2i-bench-floor incremental SRC BUILDER TAG                  # previous image = TAG
//! s2i-bench-floor runtime     SRC BUILDER RUNTIME ARTIFACT TAG # builder → runtime, commit runtime
//! ```

use std::io::Write;
use std::path::{Path, PathBuf};

use bollard::container::LogOutput;
use bollard::models::{ContainerConfig, ContainerCreateBody, HostConfig, HostConfigLogConfig};
use bollard::query_parameters::{
    AttachContainerOptions, CommitContainerOptions, DownloadFromContainerOptions, RemoveContainerOptions,
    UploadToContainerOptions, WaitContainerOptions,
};
use bollard::Docker;
use futures_util::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio_util::io::SyncIoBridge;

type Error = Box<dyn std::error::Error + Send + Sync>;

const SCRIPTS: &str = "/usr/libexec/s2i";

#[tokio::main(worker_threads = 2)]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let docker = Docker::connect_with_unix_defaults()?;
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["standard", src, builder, tag, rest @ ..] => standard(&docker, src.as_ref(), builder, tag, rest.first().copied()).await,
        ["incremental", src, builder, tag] => incremental(&docker, src.as_ref(), builder, tag).await,
        ["runtime", src, builder, rt, artifact, tag] => to_runtime(&docker, src.as_ref(), builder, rt, artifact, tag).await,
        _ => Err("usage: see the top of bench/floor/src/main.rs".into()),
    }
}

fn body(image: &str, cmd: &str, stdin: bool) -> ContainerCreateBody {
    ContainerCreateBody {
        image: Some(image.to_string()),
        cmd: Some(vec!["/bin/sh".into(), "-c".into(), cmd.into()]),
        open_stdin: Some(stdin),
        stdin_once: Some(stdin),
        attach_stdin: Some(stdin),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        host_config: Some(HostConfig {
            log_config: Some(HostConfigLogConfig { typ: Some("none".into()), config: None }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn create(docker: &Docker, body: ContainerCreateBody) -> Result<String, Error> {
    Ok(docker.create_container(None::<bollard::query_parameters::CreateContainerOptions>, body).await?.id)
}

async fn wait(docker: &Docker, id: &str) -> Result<(), Error> {
    let opts = WaitContainerOptions { condition: "not-running".into() };
    match docker.wait_container(id, Some(opts)).next().await {
        Some(Ok(r)) if r.status_code == 0 => Ok(()),
        other => Err(format!("container {id} failed: {other:?}").into()),
    }
}

async fn commit(docker: &Docker, id: &str, tag: &str, cmd: &str) -> Result<(), Error> {
    let (repo, tag) = tag.rsplit_once(':').unwrap_or((tag, "latest"));
    let opts = CommitContainerOptions { container: Some(id.into()), repo: Some(repo.into()), tag: Some(tag.into()), ..Default::default() };
    let config = ContainerConfig { cmd: Some(vec![cmd.into()]), ..Default::default() };
    docker.commit_container(opts, config).await?;
    Ok(())
}

async fn remove(docker: &Docker, id: &str) {
    let _ = docker.remove_container(id, Some(RemoveContainerOptions { force: true, v: true, ..Default::default() })).await;
}

/// A tar of `src` under `src/`, written on a blocking thread into a pipe.
fn source_tar(src: &Path, skip: Option<&str>) -> impl AsyncRead + Send + Unpin + 'static {
    let (w, r) = tokio::io::duplex(256 * 1024);
    let (src, skip) = (src.to_path_buf(), skip.map(str::to_string));
    tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let out = std::io::BufWriter::with_capacity(256 * 1024, SyncIoBridge::new(w));
        let mut tar = tar::Builder::new(out);
        tar.follow_symlinks(false);
        let mut entries: Vec<PathBuf> = std::fs::read_dir(&src)?.map(|e| e.map(|e| e.path())).collect::<Result<_, _>>()?;
        entries.sort();
        tar.append_dir("src", &src)?;
        for path in entries {
            let name = path.file_name().unwrap().to_owned();
            if skip.as_deref().is_some_and(|s| name == s) {
                continue;
            }
            let target = Path::new("src").join(&name);
            if path.is_dir() {
                tar.append_dir_all(&target, &path)?;
            } else {
                tar.append_path_with_name(&path, &target)?;
            }
        }
        tar.into_inner()?.flush()
    });
    r
}

/// Attach, start, feed `input` (if any) and drain the output until the container stops.
async fn run(docker: &Docker, id: &str, input: Option<Box<dyn AsyncRead + Send + Unpin>>) -> Result<(), Error> {
    let opts = AttachContainerOptions { stdin: input.is_some(), stdout: true, stderr: true, stream: true, ..Default::default() };
    let mut attached = docker.attach_container(id, Some(opts)).await?;
    docker.start_container(id, None::<bollard::query_parameters::StartContainerOptions>).await?;
    let feed = async {
        if let Some(mut input) = input {
            tokio::io::copy(&mut input, &mut attached.input).await?;
            attached.input.shutdown().await?;
        }
        Ok::<_, std::io::Error>(())
    };
    let drain = async { while attached.output.next().await.is_some() {} };
    let (fed, ()) = tokio::join!(feed, drain);
    fed?;
    wait(docker, id).await
}

async fn standard(docker: &Docker, src: &Path, builder: &str, tag: &str, skip: Option<&str>) -> Result<(), Error> {
    let id = create(docker, body(builder, &format!("tar -C /tmp -xf - && {SCRIPTS}/assemble"), true)).await?;
    let result = async {
        run(docker, &id, Some(Box::new(source_tar(src, skip)))).await?;
        commit(docker, &id, tag, &format!("{SCRIPTS}/run")).await
    }
    .await;
    remove(docker, &id).await;
    result
}

async fn incremental(docker: &Docker, src: &Path, builder: &str, tag: &str) -> Result<(), Error> {
    let save = create(docker, body(tag, &format!("{SCRIPTS}/save-artifacts"), false)).await?;
    let build = create(docker, body(builder, &format!("mkdir -p /tmp/artifacts && tar -C /tmp/artifacts -xf - && {SCRIPTS}/assemble"), true)).await?;
    let result = async {
        // The (small) source goes in before start; the artifacts flow from one container to the other.
        let mut tar = Vec::new();
        source_tar(src, None).read_to_end(&mut tar).await?;
        let upload = UploadToContainerOptions { path: "/tmp".into(), ..Default::default() };
        docker.upload_to_container(&build, Some(upload), bollard::body_full(tar.into())).await?;
        let opts = AttachContainerOptions { stdout: true, stderr: true, stream: true, ..Default::default() };
        let attached = docker.attach_container(&save, Some(opts)).await?;
        docker.start_container(&save, None::<bollard::query_parameters::StartContainerOptions>).await?;
        let stdout = attached.output.try_filter_map(|o| {
            futures_util::future::ready(Ok(match o {
                LogOutput::StdOut { message } => Some(message),
                _ => None,
            }))
        });
        let reader = tokio_util::io::StreamReader::new(stdout.map_err(std::io::Error::other));
        run(docker, &build, Some(Box::new(reader))).await?;
        wait(docker, &save).await?;
        commit(docker, &build, tag, &format!("{SCRIPTS}/run")).await
    }
    .await;
    remove(docker, &save).await;
    remove(docker, &build).await;
    result
}

async fn to_runtime(docker: &Docker, src: &Path, builder: &str, runtime: &str, artifact: &str, tag: &str) -> Result<(), Error> {
    let build = create(docker, body(builder, &format!("tar -C /tmp -xf - && {SCRIPTS}/assemble"), true)).await?;
    let ship = create(docker, body(runtime, &format!("{SCRIPTS}/assemble-runtime"), false)).await?;
    let result = async {
        run(docker, &build, Some(Box::new(source_tar(src, None)))).await?;
        let download = DownloadFromContainerOptions { path: artifact.into() };
        let stream = docker.download_from_container(&build, Some(download)).map_err(std::io::Error::other);
        let upload = UploadToContainerOptions { path: "/opt/app-root/src".into(), ..Default::default() };
        docker.upload_to_container(&ship, Some(upload), bollard::body_try_stream(stream)).await?;
        run(docker, &ship, None).await?;
        commit(docker, &ship, tag, &format!("{SCRIPTS}/run")).await
    }
    .await;
    remove(docker, &build).await;
    remove(docker, &ship).await;
    result
}
