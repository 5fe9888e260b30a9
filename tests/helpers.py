"""Code that spawned test processes run. It lives in a module (not in test files) so that a
spawned interpreter can import it by name."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import time
from typing import Any

import numpy as np

from shared_object import SharedDynamicObject, SharedObject

#: Every multi-process test spawns (fresh interpreters, as separate programs would be), never forks.
SPAWN = multiprocessing.get_context("spawn")
#: How long a helper process may take to start and finish its part (spawn imports numpy: ~0.3 s).
PROCESS_DEADLINE = 60.0


def checksummed_frame(seed: int, shape: tuple[int, ...] = (480, 848, 3)) -> np.ndarray[Any, Any]:
    """A frame whose last 8 bytes hold a checksum of the rest: a torn copy fails ``frame_ok``."""
    frame = np.full(shape, seed % 251, np.uint8)
    flat = frame.reshape(-1)
    flat[: flat.size // 2] = (seed * 7) % 253  # two halves, so a half-old half-new copy is visible
    flat[-8:] = np.frombuffer(hashlib.blake2b(flat[:-8].tobytes(), digest_size=8).digest(), np.uint8)
    return frame


def frame_ok(frame: np.ndarray[Any, Any]) -> bool:
    flat = frame.reshape(-1)
    return hashlib.blake2b(flat[:-8].tobytes(), digest_size=8).digest() == flat[-8:].tobytes()


def assign_in_child(name: str, value: Any, dynamic: bool = False) -> None:
    cls = SharedDynamicObject if dynamic else SharedObject
    with cls.attach(name, timeout=30) as obj:
        obj.assign(value)


def fetch_in_child(name: str, queue: Any, dynamic: bool = False) -> None:
    cls = SharedDynamicObject if dynamic else SharedObject
    with cls.attach(name, timeout=30) as obj:
        queue.put(obj.fetch())


def trigger_in_child(name: str, delay: float) -> None:
    with SharedObject.attach(name, timeout=30) as obj:
        time.sleep(delay)
        obj.trigger()


def wait_in_child(name: str, queue: Any, timeout: float) -> None:
    with SharedObject.attach(name, timeout=30) as obj:
        queue.put("ready")
        started = time.monotonic()
        woke = obj.wait(timeout)
        queue.put((woke, time.monotonic() - started, obj.triggered))


def attach_and_exit(name: str, how: str) -> None:
    """Attach, read, then leave the way ``how`` says: normally, by an exception, or killed."""
    obj = SharedObject.attach(name, timeout=30)
    obj.fetch()
    if how == "raise":
        raise RuntimeError("attach-only child fails on purpose")
    if how == "kill":
        os.kill(os.getpid(), signal.SIGKILL)


def write_frames_forever(name: str, started: Any) -> None:
    """Assign checksummed frames back to back until killed."""
    obj = SharedObject.attach(name, timeout=30)
    seed = 1
    frames = [checksummed_frame(s) for s in range(1, 9)]
    started.set()
    while True:
        obj.assign(frames[seed % 8])
        seed += 1


def resize_in_child(name: str, shapes: list[tuple[int, ...]], done: Any) -> None:
    with SharedDynamicObject.attach(name, timeout=30) as obj:
        for i, shape in enumerate(shapes):
            obj.assign(np.full(shape, i, np.float64))
            time.sleep(0.001)
    done.set()


def count_up(name: str, count: int, started: Any) -> None:
    """Assign 1, 2, 3, ... ``count`` back to back."""
    with SharedObject.attach(name, timeout=30) as obj:
        started.set()
        for i in range(1, count + 1):
            obj.assign(i)


def echo(name: str, ack_name: str, rounds: int, started: Any) -> None:
    """Answer each new value of ``name`` by assigning it to ``ack_name`` (spinning on modified)."""
    with SharedObject.attach(name, timeout=30) as ping, SharedObject.attach(ack_name, timeout=30) as ack:
        started.set()
        for _ in range(rounds):
            while not ping.modified:
                pass
            ack.assign(ping.fetch())


def create_and_exit(name: str) -> None:
    """Create an object and exit without unlinking it: what a crashed producer leaves behind."""
    SharedObject.create(name, {"pose": np.zeros(7), "ok": True})
