"""Frame latency across two containers beside the same measurement across two processes.

    python benchmarks/bench_containers.py [--frames 2000] [--rounds 3]

Needs Docker (run ``bash docker/prepare.sh`` first); builds the project image with docker-py.
Both measurements run from the same image (same Python, same numpy): a producer assigns a
480x848x3 uint8 frame, a consumer polling ``modified`` fetches its own copy and assigns an ack,
and the producer times assign -> ack seen. "processes": producer and consumer are two processes
in one container. "containers": the consumer runs in a second container that joined the
producer's IPC namespace (``ipc_mode=container:<producer>``). Rounds alternate the two in ABBA
order (processes first in even rounds, containers first in odd ones); the table shows the median
of the per-round medians, and the ratio is the median of the per-round ratios (target: <= 1.05x),
as in the other benchmarks: this VM's speed drifts between rounds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

CONSUMER = textwrap.dedent("""
    import sys, time
    from shared_object import SharedObject
    frames = SharedObject.attach("bench-frame", timeout=60)
    acks = SharedObject.attach("bench-ack", timeout=60)
    count = int(sys.argv[1])
    deadline = time.monotonic() + 300  # never outlive a producer that died
    acks.assign(-2)  # ready
    for _ in range(count):
        while not frames.modified:
            if time.monotonic() > deadline:
                sys.exit("consumer: producer gone")
        frame = frames.fetch()
        acks.assign(int(frame[0, 0, 0]))
""")

PRODUCER = textwrap.dedent("""
    import statistics, subprocess, sys, time
    import numpy as np
    from shared_object import SharedObject
    count, local = int(sys.argv[1]), sys.argv[2] == "local"
    frames = SharedObject.create("bench-frame", np.zeros((480, 848, 3), np.uint8))
    acks = SharedObject.create("bench-ack", -1)
    print("READY", flush=True)
    consumer = subprocess.Popen([sys.executable, "-c", sys.argv[3], str(count)]) if local else None
    while acks.fetch() != -2:
        time.sleep(0.01)
    payloads = [np.full((480, 848, 3), i * 10, np.uint8) for i in range(4)]
    samples = []
    deadline = time.monotonic() + 300
    for i in range(count):
        t0 = time.perf_counter()
        frames.assign(payloads[i % 4])
        while not acks.modified:
            if time.monotonic() > deadline:
                sys.exit("producer: consumer gone")
        samples.append(time.perf_counter() - t0)
        acks.fetch()
    if consumer:
        consumer.wait()
    warm = samples[count // 10:]
    print("MEDIAN_US", statistics.median(warm) * 1e6, "P99_US", sorted(warm)[int(len(warm) * 0.99)] * 1e6, flush=True)
""")


def run_round(client: Any, image: str, mode: str, frames: int) -> tuple[float, float]:
    label = {"shared_object.bench": uuid.uuid4().hex[:8]}
    started = []
    try:
        producer = client.containers.run(
            image, ["python3", "-c", PRODUCER, str(frames), "local" if mode == "processes" else "remote", CONSUMER],
            detach=True, ipc_mode="shareable", shm_size="64m", labels=label, healthcheck={"test": ["NONE"]},
        )
        started.append(producer)
        if mode == "containers":
            for _ in range(600):
                if b"READY" in producer.logs():
                    break
                import time

                time.sleep(0.05)
            consumer = client.containers.run(
                image, ["python3", "-c", CONSUMER, str(frames)], detach=True,
                ipc_mode=f"container:{producer.id}", labels=label, healthcheck={"test": ["NONE"]},
            )
            started.append(consumer)
        result = producer.wait(timeout=600)
        out = producer.logs().decode()
        if result["StatusCode"] != 0 or "MEDIAN_US" not in out:
            msg = f"{mode} round failed: {out[-2000:]}"
            raise RuntimeError(msg)
        fields = out.split("MEDIAN_US")[1].split()
        return float(fields[0]), float(fields[2])
    finally:
        for container in started:
            container.remove(force=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=6)
    args = parser.parse_args()
    try:
        import docker
    except ImportError:
        print("this benchmark needs docker-py: pip install docker", file=sys.stderr)
        return 2
    client = docker.from_env(timeout=600)
    sys.path.insert(0, str(ROOT / "tests" / "integration"))
    from dockertools import base_image  # the test suite's choice: BASE_IMAGE, .env, or python:3.11-slim

    base = base_image()
    image = "shared-object:bench"
    client.images.build(path=str(ROOT), dockerfile="docker/Dockerfile", tag=image, rm=True, buildargs={"BASE_IMAGE": base})
    results: dict[str, list[tuple[float, float]]] = {"processes": [], "containers": []}
    for index in range(args.rounds):
        for mode in ("processes", "containers") if index % 2 == 0 else ("containers", "processes"):
            results[mode].append(run_round(client, image, mode, args.frames))
    ratio = statistics.median(c / p for (c, _), (p, _) in zip(results["containers"], results["processes"], strict=True))
    proc = statistics.median(m for m, _ in results["processes"])
    cont = statistics.median(m for m, _ in results["containers"])
    p99p = statistics.median(p for _, p in results["processes"])
    p99c = statistics.median(p for _, p in results["containers"])
    print(f"# {os.uname().machine}, {os.cpu_count()} cores; {args.rounds} rounds x {args.frames} frames, 480x848x3 uint8, ack-paced")
    print("| path | median us | p99 us |")
    print(f"| two processes, one container | {proc:.1f} | {p99p:.1f} |")
    print(f"| two containers, shared IPC namespace | {cont:.1f} | {p99c:.1f} |")
    verdict = "ok" if ratio <= 1.05 else "MISSED"
    print(f"ratio containers / processes (median of per-round ratios): {ratio:.3f}x (target <= 1.05x) {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
