//! A fake [`Engine`] that keeps images, containers and their files in memory, for fast tests of
//! the build flows without a daemon, and for fault injection: any call can be made to fail, hang
//! or cut its stream at any point.
//!
//! Images are file trees plus an [`ImageInfo`]; what a container runs is a *program*, a Rust
//! closure registered under a path in its image ([`FakeImage::program`]). The shell lines s2i
//! writes (`tar -C DIR -xf - && 'SCRIPT'`, then the injections' clean-up) are understood; any
//! other command runs the program its first word names.
//!
//! ```
//! use s2i_testkit::fake::{FakeEngine, FakeImage};
//! let engine = FakeEngine::new();
//! engine.add_image("builder:latest", FakeImage::new().program("/usr/libexec/s2i/assemble", |exec| {
//!     exec.say("assembling");
//!     0
//! }));
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{Cursor, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use s2i_engine::{
    ArchiveFormat, ArchiveOutput, ByteStream, CommitSpec, ContainerInput, ContainerSpec, Engine, EngineCapabilities, EngineError, EngineKind,
    EngineVersion, ImageBuildSpec, ImageInfo, OutputSink, OutputStream, Progress, ProgressSink, RegistryAuth,
    RunningOutput,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A file tree: absolute paths (`/tmp/src/app.txt`) to nodes.
pub type Tree = BTreeMap<String, Node>;

/// One node of a fake file tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32, uid: u64 },
    File { mode: u32, uid: u64, data: Vec<u8> },
    Symlink { target: String },
}

/// What a program gets when a fake container runs it, and what it hands back.
pub struct Exec<'a> {
    /// The container's files; a program may change them.
    pub fs: &'a mut Tree,
    /// The command's arguments (after the program's path).
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: String,
    /// Whatever was left on stdin.
    pub stdin: Vec<u8>,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Exec<'_> {
    /// A line on stdout.
    pub fn say(&mut self, line: &str) {
        self.stdout.extend_from_slice(line.as_bytes());
        self.stdout.push(b'\n');
    }

    /// A line on stderr.
    pub fn complain(&mut self, line: &str) {
        self.stderr.extend_from_slice(line.as_bytes());
        self.stderr.push(b'\n');
    }

    /// The value of an environment variable.
    pub fn var(&self, name: &str) -> Option<&str> {
        self.env.iter().find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
    }

    /// Copy everything below `from` to below `to` (`cp -R from/. to/`).
    pub fn copy_tree(&mut self, from: &str, to: &str) {
        let from = from.trim_end_matches('/');
        let to = to.trim_end_matches('/');
        let copied: Vec<(String, Node)> = self
            .fs
            .range(format!("{from}/")..)
            .take_while(|(p, _)| p.starts_with(&format!("{from}/")))
            .map(|(p, n)| (format!("{to}{}", &p[from.len()..]), n.clone()))
            .collect();
        ensure_dir(self.fs, to);
        for (p, n) in copied {
            self.fs.insert(p, n);
        }
    }

    /// Write a tar of everything below `dir` (paths relative to it) to stdout.
    pub fn tar_to_stdout(&mut self, dir: &str) {
        self.stdout = tar_of(self.fs, dir);
    }
}

/// A program of a fake image: returns the exit code.
pub type Program = Arc<dyn Fn(&mut Exec<'_>) -> i64 + Send + Sync>;

/// An image to add to a [`FakeEngine`].
#[derive(Clone, Default)]
pub struct FakeImage {
    pub info: ImageInfo,
    pub files: Tree,
    pub programs: HashMap<String, Program>,
}

impl FakeImage {
    /// An image with `/bin/sh`, `/bin/tar`, `/tmp` and an `/etc/passwd` knowing root and `default` (1001).
    pub fn new() -> FakeImage {
        let mut files = Tree::new();
        for dir in ["/", "/bin", "/etc", "/tmp", "/usr", "/usr/bin"] {
            files.insert(dir.into(), Node::Dir { mode: 0o755, uid: 0 });
        }
        let exe = |data: &[u8]| Node::File { mode: 0o755, uid: 0, data: data.to_vec() };
        files.insert("/bin/sh".into(), exe(b"sh"));
        files.insert("/bin/tar".into(), exe(b"tar"));
        files.insert(
            "/etc/passwd".into(),
            Node::File { mode: 0o644, uid: 0, data: b"root:x:0:0:root:/root:/bin/sh\ndefault:x:1001:0::/home/default:/bin/sh\n".to_vec() },
        );
        FakeImage { info: ImageInfo::default(), files, programs: HashMap::new() }
    }

    /// Register a program under `path` (an executable file appears there too).
    pub fn program(mut self, path: &str, f: impl Fn(&mut Exec<'_>) -> i64 + Send + Sync + 'static) -> FakeImage {
        if let Some((dir, _)) = path.rsplit_once('/') {
            ensure_dir(&mut self.files, if dir.is_empty() { "/" } else { dir });
        }
        self.files.insert(path.into(), Node::File { mode: 0o755, uid: 0, data: format!("program {path}").into_bytes() });
        self.programs.insert(path.into(), Arc::new(f));
        self
    }

    pub fn label(mut self, key: &str, value: &str) -> FakeImage {
        self.info.labels.insert(key.into(), value.into());
        self
    }

    pub fn user(mut self, user: &str) -> FakeImage {
        self.info.user = user.into();
        self
    }

    pub fn workdir(mut self, dir: &str) -> FakeImage {
        ensure_dir(&mut self.files, dir);
        self.info.working_dir = dir.into();
        self
    }

    pub fn env(mut self, kv: &str) -> FakeImage {
        self.info.env.push(kv.into());
        self
    }

    pub fn onbuild(mut self, line: &str) -> FakeImage {
        self.info.on_build.push(line.into());
        self
    }

    /// Remove a file (to make an image without tar or sh).
    pub fn without(mut self, path: &str) -> FakeImage {
        self.files.remove(path);
        self
    }
}

/// The engine calls a fault can hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Call {
    InspectImage,
    PullImage,
    PushImage,
    CreateContainer,
    RunContainer,
    RunWithStdout,
    PathExists,
    UploadArchive,
    DownloadArchive,
    CommitContainer,
    RemoveContainer,
    RemoveImage,
    BuildImage,
    SaveImage,
    LoadImage,
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The call fails with an engine error.
    Fail,
    /// The call never returns.
    Hang,
    /// The call's stream (what it reads or hands back) breaks half-way.
    Cut,
}

impl Call {
    /// The faults that make sense for this call.
    pub fn faults(self) -> &'static [Fault] {
        match self {
            Call::RunContainer | Call::RunWithStdout | Call::UploadArchive | Call::DownloadArchive | Call::BuildImage => {
                &[Fault::Fail, Fault::Hang, Fault::Cut]
            }
            _ => &[Fault::Fail, Fault::Hang],
        }
    }
}

struct Container {
    spec: ContainerSpec,
    image_id: String,
    fs: Tree,
    exit: Option<i64>,
}

#[derive(Default)]
struct State {
    /// Image id → image.
    images: HashMap<String, FakeImage>,
    /// Name (`repo:tag`) → image id.
    tags: HashMap<String, String>,
    containers: HashMap<String, Container>,
    names: HashSet<String>,
    /// Every call, in order.
    calls: Vec<Call>,
    /// A fault to inject at the `n`th call (0-based) of this kind.
    fault: Option<(Call, usize, Fault)>,
    /// Pulls and pushes: the call, the image name, the credentials handed over.
    transfers: Vec<(Call, String, Option<RegistryAuth>)>,
}

/// The in-memory engine.
#[derive(Default)]
pub struct FakeEngine {
    state: Mutex<State>,
    counter: AtomicU64,
    hung: Arc<tokio::sync::Notify>,
    /// The in-place engine's limits ([`FakeEngine::in_place`]): the image the process runs in and
    /// the uid and gid every script runs as.
    in_place: Option<(String, u32, u32)>,
}

fn api_error(op: &str, message: impl Into<String>, status: Option<u16>) -> EngineError {
    EngineError::Api { op: op.into(), message: message.into(), status }
}

impl FakeEngine {
    pub fn new() -> FakeEngine {
        FakeEngine::default()
    }

    /// An engine with the in-place engine's limits: containers only from `image` (the one the
    /// process runs in), every script run as `uid:gid` whatever its spec asks.
    pub fn in_place(image: &str, uid: u32, gid: u32) -> FakeEngine {
        FakeEngine { in_place: Some((short_name(image), uid, gid)), ..FakeEngine::default() }
    }

    /// Add an image under `name` (`repo:tag`); returns its id.
    pub fn add_image(&self, name: &str, mut image: FakeImage) -> String {
        let id = self.new_id("image");
        image.info.id = id.clone();
        let mut state = self.state.lock().unwrap();
        state.tags.insert(short_name(name), id.clone());
        state.images.insert(id.clone(), image);
        id
    }

    /// Make the `nth` call (0-based) of kind `call` go wrong.
    pub fn inject(&self, call: Call, nth: usize, fault: Fault) {
        self.state.lock().unwrap().fault = Some((call, nth, fault));
    }

    /// Notified when an injected [`Fault::Hang`] starts hanging (a test then interrupts the build).
    pub fn hung(&self) -> Arc<tokio::sync::Notify> {
        self.hung.clone()
    }

    /// Every call made so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every pull and push so far: the call, the image name and the credentials it was given.
    pub fn transfers(&self) -> Vec<(Call, String, Option<RegistryAuth>)> {
        self.state.lock().unwrap().transfers.clone()
    }

    /// Ids of containers that exist (created and not removed).
    pub fn containers(&self) -> Vec<String> {
        self.state.lock().unwrap().containers.keys().cloned().collect()
    }

    /// Image names (tags) that exist, as the fake keys them (`app:v1`, `reg:5000/x:latest`).
    pub fn tags(&self) -> Vec<String> {
        let mut t: Vec<String> = self.state.lock().unwrap().tags.keys().cloned().collect();
        t.sort();
        t
    }

    /// The id an image name points at.
    pub fn image_id(&self, name: &str) -> Option<String> {
        self.state.lock().unwrap().tags.get(&short_name(name)).cloned()
    }

    /// The image (by name or id): its config and files.
    pub fn image(&self, name: &str) -> Option<(ImageInfo, Tree)> {
        let state = self.state.lock().unwrap();
        let id = Self::resolve_image(&state, name)?;
        state.images.get(&id).map(|i| (i.info.clone(), i.files.clone()))
    }

    /// The content of a file of an image.
    pub fn file(&self, image: &str, path: &str) -> Option<Vec<u8>> {
        match self.image(image)?.1.get(path)? {
            Node::File { data, .. } => Some(data.clone()),
            _ => None,
        }
    }

    fn new_id(&self, what: &str) -> String {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        format!("sha256:{what}{n:0>58}")
    }

    /// Record a call; returns the fault to apply to it, if any.
    fn call(&self, call: Call) -> Option<Fault> {
        let mut state = self.state.lock().unwrap();
        let nth = state.calls.iter().filter(|c| **c == call).count();
        state.calls.push(call);
        match state.fault {
            Some((c, n, f)) if c == call && n == nth => Some(f),
            _ => None,
        }
    }

    async fn apply(&self, call: Call, op: &str) -> s2i_engine::Result<Option<Fault>> {
        match self.call(call) {
            Some(Fault::Fail) => Err(api_error(op, "injected failure", Some(500))),
            Some(Fault::Hang) => {
                self.hung.notify_one();
                std::future::pending().await
            }
            other => Ok(other),
        }
    }

    fn resolve_image(state: &State, name: &str) -> Option<String> {
        if state.images.contains_key(name) {
            return Some(name.to_string());
        }
        state.tags.get(&short_name(name)).cloned()
    }

    /// Run a container's command in memory.
    fn execute(&self, id: &str, stdin: Vec<u8>) -> s2i_engine::Result<(i64, Vec<u8>, Vec<u8>)> {
        let mut state = self.state.lock().unwrap();
        let container = state.containers.get(id).ok_or_else(|| api_error("starting the container", "no such container", Some(404)))?;
        let image = state.images.get(&container.image_id).cloned().expect("a container's image exists");
        let spec = container.spec.clone();
        let mut fs = container.fs.clone();
        let cmd = if spec.cmd.is_empty() { image.info.cmd.clone().unwrap_or_default() } else { spec.cmd.clone() };
        let mut stdout = Vec::new();
        let mut stderr = Vec::new();
        let env: Vec<String> = image.info.env.iter().chain(spec.env.iter()).cloned().collect();
        let workdir = spec.working_dir.clone().unwrap_or_else(|| image.info.working_dir.clone());
        let user = match &self.in_place {
            Some((_, uid, _)) => Some(uid.to_string()),
            None => spec.user.clone().or_else(|| Some(image.info.user.clone()).filter(|u| !u.is_empty())),
        };
        let mut stdin = Cursor::new(stdin);
        let code = if cmd.first().map(String::as_str) == Some("/bin/sh") && cmd.get(1).map(String::as_str) == Some("-c") {
            if !fs.contains_key("/bin/sh") {
                return Err(api_error("starting the container", "exec: \"/bin/sh\": stat /bin/sh: no such file or directory", Some(400)));
            }
            shell(&cmd[2..].join(" "), &mut fs, &image, &env, &user, &workdir, &mut stdin, &mut stdout, &mut stderr)
        } else {
            let Some(program) = cmd.first() else { return Err(api_error("starting the container", "no command", Some(400))) };
            if !fs.contains_key(program.as_str()) {
                return Err(api_error("starting the container", format!("exec: {program:?}: no such file or directory"), Some(400)));
            }
            let mut rest = Vec::new();
            Read::read_to_end(&mut stdin, &mut rest).ok();
            run_program(program, cmd[1..].to_vec(), &mut fs, &image, &env, &user, &workdir, rest, &mut stdout, &mut stderr)
        };
        let container = state.containers.get_mut(id).expect("checked above");
        container.fs = fs;
        container.exit = Some(code);
        Ok((code, stdout, stderr))
    }
}

/// A name as the fake keys it: Docker Hub's prefixes dropped, `:latest` added when untagged.
fn short_name(name: &str) -> String {
    let name = name.strip_prefix("docker.io/library/").or_else(|| name.strip_prefix("docker.io/")).unwrap_or(name);
    let last = name.rsplit('/').next().unwrap_or(name);
    if last.contains(':') || last.contains('@') {
        name.to_string()
    } else {
        format!("{name}:latest")
    }
}

/// The shell lines s2i writes: `A && B && …`, then `; result=$?; . SCRIPT; exit $result`.
#[allow(clippy::too_many_arguments)]
fn shell(
    line: &str,
    fs: &mut Tree,
    image: &FakeImage,
    env: &[String],
    user: &Option<String>,
    workdir: &str,
    stdin: &mut Cursor<Vec<u8>>,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> i64 {
    let (main, cleanup) = match line.split_once("; result=$?; . ") {
        Some((main, rest)) => (main, rest.split(';').next().map(str::trim)),
        None => (line, None),
    };
    let mut code = 0;
    for step in main.split("&&").map(str::trim) {
        let words = words(step);
        code = if words.first().map(String::as_str) == Some("tar") {
            if !fs.contains_key("/bin/tar") {
                stderr.extend_from_slice(b"sh: tar: not found\n");
                127
            } else {
                let dir = words.iter().position(|w| w == "-C").and_then(|i| words.get(i + 1)).cloned().unwrap_or_else(|| "/".into());
                match untar(fs, &dir, stdin, None) {
                    Ok(()) => 0,
                    Err(e) => {
                        stderr.extend_from_slice(format!("tar: {e}\n").as_bytes());
                        2
                    }
                }
            }
        } else {
            let mut rest = Vec::new();
            Read::read_to_end(stdin, &mut rest).ok();
            match words.first() {
                Some(program) => run_program(program, words[1..].to_vec(), fs, image, env, user, workdir, rest, stdout, stderr),
                None => 0,
            }
        };
        if code != 0 {
            break;
        }
    }
    if let Some(script) = cleanup {
        // `: > 'path'` lines empty the files they name.
        if let Some(Node::File { data, .. }) = fs.get(script) {
            let text = String::from_utf8_lossy(data).into_owned();
            for l in text.lines() {
                if let Some(path) = l.strip_prefix(": > ") {
                    let path = words(path).pop().unwrap_or_default();
                    if let Some(Node::File { data, .. }) = fs.get_mut(&path) {
                        data.clear();
                    }
                }
            }
        }
    }
    code
}

/// Words of a shell command: single quotes (with `'\''`) understood, nothing else.
fn words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for q in chars.by_ref() {
                    if q == '\'' {
                        break;
                    }
                    cur.push(q);
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

#[allow(clippy::too_many_arguments)]
fn run_program(
    path: &str,
    args: Vec<String>,
    fs: &mut Tree,
    image: &FakeImage,
    env: &[String],
    user: &Option<String>,
    workdir: &str,
    stdin: Vec<u8>,
    stdout: &mut Vec<u8>,
    stderr: &mut Vec<u8>,
) -> i64 {
    // A script shipped into the container (not one of the image's programs) runs the program of the
    // same name in the image, when there is one; its content is printed to show it was the shipped one.
    let program = image.programs.get(path).cloned().or_else(|| {
        let name = path.rsplit('/').next()?;
        let shipped = matches!(fs.get(path), Some(Node::File { .. }));
        shipped.then(|| image.programs.iter().find(|(p, _)| p.ends_with(&format!("/{name}"))).map(|(_, f)| f.clone())).flatten()
    });
    let Some(program) = program else {
        if !fs.contains_key(path) {
            stderr.extend_from_slice(format!("sh: {path}: not found\n").as_bytes());
            return 127;
        }
        // A shipped script without a program of its name: it "runs" by printing its content.
        if let Some(Node::File { data, .. }) = fs.get(path) {
            stdout.extend_from_slice(data);
        }
        return 0;
    };
    let mut exec = Exec { fs, args, env: env.to_vec(), user: user.clone(), working_dir: workdir.to_string(), stdin, stdout: Vec::new(), stderr: Vec::new() };
    let code = program(&mut exec);
    stdout.extend_from_slice(&exec.stdout);
    stderr.extend_from_slice(&exec.stderr);
    code
}

fn ensure_dir(fs: &mut Tree, dir: &str) {
    let mut path = String::new();
    fs.entry("/".into()).or_insert(Node::Dir { mode: 0o755, uid: 0 });
    for part in dir.split('/').filter(|p| !p.is_empty()) {
        path.push('/');
        path.push_str(part);
        fs.entry(path.clone()).or_insert(Node::Dir { mode: 0o755, uid: 0 });
    }
}

fn join(dir: &str, rel: &str) -> String {
    let rel = rel.trim_start_matches("./").trim_end_matches('/');
    if rel.is_empty() || rel == "." {
        return dir.trim_end_matches('/').to_string().max("/".into());
    }
    format!("{}/{rel}", dir.trim_end_matches('/'))
}

/// Unpack a tar into `dir` of `fs`; with `owner`, entries get that uid (an engine unpacking as root keeps the headers').
fn untar(fs: &mut Tree, dir: &str, input: &mut dyn Read, owner: Option<u64>) -> std::io::Result<()> {
    ensure_dir(fs, dir);
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let rel = entry.path()?.to_string_lossy().into_owned();
        let path = join(dir, &rel);
        if let Some((parent, _)) = path.rsplit_once('/') {
            ensure_dir(fs, if parent.is_empty() { "/" } else { parent });
        }
        let h = entry.header();
        let mode = h.mode()?;
        let uid = owner.unwrap_or(h.uid()?);
        let node = match h.entry_type() {
            tar::EntryType::Directory => Node::Dir { mode, uid },
            tar::EntryType::Symlink => Node::Symlink { target: entry.link_name()?.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default() },
            tar::EntryType::Link => {
                let target = join(dir, &entry.link_name()?.map(|l| l.to_string_lossy().into_owned()).unwrap_or_default());
                fs.get(&target).cloned().unwrap_or(Node::File { mode, uid, data: Vec::new() })
            }
            _ => {
                let mut data = Vec::new();
                entry.read_to_end(&mut data)?;
                Node::File { mode, uid, data }
            }
        };
        fs.insert(path, node);
    }
    // Drain padding, as tar does.
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink())?;
    Ok(())
}

/// A tar of `path` as the archive API gives it: the entry itself under its base name, and what is below.
fn tar_of_path(fs: &Tree, path: &str) -> Option<Vec<u8>> {
    let path = path.trim_end_matches('/');
    let path = if path.is_empty() { "/" } else { path };
    let node = fs.get(path)?;
    let base = path.rsplit('/').next().filter(|b| !b.is_empty()).unwrap_or(".");
    let mut b = tar::Builder::new(Vec::new());
    append(&mut b, base, node);
    if matches!(node, Node::Dir { .. }) {
        let prefix = if path == "/" { "/".to_string() } else { format!("{path}/") };
        for (p, n) in fs.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)) {
            append(&mut b, &format!("{base}/{}", &p[prefix.len()..]), n);
        }
    }
    Some(b.into_inner().expect("an in-memory tar"))
}

/// A tar of everything below `dir`, paths relative to it.
fn tar_of(fs: &Tree, dir: &str) -> Vec<u8> {
    let prefix = format!("{}/", dir.trim_end_matches('/'));
    let mut b = tar::Builder::new(Vec::new());
    for (p, n) in fs.range(prefix.clone()..).take_while(|(p, _)| p.starts_with(&prefix)) {
        append(&mut b, &p[prefix.len()..], n);
    }
    b.into_inner().expect("an in-memory tar")
}

fn append(b: &mut tar::Builder<Vec<u8>>, name: &str, node: &Node) {
    let mut h = tar::Header::new_gnu();
    match node {
        Node::Dir { mode, uid } => {
            h.set_entry_type(tar::EntryType::Directory);
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_size(0);
            b.append_data(&mut h, name, std::io::empty()).expect("an in-memory tar");
        }
        Node::File { mode, uid, data } => {
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mode(*mode);
            h.set_uid(*uid);
            h.set_size(data.len() as u64);
            b.append_data(&mut h, name, &data[..]).expect("an in-memory tar");
        }
        Node::Symlink { target } => {
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_mode(0o777);
            h.set_size(0);
            b.append_link(&mut h, name, target).expect("an in-memory tar");
        }
    }
}

/// Half of `data`, then an error: a stream cut on its way.
fn cut(data: Vec<u8>) -> ByteStream {
    let half = Bytes::from(data[..data.len() / 2].to_vec());
    let chunks: Vec<std::io::Result<Bytes>> = vec![Ok(half), Err(std::io::Error::other("injected: the stream broke"))];
    Box::pin(futures_util::stream::iter(chunks))
}

async fn read_input(mut input: ContainerInput, fault: Option<Fault>) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    if fault == Some(Fault::Cut) {
        let mut half = vec![0u8; 512];
        let n = input.read(&mut half).await?;
        data.extend_from_slice(&half[..n]);
        return Err(std::io::Error::other("injected: the engine stopped reading"));
    }
    input.read_to_end(&mut data).await?;
    Ok(data)
}

#[async_trait]
impl Engine for FakeEngine {
    async fn version(&self) -> s2i_engine::Result<EngineVersion> {
        let kind = if self.in_place.is_some() { EngineKind::InPlace } else { EngineKind::Docker };
        Ok(EngineVersion { kind, version: "fake".into(), api_version: "1.41".into(), endpoint: "fake://".into() })
    }

    fn capabilities(&self) -> EngineCapabilities {
        match &self.in_place {
            Some((_, uid, gid)) => EngineCapabilities { fixed_user: Some((*uid, *gid)), only_builder: true, unpacks_input: false },
            None => EngineCapabilities::default(),
        }
    }

    async fn inspect_image(&self, name: &str) -> s2i_engine::Result<Option<ImageInfo>> {
        self.apply(Call::InspectImage, "inspecting an image").await?;
        let state = self.state.lock().unwrap();
        Ok(Self::resolve_image(&state, name).and_then(|id| state.images.get(&id)).map(|i| {
            let mut info = i.info.clone();
            info.size = Some(i.files.values().map(|n| if let Node::File { data, .. } = n { data.len() as u64 } else { 0 }).sum());
            info
        }))
    }

    async fn pull_image(&self, name: &str, auth: Option<&RegistryAuth>, progress: &mut dyn ProgressSink) -> s2i_engine::Result<()> {
        self.state.lock().unwrap().transfers.push((Call::PullImage, name.into(), auth.cloned()));
        self.apply(Call::PullImage, "pulling").await?;
        progress.progress(Progress::Status("fake pull"));
        let found = Self::resolve_image(&self.state.lock().unwrap(), name).is_some();
        match found {
            true => Ok(()),
            false => Err(EngineError::Pull { image: name.into(), message: "manifest unknown".into() }),
        }
    }

    async fn push_image(&self, name: &str, auth: Option<&RegistryAuth>, _progress: &mut dyn ProgressSink) -> s2i_engine::Result<String> {
        self.state.lock().unwrap().transfers.push((Call::PushImage, name.into(), auth.cloned()));
        self.apply(Call::PushImage, "pushing").await?;
        let state = self.state.lock().unwrap();
        Self::resolve_image(&state, name).ok_or_else(|| api_error("pushing", "no such image", Some(404)))
    }

    async fn save_image(&self, name: &str, _format: ArchiveFormat, mut out: ArchiveOutput) -> s2i_engine::Result<()> {
        self.apply(Call::SaveImage, "saving").await?;
        let files = {
            let state = self.state.lock().unwrap();
            let id = Self::resolve_image(&state, name).ok_or_else(|| api_error("saving", "no such image", Some(404)))?;
            tar_of(&state.images[&id].files, "/")
        };
        out.write_all(&files).await.map_err(EngineError::Input)?;
        out.shutdown().await.map_err(EngineError::Input)
    }

    async fn load_image(&self, archive: ContainerInput) -> s2i_engine::Result<Vec<String>> {
        let fault = self.apply(Call::LoadImage, "loading").await?;
        read_input(archive, fault).await.map_err(EngineError::Input)?;
        Ok(Vec::new())
    }

    async fn create_container(&self, spec: &ContainerSpec) -> s2i_engine::Result<String> {
        self.apply(Call::CreateContainer, "creating a container").await?;
        let mut state = self.state.lock().unwrap();
        let image_id = Self::resolve_image(&state, &spec.image).ok_or_else(|| api_error("creating a container", format!("No such image: {}", spec.image), Some(404)))?;
        if let Some((own, _, _)) = &self.in_place {
            if state.tags.get(own) != Some(&image_id) {
                return Err(EngineError::NotSupported { engine: EngineKind::InPlace, what: format!("start a container of {} (only of {own})", spec.image) });
            }
        }
        if let Some(name) = &spec.name {
            if !state.names.insert(name.clone()) {
                return Err(api_error("creating a container", format!("the name {name} is in use"), Some(409)));
            }
        }
        let id = self.new_id("container").trim_start_matches("sha256:").to_string();
        let fs = state.images[&image_id].files.clone();
        state.containers.insert(id.clone(), Container { spec: spec.clone(), image_id, fs, exit: None });
        Ok(id)
    }

    async fn run_container(&self, id: &str, input: Option<ContainerInput>, output: &mut dyn OutputSink) -> s2i_engine::Result<i64> {
        let fault = self.apply(Call::RunContainer, "running the container").await?;
        let stdin = match input {
            Some(input) => match read_input(input, fault).await {
                Ok(data) => data,
                Err(e) if fault == Some(Fault::Cut) => return Err(api_error("reading the container's output", e.to_string(), None)),
                Err(e) => return Err(EngineError::Input(e)),
            },
            None if fault == Some(Fault::Cut) => return Err(api_error("reading the container's output", "injected: the attach broke", None)),
            None => Vec::new(),
        };
        let (code, stdout, stderr) = self.execute(id, stdin)?;
        output.output(OutputStream::Stdout, &stdout);
        output.output(OutputStream::Stderr, &stderr);
        Ok(code)
    }

    async fn run_with_stdout(&self, id: &str, input: Option<ContainerInput>, mut stderr: Box<dyn OutputSink>) -> s2i_engine::Result<RunningOutput> {
        let fault = self.apply(Call::RunWithStdout, "running the container").await?;
        let stdin = match input {
            Some(input) => read_input(input, None).await.map_err(EngineError::Input)?,
            None => Vec::new(),
        };
        let (code, stdout, err) = self.execute(id, stdin)?;
        stderr.output(OutputStream::Stderr, &err);
        let stdout: ContainerInput = match fault {
            Some(Fault::Cut) => Box::new(tokio_util::io::StreamReader::new(cut(stdout))),
            _ => Box::new(Cursor::new(stdout)),
        };
        Ok(RunningOutput { stdout, exit: Box::pin(async move { Ok(code) }) })
    }

    async fn upload_archive(&self, id: &str, path: &str, tar: ContainerInput) -> s2i_engine::Result<()> {
        let fault = self.apply(Call::UploadArchive, "copying files into the container").await?;
        let data = read_input(tar, fault).await.map_err(EngineError::Input)?;
        let mut state = self.state.lock().unwrap();
        let container = state.containers.get_mut(id).ok_or_else(|| api_error("copying files", "no such container", Some(404)))?;
        if !matches!(container.fs.get(path.trim_end_matches('/')).or(container.fs.get(path)), Some(Node::Dir { .. })) {
            return Err(api_error("copying files", format!("Could not find the file {path} in container {id}"), Some(404)));
        }
        // The engine unpacks as root and keeps the owners the headers give.
        untar(&mut container.fs, path, &mut Cursor::new(data), None).map_err(EngineError::Input)
    }

    async fn commit_container(&self, id: &str, spec: &CommitSpec) -> s2i_engine::Result<String> {
        self.apply(Call::CommitContainer, "committing the container").await?;
        let new_id = self.new_id("image");
        let mut state = self.state.lock().unwrap();
        let container = state.containers.get(id).ok_or_else(|| api_error("committing", "no such container", Some(404)))?;
        let base = state.images[&container.image_id].clone();
        let mut info = base.info.clone();
        info.id = new_id.clone();
        info.cmd = Some(spec.cmd.clone());
        info.entrypoint = Some(spec.entrypoint.clone()).filter(|e| !e.is_empty());
        info.user = spec.user.clone();
        let mut env: Vec<String> = base.info.env.clone();
        for kv in &spec.env {
            let name = kv.split('=').next().unwrap_or_default();
            env.retain(|e| e.split('=').next() != Some(name));
            env.push(kv.clone());
        }
        info.env = env;
        info.labels = spec.labels.clone();
        info.on_build = Vec::new();
        let image = FakeImage { info, files: container.fs.clone(), programs: base.programs.clone() };
        state.images.insert(new_id.clone(), image);
        if let Some(repo) = &spec.repo {
            state.tags.insert(short_name(&format!("{repo}:{}", spec.tag.as_deref().unwrap_or("latest"))), new_id.clone());
        }
        Ok(new_id)
    }

    async fn remove_container(&self, id: &str) -> s2i_engine::Result<()> {
        self.apply(Call::RemoveContainer, "removing a container").await?;
        let mut state = self.state.lock().unwrap();
        if let Some(c) = state.containers.remove(id) {
            if let Some(name) = &c.spec.name {
                state.names.remove(name);
            }
        }
        Ok(())
    }

    async fn remove_image(&self, name: &str) -> s2i_engine::Result<()> {
        self.apply(Call::RemoveImage, "removing an image").await?;
        let mut state = self.state.lock().unwrap();
        let id = Self::resolve_image(&state, name).ok_or_else(|| api_error("removing an image", "no such image", Some(404)))?;
        state.tags.retain(|_, v| *v != id);
        state.images.remove(&id);
        Ok(())
    }

    async fn download_archive(&self, id: &str, path: &str) -> s2i_engine::Result<Option<ByteStream>> {
        let fault = self.apply(Call::DownloadArchive, "copying files out of the container").await?;
        let state = self.state.lock().unwrap();
        let container = state.containers.get(id).ok_or_else(|| api_error("copying files", "no such container", Some(404)))?;
        let Some(tar) = tar_of_path(&container.fs, path) else { return Ok(None) };
        Ok(Some(match fault {
            Some(Fault::Cut) => cut(tar),
            _ => Box::pin(futures_util::stream::iter(vec![Ok(Bytes::from(tar))])),
        }))
    }

    async fn path_exists(&self, id: &str, path: &str) -> s2i_engine::Result<bool> {
        self.apply(Call::PathExists, "checking a path in the container").await?;
        let state = self.state.lock().unwrap();
        let container = state.containers.get(id).ok_or_else(|| api_error("checking a path", "no such container", Some(404)))?;
        Ok(container.fs.contains_key(path))
    }

    async fn build_image(&self, context: ContainerInput, spec: &ImageBuildSpec, output: &mut dyn OutputSink) -> s2i_engine::Result<String> {
        let fault = self.apply(Call::BuildImage, "building the image").await?;
        let data = read_input(context, fault).await.map_err(EngineError::Input)?;
        let mut ctx = Tree::new();
        untar(&mut ctx, "/", &mut Cursor::new(data), None).map_err(EngineError::Input)?;
        let dockerfile = match ctx.get(&join("/", &spec.dockerfile)) {
            Some(Node::File { data, .. }) => String::from_utf8_lossy(data).into_owned(),
            _ => return Err(api_error("building the image", "Cannot locate specified Dockerfile", Some(500))),
        };
        let from = dockerfile.lines().find_map(|l| l.strip_prefix("FROM ")).map(|f| f.split_whitespace().next().unwrap_or_default().to_string()).unwrap_or_default();
        output.output(OutputStream::Stdout, format!("Step 1/1 : FROM {from}\n").as_bytes());
        let new_id = self.new_id("image");
        let mut state = self.state.lock().unwrap();
        let base_id = Self::resolve_image(&state, &from).ok_or_else(|| api_error("building the image", format!("pull access denied for {from}"), None))?;
        let mut image = state.images[&base_id].clone();
        // ONBUILD COPY . DIR and the generated Dockerfile's COPY upload/src DEST: the context lands in the workdir.
        let workdir = if image.info.working_dir.is_empty() { "/tmp/src".to_string() } else { image.info.working_dir.clone() };
        for (p, n) in ctx {
            if p != "/" {
                image.files.insert(join(&workdir, p.trim_start_matches('/')), n);
            }
        }
        image.info.id = new_id.clone();
        image.info.on_build = Vec::new();
        state.images.insert(new_id.clone(), image);
        if let Some(tag) = &spec.tag {
            state.tags.insert(short_name(tag), new_id.clone());
        }
        Ok(new_id)
    }

    /// Fake containers run to their end within `run_container`: none is ever running to be reached.
    async fn published_port(&self, id: &str, _port: u16) -> s2i_engine::Result<Option<std::net::SocketAddr>> {
        let state = self.state.lock().unwrap();
        state.containers.get(id).ok_or_else(|| api_error("inspecting the container's ports", "no such container", Some(404)))?;
        Ok(None)
    }

    async fn remove_leftovers(&self) {
        let ids = self.containers();
        for id in ids {
            let mut state = self.state.lock().unwrap();
            if let Some(c) = state.containers.remove(&id) {
                if let Some(name) = &c.spec.name {
                    state.names.remove(name);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words_understand_single_quotes() {
        assert_eq!(words("tar -C '/tmp' -xf - "), vec!["tar", "-C", "/tmp", "-xf", "-"]);
        assert_eq!(words("'/a b/it'\\''s'"), vec!["/a b/it's"]);
    }

    #[tokio::test]
    async fn a_container_unpacks_its_stdin_and_runs_a_program() {
        let engine = FakeEngine::new();
        engine.add_image(
            "b:latest",
            FakeImage::new().program("/usr/libexec/s2i/assemble", |e| {
                let n = e.fs.keys().filter(|p| p.starts_with("/tmp/src/")).count();
                e.say(&format!("{n} files"));
                0
            }),
        );
        let spec = ContainerSpec { image: "b".into(), cmd: vec!["/bin/sh".into(), "-c".into(), "tar -C '/tmp' -xf - && '/usr/libexec/s2i/assemble'".into()], ..Default::default() };
        let id = engine.create_container(&spec).await.unwrap();
        let mut b = tar::Builder::new(Vec::new());
        append(&mut b, "src", &Node::Dir { mode: 0o755, uid: 0 });
        append(&mut b, "src/a", &Node::File { mode: 0o644, uid: 0, data: b"a".to_vec() });
        let input: ContainerInput = Box::new(Cursor::new(b.into_inner().unwrap()));
        let mut out = Vec::new();
        let code = engine.run_container(&id, Some(input), &mut |_s: OutputStream, d: &[u8]| out.extend_from_slice(d)).await.unwrap();
        assert_eq!(code, 0);
        assert_eq!(String::from_utf8_lossy(&out), "1 files\n");
        engine.remove_container(&id).await.unwrap();
        assert!(engine.containers().is_empty());
    }
}
