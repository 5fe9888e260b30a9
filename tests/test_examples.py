"""The examples are run by tests: a broken example is a failed test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(
    args: list[str], env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_quickstart_runs_as_in_the_readme() -> None:
    result = run(["examples/quickstart.py"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["mean pixel: 7.0", "(480, 848, 3) False"]
    readme = (ROOT / "README.md").read_text()
    code = (ROOT / "examples/quickstart.py").read_text()
    lines = [line for line in code[code.index("import numpy") :].splitlines() if line.strip()]
    readme_lines = [line for line in readme.splitlines() if line.strip()]
    start = readme_lines.index(lines[0])
    assert readme_lines[start : start + len(lines)] == lines, (
        "the README's quickstart and examples/quickstart.py differ"
    )


def test_sensor_policy_as_two_processes() -> None:
    prefix = f"ex-{os.getpid()}"
    result = run(
        ["-m", "examples.sensor_policy", "--duration", "3", "--rate", "50"],
        env={"SENSOR_POLICY_PREFIX": prefix},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    received = int(re.search(r"\[policy\] done: (\d+) frames received", result.stdout).group(1))  # type: ignore[union-attr]
    sent, answered = map(
        int,
        re.search(r"\[sensor\] done: (\d+) frames sent, (\d+) answered", result.stdout).groups(),
    )  # type: ignore[union-attr]
    assert sent >= 100 and received > 0 and answered > 0
    assert re.search(r"\[policy\] \d+ frames/s, latency p50 \d+ us", result.stdout)
    leftovers = [f for f in os.listdir("/dev/shm") if f.startswith(prefix)]
    assert leftovers == [], "the demo must unlink its segments"


def test_the_policy_follows_a_sensor_that_re_creates_its_objects() -> None:
    from examples.sensor_policy.common import BYE, initial_action_message, initial_frame_message
    from shared_object import SharedObject

    prefix = f"ex-follow-{os.getpid()}"
    names = [f"{prefix}-frame", f"{prefix}-action", f"{prefix}-stop"]

    def create_all() -> list[SharedObject]:  # what a (re)started sensor does
        return [
            SharedObject.create(names[0], initial_frame_message()),
            SharedObject.create(names[1], initial_action_message()),
            SharedObject.create(names[2]),
        ]

    def answered(frames: SharedObject, actions: SharedObject, seq: int) -> bool:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            message = initial_frame_message()
            message.update(seq=seq, stamp_ns=time.time_ns())
            frames.assign(message)
            if actions.wait(0.2) and actions.fetch()["seq"] == seq:
                return True
        return False

    objects = create_all()
    policy = subprocess.Popen(
        [sys.executable, "-m", "examples.sensor_policy.policy"],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "SENSOR_POLICY_PREFIX": prefix},
    )
    try:
        assert answered(objects[0], objects[1], 1)
        for (
            obj
        ) in objects:  # the sensor restarts: its old objects go, new ones come under the same names
            obj.unlink()
            obj.close()
        objects = create_all()
        assert answered(objects[0], objects[1], 2), (
            "the policy kept waiting on the old, orphaned frame object"
        )
        objects[2].trigger()
        output, _ = policy.communicate(timeout=60)
        assert policy.returncode == 0, output
        assert objects[1].fetch()["seq"] == BYE
    finally:
        if policy.poll() is None:
            policy.kill()
            policy.wait()
        for obj in objects:
            obj.unlink()
            obj.close()


def run_example(module: str) -> tuple[int, str]:
    """Run ``python -m module``; its exit status and output. Checks it left no segment behind
    (each example names its segments after its own pid)."""
    process = subprocess.Popen(
        [sys.executable, "-m", module],
        cwd=ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = process.communicate(timeout=120)
    leftovers = [f for f in os.listdir("/dev/shm") if f.endswith(f"-{process.pid}")]
    assert leftovers == [], f"{module} must unlink its segments: {leftovers}"
    return process.returncode, output


def test_point_cloud_follows_every_size_across_processes() -> None:
    code, output = run_example("examples.point_cloud")
    assert code == 0, output
    found = re.fullmatch(r"received 20 scans of (\d+) to (\d+) points\n", output)
    assert found, output
    low, high = map(int, found.groups())
    assert 1_000 <= low < high < 100_000  # sizes changed from scan to scan, and each arrived whole


def test_zero_copy_reads_agree_with_the_copy() -> None:
    code, output = run_example("examples.zero_copy")
    assert code == 0, output
    assert (
        output
        == "brightness 100.0, red row (848,) True, green max 100, buffer mean 100.0, my copy [0, 0, 0]\n"
    )


def test_estop_stops_the_control_loop_once() -> None:
    code, output = run_example("examples.estop")
    assert code == 0, output
    assert re.fullmatch(
        r"stopped after [1-9]\d* control cycles; triggered on the next read: False\n", output
    )


def test_joint_history_logs_every_sample_or_counts_it_lost() -> None:
    code, output = run_example("examples.joint_history")
    assert code == 0, output
    lines = output.splitlines()
    assert len(lines) == 2, output
    for line, history in zip(lines, (64, 8), strict=True):
        match = re.fullmatch(
            rf"history={history}: (\d+) samples logged \+ (\d+) lost = (\d+) of 500, "
            r"in order: True",
            line,
        )
        assert match, output
        logged, lost, total = map(int, match.groups())
        assert logged + lost == total == 500, output
    # The logger wakes every 20 ms, 20 samples behind: 64 values cover that, 8 do not
    assert lines[1].split(": ")[1].split()[0] != "500", output
