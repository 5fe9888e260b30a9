"""A lidar process publishes point clouds whose size changes every scan; a mapper process follows.

SharedDynamicObject lets each assign change the size (here the number of points), and every
reader picks up the new shape on its next fetch. Run: ``python -m examples.point_cloud``.
"""

from __future__ import annotations

import multiprocessing
import os

import numpy as np

from shared_object import SharedDynamicObject, SharedObject

NAME = f"point-cloud-{os.getpid()}"  # the parent's pid: one name per run, shared by both processes
SCANS = 20


def lidar(name: str) -> None:
    rng = np.random.default_rng(0)
    with (
        SharedDynamicObject.attach(name, timeout=10) as cloud,
        SharedObject.attach(name + "-ack", timeout=10) as ack,
    ):
        for scan in range(1, SCANS + 1):
            points = rng.normal(size=(int(rng.integers(1_000, 100_000)), 3)).astype(np.float32)
            cloud.assign(
                {"scan": scan, "points": points}
            )  # another size each time: the slot follows
            if not ack.wait(timeout=10):  # the mapper's "got it" (a trigger): one scan at a time
                raise SystemExit("the mapper stopped answering")
            ack.fetch()  # seen: the next wait() waits for the next "got it"


def main() -> None:
    cloud = SharedDynamicObject(NAME, data={"scan": 0, "points": np.zeros((0, 3), np.float32)})
    # The "got it" answer gets a trigger object of its own: a handle sees its own triggers (as in
    # the reference), so the mapper triggering `cloud` would wake its own next wait().
    ack = SharedObject(NAME + "-ack")
    producer = multiprocessing.get_context("spawn").Process(target=lidar, args=(NAME,))
    producer.start()
    sizes: list[int] = []
    try:
        while len(sizes) < SCANS and cloud.wait(timeout=10):
            message = cloud.fetch()  # a private copy, whatever its size
            sizes.append(len(message["points"]))
            assert message["scan"] == len(sizes)
            ack.trigger()  # tell the lidar to send the next scan
        producer.join(10)
    finally:
        for obj in (cloud, ack):
            obj.unlink()
            obj.close()
    print(f"received {len(sizes)} scans of {min(sizes)} to {max(sizes)} points")


if __name__ == "__main__":
    main()
