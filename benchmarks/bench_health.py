"""The healthcheck's cost: CPU per probe beside a bare ``python3 -c pass``, and per core at its interval.

    python benchmarks/bench_health.py [--rounds 10] [--per-round 10] [--interval 2]

A container's healthcheck runs for the container's whole life, so its cost is CPU per probe
times probes per second. The commands run as child processes, interleaved round by round, and
their CPU (user + system) is read from the kernel's accounting of finished children
(``RUSAGE_CHILDREN``), not from wall-clock time.

The image's HEALTHCHECK runs ``shared-object health NAME --max-age 3`` (see docker/Dockerfile)
every 2 s: ``--interval``, for the per-core figure. For information: ``shared-object ls`` (a
command through its parser) and importing numpy and the package.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared_object import SharedObject
from shared_object.testing import unique_name


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def cpu_per_run(command: list[str], runs: int) -> float:
    before = children_cpu()
    for _ in range(runs):
        subprocess.run(command, stdout=subprocess.DEVNULL, check=False)
    return (children_cpu() - before) / runs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--per-round", type=int, default=10)
    parser.add_argument("--interval", type=float, default=2.0, help="the healthcheck's interval, s")
    args = parser.parse_args()
    cli = shutil.which("shared-object")
    command = [cli] if cli else [sys.executable, "-m", "shared_object"]
    name = unique_name("bench-health")
    with SharedObject.create(name, np.zeros(3)) as obj:
        bare, ours, full, people = [], [], [], []
        for _ in range(args.rounds):
            bare.append(cpu_per_run([sys.executable, "-c", "pass"], args.per_round))
            ours.append(cpu_per_run([*command, "health", name, "--max-age", "inf"], args.per_round))
            people.append(cpu_per_run([*command, "ls"], args.per_round))
            # What the probe used to import: numpy and the whole package.
            full.append(
                cpu_per_run(
                    [sys.executable, "-c", "import numpy, shared_object._object"], args.per_round
                )
            )
        obj.unlink()
    ratio = statistics.median(o / b for o, b in zip(ours, bare, strict=True))
    full_ratio = statistics.median(f / b for f, b in zip(full, bare, strict=True))
    per_core = statistics.median(ours) / args.interval
    print(
        f"# {os.uname().machine}, Python {sys.version.split()[0]}; {args.rounds} rounds of {args.per_round} runs"
    )
    print("| what | CPU per run ms | ratio | target |")
    print("| --- | --- | --- | --- |")
    print(f"| python3 -c pass | {statistics.median(bare) * 1e3:.1f} | 1.00x | |")
    print(
        f"| shared-object health (the image's healthcheck) | {statistics.median(ours) * 1e3:.1f} | {ratio:.2f}x | <= 1.5x "
        f"{'ok' if ratio <= 1.5 else 'MISSED'} |"
    )
    people_ratio = statistics.median(p / b for p, b in zip(people, bare, strict=True))
    print(
        f"| (info) shared-object ls | {statistics.median(people) * 1e3:.1f} | {people_ratio:.2f}x | |"
    )
    print(
        f"| (info) importing numpy and the package | {statistics.median(full) * 1e3:.1f} | {full_ratio:.2f}x | |"
    )
    print(
        f"| the probe every {args.interval:g} s | {per_core * 100:.2f}% of a core | | < 1% "
        f"{'ok' if per_core < 0.01 else 'MISSED'} |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
