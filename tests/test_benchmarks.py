"""The benchmarks' own parts that reach into the library: CI does not run the benchmarks, so a
change to the library must break a test here rather than a benchmark nobody runs that day."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shared_object import SharedObject

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
if not BENCHMARKS.is_dir():  # the image ships the package, tests and examples, not the benchmarks
    pytest.skip(
        f"{BENCHMARKS} is not here (inside the image, say): nothing to check",
        allow_module_level=True,
    )
sys.path.insert(0, str(BENCHMARKS))

import bench_core  # noqa: E402


def run_benchmark(script: str, *args: str) -> str:
    """Run ``benchmarks/<script> args`` to its end; what it printed (it must exit 0)."""
    result = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_inlined_protocol_is_a_whole_assign(shm_name: str) -> None:
    """bench_core's "protocol alone" row claims to time what assign does: readers must agree."""
    first = np.zeros((4, 8, 3), np.uint8)
    second = np.full_like(first, 7)
    with SharedObject.create(shm_name, first) as writer, SharedObject.attach(shm_name) as reader:
        reader.fetch()
        mtime = writer.mtime
        bench_core.bare_assign(writer, second)()
        assert reader.modified
        np.testing.assert_array_equal(reader.fetch(), second)
        assert writer.mtime >= mtime
        bench_core.bare_assign(writer, first)()  # into the other slot this time
        np.testing.assert_array_equal(reader.fetch(), first)
        writer.assign(second)  # the mutex was released: the library's own writer gets it at once
        np.testing.assert_array_equal(reader.fetch(), second)
        writer.unlink()


def test_the_inlined_protocol_refuses_a_held_mutex(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(3), slots=1) as obj:
        with (
            obj.view(),
            pytest.raises(RuntimeError, match="busy"),
        ):  # a single-slot view holds the writer mutex
            bench_core.bare_assign(obj, np.ones(3))()
        np.testing.assert_array_equal(obj.fetch(), np.zeros(3))
        obj.unlink()


def test_the_bridge_benchmark_runs_and_prints_every_row() -> None:
    """A short run: the benchmark is kept working (its numbers are for benchmarks/run_all.sh)."""
    pytest.importorskip(
        "zenoh", reason="the bridge needs the zenoh extra: pip install -e '.[zenoh]'"
    )
    out = run_benchmark("bench_bridge.py", "--rounds", "1", "--messages", "5", "--seconds", "0.3")
    for size in ("100B", "1.22MB"):
        assert re.search(rf"^   {re.escape(size)} +[\d.]+ / +[\d.]+ .*x", out, re.M)
        for mode in ("free", "offered"):
            assert f"{size:8} {mode}: delivered, bridge / raw zenoh" in out
    assert "peak RSS: exporter" in out
    if importlib.util.find_spec("rosbags") is not None:  # the ros2 extra: section 3
        assert re.search(r"ROS 2 / native [\d.]+x", out), out


def test_the_view_benchmark_runs_and_prints_every_mode() -> None:
    pytest.importorskip(
        "rerun", reason="the live view needs the view extra: pip install -e '.[view]'"
    )
    out = run_benchmark("bench_view.py", "--seconds", "1", "--rounds", "1")
    for mode in ("web", "web --jpeg 80", "save .rrd"):
        assert re.search(rf"^   {re.escape(mode)} +[\d.]+ ms +[\d.]+x", out, re.M), out


def test_the_record_benchmark_runs_and_prints_the_joint_state_rows() -> None:
    """A short run of bench_record: its rows are printed, and with a history no value assigned
    is missing from the file (the joint state is numbered: 'in the file' counts them)."""
    pytest.importorskip("mcap", reason="recording needs the mcap extra: pip install -e '.[mcap]'")
    out = run_benchmark(
        "bench_record.py", "--seconds", "0.5", "--rounds", "1", "--joint-seconds", "1"
    )
    assert re.search(r"^\| record \(no compression\) \| \d+ \| \d+ \| [\d.]+x", out, re.M)
    assert re.search(r"^\| no history \| \d+ \| \d+ \| \d+ \|", out, re.M)
    row = re.search(r"^\| history=64 \| (\d+) \| (\d+) \| (\d+) \|", out, re.M)
    assert row, out
    assigned, recorded, dropped = map(int, row.groups())
    assert assigned > 0 and recorded == assigned and dropped == 0, out
