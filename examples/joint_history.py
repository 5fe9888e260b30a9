"""A history object: a 1 kHz joint state that a slow reader logs without losing a sample.

A plain ``SharedObject`` keeps the newest value: right for a camera frame, wrong for a joint
state recorded for learning, where every sample counts. ``history=N`` keeps the last N values;
``fetch_new()`` returns every value since the handle's last read, oldest first, and ``lost``
counts exactly those the writer overwrote before they were read. Here a controller writes at
1 kHz and a logger wakes every 20 ms: with ``history=64`` it keeps up (20 values behind at
most); with ``history=8`` it loses some and knows how many.
Run: ``python -m examples.joint_history``.
"""

from __future__ import annotations

import multiprocessing
import os
import time
from typing import TYPE_CHECKING

import numpy as np

from shared_object import SharedObject

if TYPE_CHECKING:
    from multiprocessing.synchronize import Event

SAMPLES = 500


def controller(name: str, history: int, ready: Event) -> None:
    """The joint state at 1 kHz, sample i holding i in each of its 7 joints."""
    with SharedObject.create(name, np.zeros(7), history=history) as joints:
        ready.wait(30)
        next_t = time.monotonic()
        for i in range(1, SAMPLES + 1):
            joints.assign(np.full(7, float(i)))
            next_t += 0.001
            time.sleep(max(0.0, next_t - time.monotonic()))


def log_every_sample(history: int) -> tuple[int, int, bool]:
    """(samples logged, lost, whether those logged came in order)."""
    name = f"joints-{history}-{os.getpid()}"  # ends with the pid, as every example's
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    writer = ctx.Process(target=controller, args=(name, history, ready))
    writer.start()
    logged: list[float] = []
    with SharedObject.attach(name, timeout=30) as joints:
        joints.fetch_new()  # sample 0, there before the controller started
        ready.set()
        while not logged or logged[-1] < SAMPLES:
            time.sleep(0.020)  # the logger's other work
            logged += [float(q[0]) for q in joints.fetch_new()]
            if not writer.is_alive() and not joints.modified:
                logged += [float(q[0]) for q in joints.fetch_new()]
                break
        lost = joints.lost
        joints.unlink()
    writer.join(10)
    return len(logged), lost, logged == sorted(logged)


def main() -> None:
    for history in (64, 8):
        logged, lost, in_order = log_every_sample(history)
        print(
            f"history={history}: {logged} samples logged + {lost} lost = {logged + lost} "
            f"of {SAMPLES}, in order: {in_order}"
        )


if __name__ == "__main__":
    main()
