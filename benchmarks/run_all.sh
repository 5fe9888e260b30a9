#!/usr/bin/env bash
# The whole benchmark suite, one command: `bash benchmarks/run_all.sh [--quick]`.
#
# 1. in-process operations against their floors, 8 B to 100 MiB, and idle-consumer CPU (bench_core);
# 2. producer -> consumer against the peers (bench_peers, in its own venv with the reference,
#    iceoryx2 and pyzmq): table in benchmarks/results/peers.md, plot in benchmarks/results/peers.png;
# 3. shared-object record against a plain file write (bench_record);
# 4. the bridge against raw Zenoh and a plain TCP socket on loopback (bench_bridge), and the
#    live view's CPU per frame beside a fetch (bench_view);
# 5. the healthcheck's CPU inside the image (bench_health), and two containers versus two
#    processes (bench_containers), when Docker is available.
# Everything is printed, and written under benchmarks/results/.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
mkdir -p benchmarks/results
quick="${1:-}"
python="$(bash benchmarks/setup_peers.sh)"
echo "== in-process operations (benchmarks/bench_core.py)"
"$python" benchmarks/bench_core.py $quick | tee benchmarks/results/core.md
echo "== producer -> consumer, against the peers (benchmarks/bench_peers.py)"
"$python" benchmarks/bench_peers.py $quick
echo "== shared-object record: keeping up, and MB/s beside a plain file write (benchmarks/bench_record.py)"
"$python" -m pip install -q -e "$root[mcap]" >&2
"$python" benchmarks/bench_record.py $([ -n "$quick" ] && echo "--seconds 2 --rounds 1") | tee benchmarks/results/record.md
echo "== the bridge, against raw Zenoh and a plain socket (benchmarks/bench_bridge.py)"
"$python" -m pip install -q -e "$root[zenoh]" >&2
"$python" benchmarks/bench_bridge.py $([ -n "$quick" ] && echo "--rounds 2 --messages 30 --seconds 1") \
    | tee benchmarks/results/bridge.md
echo "== the live view: CPU per frame at 30 Hz, beside a fetch (benchmarks/bench_view.py)"
"$python" -m pip install -q -e "$root[view]" >&2
"$python" benchmarks/bench_view.py $([ -n "$quick" ] && echo "--seconds 3 --rounds 1") \
    | tee benchmarks/results/view.md
# docker/prepare.sh (idempotent, cached; what tests/run.sh runs too) starts an engine if it can
# and writes the base image to use into .env: without it, the build would try to pull
# python:3.11-slim, which fails on a machine that cannot reach a registry.
if bash docker/prepare.sh --python "$python" >/dev/null; then
    echo "== the healthcheck's cost, inside the image where it runs (benchmarks/bench_health.py)"
    base=$(grep '^BASE_IMAGE=' .env | cut -d= -f2)
    docker build -q -f docker/Dockerfile --build-arg BASE_IMAGE="$base" -t shared-object:bench . >/dev/null
    docker run --rm --shm-size 64m -v "$root/benchmarks:/opt/shared_object/benchmarks:ro" shared-object:bench \
        python3 benchmarks/bench_health.py $([ -n "$quick" ] && echo "--rounds 3") | tee benchmarks/results/health.md
    echo "== two containers versus two processes (benchmarks/bench_containers.py)"
    "$python" -m pip install -q docker >&2
    "$python" benchmarks/bench_containers.py $([ -n "$quick" ] && echo "--pairs 4 --frames 200") \
        | tee benchmarks/results/containers.md
else
    echo "== skipped bench_containers.py: Docker could not be prepared (docker/prepare.sh said why, above)"
fi
