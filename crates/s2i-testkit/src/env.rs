//! Per-test isolation: private TMPDIR, unique image names, leftover checks.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex};
use std::thread::ThreadId;

use crate::{docker_component, random_hex, s2i_sanitize};

/// Podman 4.3 mishandles concurrent clients: a build's layer cache lookup fails with "layer not
/// known" while another client removes an image, a RUN step gets killed, tags get lost. Against
/// Podman, tests that use the engine therefore take turns: a [`TestEnv`] holds the turn from its
/// creation until it is dropped (after its clean-up). A thread may hold it more than once.
struct EngineTurn;

static TURN: Mutex<Option<(ThreadId, usize)>> = Mutex::new(None);
static TURN_FREED: Condvar = Condvar::new();

impl EngineTurn {
    fn take() -> Option<EngineTurn> {
        if crate::test_engine() != crate::TestEngine::Podman {
            return None;
        }
        let me = std::thread::current().id();
        let mut turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            match turn.as_mut() {
                None => {
                    *turn = Some((me, 1));
                    return Some(EngineTurn);
                }
                Some((holder, n)) if *holder == me => {
                    *n += 1;
                    return Some(EngineTurn);
                }
                Some(_) => turn = TURN_FREED.wait(turn).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }
}

impl Drop for EngineTurn {
    fn drop(&mut self) {
        let mut turn = TURN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, n)) = turn.as_mut() {
            *n -= 1;
            if *n == 0 {
                *turn = None;
                TURN_FREED.notify_all();
            }
        }
    }
}

/// Path of the `s2i` binary under test: `$S2I_BIN` if set, else
/// `$CARGO_BIN_EXE_s2i` if set at run time, else `s2i` in the cargo target
/// directory of the running test executable
/// (`target/<profile>/deps/<test>-<hash>` → `target/<profile>/s2i`), which is
/// where cargo puts the binary it builds for the `s2i` crate's integration
/// tests (the same path as `env!("CARGO_BIN_EXE_s2i")` there).
pub fn s2i_bin() -> PathBuf {
    for var in ["S2I_BIN", "CARGO_BIN_EXE_s2i"] {
        if let Some(p) = std::env::var_os(var).filter(|p| !p.is_empty()) {
            return PathBuf::from(p);
        }
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe
        .parent()
        .expect("test executable has a directory")
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join("s2i")
}

/// One test's isolated environment. Make one per test with [`TestEnv::new`];
/// dropping it removes what it recorded (containers s2i left for its aliases,
/// its aliases and output tags, its temp dir) on a best-effort basis.
pub struct TestEnv {
    id: String,
    tmp: tempfile::TempDir,
    work: PathBuf,
    bin: PathBuf,
    /// (image, alias) pairs made by [`TestEnv::alias`].
    aliases: Mutex<Vec<(String, String)>>,
    /// Output tags handed out by [`TestEnv::tag`].
    tags: Mutex<Vec<String>>,
    /// Dropped last, after the clean-up in `drop`.
    _turn: Option<EngineTurn>,
}

impl TestEnv {
    /// A fresh environment: a private temp dir (the `TMPDIR` of s2i runs) with
    /// a `work` subdirectory, and a unique id made of `test_name` (sanitised)
    /// and 6 random hex chars. The s2i binary is [`s2i_bin`]'s.
    pub fn new(test_name: &str) -> TestEnv {
        let turn = EngineTurn::take();
        let id = format!("{}-{}", docker_component(test_name), random_hex(6));
        let tmp = tempfile::Builder::new()
            .prefix(&format!("s2i-test-{id}-"))
            .tempdir()
            .expect("creating the test's temp dir");
        let work = tmp.path().join("work");
        fs::create_dir(&work).expect("creating the test's work dir");
        TestEnv {
            id,
            tmp,
            work,
            bin: s2i_bin(),
            aliases: Mutex::new(Vec::new()),
            tags: Mutex::new(Vec::new()),
            _turn: turn,
        }
    }

    /// Uses another s2i binary (e.g. `env!("CARGO_BIN_EXE_s2i")`).
    pub fn with_bin(mut self, bin: impl Into<PathBuf>) -> TestEnv {
        self.bin = bin.into();
        self
    }

    /// The unique id of this environment (lowercase, `[a-z0-9-]`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The private temp dir, given to s2i as `TMPDIR`.
    pub fn tmpdir(&self) -> &Path {
        self.tmp.path()
    }

    /// A directory for the test's own files (sources, fixtures); the working
    /// directory of [`TestEnv::s2i`] commands. Inside [`TestEnv::tmpdir`].
    pub fn work(&self) -> PathBuf {
        self.work.clone()
    }

    /// Tags `image` as `s2i-test-alias/<id>:latest` (later aliases of other
    /// images get `<id>-2`, `<id>-3`…) and returns that name. s2i names its
    /// containers after the image it was given, so running s2i with the alias
    /// lets [`TestEnv::leftover_containers`] find exactly this test's
    /// containers. Aliasing the same image twice returns the same alias.
    pub fn alias(&self, image: &str) -> String {
        let mut aliases = self.aliases.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, alias)) = aliases.iter().find(|(i, _)| i == image) {
            return alias.clone();
        }
        let alias = match aliases.len() {
            0 => format!("s2i-test-alias/{}:latest", self.id),
            n => format!("s2i-test-alias/{}-{}:latest", self.id, n + 1),
        };
        crate::docker_output(&["tag", image, &alias]);
        aliases.push((image.to_string(), alias.clone()));
        alias
    }

    /// A unique output image name, `s2i-test-out/<id>-<what>:latest` (`what`
    /// is sanitised), removed when the environment is dropped.
    pub fn tag(&self, what: &str) -> String {
        let tag = format!("s2i-test-out/{}-{}:latest", self.id, docker_component(what));
        let mut tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        if !tags.contains(&tag) {
            tags.push(tag.clone());
        }
        tag
    }

    /// A command running the s2i binary with `TMPDIR` set to
    /// [`TestEnv::tmpdir`], the working directory [`TestEnv::work`], stdin
    /// closed, and `DOCKER_HOST` naming the engine under test
    /// ([`crate::point_at_engine`]). Panics if the binary does not exist.
    pub fn s2i(&self) -> Command {
        assert!(
            self.bin.is_file(),
            "s2i binary not found at {} (set S2I_BIN, or use TestEnv::with_bin)",
            self.bin.display()
        );
        let mut cmd = Command::new(&self.bin);
        crate::point_at_engine(&mut cmd);
        cmd.env("TMPDIR", self.tmp.path())
            .current_dir(&self.work)
            .stdin(Stdio::null());
        cmd
    }

    /// Run s2i with `args` and return its exit code, stdout and stderr.
    /// With `S2I_TEST_VERBOSE` set, each run is echoed to the test's output.
    pub fn run(&self, args: &[&str]) -> (i32, String, String) {
        let out = self.s2i().args(args).output().expect("s2i runs");
        let result = (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        if std::env::var_os("S2I_TEST_VERBOSE").is_some() {
            eprintln!("s2i {args:?} -> {}\n--- stdout\n{}--- stderr\n{}", result.0, result.1, result.2);
        }
        result
    }

    /// Names of containers, in any state, that s2i made from this env's
    /// aliases or output tags: names starting `s2i_` that contain the
    /// sanitised image name (every non-alphanumeric char → `_`) followed by
    /// `_`, whether or not s2i kept the `:latest` or added a registry.
    pub fn leftover_containers(&self) -> Vec<String> {
        if !crate::engine::engine_started() {
            return Vec::new();
        }
        let marks = self.container_marks();
        let out = match crate::engine_command()
            .args(["ps", "-a", "--format", "{{.Names}}"])
            .stdin(Stdio::null())
            .output()
        {
            Ok(out) if out.status.success() => out,
            _ => return Vec::new(),
        };
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::trim)
            .filter(|n| n.starts_with("s2i_") && marks.iter().any(|m| n.contains(m.as_str())))
            .map(str::to_string)
            .collect()
    }

    fn container_marks(&self) -> Vec<String> {
        let aliases = self.aliases.lock().unwrap_or_else(|e| e.into_inner());
        let tags = self.tags.lock().unwrap_or_else(|e| e.into_inner());
        aliases
            .iter()
            .map(|(_, a)| a)
            .chain(tags.iter())
            .map(|name| {
                let repo = name.strip_suffix(":latest").unwrap_or(name);
                format!("{}_", s2i_sanitize(repo))
            })
            .collect()
    }

    /// Entries left in the private TMPDIR, other than [`TestEnv::work`].
    pub fn leftover_temp_entries(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = fs::read_dir(self.tmp.path())
            .map(|rd| {
                rd.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| *p != self.work)
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }

    /// Panics listing any leftover containers and temp entries.
    pub fn assert_clean(&self) {
        let containers = self.leftover_containers();
        let temps = self.leftover_temp_entries();
        if !containers.is_empty() || !temps.is_empty() {
            panic!(
                "s2i left things behind:\n  containers: {containers:?}\n  temp entries: {temps:?}"
            );
        }
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        if !crate::engine::engine_started() {
            // Nothing of this env can be in an engine that never started.
            return;
        }
        let quiet = |args: &[&str]| {
            let _ = crate::engine_command()
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        };
        let containers = self.leftover_containers();
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            quiet(&args);
        }
        let mut images: Vec<String> = Vec::new();
        if let Ok(a) = self.aliases.lock() {
            images.extend(a.iter().map(|(_, alias)| alias.clone()));
        }
        if let Ok(t) = self.tags.lock() {
            images.extend(t.iter().cloned());
        }
        if !images.is_empty() {
            // An alias only untags; an output image goes away. Missing tags
            // (never built) make docker complain, which is ignored.
            let mut args = vec!["rmi", "-f"];
            args.extend(images.iter().map(String::as_str));
            quiet(&args);
        }
        // The TempDir field removes the directory after this (errors ignored).
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{base_image, docker_output, image_exists};

    #[test]
    fn alias_leftovers_and_cleanup() {
        let base = base_image();
        let env = TestEnv::new("testkit::alias_leftovers_and_cleanup");
        assert!(
            env.id().starts_with("testkit-alias-leftovers-and-cleanup-"),
            "{}",
            env.id()
        );
        assert!(env.work().is_dir());
        assert!(env.work().starts_with(env.tmpdir()));

        let alias = env.alias(&base);
        assert_eq!(alias, format!("s2i-test-alias/{}:latest", env.id()));
        assert_eq!(env.alias(&base), alias);
        assert!(image_exists(&alias));
        let out_tag = env.tag("Out Put");
        assert_eq!(out_tag, format!("s2i-test-out/{}-out-put:latest", env.id()));
        docker_output(&["tag", &base, &out_tag]);

        // A container named the way s2i names them, and a stray temp file.
        let name = format!("s2i_{}_0123abcd", s2i_sanitize(&alias));
        docker_output(&["create", "--name", &name, &alias, "true"]);
        fs::write(env.tmpdir().join("s2i-leftover"), "x").unwrap();
        assert_eq!(env.leftover_containers(), vec![name.clone()]);
        assert_eq!(
            env.leftover_temp_entries(),
            vec![env.tmpdir().join("s2i-leftover")]
        );
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| env.assert_clean()));
        let msg = panic.expect_err("assert_clean must fail");
        let msg = msg.downcast_ref::<String>().unwrap();
        assert!(msg.contains(&name) && msg.contains("s2i-leftover"), "{msg}");

        let tmp = env.tmpdir().to_path_buf();
        drop(env);
        assert!(!image_exists(&alias));
        assert!(!image_exists(&out_tag));
        assert!(image_exists(&base));
        assert!(!tmp.exists());
        let names = docker_output(&["ps", "-a", "--format", "{{.Names}}"]);
        assert!(!names.lines().any(|n| n == name), "{names}");
    }

    #[test]
    fn clean_env_passes_and_bin_path() {
        let env = TestEnv::new("clean");
        env.assert_clean();
        assert!(env.leftover_containers().is_empty());
        assert_eq!(s2i_bin().file_name().unwrap(), "s2i");
        let env = env.with_bin("/bin/busybox");
        let out = env
            .s2i()
            .args(["sh", "-c", "echo $TMPDIR; pwd"])
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        assert_eq!(
            text,
            format!("{}\n{}\n", env.tmpdir().display(), env.work().display())
        );
    }
}
