"""The examples are run by tests: a broken example is a failed test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(args: list[str], env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def test_quickstart_runs_as_in_the_readme() -> None:
    result = run(["examples/quickstart.py"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["mean pixel: 7.0", "(480, 848, 3) False"]
    readme = (ROOT / "README.md").read_text()
    code = (ROOT / "examples/quickstart.py").read_text()
    lines = [line for line in code[code.index("import numpy"):].splitlines() if line.strip()]
    readme_lines = [line for line in readme.splitlines() if line.strip()]
    start = readme_lines.index(lines[0])
    assert readme_lines[start : start + len(lines)] == lines, "the README's quickstart and examples/quickstart.py differ"


def test_sensor_policy_as_two_processes() -> None:
    prefix = f"ex-{os.getpid()}"
    result = run(["-m", "examples.sensor_policy", "--duration", "3", "--rate", "50"], env={"SENSOR_POLICY_PREFIX": prefix})
    assert result.returncode == 0, result.stdout + result.stderr
    received = int(re.search(r"\[policy\] done: (\d+) frames received", result.stdout).group(1))  # type: ignore[union-attr]
    sent, answered = map(int, re.search(r"\[sensor\] done: (\d+) frames sent, (\d+) answered", result.stdout).groups())  # type: ignore[union-attr]
    assert sent >= 100 and received > 0 and answered > 0
    assert re.search(r"\[policy\] \d+ frames/s, latency p50 \d+ us", result.stdout)
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]
    assert leftovers == [], "the demo must unlink its segments"
