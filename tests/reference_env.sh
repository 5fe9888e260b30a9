#!/usr/bin/env bash
# A virtual environment holding the reference library, for tests/test_reference_parity.py:
# RealRobot's SharedObject (PyPI real-robot==0.2.1) with what its module imports (numpy, loguru,
# sapien for sapien.Pose), and nothing of ours. Idempotent. Prints the interpreter to use.
#
# real-robot itself depends on a robotics stack its SharedObject never imports, so it is
# installed without dependencies.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$root/.venv-reference"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import real_robot.utils.multiprocessing.shared_object" >/dev/null 2>&1; then
    "$python" -m venv "$venv" >&2
    "$venv/bin/python" -m pip install -q "numpy>=1.24,<3" loguru "sapien>=3.0" >&2
    "$venv/bin/python" -m pip install -q --no-deps "real-robot==0.2.1" >&2
fi
echo "$venv/bin/python"
