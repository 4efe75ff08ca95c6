#!/usr/bin/env bash
# The main job: build s2i, build the example builder image offline, build the
# example app with s2i, run it and fetch its page. Works on a fresh machine
# with Docker and Rust; installs busybox-static when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'install ok installed'; then
  echo "==> installing busybox-static (the offline base of the example builder)"
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q busybox-static
fi

echo "==> building s2i"
cargo build --release -q -p s2i
s2i=./target/release/s2i

echo "==> making the base image from busybox-static"
base=$(cargo run --release -q -p s2i-testkit --bin s2i-base-image)

echo "==> building the builder image s2i-demo/static-web-builder FROM $base"
DOCKER_BUILDKIT=0 docker build -q -t s2i-demo/static-web-builder --build-arg BASE_IMAGE="$base" builders/static-web >/dev/null

echo "==> s2i build examples/hello-web s2i-demo/static-web-builder hello-web"
"$s2i" build examples/hello-web s2i-demo/static-web-builder hello-web

echo "==> running hello-web"
cid=$(docker run -d --rm -p 127.0.0.1::8080 hello-web)
trap 'docker rm -f "$cid" >/dev/null 2>&1 || true' EXIT
port=$(docker port "$cid" 8080/tcp | head -n1 | sed 's/.*://')
for _ in $(seq 50); do
  if page=$(curl -fsS "http://127.0.0.1:$port/" 2>/dev/null); then break; fi
  sleep 0.1
done
echo "$page"
echo "==> done: run it yourself with  docker run --rm -p 8080:8080 hello-web"
