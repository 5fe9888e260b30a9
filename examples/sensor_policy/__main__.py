"""Run the sensor and the policy as two plain processes (no Docker): ``python -m
examples.sensor_policy``.
"""

from __future__ import annotations

import argparse
import subprocess
import sys


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=30.0)
    parser.add_argument("--duration", type=float, default=10.0)
    args = parser.parse_args()
    sensor = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "examples.sensor_policy.sensor",
            "--rate",
            str(args.rate),
            "--duration",
            str(args.duration),
        ]
    )
    policy = subprocess.Popen([sys.executable, "-m", "examples.sensor_policy.policy"])
    codes = [policy.wait(), sensor.wait()]
    return max(abs(c) for c in codes)


if __name__ == "__main__":
    sys.exit(main())
