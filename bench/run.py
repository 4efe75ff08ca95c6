#!/usr/bin/env python3
"""s2i's benchmark: each workload built by `s2i` and by the floor (bench/floor: only the Engine API
calls that cannot be avoided for the same image), interleaved A B A B, after a warm-up.

    python3 bench/run.py [--runs 5] [--only tiny,many,...] [--no-write]

Inputs are generated under $S2I_BENCH_DIR (default /tmp/s2i-bench), outside the repository; the
base image is made from busybox-static, so no registry is needed. Results go to bench/README.md
between the results markers (unless --no-write) and to stdout.
"""

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
S2I = os.path.join(ROOT, "target/release/s2i")
FLOOR = os.path.join(ROOT, "target/release/s2i-bench-floor")
BUILDER = "s2i-bench/builder:latest"
RUNTIME = "s2i-bench/runtime:latest"
WORK = os.environ.get("S2I_BENCH_DIR", "/tmp/s2i-bench")
MIB = 1024 * 1024


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout.strip()


def write_tree(root, dirs, files_per_dir, size, prefix=""):
    """dirs x files_per_dir files of `size` bytes (distinct content) under root/prefix."""
    block = os.urandom(size)
    for d in range(dirs):
        path = os.path.join(root, prefix, f"d{d:04}")
        os.makedirs(path, exist_ok=True)
        for f in range(files_per_dir):
            with open(os.path.join(path, f"f{f:04}.dat"), "wb") as out:
                out.write(f"{d}/{f}\n".encode() + block[: size - 16])


def generate_inputs():
    marker = os.path.join(WORK, ".complete-v1")
    if os.path.exists(marker):
        return
    print(f"generating inputs in {WORK} ...", file=sys.stderr)
    subprocess.run(["rm", "-rf", WORK], check=True)
    for name in ["tiny", "inc"]:
        os.makedirs(os.path.join(WORK, name))
        with open(os.path.join(WORK, name, "index.html"), "w") as f:
            f.write("<h1>hello</h1>\n")
    write_tree(os.path.join(WORK, "many"), 300, 100, 5 * 1024)  # 30,000 files, ~150 MB
    os.makedirs(os.path.join(WORK, "big"))
    for i in range(5):  # 5 x 100 MB
        with open(os.path.join(WORK, "big", f"blob{i}.bin"), "wb") as f:
            for _ in range(100):
                f.write(os.urandom(MIB))
    write_tree(os.path.join(WORK, "inc-seed"), 200, 100, 10 * 1024, prefix="deps")  # 20,000 files, ~200 MB
    os.makedirs(os.path.join(WORK, "runtime"))
    with open(os.path.join(WORK, "runtime", "app.bin"), "wb") as f:
        for _ in range(100):  # 100 MB
            f.write(os.urandom(MIB))
    write_tree(os.path.join(WORK, "ignore"), 300, 100, 5 * 1024, prefix="node_modules")  # excluded, ~150 MB
    with open(os.path.join(WORK, "ignore", "index.html"), "w") as f:
        f.write("<h1>hello</h1>\n")
    with open(os.path.join(WORK, "ignore", ".s2iignore"), "w") as f:
        f.write("node_modules\n")
    open(marker, "w").close()


def prepare():
    print("building s2i, the floor and the base image ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "s2i", "-p", "s2i-bench-floor"], cwd=ROOT, check=True)
    base = sh("cargo", "run", "--release", "-q", "-p", "s2i-testkit", "--bin", "s2i-base-image", cwd=ROOT)
    env = dict(os.environ, DOCKER_BUILDKIT="0")
    for image, ctx in [(BUILDER, "bench/images/builder"), (RUNTIME, "bench/images/runtime")]:
        sh("docker", "build", "-q", "-t", image, os.path.join(ROOT, ctx), env=env)
    generate_inputs()
    # Two chains of previous images for the incremental workload, so that s2i and the floor each
    # take artifacts from their own last build.
    subprocess.run([S2I, "build", os.path.join(WORK, "inc-seed"), BUILDER, "s2i-bench/inc-s2i:latest", "-q"], check=True)
    sh("docker", "tag", "s2i-bench/inc-s2i:latest", "s2i-bench/inc-floor:latest")
    return base


def workloads():
    """name: ((s2i command, its output tag), (floor command, its output tag))."""
    w = WORK
    out_s2i, out_floor = "s2i-bench/out-s2i:latest", "s2i-bench/out-floor:latest"
    inc_s2i, inc_floor = "s2i-bench/inc-s2i:latest", "s2i-bench/inc-floor:latest"
    rt_s2i, rt_floor = "s2i-bench/rt-s2i:latest", "s2i-bench/rt-floor:latest"
    return {
        "tiny": (([S2I, "build", f"{w}/tiny", BUILDER, out_s2i], out_s2i), ([FLOOR, "standard", f"{w}/tiny", BUILDER, out_floor], out_floor)),
        "many": (([S2I, "build", f"{w}/many", BUILDER, out_s2i], out_s2i), ([FLOOR, "standard", f"{w}/many", BUILDER, out_floor], out_floor)),
        "big": (([S2I, "build", f"{w}/big", BUILDER, out_s2i], out_s2i), ([FLOOR, "standard", f"{w}/big", BUILDER, out_floor], out_floor)),
        "incremental": (
            ([S2I, "build", f"{w}/inc", BUILDER, inc_s2i, "--incremental"], inc_s2i),
            ([FLOOR, "incremental", f"{w}/inc", BUILDER, inc_floor], inc_floor),
        ),
        "runtime": (
            ([S2I, "build", f"{w}/runtime", BUILDER, rt_s2i, "--runtime-image", RUNTIME, "-a", "/tmp/src/app.bin:."], rt_s2i),
            ([FLOOR, "runtime", f"{w}/runtime", BUILDER, RUNTIME, "/tmp/src/app.bin", rt_floor], rt_floor),
        ),
        "s2iignore": (
            ([S2I, "build", f"{w}/ignore", BUILDER, out_s2i], out_s2i),
            ([FLOOR, "standard", f"{w}/ignore", BUILDER, out_floor, "node_modules"], out_floor),
        ),
    }


DESCRIPTIONS = {
    "tiny": "a 1-file app",
    "many": "30,000 files, 150 MB",
    "big": "5 files, 500 MB",
    "incremental": "save-artifacts carries 200 MB in 20,000 files",
    "runtime": "a 100 MB artifact moved to a runtime image",
    "s2iignore": "30,000 files of which .s2iignore keeps 1",
}


def timed(cmd):
    """Wall time and peak RSS (KiB) of one run."""
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    took = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"{cmd[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
    return took, int(p.stderr.strip().splitlines()[-1])


def image_id(tag):
    p = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def run_and_tidy(cmd, tag):
    """Time `cmd`, then remove the image its tag named before (superseded, now untagged), and
    flush the disk, so that the next run does not pay for this one's clean-up. Only our own
    images are removed: a global prune would also take untagged images of other users."""
    before = image_id(tag)
    result = timed(cmd)
    if before and image_id(tag) != before:
        tags = subprocess.run(["docker", "image", "inspect", "-f", "{{len .RepoTags}}", before], capture_output=True, text=True)
        if tags.stdout.strip() == "0":
            subprocess.run(["docker", "rmi", before], capture_output=True)
    subprocess.run(["sync"])
    return result


def bench(name, a, b, runs):
    (cmd_a, tag_a), (cmd_b, tag_b) = a, b
    run_and_tidy(cmd_a, tag_a), run_and_tidy(cmd_b, tag_b)  # warm-up
    rows = []
    for i in range(runs):
        # Alternate which side goes first (A B, B A, ...): whatever one run leaves behind for the
        # next (writeback, cache) then falls on both sides alike.
        if i % 2 == 0:
            ta, rss_a = run_and_tidy(cmd_a, tag_a)
            tb, _ = run_and_tidy(cmd_b, tag_b)
        else:
            tb, _ = run_and_tidy(cmd_b, tag_b)
            ta, rss_a = run_and_tidy(cmd_a, tag_a)
        rows.append((ta, tb, rss_a))
    s2i = [r[0] for r in rows]
    floor = [r[1] for r in rows]
    ratios = [r[0] / r[1] for r in rows]
    return {
        "workload": name,
        "s2i": (statistics.median(s2i), min(s2i), max(s2i)),
        "floor": (statistics.median(floor), min(floor), max(floor)),
        "ratio": (statistics.median(ratios), min(ratios), max(ratios)),
        "rss_mib": max(r[2] for r in rows) / 1024,
    }


def quick(cmd, runs=21):
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(cmd, capture_output=True)
        times.append(time.monotonic() - start)
    return statistics.median(times) * 1000


def render(results, version_ms, argerr_ms, runs):
    info = json.loads(sh("docker", "info", "--format", "{{json .}}"))
    lines = [
        f"Run on {datetime.date.today().isoformat()}: Docker {info.get('ServerVersion')} "
        f"({info.get('Driver')} storage, cgroup {info.get('CgroupVersion')}), kernel {info.get('KernelVersion')}, "
        f"{info.get('NCPU')} CPUs, {info.get('MemTotal', 0) // (1024 ** 3)} GiB; {runs} interleaved runs per side after a warm-up.",
        "",
        "| workload | s2i median (min–max) | floor median (min–max) | s2i/floor median (min–max) | s2i peak RSS |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s, f, q = r["s2i"], r["floor"], r["ratio"]
        lines.append(
            f"| {r['workload']}: {DESCRIPTIONS[r['workload']]} | {s[0]:.2f} s ({s[1]:.2f}–{s[2]:.2f}) | "
            f"{f[0]:.2f} s ({f[1]:.2f}–{f[2]:.2f}) | {q[0]:.2f}x ({q[1]:.2f}–{q[2]:.2f}) | {r['rss_mib']:.1f} MiB |"
        )
    lines += ["", f"`s2i version`: {version_ms:.1f} ms median; an argument error: {argerr_ms:.1f} ms median (21 runs each)."]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    prepare()
    chosen = [w for w in args.only.split(",") if w] or list(workloads())
    results = []
    for name in chosen:
        a, b = workloads()[name]
        print(f"{name} ...", file=sys.stderr)
        results.append(bench(name, a, b, args.runs))
        r = results[-1]
        print(f"  s2i {r['s2i'][0]:.2f}s floor {r['floor'][0]:.2f}s ratio {r['ratio'][0]:.3f} rss {r['rss_mib']:.1f}MiB", file=sys.stderr)
    version_ms = quick([S2I, "version"])
    argerr_ms = quick([S2I, "build", "--pull-policy", "sometimes"])
    table = render(results, version_ms, argerr_ms, args.runs)
    print(table)
    for image in ["s2i-bench/out-s2i", "s2i-bench/out-floor", "s2i-bench/rt-s2i", "s2i-bench/rt-floor"]:
        subprocess.run(["docker", "rmi", image], capture_output=True)
    if not args.no_write and not args.only:
        readme = os.path.join(ROOT, "bench/README.md")
        text = open(readme).read()
        start, end = "<!-- results -->", "<!-- /results -->"
        text = text[: text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end):]
        open(readme, "w").write(text)


if __name__ == "__main__":
    main()
