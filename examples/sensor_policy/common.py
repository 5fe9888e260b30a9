"""What the sensor and the policy agree on: object names, value shapes, and statistics printing."""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

import numpy as np

FRAME_SHAPE = (480, 848, 3)
#: Names can be prefixed (SENSOR_POLICY_PREFIX) so several demos, or tests, can run side by side.
PREFIX = os.environ.get("SENSOR_POLICY_PREFIX", "demo")
FRAME = f"{PREFIX}-frame"
ACTION = f"{PREFIX}-action"
STOP = f"{PREFIX}-stop"
#: The policy's last action carries this seq: it has stopped and holds no handle any more.
BYE = -1


def make_pose(t: float) -> Any:
    """A sapien.Pose when sapien is installed, else the same 7 floats (x y z qw qx qy qz)."""
    xyz = [0.1 * np.sin(t), 0.1 * np.cos(t), 0.5]
    quat = [1.0, 0.0, 0.0, 0.0]
    try:
        with (
            warnings.catch_warnings()
        ):  # sapien warns when a machine has no GPU driver; poses need none
            warnings.simplefilter("ignore")
            import sapien
    except ImportError:
        return np.array(xyz + quat, np.float32)
    return sapien.Pose(xyz, quat)


def initial_frame_message() -> dict[str, Any]:
    return {
        "seq": 0,
        "stamp_ns": 0,
        "frame": np.zeros(FRAME_SHAPE, np.uint8),
        "pose": make_pose(0.0),
    }


def initial_action_message() -> dict[str, Any]:
    return {"seq": 0, "stamp_ns": 0, "action": np.zeros(7, np.float32)}


class Stats:
    """Per-second report: count, latency percentiles, dropped frames."""

    def __init__(self, role: str) -> None:
        self.role = role
        self.latencies_us: list[float] = []
        self.count = 0
        self.dropped = 0
        self.total = 0
        self.total_dropped = 0
        self.last_print = time.monotonic()

    def record(self, latency_ns: int, dropped: int = 0) -> None:
        self.latencies_us.append(latency_ns / 1000)
        self.count += 1
        self.total += 1
        self.dropped += dropped
        self.total_dropped += dropped

    def maybe_print(self, what: str) -> None:
        now = time.monotonic()
        if now - self.last_print < 1.0:
            return
        if self.latencies_us:
            p50, p90, p99 = np.percentile(self.latencies_us, [50, 90, 99])
            lat = f"latency p50 {p50:.0f} us, p90 {p90:.0f} us, p99 {p99:.0f} us"
        else:
            lat = "latency -"
        print(f"[{self.role}] {self.count} {what}/s, {lat}, dropped {self.dropped}", flush=True)
        self.latencies_us.clear()
        self.count = 0
        self.dropped = 0
        self.last_print = now
