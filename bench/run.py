#!/usr/bin/env python3
"""s2i's benchmark: each workload built by `s2i` and by the floor (bench/floor: only the Engine API
calls that cannot be avoided for the same image), interleaved A B A B, after a warm-up; and by
`s2i --engine oci` (the daemonless engine: an OCI store and runc), against the same Docker floor.

    python3 bench/run.py [--runs 5] [--only tiny,many,...] [--engines docker,oci] [--no-write]

Inputs are generated under $S2I_BENCH_DIR (default /tmp/s2i-bench), outside the repository; the
base image is made from busybox-static, so no registry is needed. Results go to bench/README.md
between the results markers (unless --no-write) and to stdout.
"""

import argparse
import datetime
import hashlib
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
# The daemonless engine's store, and the images it takes from Docker (as `docker save` archives).
OCI_STORE = os.path.join(WORK, "oci-store")
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
    prepare_oci()
    return base


def oci(*args):
    return [S2I, *args, "--engine", "oci", "--oci-store", OCI_STORE]


def prepare_oci():
    """The builder and runtime images into the OCI store (imported from `docker save` archives,
    under their names), and the incremental workload's previous image, built there."""
    for image, name in [(BUILDER, "builder.tar"), (RUNTIME, "runtime.tar")]:
        sh("docker", "save", "-o", os.path.join(WORK, name), image)
    subprocess.run(
        oci("build", os.path.join(WORK, "tiny"), "docker-archive:" + os.path.join(WORK, "builder.tar"), "s2i-bench/oci-warm:latest", "-q",
            "--runtime-image", "docker-archive:" + os.path.join(WORK, "runtime.tar"), "-a", "/tmp/src/index.html:."),
        check=True,
    )
    subprocess.run(oci("build", os.path.join(WORK, "inc-seed"), BUILDER, "s2i-bench/inc-oci:latest", "-q"), check=True)


def prune_oci_store():
    """Drop the store's untagged images (superseded outputs) and what only they used: blobs and
    unpacked layers. The store's own sweep does the same when s2i removes an image."""
    index_path = os.path.join(OCI_STORE, "index.json")
    index = json.load(open(index_path))
    index["manifests"] = [m for m in index["manifests"] if m.get("annotations", {}).get("org.opencontainers.image.ref.name")]
    blobs_dir = os.path.join(OCI_STORE, "blobs/sha256")
    blob = lambda d: json.load(open(os.path.join(blobs_dir, d.split(":", 1)[1])))
    keep_blobs, keep_layers = set(), {"empty"}
    for m in index["manifests"]:
        manifest = blob(m["digest"])
        keep_blobs.add(m["digest"].split(":", 1)[1])
        keep_blobs.add(manifest["config"]["digest"].split(":", 1)[1])
        keep_blobs.update(layer["digest"].split(":", 1)[1] for layer in manifest["layers"])
        chain = None
        for diff_id in blob(manifest["config"]["digest"])["rootfs"]["diff_ids"]:
            chain = diff_id if chain is None else "sha256:" + hashlib.sha256(f"{chain} {diff_id}".encode()).hexdigest()
            keep_layers.add(chain.split(":", 1)[1])
    tmp = index_path + ".tmp"
    json.dump(index, open(tmp, "w"))
    os.replace(tmp, index_path)
    for name in os.listdir(blobs_dir):
        if name not in keep_blobs:
            os.remove(os.path.join(blobs_dir, name))
    layers_dir = os.path.join(OCI_STORE, "s2i/layers")
    for name in os.listdir(layers_dir):
        if name.removesuffix(".lock") not in keep_layers:
            subprocess.run(["rm", "-rf", os.path.join(layers_dir, name)], check=True)


def workloads():
    """name: {side: (command, its output tag)} for the sides s2i (Docker), floor (Docker) and oci
    (s2i --engine oci)."""
    w = WORK
    out_s2i, out_floor, out_oci = "s2i-bench/out-s2i:latest", "s2i-bench/out-floor:latest", "s2i-bench/out-oci:latest"
    inc_s2i, inc_floor, inc_oci = "s2i-bench/inc-s2i:latest", "s2i-bench/inc-floor:latest", "s2i-bench/inc-oci:latest"
    rt_s2i, rt_floor, rt_oci = "s2i-bench/rt-s2i:latest", "s2i-bench/rt-floor:latest", "s2i-bench/rt-oci:latest"
    rt_args = ["--runtime-image", RUNTIME, "-a", "/tmp/src/app.bin:."]

    def three(s2i, floor, oci_cmd, tags):
        return {"s2i": (s2i, tags[0]), "floor": (floor, tags[1]), "oci": (oci_cmd, tags[2])}

    std = (out_s2i, out_floor, out_oci)
    return {
        "tiny": three([S2I, "build", f"{w}/tiny", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/tiny", BUILDER, out_floor], oci("build", f"{w}/tiny", BUILDER, out_oci), std),
        "many": three([S2I, "build", f"{w}/many", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/many", BUILDER, out_floor], oci("build", f"{w}/many", BUILDER, out_oci), std),
        "big": three([S2I, "build", f"{w}/big", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/big", BUILDER, out_floor], oci("build", f"{w}/big", BUILDER, out_oci), std),
        "incremental": three(
            [S2I, "build", f"{w}/inc", BUILDER, inc_s2i, "--incremental"],
            [FLOOR, "incremental", f"{w}/inc", BUILDER, inc_floor],
            oci("build", f"{w}/inc", BUILDER, inc_oci, "--incremental"),
            (inc_s2i, inc_floor, inc_oci),
        ),
        "runtime": three(
            [S2I, "build", f"{w}/runtime", BUILDER, rt_s2i, *rt_args],
            [FLOOR, "runtime", f"{w}/runtime", BUILDER, RUNTIME, "/tmp/src/app.bin", rt_floor],
            oci("build", f"{w}/runtime", BUILDER, rt_oci, *rt_args),
            (rt_s2i, rt_floor, rt_oci),
        ),
        "s2iignore": three(
            [S2I, "build", f"{w}/ignore", BUILDER, out_s2i],
            [FLOOR, "standard", f"{w}/ignore", BUILDER, out_floor, "node_modules"],
            oci("build", f"{w}/ignore", BUILDER, out_oci),
            std,
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


def run_and_tidy(side, cmd, tag):
    """Time `cmd`, then remove the image its tag named before (superseded, now untagged), and
    flush the disk, so that the next run does not pay for this one's clean-up. Only our own
    images are removed: a global prune would also take untagged images of other users."""
    if side == "oci":
        result = timed(cmd)
        prune_oci_store()
        subprocess.run(["sync"])
        return result
    before = image_id(tag)
    result = timed(cmd)
    if before and image_id(tag) != before:
        tags = subprocess.run(["docker", "image", "inspect", "-f", "{{len .RepoTags}}", before], capture_output=True, text=True)
        if tags.stdout.strip() == "0":
            subprocess.run(["docker", "rmi", before], capture_output=True)
    subprocess.run(["sync"])
    return result


def bench(name, sides, runs):
    """Each side of `sides` (name: (command, tag)) run `runs` times after a warm-up, the order
    rotating each round (A B C, B C A, C A B, ...), so that whatever one run leaves behind for the
    next (writeback, cache) falls on every side alike."""
    names = list(sides)
    for side in names:  # warm-up
        run_and_tidy(side, *sides[side])
    times = {side: [] for side in names}
    rss = {side: 0 for side in names}
    for i in range(runs):
        order = names[i % len(names):] + names[: i % len(names)]
        for side in order:
            t, r = run_and_tidy(side, *sides[side])
            times[side].append(t)
            rss[side] = max(rss[side], r)
    out = {"workload": name}
    for side in names:
        out[side] = (statistics.median(times[side]), min(times[side]), max(times[side]))
        out[side + "_rss_mib"] = rss[side] / 1024
    for side in [s for s in names if s != "floor"]:
        ratios = [a / b for a, b in zip(times[side], times["floor"])]
        out[side + "_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
    return out


def quick(cmd, runs=21):
    times = []
    for _ in range(runs):
        start = time.monotonic()
        subprocess.run(cmd, capture_output=True)
        times.append(time.monotonic() - start)
    return statistics.median(times) * 1000


def header(runs, sides):
    info = json.loads(sh("docker", "info", "--format", "{{json .}}"))
    return (
        f"Run on {datetime.date.today().isoformat()}: Docker {info.get('ServerVersion')} "
        f"({info.get('Driver')} storage, cgroup {info.get('CgroupVersion')}), kernel {info.get('KernelVersion')}, "
        f"{info.get('NCPU')} CPUs, {info.get('MemTotal', 0) // (1024 ** 3)} GiB; {runs} runs per side after a warm-up, "
        f"interleaved ({', '.join(sides)})."
    )


def table(results, side, columns):
    """The results table of one side (`s2i` or `oci`) against the floor; `columns` names the
    side's time, the floor's time and their ratio."""
    lines = [
        f"| workload | {columns[0]} median (min–max) | {columns[1]} median (min–max) | {columns[2]} median (min–max) | {columns[3]} |",
        "|---|---|---|---|---|",
    ]
    for r in results:
        s, f, q = r[side], r["floor"], r[f"{side}_ratio"]
        lines.append(
            f"| {r['workload']}: {DESCRIPTIONS[r['workload']]} | {s[0]:.2f} s ({s[1]:.2f}–{s[2]:.2f}) | "
            f"{f[0]:.2f} s ({f[1]:.2f}–{f[2]:.2f}) | {q[0]:.2f}x ({q[1]:.2f}–{q[2]:.2f}) | {r[f'{side}_rss_mib']:.1f} MiB |"
        )
    return lines


def render(results, version_ms, argerr_ms, runs, sides):
    lines = [header(runs, sides), ""] + table(results, "s2i", ("s2i", "floor", "s2i/floor", "s2i peak RSS"))
    lines += ["", f"`s2i version`: {version_ms:.1f} ms median; an argument error: {argerr_ms:.1f} ms median (21 runs each)."]
    return "\n".join(lines)


def render_oci(results, runs, sides):
    runc = sh("runc", "--version").splitlines()[0]
    first = header(runs, sides) + f" The oci engine: {runc}, kernel overlay, store on the same disk as Docker's."
    columns = ("s2i --engine oci", "Docker floor", "oci/floor", "peak RSS")
    return "\n".join([first, ""] + table(results, "oci", columns))


def write_section(start, end, table):
    readme = os.path.join(ROOT, "bench/README.md")
    text = open(readme).read()
    text = text[: text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end):]
    open(readme, "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--engines", default="docker,oci", help="docker, oci, or both: which s2i sides run beside the floor")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    engines = [e for e in args.engines.split(",") if e]
    sides = [s for s, e in [("s2i", "docker"), ("floor", None), ("oci", "oci")] if e is None or e in engines]
    prepare()
    chosen = [w for w in args.only.split(",") if w] or list(workloads())
    results = []
    for name in chosen:
        all_sides = workloads()[name]
        print(f"{name} ...", file=sys.stderr)
        results.append(bench(name, {s: all_sides[s] for s in sides}, args.runs))
        r = results[-1]
        line = f"  floor {r['floor'][0]:.2f}s"
        for side in [s for s in sides if s != "floor"]:
            line += f" | {side} {r[side][0]:.2f}s ratio {r[side + '_ratio'][0]:.3f} rss {r[side + '_rss_mib']:.1f}MiB"
        print(line, file=sys.stderr)
    tables = []
    if "s2i" in sides:
        version_ms = quick([S2I, "version"])
        argerr_ms = quick([S2I, "build", "--pull-policy", "sometimes"])
        tables.append(("<!-- results -->", "<!-- /results -->", render(results, version_ms, argerr_ms, args.runs, sides)))
    if "oci" in sides:
        tables.append(("<!-- oci-results -->", "<!-- /oci-results -->", render_oci(results, args.runs, sides)))
    for _, _, table in tables:
        print(table)
    for image in ["s2i-bench/out-s2i", "s2i-bench/out-floor", "s2i-bench/rt-s2i", "s2i-bench/rt-floor"]:
        subprocess.run(["docker", "rmi", image], capture_output=True)
    if not args.no_write and not args.only:
        for start, end, table in tables:
            write_section(start, end, table)


if __name__ == "__main__":
    main()
