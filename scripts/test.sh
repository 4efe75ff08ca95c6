#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real parts (the Docker daemon,
# git, HTTP servers, a local registry, runc), then the tests that drive an engine a second
# time against Podman (a private rootful Podman service the test kit starts and removes). Works on
# a fresh Debian machine with Docker and Rust: as root it installs the Debian packages the tests
# need, once; otherwise it says exactly what is missing and how to get it, before any test runs.
# The tests make every image they use themselves (no outside registry is ever needed).
#
#   bash scripts/test.sh [extra cargo test arguments…]
#
# S2I_TEST_NO_INSTALL=1 only checks, never installs. S2I_TEST_ENGINES picks the runs
# (default "docker podman").
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }

engines=${S2I_TEST_ENGINES:-docker podman}
for engine in $engines; do
  case "$engine" in
    docker|podman) ;;
    *) say "S2I_TEST_ENGINES: unknown engine $engine (use docker, podman or both)"; exit 1 ;;
  esac
done
wants() { [[ " $engines " == *" $1 "* ]]; }

# command-or-check  package  why
requirements=(
  "busybox-static|busybox-static|the test base image is made from the host's static busybox"
  "git|git|git sources, and the test kit's repositories"
  "socat|socat|TLS in front of the daemon socket (TLS connection tests)"
  "openssl|openssl|certificates for the TLS tests"
  "debootstrap|debootstrap|the Python builder's Debian base image"
  "docker-registry|docker-registry|a real registry (TLS, htpasswd) for the registry client and credential tests"
  "runc|runc|the daemonless engine's containers (--engine oci)"
  "fuse-overlayfs|fuse-overlayfs|the daemonless engine's rootfs where kernel overlay is refused"
  "skopeo|skopeo|reads the OCI image store and writes OCI archives (s2i-oci image tests)"
  "umoci|umoci|unpacks images of the OCI image store (s2i-oci image tests)"
  "file:/usr/lib/x86_64-linux-gnu/libc.a|libc6-dev|the static s2i binary (glibc, crt-static) that the test kit builds links libc.a"
  "readelf|binutils|scripts/s2i-image.sh checks that the binary it packages is static"
)
if wants podman; then
  requirements+=(
    "podman|podman|the second run of the integration tests, against a Podman service"
    "pkg:netavark|netavark|the Podman service's container networks"
    "pkg:aardvark-dns|aardvark-dns|the Podman service's network DNS"
    "catatonit|catatonit|Podman's init process"
    "runc|runc|the OCI runtime of the Podman service"
    "newuidmap|uidmap|rootless Podman (a throwaway user's subordinate ids)"
  )
fi

have() {
  case "$1" in
    # A dynamic busybox cannot run in an empty image: check the package, not the command.
    busybox-static) dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ;;
    # Helpers that live outside PATH (/usr/lib/podman): the package says.
    pkg:*) dpkg-query -W -f='${Status}' "${1#pkg:}" 2>/dev/null | grep -q 'install ok installed' ;;
    file:*) [ -e "${1#file:}" ] ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
  esac
}

missing=()
reasons=()
for entry in "${requirements[@]}"; do
  IFS='|' read -r check package why <<<"$entry"
  if ! have "$check"; then
    missing+=("$package")
    reasons+=("  $package: $why")
  fi
done

if ((${#missing[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null && [ -z "${S2I_TEST_NO_INSTALL:-}" ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  else
    say "the tests need packages that are not installed:"
    printf '%s\n' "${reasons[@]}" >&2
    say "install them with:  sudo apt-get install --no-install-recommends ${missing[*]}"
    exit 1
  fi
fi

if ! command -v docker >/dev/null 2>&1; then
  say "the docker command is missing: install Docker (apt-get install docker.io) and start its daemon"
  exit 1
fi
if ! docker info >/dev/null 2>&1; then
  say "no Docker daemon answers at ${DOCKER_HOST:-unix:///var/run/docker.sock}:"
  docker info 2>&1 | tail -n 3 | sed 's/^/  /' >&2 || true
  say "start it (systemctl start docker, or dockerd &) or point DOCKER_HOST at one"
  exit 1
fi
if ! command -v cargo >/dev/null 2>&1; then
  say "cargo is missing: install Rust (https://rustup.rs)"
  exit 1
fi
if wants podman && [ "$(id -u)" != 0 ]; then
  say "the Podman run needs root: the test kit starts a rootful Podman service with its own storage"
  say "run as root, or S2I_TEST_ENGINES=docker bash scripts/test.sh for the Docker run alone"
  exit 1
fi

# Every test binary runs even when one fails, so a run shows every failure at once; the Podman
# run comes after the Docker one whatever its outcome, and the script fails if either did.
status=0
if wants docker; then
  say "run 1: everything, against Docker"
  S2I_TEST_ENGINE=docker cargo test --workspace --locked --no-fail-fast "$@" || status=1
fi
if wants podman; then
  say "run 2: the tests that drive an engine, against Podman $(podman version --format '{{.Client.Version}}' 2>/dev/null)"
  # The Python builder's tests stay Docker-only: they would add minutes and test the builder
  # image, not the engine. The rootless Podman test (ignored by default: it needs root) runs here.
  # The tests take turns on the engine (the test kit sees to it): Podman 4.3 mishandles
  # concurrent clients, so this run takes about twice as long as its tests would in parallel.
  extra=(-- --skip python:: --include-ignored)
  for arg in "$@"; do [ "$arg" = -- ] && extra=(--skip python:: --include-ignored); done
  S2I_TEST_ENGINE=podman cargo test --locked --no-fail-fast -p s2i-testkit -p s2i "$@" "${extra[@]}" || status=1
fi
exit "$status"
