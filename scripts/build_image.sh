#!/usr/bin/env bash
# Build the operator's OCI image without a container registry, then smoke-run it. Steps:
#   1. a Debian bookworm rootfs from Debian's packages (debootstrap --variant=minbase), cached as
#      build/rootfs-bookworm.tar and reused when present;
#   2. a local base image from it (buildah from scratch + the rootfs), reused when present;
#   3. `buildah bud --isolation chroot` of the Containerfile on that base (or on BASE, e.g. python:3.11-slim);
#   4. a smoke run in the image (harmony --version, harmony operator run --help, every module imports, the
#      non-root uid of its USER);
#   5. the OCI archive build/harmony-VERSION.oci.tar (`buildah push ... oci-archive:`).
# One version source: pyproject.toml's version names the image and the archive (the chart's appVersion and
# default tag must equal it; tests/test_image.py checks), its torch pin is the torch installed.
# pip's sources are this machine's (pip config: index-url, extra-index-url, find-links, trusted-host, cert;
# local ones mounted read-only into the build); torch comes from PyTorch's CPU index unless a CPU wheel of the pinned version
# lies in a local find-links directory. Needs root, buildah and debootstrap. Usage:
#   bash scripts/build_image.sh            build, smoke-run, write the archive (`make image`)
#   bash scripts/build_image.sh --print    print the image reference, version and archive path; build nothing
# Environment: PYTHON (python3.11), BASE (empty: the debootstrap base), IMAGE_REPOSITORY, TORCH_INDEX_URL
# (overrides the choice above; empty: pip's sources), DEBIAN_MIRROR.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
IMAGE_REPOSITORY="${IMAGE_REPOSITORY:-ghcr.io/harmony-autoscaler/harmony}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
BUILD="$ROOT/build"
ROOTFS_TAR="$BUILD/rootfs-bookworm.tar"
BASE_IMAGE="localhost/harmony-base:bookworm"

# pyproject.toml's version and torch pin: the one source of both.
read -r VERSION TORCH_VERSION < <("$PYTHON" - pyproject.toml <<'PYEOF'
import sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
torch = [d.split("==", 1)[1] for d in project["dependencies"] if d.replace(" ", "").startswith("torch==")]
print(project["version"], torch[0])
PYEOF
)
IMAGE="$IMAGE_REPOSITORY:$VERSION"
ARCHIVE="$BUILD/harmony-$VERSION.oci.tar"

if [ "${1:-}" = "--print" ]; then
    printf 'image=%s\nversion=%s\ntorch=%s\narchive=%s\n' "$IMAGE" "$VERSION" "$TORCH_VERSION" \
        "${ARCHIVE#"$ROOT"/}"
    exit 0
fi
[ $# -eq 0 ] || { echo "usage: $0 [--print]" >&2; exit 2; }
for tool in buildah debootstrap; do
    command -v "$tool" >/dev/null || { echo "error: $tool not found (apt-get install buildah debootstrap)" >&2; exit 2; }
done

# Every buildah container this script makes is removed on exit, whatever happens.
CONTAINERS=()
cleanup() {
    local ctr
    for ctr in "${CONTAINERS[@]}"; do buildah rm "$ctr" >/dev/null || echo "warning: buildah rm $ctr failed" >&2; done
}
trap cleanup EXIT
# new_container IMAGE: a container of IMAGE in CTR (not a command substitution: CONTAINERS must be this shell's).
CTR=""
new_container() {
    CTR="$(buildah from --pull-never "$1")"
    CONTAINERS+=("$CTR")
}

# 1. A minimal bookworm rootfs, with the security and updates suites for the image's apt-get.
base_rootfs() {
    if [ -s "$ROOTFS_TAR" ]; then
        echo "image: reusing $ROOTFS_TAR"
        return
    fi
    local dir="$BUILD/rootfs-bookworm.tmp"
    rm -rf "$dir"
    mkdir -p "$dir"
    echo "image: debootstrap --variant=minbase bookworm (a few minutes)"
    debootstrap --variant=minbase bookworm "$dir" "$DEBIAN_MIRROR" >"$BUILD/debootstrap.log" 2>&1 \
        || { tail -n 20 "$BUILD/debootstrap.log" >&2; exit 1; }
    cat >"$dir/etc/apt/sources.list" <<SOURCES
deb $DEBIAN_MIRROR bookworm main
deb $DEBIAN_MIRROR bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
    rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/var/log/*.log "$dir"/tmp/*
    tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    rm -rf "$dir"
}

# Run once in the base: the security suite's fixes (debootstrap installs the point release), and no
# documentation, man pages or translations, now or from later apt-get installs (copyright files stay).
BASE_SETUP='set -eu
cat >/etc/dpkg/dpkg.cfg.d/90-harmony-nodoc <<NODOC
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
NODOC
find /usr/share/doc -type f ! -name copyright -delete
rm -rf /usr/share/man/* /usr/share/info/* /usr/share/locale/*
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get upgrade -y -qq
apt-get clean
rm -rf /var/lib/apt/lists/*'

# 2. The rootfs as a local image (buildah add unpacks the tar, owners and modes kept).
base_image() {
    if buildah inspect --type image "$BASE_IMAGE" >/dev/null 2>&1; then
        echo "image: reusing $BASE_IMAGE"
        return
    fi
    new_container scratch
    buildah add --quiet "$CTR" "$ROOTFS_TAR" /
    buildah run --isolation chroot "$CTR" -- sh -c "$BASE_SETUP"
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        --cmd /bin/bash --label org.opencontainers.image.title="debian bookworm minbase (debootstrap)" "$CTR"
    buildah commit --quiet "$CTR" "$BASE_IMAGE" >/dev/null
    echo "image: committed $BASE_IMAGE"
}

# This machine's pip sources as pip options (EXTRA_PIP_ARGS), local files and directories mounted read-only at
# their own paths (VOLUMES; a CA bundle at /opt/pip-sources/cert.pem): the same packages, and the same TLS
# trust (a proxy's CA), as the venv here.
VOLUMES=()
LOCAL_TORCH=""
pip_sources() {
    local key value path options=()
    while read -r key value; do
        for value in $value; do
            path="${value#file://}"
            if [ "$key" = cert ]; then
                # Not at its own path: the image's apt-get would collide with a bundle at /etc/ssl/certs.
                [ -f "$value" ] || continue
                VOLUMES+=("--volume=$value:/opt/pip-sources/cert.pem:ro")
                value=/opt/pip-sources/cert.pem
            elif [ "$path" != "$value" ] || [ "${value#/}" != "$value" ]; then
                [ -e "$path" ] || continue
                path="${path%/}"
                # A local index's links point beside it (DIR/simple/NAME/ -> DIR/files/): mount DIR.
                [ "$key" = find-links ] || [ "${path##*/}" != simple ] || path="${path%/simple}"
                VOLUMES+=("--volume=$path:$path:ro")
                if [ "$key" = find-links ] && compgen -G "$path/torch-$TORCH_VERSION+cpu-*.whl" >/dev/null; then
                    LOCAL_TORCH="$path"
                fi
            fi
            options+=("--$key" "$value")
        done
    done < <("$PYTHON" -m pip config list 2>/dev/null \
        | sed -n "s/^[^.]*\.\(index-url\|extra-index-url\|find-links\|trusted-host\|cert\)='\(.*\)'$/\1 \2/p" | sort -u)
    EXTRA_PIP_ARGS="${options[*]:-}"
}

# 3. The image.
build() {
    local base="${BASE:-$BASE_IMAGE}" revision torch_index
    revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
    pip_sources
    if [ -n "${TORCH_INDEX_URL+set}" ]; then
        torch_index="$TORCH_INDEX_URL"
    elif [ -n "$LOCAL_TORCH" ]; then
        torch_index=""
        echo "image: torch $TORCH_VERSION+cpu from $LOCAL_TORCH (this machine's pip find-links)"
    else
        torch_index="https://download.pytorch.org/whl/cpu"
    fi
    echo "image: building $IMAGE on $base"
    # The labels twice: as build arguments for the Containerfile's LABEL, and as --label, because buildah's
    # layer cache (--layers) reuses a LABEL step whose ARG changed and would keep the last build's revision.
    buildah bud --isolation chroot --layers --force-rm \
        "${VOLUMES[@]}" \
        --build-arg BASE="$base" \
        --build-arg VERSION="$VERSION" \
        --build-arg REVISION="$revision" \
        --label org.opencontainers.image.version="$VERSION" \
        --label org.opencontainers.image.revision="$revision" \
        --build-arg TORCH_VERSION="$TORCH_VERSION" \
        --build-arg TORCH_INDEX_URL="$torch_index" \
        --build-arg EXTRA_PIP_ARGS="$EXTRA_PIP_ARGS" \
        -f Containerfile -t "$IMAGE" .
}

# 4. The smoke run, as the image's own user.
smoke() {
    local uid user
    new_container "$IMAGE"
    echo "image: smoke: harmony --version"
    buildah run --isolation chroot "$CTR" -- harmony --version | tee "$BUILD/smoke-version.txt"
    grep -qF "$VERSION" "$BUILD/smoke-version.txt" || { echo "error: --version does not print $VERSION" >&2; exit 1; }
    echo "image: smoke: harmony operator run --help"
    buildah run --isolation chroot "$CTR" -- harmony operator run --help
    echo "image: smoke: every harmony module imports"
    buildah run --isolation chroot "$CTR" -- python -c '
import importlib, pkgutil, harmony
names = [m.name for m in pkgutil.walk_packages(harmony.__path__, "harmony.")]
for name in names:
    importlib.import_module(name)
print(len(names), "modules import from", harmony.__file__)'
    user="$(buildah inspect --type image --format '{{.OCIv1.Config.User}}' "$IMAGE")"
    uid="$(buildah run --isolation chroot "$CTR" -- id -u)"
    echo "image: smoke: runs as uid $uid (USER $user)"
    [ "$uid" != 0 ] && [ "$uid" = "${user%%:*}" ] || { echo "error: runs as uid $uid, USER is '$user'" >&2; exit 1; }
}

# 5. The archive, written whole or not at all.
archive() {
    rm -f "$ARCHIVE.tmp"
    buildah push --quiet "$IMAGE" "oci-archive:$ARCHIVE.tmp"
    mv "$ARCHIVE.tmp" "$ARCHIVE"
    echo "image: $IMAGE -> ${ARCHIVE#"$ROOT"/} ($(du -h "$ARCHIVE" | cut -f1))"
}

mkdir -p "$BUILD"
[ -n "${BASE:-}" ] || { base_rootfs; base_image; }
build
smoke
archive
