#!/usr/bin/env bash
# The minimal s2i image: the static s2i binary alone, as /s2i, ENTRYPOINT ["/s2i"], user
# 65532:65532 (so a pod under the "restricted" Pod Security Standard may run it as it is), and the
# OCI labels org.opencontainers.image.version and .revision. A Tekton step runs it with
# `copy-binary /shared/dir` to hand the binary to a later step that runs in the builder image.
#
#   bash scripts/s2i-image.sh [--binary PATH] [--oci-archive PATH] [TAG]
#
# Builds the static release binary (glibc with crt-static: nothing but crates.io and Debian's
# libc6-dev needed) unless --binary names one, then imports a tar holding only it into the Docker
# daemon as TAG (default s2i:VERSION): no base image, no Dockerfile, no registry. With
# --oci-archive PATH it writes an OCI image archive instead (podman load, skopeo copy
# oci-archive:PATH, s2i --engine oci read it), without any daemon; SOURCE_DATE_EPOCH, when set,
# makes that archive reproducible.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 's2i-image.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

target=x86_64-unknown-linux-gnu
binary=
oci_archive=
tag=
while (($#)); do
  case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --binary=*) binary=${1#*=}; shift ;;
    --oci-archive) oci_archive=${2:?--oci-archive needs a path}; shift 2 ;;
    --oci-archive=*) oci_archive=${1#*=}; shift ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) die "unknown option $1 (see --help)" ;;
    *) [ -z "$tag" ] || die "one TAG only (got $tag and $1)"; tag=$1; shift ;;
  esac
done

for tool in tar sha256sum gzip readelf; do
  command -v "$tool" >/dev/null || die "$tool is missing (Debian: tar, coreutils, gzip, binutils)"
done

if [ -z "$binary" ]; then
  [ "$(uname -m)" = x86_64 ] || die "the static build is for x86_64 Linux; on $(uname -m) give --binary"
  say "building the static release binary (target/static)"
  # --target keeps build scripts and proc-macros dynamic: only the binary is linked statically.
  RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p s2i \
    --target "$target" --target-dir target/static >&2
  binary=target/static/$target/release/s2i
fi
[ -f "$binary" ] || die "$binary: no such file"
# A program interpreter (PT_INTERP) means a dynamic binary, which would need the image's libc.
if readelf --program-headers --wide "$binary" | grep -q 'INTERP'; then
  die "$binary is dynamically linked: it would not run in an image without its libc"
fi

# s2i v0.1.0 (commit 0123abc)
version_line=$("$binary" version)
version=$(sed -n 's/^s2i v\([^ ]*\) .*/\1/p' <<<"$version_line")
revision=$(sed -n 's/.*(commit \([^)]*\)).*/\1/p' <<<"$version_line")
[ -n "$version" ] && [ -n "$revision" ] || die "cannot read the version from \`$binary version\`: $version_line"
tag=${tag:-s2i:$version}

work=$(mktemp -d "${TMPDIR:-/tmp}/s2i-image.XXXXXX")
partial=
trap 'rm -rf "$work" ${partial:+"$partial"}' EXIT
mkdir "$work/root"
install -m 0755 "$binary" "$work/root/s2i"
epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
tar --create --file "$work/layer.tar" --directory "$work/root" --owner=0 --group=0 --numeric-owner \
  --mtime="@$epoch" --format=ustar s2i

user=65532:65532
labels=(
  "org.opencontainers.image.title=s2i"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.licenses=Apache-2.0"
)

if [ -z "$oci_archive" ]; then
  command -v docker >/dev/null || die "docker is missing (or write an OCI archive with --oci-archive PATH)"
  changes=(--change 'ENTRYPOINT ["/s2i"]' --change "USER $user")
  for label in "${labels[@]}"; do changes+=(--change "LABEL $label"); done
  id=$(docker import "${changes[@]}" --message "s2i $version ($revision)" "$work/layer.tar" "$tag")
  say "made $tag ($id): /s2i, s2i $version ($revision)"
  printf '%s\n' "$tag"
  exit 0
fi

# An OCI image layout (one gzip layer, its config, a manifest, the index), as one tar.
layout=$work/layout
mkdir -p "$layout/blobs/sha256"
descriptor=
blob() { # blob FILE MEDIA_TYPE: into the layout; its descriptor in $descriptor, its digest in $digest
  digest=sha256:$(sha256sum "$1" | cut -d' ' -f1)
  cp "$1" "$layout/blobs/sha256/${digest#sha256:}"
  descriptor=$(printf '{"mediaType":"%s","digest":"%s","size":%s' "$2" "$digest" "$(stat -c %s "$1")")
}
diff_id=sha256:$(sha256sum "$work/layer.tar" | cut -d' ' -f1)
gzip -n -c "$work/layer.tar" >"$work/layer.tar.gz"
blob "$work/layer.tar.gz" application/vnd.oci.image.layer.v1.tar+gzip
layer="$descriptor}"
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
label_json=
for label in "${labels[@]}"; do label_json+=${label_json:+,}$(printf '"%s":"%s"' "${label%%=*}" "${label#*=}"); done
printf '{"created":"%s","architecture":"amd64","os":"linux","config":{"User":"%s","Entrypoint":["/s2i"],"Labels":{%s}},"rootfs":{"type":"layers","diff_ids":["%s"]},"history":[{"created":"%s","created_by":"scripts/s2i-image.sh"}]}' \
  "$created" "$user" "$label_json" "$diff_id" "$created" >"$work/config.json"
blob "$work/config.json" application/vnd.oci.image.config.v1+json
config="$descriptor}"
printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":%s,"layers":[%s]}' "$config" "$layer" >"$work/manifest.json"
blob "$work/manifest.json" application/vnd.oci.image.manifest.v1+json
# TAG's tag names the image in the archive (oci-archive:PATH:NAME finds it by that name).
name=${tag##*/}
case "$name" in *:*) ref_name=${name#*:} ;; *) ref_name=latest ;; esac
printf '{"schemaVersion":2,"manifests":[%s,"annotations":{"org.opencontainers.image.ref.name":"%s"}}]}' "$descriptor" "$ref_name" >"$layout/index.json"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
# Written beside its final name and renamed: never a half archive under that name.
partial=$oci_archive.tmp-$$
tar --create --file "$partial" --directory "$layout" --owner=0 --group=0 --numeric-owner --mtime="@$epoch" --sort=name .
mv "$partial" "$oci_archive"
partial=
say "wrote $oci_archive (an OCI archive, manifest $digest, ref $ref_name): /s2i, s2i $version ($revision)"
printf '%s\n' "$oci_archive"
