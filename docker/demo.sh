#!/usr/bin/env bash
# The demo: get Docker ready if it is not (docker/prepare.sh), then run the sensor/policy
# containers with `docker compose up --build --abort-on-container-exit`. Both exit 0 after
# DEMO_DURATION seconds (10), and compose then stops `shm`, the holder of their /dev/shm.
# Exits non-zero if any container failed.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
bash docker/prepare.sh >/dev/null
project="${COMPOSE_PROJECT_NAME:-shared-object-demo}"
status=0
docker compose -p "$project" up --build --abort-on-container-exit || status=$?
codes=$(docker compose -p "$project" ps -a --format '{{.Service}}={{.ExitCode}}')
docker compose -p "$project" down --volumes >/dev/null 2>&1 || true
echo "exit codes: $(echo "$codes" | tr '\n' ' ')"
if [ "$status" != 0 ] || echo "$codes" | grep -qv '=0$'; then
    echo "demo FAILED" >&2
    exit 1
fi
echo "demo OK"
