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
