//! Applications that more than one area's tests build.

use s2i_testkit::{write_file, TestEnv};

/// An app whose assemble installs "dependencies" once (`deps/installed` records `BUILD_NO`) and
/// reuses them from /tmp/artifacts after; its save-artifacts hands them on. `BIG_MB` adds a big
/// random file to the deps, `ASSEMBLE_FAIL` fails assemble, and `SAVE_FAIL` and `SAVE_EVIL` make
/// save-artifacts misbehave. Returns the source's path relative to the test's work dir.
pub fn incremental_app(env: &TestEnv) -> &'static str {
    let root = env.work().join("inc");
    write_file(&root.join("app.txt"), "app\n", 0o644);
    write_file(
        &root.join(".s2i/bin/assemble"),
        r#"#!/bin/sh
set -e
cp -R /tmp/src/. ./
if [ -f /tmp/artifacts/deps/installed ]; then
  echo "---> reusing deps from $(cat /tmp/artifacts/deps/installed)"
  cp -R /tmp/artifacts/deps ./deps
else
  mkdir -p deps && echo "build-$BUILD_NO" > deps/installed
  if [ -n "$BIG_MB" ]; then dd if=/dev/urandom of=deps/big bs=1048576 count="$BIG_MB" 2>/dev/null; fi
  echo "---> installed deps"
fi
if [ -n "$ASSEMBLE_FAIL" ]; then exit 1; fi
"#,
        0o755,
    );
    write_file(
        &root.join(".s2i/bin/save-artifacts"),
        r#"#!/bin/sh
cd /opt/app-root/src
echo "---> saving deps" >&2
if [ -n "$SAVE_EVIL" ]; then ln -s /etc deps/etc; fi
tar cf - deps
if [ -n "$SAVE_FAIL" ]; then exit 3; fi
"#,
        0o755,
    );
    "inc"
}

/// An app whose assemble reports what the build container lets it do, then runs the builder's
/// own assemble: `---> probe: userns=ok|denied mount=ok|denied renice=ok|denied NoNewPrivs:N`.
/// `mount` is a tmpfs mounted inside a new user namespace (where the container's user would be
/// root); `renice` is setpriority(2), which the default profile allows. Returns the source's
/// path relative to the test's work dir.
pub fn probe_app(env: &TestEnv) -> &'static str {
    let root = env.work().join("probe");
    write_file(&root.join("index.html"), "probed\n", 0o644);
    write_file(
        &root.join(".s2i/bin/assemble"),
        r#"#!/bin/sh
probe() { if "$@" >/dev/null 2>&1; then printf ok; else printf denied; fi; }
echo "---> probe: userns=$(probe unshare -U true) mount=$(probe unshare -Urm mount -t tmpfs none /tmp) renice=$(probe renice -n 1 -p $$) $(grep NoNewPrivs /proc/self/status | tr -d '\t')"
exec "$STI_SCRIPTS_PATH/assemble"
"#,
        0o755,
    );
    "probe"
}

/// A seccomp profile in Docker's format that allows everything but setpriority(2), written in
/// the test's work dir; its path.
pub fn renice_denying_profile(env: &TestEnv) -> String {
    let path = env.work().join("no-renice.json");
    write_file(
        &path,
        r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["setpriority"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
        0o644,
    );
    path.display().to_string()
}
