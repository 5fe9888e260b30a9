"""Code that spawned test processes run, and checks that several test modules share. It lives in
a module (not in test files) so that a spawned interpreter can import it by name."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from shared_object import SharedDynamicObject, SharedObject, Tuning

#: Every multi-process test spawns (fresh interpreters, as separate programs would be), never forks.
SPAWN = multiprocessing.get_context("spawn")
#: How long a helper process may take to start and finish its part (spawn imports numpy: ~0.3 s).
PROCESS_DEADLINE = 60.0


def same(a: Any, b: Any) -> bool:
    """Exact equality: same types all the way down, arrays equal in dtype, shape and bytes."""
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    if isinstance(a, (np.str_, np.bytes_)):  # their dtype drops trailing NULs: compare as str/bytes
        return bool(a == b)
    if isinstance(a, np.generic):
        if a.dtype.kind in "fc":  # long doubles carry padding bytes that hold no value
            return a.dtype == b.dtype and bool(np.array_equal(a, b, equal_nan=True))
        return a.dtype == b.dtype and a.tobytes() == b.tobytes()
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, float) and a != a:
        return b != b
    if type(a).__name__ == "Pose":
        return bool(np.array_equal(a.p, b.p) and np.array_equal(a.q, b.q))
    return bool(a == b)


def checksummed_frame(seed: int, shape: tuple[int, ...] = (480, 848, 3)) -> np.ndarray[Any, Any]:
    """A frame whose last 8 bytes hold a checksum of the rest: a torn copy fails ``frame_ok``."""
    frame = np.full(shape, seed % 251, np.uint8)
    flat = frame.reshape(-1)
    flat[: flat.size // 2] = (seed * 7) % 253  # two halves, so a half-old half-new copy is visible
    flat[-8:] = np.frombuffer(
        hashlib.blake2b(flat[:-8].tobytes(), digest_size=8).digest(), np.uint8
    )
    return frame


def frame_ok(frame: np.ndarray[Any, Any]) -> bool:
    flat = frame.reshape(-1)
    return hashlib.blake2b(flat[:-8].tobytes(), digest_size=8).digest() == flat[-8:].tobytes()


def numbered_frame(number: int, shape: tuple[int, ...] = (480, 848, 3)) -> np.ndarray[Any, Any]:
    """A checksummed frame (``frame_ok``) whose first 8 bytes hold ``number``, for ``frame_number``."""
    frame = np.full(shape, number % 251, np.uint8)
    flat = frame.reshape(-1)
    flat[flat.size // 2 : -8] = (number * 7) % 253
    flat[:8] = np.frombuffer(number.to_bytes(8, "little"), np.uint8)
    flat[-8:] = np.frombuffer(
        hashlib.blake2b(flat[:-8].tobytes(), digest_size=8).digest(), np.uint8
    )
    return frame


def frame_number(frame: np.ndarray[Any, Any]) -> int:
    """The number of a ``numbered_frame``; -1 if the frame is torn (its checksum fails)."""
    if not frame_ok(frame):
        return -1
    return int.from_bytes(frame.reshape(-1)[:8].tobytes(), "little")


def assign_in_child(name: str, value: Any, dynamic: bool = False) -> None:
    cls = SharedDynamicObject if dynamic else SharedObject
    with cls.attach(name, timeout=30) as obj:
        obj.assign(value)


def assign_in_turn_in_child(name: str, values: list[Any], seconds: float) -> None:
    """Assign ``values`` in turn, as fast as it can, for ``seconds`` (a dynamic object's writer)."""
    with SharedDynamicObject.attach(name, timeout=30) as obj:
        end = time.monotonic() + seconds
        i = 0
        while time.monotonic() < end:
            obj.assign(values[i % len(values)])
            i += 1


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
    with (
        SharedObject.attach(name, timeout=30) as ping,
        SharedObject.attach(ack_name, timeout=30) as ack,
    ):
        started.set()
        for _ in range(rounds):
            while not ping.modified:
                pass
            ack.assign(ping.fetch())


def create_and_exit(name: str) -> None:
    """Create an object and exit without unlinking it: what a crashed producer leaves behind."""
    SharedObject.create(name, {"pose": np.zeros(7), "ok": True})


def compound_value(i: int) -> dict[str, Any]:
    """A nested value whose fields all carry ``i``: a torn mix of two values disagrees with itself."""
    return {
        "frame": checksummed_frame(i, (240, 424, 3)),
        "meta": {"seq": i, "tag": f"frame-{i:06d}", "ok": True},
        "poses": [np.full(7, float(i)), (i, np.full((4, 4), i, np.int32))],
    }


def compound_ok(value: dict[str, Any]) -> bool:
    i = value["meta"]["seq"]
    return bool(
        frame_ok(value["frame"])
        and value["meta"]["tag"] == f"frame-{i:06d}"
        and (value["poses"][0] == float(i)).all()
        and value["poses"][1][0] == i
        and (value["poses"][1][1] == i).all()
    )


def payload(kind: str, i: int) -> Any:
    return checksummed_frame(i, (1024, 1024, 4)) if kind == "array" else compound_value(i)


def payload_ok(kind: str, value: Any) -> bool:
    return frame_ok(value) if kind == "array" else compound_ok(value)


def write_payloads_forever(name: str, kind: str, started: Any) -> None:
    """Assign checksummed payloads of ``kind`` back to back until killed."""
    obj = SharedObject.attach(name, timeout=30)
    values = [payload(kind, i) for i in range(1, 5)]
    started.set()
    i = 0
    while True:
        obj.assign(values[i % 4])
        i += 1


def read_and_check(name: str, kind: str, stop: Any, results: Any) -> None:
    """Fetch and verify until ``stop`` is set; report (reads, torn)."""
    with SharedObject.attach(name, timeout=30) as obj:
        reads = torn = 0
        while not stop.is_set():
            reads += 1
            torn += not payload_ok(kind, obj.fetch())
        results.put((reads, torn))


def write_for(name: str, writer_id: int, seconds: float, results: Any) -> None:
    """Assign checksummed frames tagged with this writer's id for ``seconds``; report how many."""
    with SharedObject.attach(name, timeout=30) as obj:
        frames = [checksummed_frame(writer_id * 100 + i, (480, 848, 3)) for i in range(4)]
        end, count = time.monotonic() + seconds, 0
        while time.monotonic() < end:
            obj.assign(frames[count % 4])
            count += 1
        results.put(("writer", writer_id, count))


# -- a SharedDynamicObject whose value changes kind, size and type on every assign --------------
_DYNAMIC_SIZES = (0, 1, 100, 5_000, 200_000, 1_500_000)


def dynamic_payload(i: int) -> Any:
    """Value ``i`` of a sequence that changes kind, size and leaf types, each checkable on its own."""
    kind, n = i % 5, _DYNAMIC_SIZES[(i * 7) % len(_DYNAMIC_SIZES)]
    if kind == 0:
        frame = np.full(n, i % 251, np.uint8)
        return {
            "i": i,
            "frame": frame,
            "sum": hashlib.blake2b(frame.tobytes(), digest_size=8).digest(),
        }
    if kind == 1:
        samples = np.full(n // 8 + 1, float(i))
        return (i, samples, hashlib.blake2b(samples.tobytes(), digest_size=8).digest())
    if kind == 2:
        text = f"{i}-" * (n // 1000 + 1)
        return [i, text, len(text)]
    if kind == 3:
        speed = i if i % 2 else i + 0.5  # an int or a float leaf: it must read back as assigned
        return {"i": i, "speed": speed, "type": type(speed).__name__}
    return {
        "i": i,
        "cloud": np.full((n // 1000 + 1, 3), i, np.int16),
        "label": np.str_("z" * (i % 9)),
    }


def dynamic_payload_ok(value: Any) -> bool:
    """Whether ``value`` is one of dynamic_payload's, whole; never raises (a torn view holds anything)."""
    try:
        i = value["i"] if isinstance(value, dict) else value[0]
        return same(value, dynamic_payload(i))
    except Exception:  # noqa: BLE001 - e.g. a torn view's "i" read from a float's bytes: out of range
        return False


def write_dynamic_forever(name: str, first: int, started: Any) -> None:
    """Assign dynamic_payload(first), (first + 1), ... back to back until killed."""
    obj = SharedDynamicObject.attach(name, timeout=30)
    values = [dynamic_payload(first + i) for i in range(20)]
    started.set()
    i = 0
    while True:
        obj.assign(values[i % 20])
        i += 1


def read_dynamic_and_check(name: str, how: str, locked: bool, stop: Any, results: Any) -> None:
    """Read with ``how`` (fetch, fn or view) and check until ``stop``; report (how, reads, bad, first error).

    ``locked``: every read under the writer mutex, as on CPUs without lock-free reads (aarch64).
    """
    tuning = Tuning(lock_free_reads=False) if locked else Tuning()
    with SharedDynamicObject.attach(name, timeout=30, tuning=tuning) as obj:
        reads = bad = 0
        error = ""
        while not stop.is_set():
            reads += 1
            try:
                if how == "fetch":
                    ok = dynamic_payload_ok(obj.fetch())
                elif how == "fn":
                    ok = dynamic_payload_ok(obj.fetch(lambda v: v))
                else:
                    with obj.view() as v:
                        ok = dynamic_payload_ok(v.value)
                    ok = ok or v.torn
            except Exception as exc:  # noqa: BLE001 - any error is a failure to report, not to crash on
                ok, error = False, error or f"{type(exc).__name__}: {exc}"
            bad += not ok
        results.put((how, reads, bad, error))


def trigger_every(name: str, count: int, period: float) -> None:
    with SharedObject.attach(name, timeout=30) as obj:
        for _ in range(count):
            time.sleep(period)
            obj.trigger()


def count_wakeups(name: str, count: int, results: Any) -> None:
    """wait() for ``count`` triggers; report each one's lateness (wake time - trigger mtime)."""
    with SharedObject.attach(name, timeout=30) as obj:
        late = []
        deadline = time.monotonic() + 120
        while len(late) < count and time.monotonic() < deadline:
            if obj.wait(5.0) and obj.triggered:
                late.append((time.time_ns() - obj.mtime) / 1e9)
        results.put(("waiter", late))


# ---------------------------------------------------------------------------------------------
# The command line's tests (test_operations, test_recording): a producer of three objects
# ---------------------------------------------------------------------------------------------
#: The command line, as a user runs it; and the small camera frame the command-line tests use.
CLI = [sys.executable, "-m", "shared_object"]
FRAME = (48, 64, 3)


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout)


def frame(i: int) -> np.ndarray[Any, Any]:
    """A frame whose every byte says which it is (mod 251)."""
    return np.full(FRAME, i % 251, np.uint8)


def produce(prefix: str, count: int, period: float, started: Any) -> None:
    """A camera frame, a pose vector and a dynamic value, ``count`` times, ``period`` apart."""
    with (
        SharedObject(prefix + "-frame", data=frame(0)) as cam,
        SharedObject(prefix + "-pose", data=np.zeros(7)) as pose,
        SharedDynamicObject(prefix + "-dyn", data=0) as dyn,
    ):
        started.set()
        time.sleep(period)  # the attach's own assign of frame 0 is a change too: as far apart
        for i in range(1, count + 1):
            cam.assign(frame(i))
            pose.assign(np.full(7, float(i)))
            dyn.assign(i if i % 2 else "x" * i)  # another kind every other time
            time.sleep(period)


# -- history: numbered values, every one accounted for ------------------------------------------
def joint_state(i: int) -> np.ndarray[Any, Any]:
    """Value number ``i`` of a 7-float64 stream: every element is ``i`` (whole, or torn)."""
    return np.full(7, float(i))


def write_numbered(name: str, count: int, burst: int, caught_up: Any, started: Any) -> None:
    """Assign joint_state(1) to (count), ``burst`` at a time as fast as it can, then wait for
    the reader to have caught up (``caught_up.value``) before the next burst; 0: never wait."""
    with SharedObject.attach(name, timeout=30) as obj:
        started.set()
        for i in range(1, count + 1):
            obj.assign(joint_state(i))
            if burst and i % burst == 0:
                deadline = time.monotonic() + PROCESS_DEADLINE
                while caught_up.value < i and time.monotonic() < deadline:
                    time.sleep(0.001)


def read_new_until(name: str, last: int, nap_s: float, caught_up: Any, out: Any) -> None:
    """fetch_new() every ``nap_s`` until value ``last``: report how many arrived, whether each
    was whole and one more than the one before (or after a gap), the gaps, and ``lost``."""
    with SharedObject.attach(name, timeout=30) as obj:
        out.put("ready")
        received = whole = in_order = gaps = 0
        previous = first = None
        deadline = time.monotonic() + PROCESS_DEADLINE
        while previous != last and time.monotonic() < deadline:
            for value in obj.fetch_new():
                number = int(value[0])
                received += 1
                whole += bool((value == value[0]).all())
                if previous is not None:
                    in_order += number > previous
                    gaps += number - previous - 1
                else:
                    first = number
                previous = number
                caught_up.value = number
            time.sleep(nap_s)
        out.put({"received": received, "whole": whole, "in_order": in_order, "gaps": gaps,
                 "first": first, "last": previous, "lost": obj.lost})  # fmt: skip


def read_new_and_check(name: str, kind: str, stop: Any, results: Any) -> None:
    """fetch_new() and verify every value until ``stop``; report (values, torn, lost)."""
    with SharedObject.attach(name, timeout=30) as obj:
        values = torn = 0
        while not stop.is_set():
            for value in obj.fetch_new():
                values += 1
                torn += not payload_ok(kind, value)
        results.put((values, torn, obj.lost))
