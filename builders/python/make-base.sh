#!/usr/bin/env bash
# Makes a local Debian image with python3, venv and pip, without any container
# registry: debootstrap (variant minbase) a root filesystem on the host, then
# `docker import` it. Used by scripts/demo.sh and the tests as the base of
# builders/python where `python:3.11-slim` cannot be pulled. SUITE picks the
# Debian release, and so the Python: bookworm has 3.11, trixie 3.13. The image
# records its Python as PYTHON_VERSION, as the official python images do.
#
#   bash builders/python/make-base.sh [IMAGE [SUITE]]
#   # default IMAGE s2i-python-base:SUITE, SUITE bookworm
#
# Idempotent: does nothing when IMAGE exists with this script's recipe (its
# `Comment`) and its PYTHON_VERSION. The root filesystem tarball is cached in
# ${XDG_CACHE_HOME:-$HOME/.cache}/s2i, so that making the image again after a
# `docker rmi` is a plain import. Needs root (debootstrap) and an apt mirror
# (DEBIAN_MIRROR, default http://deb.debian.org/debian); installs debootstrap
# with apt-get when it is missing. Prints the image name on stdout.
set -euo pipefail

suite=${2:-bookworm}
image=${1:-s2i-python-base:$suite}
case "$suite" in
  *[!a-z]* | "") echo "make-base: SUITE must be a Debian release name (bookworm, trixie…), not '$suite'" >&2; exit 2 ;;
esac
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
# python3-wheel-whl puts wheel's own wheel next to pip's and setuptools' in
# /usr/share/python-wheels: the tests serve them from a local index, so that
# pip can build pyproject.toml projects where no real index can be reached.
packages=python3,python3-venv,python3-pip,python3-wheel-whl,ca-certificates
# Changing the recipe changes this mark, so an older image or tarball is
# replaced rather than reused.
recipe="s2i python base: debian $suite minbase + $packages (v1)"
cache_dir=${XDG_CACHE_HOME:-$HOME/.cache}/s2i
tarball=$cache_dir/python-base-$suite-$(printf '%s' "$recipe" | cksum | cut -d' ' -f1).tar.gz

log() { echo "make-base: $*" >&2; }

if [ "$(docker image inspect --format '{{.Comment}}' "$image" 2>/dev/null)" = "$recipe" ] &&
   docker image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | grep -q '^PYTHON_VERSION='; then
  echo "$image"
  exit 0
fi

if [ ! -s "$tarball" ]; then
  if ! command -v debootstrap >/dev/null; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2 && apt-get install -y -q --no-install-recommends debootstrap >&2
  fi
  [ "$(id -u)" = 0 ] || { log "debootstrap needs root"; exit 1; }
  mkdir -p "$cache_dir"
  work=$(mktemp -d "${TMPDIR:-/tmp}/s2i-python-base.XXXXXX")
  root=$work/root
  cleanup() {
    # Never remove anything through a mount a failed debootstrap left behind
    # (proc, sysfs, a bind of /dev).
    awk -v r="$root/" 'index($2, r) == 1 { print $2 }' /proc/mounts | sort -r |
      while read -r mnt; do umount -l "$mnt" || true; done
    rm -rf --one-file-system "$work"
  }
  trap cleanup EXIT
  log "debootstrap $suite ($packages) from $mirror"
  start=$(date +%s)
  fail() {
    tail -n 30 "$work/debootstrap.log" >&2
    if [ -f "$root/debootstrap/debootstrap.log" ]; then tail -n 30 "$root/debootstrap/debootstrap.log" >&2; fi
    log "debootstrap failed: $1"
    exit 1
  }
  # Two stages, so that dpkg can be told not to fsync every file before it
  # installs the packages: that halves the time (about 40 s instead of 90 s
  # here), and a crash half-way is no concern for a tree that is thrown away.
  debootstrap --foreign --variant=minbase --include="$packages" "$suite" "$root" "$mirror" \
    >"$work/debootstrap.log" 2>&1 || fail "downloading and unpacking"
  mkdir -p "$root/etc/dpkg/dpkg.cfg.d"
  echo force-unsafe-io >"$root/etc/dpkg/dpkg.cfg.d/s2i-unsafe-io"
  chroot "$root" /debootstrap/debootstrap --second-stage >>"$work/debootstrap.log" 2>&1 \
    || fail "installing the packages"
  rm -f "$root/etc/dpkg/dpkg.cfg.d/s2i-unsafe-io"
  # What an image never needs: downloaded packages, package lists, docs.
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* "$root"/var/log/*.log "$root"/debootstrap
  # The host's resolver and hostname are not the image's business.
  : >"$root/etc/resolv.conf"
  : >"$root/etc/hostname"
  log "debootstrap done in $(( $(date +%s) - start )) s; packing $tarball"
  tar --numeric-owner --one-file-system -C "$root" -czf "$tarball.part" .
  mv "$tarball.part" "$tarball"
  # Tarballs of older recipes are of no further use.
  for old_tarball in "$cache_dir"/python-base-"$suite"-*.tar.gz; do
    [ "$old_tarball" = "$tarball" ] || rm -f "$old_tarball"
  done
  cleanup
  trap - EXIT
fi

# The Python the suite ships: the upstream part of the python3 package's version
# (3.11.2-1+b1 is 3.11.2), read from the tree's dpkg status.
python_version=$(tar -xzOf "$tarball" ./var/lib/dpkg/status |
  awk '/^Package: /{p=$2} p=="python3" && /^Version: / && !v {v=$2} END {print v}' | sed 's/^[0-9]*://; s/-.*//')
case "$python_version" in
  3.*) ;;
  *) log "no python3 package version in $tarball (got '$python_version')"; exit 1 ;;
esac
log "importing $tarball as $image (Python $python_version)"
old=$(docker image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change "ENV PYTHON_VERSION=$python_version" \
  --change 'CMD ["/bin/bash"]' \
  --message "$recipe" \
  "$tarball" "$image" >/dev/null
# An outdated image from an older recipe: drop it unless other images use it.
if [ -n "$old" ]; then docker rmi "$old" >/dev/null 2>&1 || true; fi
echo "$image"
