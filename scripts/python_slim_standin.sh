#!/usr/bin/env bash
# A stand-in of docker.io/library/python:3.11-slim, built where no registry can be reached, to check that the
# Containerfile's BASE argument works on a Python image's shape: Debian bookworm (`make image`'s debootstrap
# base, localhost/harmony-base:bookworm, which must exist) with CPython 3.11 under /usr/local and pip, and no
# Debian python3, as the official image's Dockerfile makes it. The CPython is this machine's (a shared build
# under PYTHON_PREFIX, e.g. pyenv's), copied without its site-packages and tests. Needs root and buildah.
#   bash scripts/python_slim_standin.sh && BASE=localhost/python:3.11-slim-standin make image
set -euo pipefail
PYTHON_PREFIX="${PYTHON_PREFIX:-$(python3.11 -c 'import sys; print(sys.base_prefix)')}"
TAG="${TAG:-localhost/python:3.11-slim-standin}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
buildah inspect --type image localhost/harmony-base:bookworm >/dev/null 2>&1 \
    || { echo "python_slim_standin: run make image first (it builds localhost/harmony-base:bookworm)" >&2; exit 2; }
[ -x "$PYTHON_PREFIX/bin/python3.11" ] || { echo "python_slim_standin: no python3.11 in $PYTHON_PREFIX/bin" >&2; exit 2; }
mkdir -p "$WORK/root/usr/local/bin" "$WORK/root/usr/local/lib"
cp -a "$PYTHON_PREFIX/bin/python3.11" "$WORK/root/usr/local/bin/"
ln -s python3.11 "$WORK/root/usr/local/bin/python3"
ln -s python3 "$WORK/root/usr/local/bin/python"
cp -a "$PYTHON_PREFIX"/lib/libpython3*.so* "$WORK/root/usr/local/lib/" 2>/dev/null || true  # a static build has none
tar -C "$PYTHON_PREFIX/lib" --exclude='python3.11/site-packages' --exclude='__pycache__' \
    --exclude='python3.11/test' -cf - python3.11 | tar -C "$WORK/root/usr/local/lib" -xf -
mkdir -p "$WORK/root/usr/local/lib/python3.11/site-packages"
cat > "$WORK/Containerfile" <<'CONTAINERFILE'
FROM localhost/harmony-base:bookworm
RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates \
      netbase tzdata libssl3 libffi8 libsqlite3-0 libbz2-1.0 liblzma5 zlib1g libreadline8 libncursesw6 libuuid1 \
      libexpat1 libgdbm6 && rm -rf /var/lib/apt/lists/*
COPY root/ /
RUN ldconfig && python3 -m ensurepip --upgrade >/dev/null && python3 -m pip --version \
    && ! dpkg -s python3 >/dev/null 2>&1
ENV LANG=C.UTF-8
CMD ["python3"]
CONTAINERFILE
buildah bud --isolation chroot -t "$TAG" "$WORK"
echo "python_slim_standin: $TAG (CPython from $PYTHON_PREFIX under /usr/local, no Debian python3)"
