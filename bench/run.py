#!/usr/bin/env python3
"""s2i's benchmark: each workload built by `s2i` and by the floor (bench/floor: only the Engine API
calls that cannot be avoided for the same image), interleaved A B A B, after a warm-up; and by
`s2i --engine oci` (the daemonless engine: an OCI store and runc), against the same Docker floor.

    python3 bench/run.py [--runs 5] [--only tiny,many,...] [--engines docker,oci,inplace] [--no-write]

The in-place side (`--engines inplace`) runs the static s2i inside an unprivileged container of
the builder itself (`docker run --user 1001:0 --cap-drop ALL --security-opt no-new-privileges`),
reading the builder from, and pushing to, a local TLS registry (Debian's docker-registry) on
127.0.0.1; beside it, Debian's buildah (`--isolation chroot`, vfs storage) is tried in a container
with the same settings, and the one-file-change push is measured.

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
# The in-place side: the static binary (it runs in the builder's container), the registry.
STATIC_TARGET = "x86_64-unknown-linux-gnu"
S2I_STATIC = os.path.join(ROOT, "target/static", STATIC_TARGET, "release/s2i")
REGISTRY_DIR = os.path.join(WORK, "registry")
INPLACE_CACHE = os.path.join(WORK, "inplace-cache")
INPLACE_USER = "1001:0"
REGISTRY = {}  # host, process, cert: set by prepare_inplace


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


# Run inside the builder's container: s2i, with its peak RSS (VmHWM, polled: /usr/bin/time is not
# in the image, and would measure the docker CLI outside it) told on stderr at the end.
INPLACE_WRAPPER = r"""read t0 _ < /proc/uptime; /opt/s2i/s2i "$@" & p=$!; h=0
while v=$(grep VmHWM /proc/$p/status 2>/dev/null) && [ -n "$v" ]; do h=$(echo $v | cut -d' ' -f2); sleep 0.05; done
wait $p; r=$?; read t1 _ < /proc/uptime; echo "peak-rss-kib $h" >&2; echo "s2i-seconds $t0 $t1" >&2; exit $r"""


# Which runtime plays the kubelet: Docker (its storage driver here is fuse-overlayfs) or a private
# rootful Podman with the kernel's overlay, the kind of root a Kubernetes node gives a pod.
POD_RUNTIME = {"name": "docker"}


def podman(*args):
    d = os.path.join(WORK, "podman")
    return ["podman", "--root", f"{d}/root", "--runroot", f"{d}/run", "--tmpdir", f"{d}/tmp", "--storage-driver", "overlay",
            "--cgroup-manager", "cgroupfs", "--events-backend", "file", *args]


def podman_ulimits():
    """Podman's default ulimits ask runc for more than this machine's hard limits: ask for those."""
    limits = {}
    for line in open("/proc/self/limits"):
        for name, key in [("Max open files", "nofile"), ("Max processes", "nproc")]:
            if line.startswith(name):
                hard = line[len(name):].split()[1]
                n = 32768 if key == "nproc" else 1 << 20
                if hard != "unlimited":
                    n = min(int(hard), n)
                limits[key] = n
    return [a for k, n in limits.items() for a in ("--ulimit", f"{k}={n}:{n}")]


def pod_run(mounts, image, cmd, user=INPLACE_USER):
    """`docker run` (or `podman run`) as a restricted pod runs a step: a non-root uid in group 0,
    every capability dropped, no privilege escalation, the runtime's default seccomp profile
    (never --privileged)."""
    run = ["docker", "run"] if POD_RUNTIME["name"] == "docker" else podman("run", *podman_ulimits())
    if POD_RUNTIME["name"] == "podman":
        image = POD_RUNTIME["images"][image]
    args = [*run, "--rm", "--network", "host", "--user", user, "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    for m in mounts:
        args += ["-v", m]
    return args + [image, *cmd]


def inplace(src, kind, extra=()):
    """The in-place side's command for source `src`: the builder's own container builds and pushes
    `bench/<kind>-inplace` to the local registry."""
    if not REGISTRY:
        return None
    reg = REGISTRY["host"]
    mounts = [f"{S2I_STATIC}:/opt/s2i/s2i:ro", f"{src}:/workspace/source:ro", f"{REGISTRY['cert']}:/workspace/ca.pem:ro", f"{INPLACE_CACHE}:/workspace/cache"]
    cmd = ["sh", "-c", INPLACE_WRAPPER, "s2i", "build", "/workspace/source", f"{reg}/bench/builder:latest", f"{reg}/bench/{kind}-inplace:latest",
           "--engine", "in-place", "--push", "--ca-file", "/workspace/ca.pem", "-q", *extra]
    return pod_run(mounts, BUILDER, cmd)


def prepare_inplace():
    """The static s2i (release), a TLS registry on 127.0.0.1 (a self-signed certificate; Docker
    trusts 127.0.0.0/8 registries without one), the builder and a runtime image without scripts
    pushed there, and a first incremental build for the cache."""
    print("building the static s2i, starting the registry ...", file=sys.stderr)
    env = dict(os.environ, RUSTFLAGS="-C target-feature=+crt-static")
    env.pop("CARGO_TARGET_DIR", None)
    subprocess.run(["cargo", "build", "--release", "-q", "--locked", "-p", "s2i", "--target", STATIC_TARGET, "--target-dir", os.path.join(ROOT, "target/static")],
                   cwd=ROOT, check=True, env=env)
    subprocess.run(["rm", "-rf", REGISTRY_DIR, INPLACE_CACHE], check=True)
    os.makedirs(REGISTRY_DIR)
    os.makedirs(INPLACE_CACHE)
    os.chmod(INPLACE_CACHE, 0o777)
    cert, key = os.path.join(REGISTRY_DIR, "cert.pem"), os.path.join(REGISTRY_DIR, "key.pem")
    sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
       "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1")
    os.chmod(cert, 0o644)
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = os.path.join(REGISTRY_DIR, "config.yml")
    with open(config, "w") as f:
        f.write(f"version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {REGISTRY_DIR}/data\n"
                f"http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n")
    proc = subprocess.Popen(["docker-registry", "serve", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    REGISTRY.update(host=f"127.0.0.1:{port}", process=proc, cert=cert)
    base = sh("cargo", "run", "--release", "-q", "-p", "s2i-testkit", "--bin", "s2i-base-image", cwd=ROOT)
    for local, remote in [(BUILDER, "bench/builder:latest"), (base, "bench/runtime-plain:latest")]:
        sh("docker", "tag", local, f"127.0.0.1:{port}/{remote}")
        sh("docker", "push", "-q", f"127.0.0.1:{port}/{remote}")
    if POD_RUNTIME["name"] == "podman":
        # The pod's image, pulled by the Podman "kubelet" from the registry, as a node would.
        subprocess.run(["rm", "-rf", os.path.join(WORK, "podman")], check=True)
        remote = f"127.0.0.1:{port}/bench/builder:latest"
        sh(*podman("pull", "-q", "--tls-verify=false", remote))
        POD_RUNTIME["images"] = {BUILDER: remote}
        POD_RUNTIME["driver"] = sh(*podman("info", "--format", "{{.Store.GraphDriverName}}"))
    # The incremental workload's first build, whose save-artifacts fills the cache; and the oci
    # side's, under the name it pushes to (its previous image, with the 200 MB of artifacts).
    subprocess.run(inplace(os.path.join(WORK, "inc-seed"), "inc", ["--incremental", "--cache-dir", "/workspace/cache"]), check=True, capture_output=True)
    subprocess.run(oci("build", os.path.join(WORK, "inc-seed"), BUILDER, f"127.0.0.1:{port}/bench/inc-oci:latest", "--push", "--ca-file", cert, "-q"),
                   check=True, capture_output=True)


def stop_registry():
    if REGISTRY.get("process"):
        REGISTRY["process"].terminate()
        REGISTRY["process"].wait()


def registry_blobs():
    """Every blob the registry stores, with its size."""
    root = os.path.join(REGISTRY_DIR, "data/docker/registry/v2/blobs")
    found = {}
    for dirpath, _, files in os.walk(root):
        if "data" in files:
            found[os.path.basename(dirpath)] = os.path.getsize(os.path.join(dirpath, "data"))
    return found


def one_file_push():
    """An in-place build of the 30,000-file source pushed, then one file changed and the build
    pushed again: the bytes the second push stored (new blobs), beside the image's size."""
    src = os.path.join(WORK, "many")
    changed = os.path.join(src, "d0000", "f0000.dat")
    original = open(changed, "rb").read()
    subprocess.run(inplace(src, "delta"), check=True, capture_output=True)
    before = registry_blobs()
    try:
        with open(changed, "ab") as f:
            f.write(b"one more line\n")
        subprocess.run(inplace(src, "delta"), check=True, capture_output=True)
    finally:
        with open(changed, "wb") as f:
            f.write(original)
    after = registry_blobs()
    new = {d: n for d, n in after.items() if d not in before}
    manifest = json.loads(sh("skopeo", "inspect", "--raw", "--tls-verify=false", f"docker://{REGISTRY['host']}/bench/delta-inplace:latest"))
    layers = [l["size"] for l in manifest["layers"]]
    return {"new_blobs": len(new), "new_bytes": sum(new.values()), "image_bytes": sum(layers), "layers": len(layers), "top_layer": layers[-1]}


def placement_floor(runs):
    """The least an in-place build of the 30,000-file source can take in this container's root:
    the builder's own tar unpacking it to /tmp/src (as the reference's `tar -x` does), nothing
    else; timed inside the container, median of `runs`."""
    script = ("read t0 _ < /proc/uptime; mkdir /tmp/src && tar -C /workspace/source -cf - . | tar -C /tmp/src -xf - && "
              "read t1 _ < /proc/uptime && echo \"$t0 $t1\"")
    times = []
    for _ in range(runs):
        out = sh(*pod_run([f"{WORK}/many:/workspace/source:ro"], BUILDER, ["sh", "-c", script]))
        t0, t1 = out.split()[-2:]
        times.append(float(t1) - float(t0))
    return statistics.median(times), min(times), max(times)


def try_buildah():
    """Debian's buildah (the host's package: its binary and libraries mounted read-only into a
    Debian container) with `--isolation chroot` and vfs storage, under the same restrictions as the
    in-place side, building the tiny workload as s2i's Dockerfile would. Returns (seconds, None)
    or (None, why it could not build)."""
    # The builder itself, as the in-place side: buildah and the host's libraries (its loader
    # included) are mounted in, so no Debian image is needed.
    base = BUILDER
    # The pod's uid has a name, as OpenShift gives it one (buildah looks it up).
    passwd = os.path.join(WORK, "buildah-passwd")
    with open(passwd, "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\nbuild:x:1001:0::/tmp:/bin/sh\n")
    os.chmod(passwd, 0o644)
    mounts = ["/usr/bin/buildah:/usr/bin/buildah:ro", "/etc/containers:/etc/containers:ro", f"{WORK}/tiny:/workspace/source:ro", f"{passwd}:/etc/passwd:ro"]
    libs = sh("ldd", "/usr/bin/buildah")
    for line in libs.splitlines():
        parts = line.split("=>")
        path = parts[-1].split()[0] if parts[-1].split() else ""
        if path.startswith("/"):
            mounts.append(f"{os.path.realpath(path)}:{path}:ro")
    reg = REGISTRY["host"]
    script = (f"mkdir -p /tmp/ctx && cp -r /workspace/source /tmp/ctx/src && printf 'FROM {reg}/bench/builder:latest\\nCOPY src /tmp/src\\n"
              f"RUN /usr/libexec/s2i/assemble\\nCMD [\"/usr/libexec/s2i/run\"]\\n' > /tmp/ctx/Dockerfile && "
              f"buildah --storage-driver vfs --root /tmp/b/root --runroot /tmp/b/run bud --isolation chroot --tls-verify=false "
              f"-t {reg}/bench/out-buildah:latest /tmp/ctx && buildah --storage-driver vfs --root /tmp/b/root --runroot /tmp/b/run "
              f"push --tls-verify=false {reg}/bench/out-buildah:latest")
    cmd = pod_run(mounts, base, ["sh", "-c", script]) [:]
    at = cmd.index("run") + 1
    cmd[at:at] = ["-e", "HOME=/tmp"]
    start = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True)
    took = time.monotonic() - start
    if p.returncode != 0:
        print("buildah's output:\n" + p.stderr[-3000:], file=sys.stderr)
        lines = [l for l in p.stderr.strip().splitlines() if l.strip()]
        # The first refusal says why (Docker's seccomp refuses the user namespace; Podman's allows
        # it, but one uid cannot become root's group there); what follows is buildah failing to
        # read its child's status.
        why = [l for l in lines if "not permitted" in l or "unshare" in l or l.startswith("Error during")] or lines[-1:]
        return None, (why[0] if why else f"exit {p.returncode}")[:300]
    return took, None


def workloads():
    """name: {side: (command, its output tag)} for the sides s2i (Docker), floor (Docker) and oci
    (s2i --engine oci)."""
    w = WORK
    out_s2i, out_floor, out_oci = "s2i-bench/out-s2i:latest", "s2i-bench/out-floor:latest", "s2i-bench/out-oci:latest"
    inc_s2i, inc_floor, inc_oci = "s2i-bench/inc-s2i:latest", "s2i-bench/inc-floor:latest", "s2i-bench/inc-oci:latest"
    rt_s2i, rt_floor, rt_oci = "s2i-bench/rt-s2i:latest", "s2i-bench/rt-floor:latest", "s2i-bench/rt-oci:latest"
    rt_args = ["--runtime-image", RUNTIME, "-a", "/tmp/src/app.bin:."]

    def three(s2i, floor, oci_cmd, tags, inplace_cmd=None):
        sides = {"s2i": (s2i, tags[0]), "floor": (floor, tags[1]), "oci": (oci_cmd, tags[2])}
        if REGISTRY and inplace_cmd:
            sides["inplace"] = (inplace_cmd, None)
        return sides

    ip = inplace
    reg = REGISTRY.get("host", "")

    def oci_build(src, tag, *extra):
        """The oci side's build; beside the in-place side, which pushes, it pushes too, to the same
        registry, so that the two compare like for like."""
        if not REGISTRY:
            return oci("build", src, BUILDER, tag, *extra)
        remote = f"{reg}/bench/{tag.split('/', 1)[1]}"
        return oci("build", src, BUILDER, remote, "--push", "--ca-file", REGISTRY["cert"], *extra)

    ip_rt = ["--runtime-image", f"{reg}/bench/runtime-plain:latest", "-a", "/tmp/src/app.bin:."]

    std = (out_s2i, out_floor, out_oci)
    return {
        "tiny": three([S2I, "build", f"{w}/tiny", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/tiny", BUILDER, out_floor], oci_build(f"{w}/tiny", out_oci), std,
                      ip(f"{w}/tiny", "out")),
        "many": three([S2I, "build", f"{w}/many", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/many", BUILDER, out_floor], oci_build(f"{w}/many", out_oci), std,
                      ip(f"{w}/many", "out")),
        "big": three([S2I, "build", f"{w}/big", BUILDER, out_s2i], [FLOOR, "standard", f"{w}/big", BUILDER, out_floor], oci_build(f"{w}/big", out_oci), std,
                     ip(f"{w}/big", "out")),
        "incremental": three(
            [S2I, "build", f"{w}/inc", BUILDER, inc_s2i, "--incremental"],
            [FLOOR, "incremental", f"{w}/inc", BUILDER, inc_floor],
            oci_build(f"{w}/inc", inc_oci, "--incremental"),
            (inc_s2i, inc_floor, inc_oci),
            ip(f"{w}/inc", "inc", ["--incremental", "--cache-dir", "/workspace/cache"]),
        ),
        "runtime": three(
            [S2I, "build", f"{w}/runtime", BUILDER, rt_s2i, *rt_args],
            [FLOOR, "runtime", f"{w}/runtime", BUILDER, RUNTIME, "/tmp/src/app.bin", rt_floor],
            oci_build(f"{w}/runtime", rt_oci, *rt_args),
            (rt_s2i, rt_floor, rt_oci),
            ip(f"{w}/runtime", "rt", ip_rt),
        ),
        "s2iignore": three(
            [S2I, "build", f"{w}/ignore", BUILDER, out_s2i],
            [FLOOR, "standard", f"{w}/ignore", BUILDER, out_floor, "node_modules"],
            oci_build(f"{w}/ignore", out_oci),
            std,
            ip(f"{w}/ignore", "out"),
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
    """Wall time, peak RSS (KiB) and, for the in-place side, the s2i process's own time (from the
    container's /proc/uptime, 10 ms steps: without the container's start and stop) of one run."""
    start = time.monotonic()
    p = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    took = time.monotonic() - start
    if p.returncode != 0:
        sys.exit(f"{' '.join(cmd[:12])} ... failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = p.stderr.strip().splitlines()
    # The in-place side reports s2i's own peak (VmHWM, polled inside its container): /usr/bin/time
    # would only see the docker CLI.
    inner = [l for l in lines if l.startswith("peak-rss-kib ")]
    if inner:
        t0, t1 = [l for l in lines if l.startswith("s2i-seconds ")][-1].split()[1:]
        return took, int(inner[-1].split()[1]), float(t1) - float(t0)
    return took, int(lines[-1]), None


def image_id(tag):
    p = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag], capture_output=True, text=True)
    return p.stdout.strip() if p.returncode == 0 else None


def run_and_tidy(side, cmd, tag):
    """Time `cmd`, then remove the image its tag named before (superseded, now untagged), and
    flush the disk, so that the next run does not pay for this one's clean-up. Only our own
    images are removed: a global prune would also take untagged images of other users."""
    if side in ("oci", "inplace"):
        result = timed(cmd)
        if side == "oci":
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
    process = []  # the in-place s2i process's own times
    for i in range(runs):
        order = names[i % len(names):] + names[: i % len(names)]
        for side in order:
            t, r, own = run_and_tidy(side, *sides[side])
            times[side].append(t)
            rss[side] = max(rss[side], r)
            if side == "inplace":
                process.append(own)
    out = {"workload": name}
    for side in names:
        out[side] = (statistics.median(times[side]), min(times[side]), max(times[side]))
        out[side + "_rss_mib"] = rss[side] / 1024
    if process:
        out["inplace_process"] = (statistics.median(process), min(process), max(process))
        if "oci" in names:
            ratios = [a / b for a, b in zip(process, times["oci"])]
            out["inplace_process_oci_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
    for side in [s for s in names if s != "floor"]:
        ratios = [a / b for a, b in zip(times[side], times["floor"])]
        out[side + "_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
    if "inplace" in names and "oci" in names:
        ratios = [a / b for a, b in zip(times["inplace"], times["oci"])]
        out["inplace_oci_ratio"] = (statistics.median(ratios), min(ratios), max(ratios))
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


def render_inplace(results, runs, sides, delta, buildah):
    if POD_RUNTIME["name"] == "podman":
        pod = f"a private rootful Podman ({sh('podman', '--version')}, {POD_RUNTIME['driver']} storage: the kernel's overlay, as a Kubernetes node's), its default seccomp"
    else:
        pod = "Docker (its fuse-overlayfs storage), Docker's default seccomp"
    first = header(runs, sides) + (
        f" The in-place engine: the static s2i in a container of the builder as uid {INPLACE_USER}, --cap-drop ALL, "
        f"no-new-privileges, run by {pod}; builder read from and image pushed to a local TLS registry "
        "(docker-registry, 127.0.0.1). \"in-place\" is the whole `docker run` (the container's start and stop "
        "included), \"s2i process\" the s2i process alone, timed inside the container (/proc/uptime, 10 ms steps). "
        "The oci side pushes its image to the same registry, so that it does the same work."
    )
    lines = [first, "",
             "| workload | in-place median (min–max) | s2i process median (min–max) | oci + push median | Docker floor median | s2i process/oci median (min–max) | in-place/floor median (min–max) | in-place peak RSS |",
             "|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "inplace" not in r:
            continue
        i, f, p = r["inplace"], r["floor"], r["inplace_process"]
        o = f"{r['oci'][0]:.2f} s" if "oci" in r else "–"
        io = r.get("inplace_process_oci_ratio")
        io = f"{io[0]:.2f}x ({io[1]:.2f}–{io[2]:.2f})" if io else "–"
        q = r["inplace_ratio"]
        lines.append(f"| {r['workload']}: {DESCRIPTIONS[r['workload']]} | {i[0]:.2f} s ({i[1]:.2f}–{i[2]:.2f}) | {p[0]:.2f} s ({p[1]:.2f}–{p[2]:.2f}) | "
                     f"{o} | {f[0]:.2f} s | {io} | {q[0]:.2f}x ({q[1]:.2f}–{q[2]:.2f}) | {r['inplace_rss_mib']:.1f} MiB |")
    if delta:
        lines += ["", f"A push after a one-file change of the 30,000-file source: {delta['new_blobs']} new blobs, "
                      f"{delta['new_bytes'] / MIB:.1f} MiB stored by the registry (the new layer, {delta['top_layer'] / MIB:.1f} MiB, the config and the manifest); "
                      f"the image is {delta['layers']} layers, {delta['image_bytes'] / MIB:.1f} MiB: the builder's layers were not sent again."]
        p = delta["placement"]
        lines += ["", f"The builder's own `tar -x` unpacking the same 30,000 files to /tmp/src in the same kind of container, and nothing else "
                      f"(what the reference's build does first, and the least any build in this root pays): {p[0]:.2f} s ({p[1]:.2f}–{p[2]:.2f})."]
    if buildah:
        took, why = buildah
        lines += ["", f"buildah (Debian's {sh('buildah', '--version')}, --isolation chroot, vfs storage), in a container with the same "
                      "restrictions, building and pushing the tiny workload: " + (f"{took:.2f} s." if took is not None else f"cannot build there: `{why}`")]
    return "\n".join(lines)


def write_section(start, end, table):
    readme = os.path.join(ROOT, "bench/README.md")
    text = open(readme).read()
    text = text[: text.index(start) + len(start)] + "\n" + table + "\n" + text[text.index(end):]
    open(readme, "w").write(text)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    ap.add_argument("--engines", default="docker,oci", help="docker, oci, inplace (comma-separated): which s2i sides run beside the floor")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--pod-runtime", default="docker", choices=["docker", "podman"],
                    help="what runs the in-place side's container: Docker, or a private rootful Podman with kernel overlay")
    args = ap.parse_args()
    POD_RUNTIME["name"] = args.pod_runtime
    engines = [e for e in args.engines.split(",") if e]
    sides = [s for s, e in [("s2i", "docker"), ("floor", None), ("oci", "oci"), ("inplace", "inplace")] if e is None or e in engines]
    prepare()
    if "inplace" in sides:
        prepare_inplace()
    chosen = [w for w in args.only.split(",") if w] or list(workloads())
    results = []
    for name in chosen:
        all_sides = workloads()[name]
        print(f"{name} ...", file=sys.stderr)
        results.append(bench(name, {s: all_sides[s] for s in sides if s in all_sides}, args.runs))
        r = results[-1]
        line = f"  floor {r['floor'][0]:.2f}s"
        for side in [s for s in sides if s != "floor" and s in r]:
            line += f" | {side} {r[side][0]:.2f}s ratio {r[side + '_ratio'][0]:.3f} rss {r[side + '_rss_mib']:.1f}MiB"
        if "inplace_process" in r:
            line += f" | in-place s2i process {r['inplace_process'][0]:.2f}s"
        print(line, file=sys.stderr)
    tables = []
    if "s2i" in sides:
        version_ms = quick([S2I, "version"])
        argerr_ms = quick([S2I, "build", "--pull-policy", "sometimes"])
        tables.append(("<!-- results -->", "<!-- /results -->", render(results, version_ms, argerr_ms, args.runs, sides)))
    if "oci" in sides:
        tables.append(("<!-- oci-results -->", "<!-- /oci-results -->", render_oci(results, args.runs, sides)))
    if "inplace" in sides:
        print("one-file push, buildah ...", file=sys.stderr)
        delta = one_file_push() if "many" in chosen else None
        if delta:
            delta["placement"] = placement_floor(args.runs)
        buildah = try_buildah()
        stop_registry()
        marker = "inplace-results" if args.pod_runtime == "docker" else "inplace-podman-results"
        tables.append((f"<!-- {marker} -->", f"<!-- /{marker} -->", render_inplace(results, args.runs, sides, delta, buildah)))
    for _, _, table in tables:
        print(table)
    for image in ["s2i-bench/out-s2i", "s2i-bench/out-floor", "s2i-bench/rt-s2i", "s2i-bench/rt-floor"]:
        subprocess.run(["docker", "rmi", image], capture_output=True)
    if not args.no_write and not args.only:
        # A run for the in-place engine writes its own section only: the other tables keep their
        # own runs (more of them, on a quieter machine).
        if "inplace" in sides:
            tables = [t for t in tables if t[0].startswith("<!-- inplace")]
        for start, end, table in tables:
            write_section(start, end, table)


if __name__ == "__main__":
    main()
