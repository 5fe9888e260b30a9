#!/usr/bin/env bash
# A virtual environment for benchmarks/bench_peers.py: shared_object plus the peers it is measured
# against (the reference real-robot 0.2.1, iceoryx2, pyzmq) and matplotlib for the plot. None of
# them is a dependency of shared_object itself. Prints the interpreter to use.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/benchmarks/.venv-peers"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/python" -m pip install -q -e "$root" numpy matplotlib "pyzmq>=25" "iceoryx2>=0.7" loguru >&2
# real-robot pulls a robotics stack we do not need: its SharedObject needs only numpy and loguru.
"$venv/bin/python" -m pip install -q --no-deps "real-robot==0.2.1" >&2
echo "$venv/bin/python"
