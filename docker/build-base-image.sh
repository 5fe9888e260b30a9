#!/usr/bin/env bash
# Build a local Debian + Python base image when the official one cannot be pulled.
#
# Why: docker/Dockerfile starts FROM ${BASE_IMAGE}, which defaults to the official
# python:3.11-slim image. On machines with no registry access (our CI), that pull
# fails; this script makes an equivalent image from Debian's own packages with
# debootstrap and `docker import`, using the machine's apt mirror.
#
# Usage: docker/build-base-image.sh [IMAGE_TAG]
# Prints the tag of the image to use as BASE_IMAGE on its last line.
# Cached: the default tag carries a hash of the package list, so an image is rebuilt only when
# that list changes.
set -euo pipefail

suite="${SHARED_OBJECT_BASE_SUITE:-bookworm}"
# python3 + pip for the package; libx11-6 because sapien's native module links against it.
packages="python3,python3-pip,python3-venv,python3-numpy,libx11-6,procps"
tag="${1:-shared-object-base:$suite-$(echo "$suite $packages" | sha256sum | cut -c1-8)}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag already present (cached)" >&2
    echo "$tag"
    exit 0
fi

# The first plain Debian mirror in the machine's apt sources (deb822 or one-line format).
mirror="${SHARED_OBJECT_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
    mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | awk '/^URIs:/ {print $2}' | grep -v -e security -e nodesource -e google | head -n 1 || true)
fi
if [ -z "$mirror" ]; then
    mirror=$(grep -h '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null \
        | awk '{print $2}' | grep -v -e security | head -n 1 || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"

if ! command -v debootstrap >/dev/null 2>&1; then
    echo "error: debootstrap is not installed (apt-get install debootstrap)" >&2
    exit 1
fi

rootfs=$(mktemp -d /tmp/shared-object-rootfs.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
echo "building $tag from $mirror ($suite) in $rootfs ..." >&2
debootstrap --variant=minbase --include="$packages" \
    "$suite" "$rootfs" "$mirror" >&2
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
# `python` as in the official image; pip may install into the system interpreter.
ln -sf /usr/bin/python3 "$rootfs/usr/bin/python"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    - "$tag" >&2
echo "$tag"
