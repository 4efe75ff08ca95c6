#!/usr/bin/env bash
# The main job: build s2i, build the Python builder image (builders/python),
# build the example service examples/python-hello with s2i, run it and fetch
# its page. Works on a fresh Debian machine with Docker and Rust, with or
# without a container registry: the builder's base is python:3.11-slim when it
# can be had, else a Debian bookworm with python3 made here by debootstrap
# (needs root and a Debian mirror; builders/python/make-base.sh, cached).
# PYTHON_BASE_IMAGE=<image> picks the base yourself.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "==> building s2i"
cargo build --release -q -p s2i
s2i=./target/release/s2i

base=${PYTHON_BASE_IMAGE:-}
if [ -z "$base" ]; then
  if docker image inspect python:3.11-slim >/dev/null 2>&1 \
     || timeout 300 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    base=python:3.11-slim
  else
    echo "==> no registry: making the Debian base with python3 offline (debootstrap; once, then cached)"
    base=$(bash builders/python/make-base.sh)
  fi
fi

echo "==> building the builder image s2i-python-builder FROM $base"
# The classic builder takes a local FROM image without asking a registry; its
# deprecation notice is shown only if the build fails.
if ! out=$(DOCKER_BUILDKIT=0 docker build -q -t s2i-python-builder --build-arg BASE_IMAGE="$base" builders/python 2>&1); then
  echo "$out" >&2
  exit 1
fi

echo "==> s2i build examples/python-hello s2i-python-builder python-hello"
"$s2i" build examples/python-hello s2i-python-builder python-hello

echo "==> running python-hello"
cid=$(docker run -d -p 127.0.0.1::8080 python-hello)
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
port=$(docker port "$cid" 8080/tcp | head -n1 | sed 's/.*://')
# GET / with bash's /dev/tcp (no curl needed); prints the body of a 200 answer.
fetch() {
  exec 3<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&3
  local answer
  answer=$(cat <&3); exec 3<&-
  case "$answer" in "HTTP/1."?" 200 "*) printf '%s\n' "${answer#*$'\r\n\r\n'}" ;; *) return 1 ;; esac
}
page=
for _ in $(seq 100); do
  if page=$(fetch 2>/dev/null); then break; fi
  sleep 0.2
done
if [ -z "$page" ]; then
  echo "python-hello did not answer; its log:" >&2
  docker logs "$cid" >&2
  exit 1
fi
echo "$page"
echo "==> done: run it yourself with  docker run --rm -p 8080:8080 python-hello"
