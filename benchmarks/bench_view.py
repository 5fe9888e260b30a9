"""shared-object view: what watching costs, per frame, beside the frame's fetch.

    python benchmarks/bench_view.py [--seconds 10] [--rounds 3]

A producer process publishes the demo's message (a 480x848x3 uint8 frame, a pose, two numbers)
at 30 Hz. ``shared-object view`` follows it for --seconds, as a user runs it: serving the page
(its Rerun server a child process; no browser connected, so this is the cost at the source), or
with --jpeg 80, or writing a .rrd file. Its CPU (user + system, the view and its server child)
divided by the values it logged is the cost per frame; the floor beside it is one ``fetch`` of
the same message in process (the copy the view makes before handing the value to Rerun).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared_object import SharedObject  # noqa: E402
from shared_object.testing import free_port_pair, unique_name  # noqa: E402

PRODUCER = """
import sys, time, numpy as np
from shared_object import SharedObject
message = {"seq": 0, "stamp_ns": 0, "frame": np.zeros((480, 848, 3), np.uint8),
           "pose": np.array([0, 0, 1, 1, 0, 0, 0.0])}
with SharedObject(sys.argv[1], data=message) as obj:
    print("READY", flush=True)
    next_t = time.monotonic()
    for seq in range(int(float(sys.argv[2]) * 30)):
        message["seq"], message["stamp_ns"] = seq, time.time_ns()
        message["frame"][:] = seq % 256
        obj.assign(message)
        next_t += 1 / 30
        time.sleep(max(0.0, next_t - time.monotonic()))
    obj.unlink()
"""


def cpu_seconds(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except OSError:
        return []


def fetch_floor_ms() -> float:
    message = {
        "seq": 0,
        "stamp_ns": 0,
        "frame": np.zeros((480, 848, 3), np.uint8),
        "pose": np.array([0, 0, 1, 1, 0, 0, 0.0]),
    }
    with SharedObject(unique_name(), data=message) as obj:
        times = []
        for _ in range(300):
            t0 = time.perf_counter()
            obj.fetch()
            times.append(time.perf_counter() - t0)
        obj.unlink()
    return 1e3 * statistics.median(times)


def view_round(mode: str, seconds: float) -> tuple[float, int]:
    """(CPU seconds of the view and its server, values logged) for one run of ``mode``."""
    name = unique_name()
    producer = subprocess.Popen(
        [sys.executable, "-c", PRODUCER, name, str(seconds + 4)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert producer.stdout is not None
    producer.stdout.readline()
    with tempfile.TemporaryDirectory() as tmp:
        extra = {
            "web": [],
            "web --jpeg 80": ["--jpeg", "80"],
            "save .rrd": ["--save", os.path.join(tmp, "run.rrd")],
        }[mode]
        view = subprocess.Popen(
            [sys.executable, "-m", "shared_object", "view", name, "--port", str(free_port_pair()),
             "--duration", str(seconds + 2), *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        time.sleep(2.0)  # started, server up, following: measure the steady state only
        pids = [view.pid, *children(view.pid)]
        cpu0 = cpu_seconds(pids)
        time.sleep(seconds)
        cpu = cpu_seconds(pids) - cpu0
        out, err = view.communicate(timeout=120)
    producer.wait(60)
    logged = re.search(r"logged (\d+) values", out)
    if view.returncode != 0 or logged is None:
        raise SystemExit(f"the view failed: {out}{err}")
    # Values logged in the measured window: 30 per second (the view's --max-rate is 30 too).
    return cpu, min(int(logged.group(1)), int(seconds * 30))


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    floor = fetch_floor_ms()
    print(
        f"bench_view: a 1.22 MB frame and a pose at 30 Hz, {args.rounds} rounds of {args.seconds:.0f} s"
    )
    print(f"   one fetch of the message, in process (the floor): {floor:.3f} ms\n")
    print(f"   {'mode':16} {'CPU per frame':>14} {'x fetch':>8} {'share of a core at 30 Hz':>26}")
    results: dict[str, list[float]] = {}
    for round_ in range(args.rounds):
        modes = ["web", "web --jpeg 80", "save .rrd"]
        for mode in modes if round_ % 2 == 0 else modes[::-1]:
            cpu, logged = view_round(mode, args.seconds)
            results.setdefault(mode, []).append(1e3 * cpu / max(logged, 1))
    for mode, per_frame in results.items():
        ms = statistics.median(per_frame)
        print(f"   {mode:16} {ms:11.2f} ms {ms / floor:7.1f}x {ms * 30 / 10:24.1f} %")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
