#!/usr/bin/env bash
# The whole test suite, from a fresh clone: `bash tests/run.sh [pytest args...]`.
#
# 1. a virtual environment in .venv with the package (editable) and its test dependencies;
# 2. the reference library in .venv-reference, for the parity test (tests/reference_env.sh);
# 3. openssl and Chromium, for the bridge's TLS tests and the live view's browser test;
#    Docker for the integration tests (docker/prepare.sh: engine, Compose v2, base image);
#    where it cannot be had, the integration tests skip and say how to enable them, except
#    under CI=true, where that is a failure;
# 4. lint and format (ruff), the package's layers (import-linter) and types (mypy --strict on the package);
# 5. pytest: unit, multi-process, crash and stress tests, Docker integration tests, and the
#    unit tests again inside the image.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
python="${PYTHON:-python3}"
ci="${CI:-false}"

say() { echo "[tests] $*" >&2; }

if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$python" -m venv .venv || { say "python3 -m venv failed: install python3-venv"; exit 1; }
fi
venv_python="$root/.venv/bin/python"
say "installing the package and its test dependencies into .venv"
"$venv_python" -m pip install -q --upgrade pip >/dev/null 2>&1 || true
"$venv_python" -m pip install -q -e ".[test,sapien,mcap,zenoh,ros2,view,integration,dev]"

# Programs some tests run: openssl (the bridge's TLS certificates) and Chromium (the live view,
# in a real browser). Installed from Debian's archive when we are root on Debian or Ubuntu;
# otherwise the tests that need them skip and say so (under CI=true that is a failure).
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
    || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing ${missing[*]} (apt-get)"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; } \
            || say "could not install ${missing[*]}: the tests that need them will say so"
    else
        say "${missing[*]} missing: install them (apt-get install ${missing[*]}) to run the TLS and browser tests"
    fi
fi

if bash docker/prepare.sh --python "$venv_python" >/dev/null; then
    export SHARED_OBJECT_DOCKER_READY=1
else
    if [ "$ci" = "true" ]; then
        say "Docker could not be prepared, and under CI the integration tests must run"
        exit 1
    fi
    say "Docker is not available: the integration tests will be skipped (see the message above)"
fi

say "the reference library, for the parity test (.venv-reference)"
if reference_python=$(bash tests/reference_env.sh 2>/tmp/shared-object-reference-env.log); then
    export SHARED_OBJECT_REFERENCE_PYTHON="$reference_python"
elif [ "$ci" = "true" ]; then
    say "could not install the reference (real-robot 0.2.1) from PyPI; see /tmp/shared-object-reference-env.log"
    exit 1
else
    say "the reference could not be installed: the parity test will be skipped (see /tmp/shared-object-reference-env.log)"
fi

say "ruff"
"$venv_python" -m ruff check shared_object tests examples benchmarks
"$venv_python" -m ruff format --check shared_object tests examples benchmarks
say "import-linter: the package's layers"
"$root/.venv/bin/lint-imports"
say "mypy --strict"
"$venv_python" -m mypy

say "pytest"
exec "$venv_python" -m pytest tests "$@"
