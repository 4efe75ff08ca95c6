#!/usr/bin/env bash
# The whole test suite: unit tests, and integration tests against real parts (the Docker daemon,
# git, an HTTP server; later a registry, Podman and runc). Works on a fresh Debian machine with
# Docker and Rust: as root it installs the Debian packages the tests need, once; otherwise it says
# exactly what is missing and how to get it, before any test runs. The tests make every image they
# use themselves (no registry is ever needed).
#
#   bash scripts/test.sh [extra cargo test arguments…]
#
# S2I_TEST_NO_INSTALL=1 only checks, never installs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'test.sh: %s\n' "$*" >&2; }

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
)

have() {
  case "$1" in
    # A dynamic busybox cannot run in an empty image: check the package, not the command.
    busybox-static) dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed' ;;
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

# Every test binary runs even when one fails, so a run shows every failure at once.
exec cargo test --workspace --locked --no-fail-fast "$@"
