"""Producer -> consumer across processes: shared_object beside its peers, in one run.

    python=$(bash benchmarks/setup_peers.sh)        # a venv with the peers (not our dependencies)
    $python benchmarks/bench_peers.py [--quick]

For each transport and payload size, a producer process sends frames to a consumer process that
ends up holding the frame's data (a private copy, except the zero-copy rows), then acknowledges
through one raw shared 8-byte word, the same for every transport, so only the frame direction
differs. Measured:

* ack-paced one-way-and-back latency (median, p99) and the frames per second that pacing allows
  (1 / mean round trip: the most a consumer can take without loss);
* free-running: the producer sends as fast as it can for a fixed time; frames the consumer got
  versus frames the producer sent.

For the targets that compare ours with the seqlock floor (latency and free-running), both also run
in short alternating windows between the same two processes (measure_duel): this VM's speed
changes for seconds at a time, which separate runs seconds apart cannot cancel.

Writes benchmarks/results/peers.md (the table) and benchmarks/results/peers.png (latency versus
payload size). Transports that are not installed are listed as skipped.
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing as mp
import os
import statistics
import sys
import time
from collections.abc import Callable
from multiprocessing import resource_tracker, shared_memory
from pathlib import Path
from typing import Any, Final, NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from shared_object.testing import unique_name  # noqa: E402

SIZES = {"8 B": (8,), "1 KiB": (32, 32), "1.22 MB": (480, 848, 3), "9.8 MB": (480, 848, 3, 8)}
STOP = 2**62  # the sequence number that ends a free-running stream
DEADLINE_S = 120.0


def frame_for(shape: tuple[int, ...], seq: int) -> np.ndarray[Any, Any]:
    """A payload whose first 8 bytes carry its sequence number (the 8 B payload is only that)."""
    frame = np.full(shape, seq % 251, np.uint8)
    frame.reshape(-1)[:8].view(np.uint64)[0] = seq
    return frame


def seq_of(buffer: Any) -> int:
    return int(np.frombuffer(buffer, np.uint8, 8).view(np.uint64)[0])


# ------------------------------------------------------------------------------------------------
# Transports: each is (make_sender, make_receiver). A sender takes a frame; a receiver returns the
# seq of the next new frame, after copying it (or viewing it, for zero-copy) into the consumer.
# ------------------------------------------------------------------------------------------------
Sender = Callable[[np.ndarray[Any, Any]], None]
Receiver = Callable[[], int]


def so_sender(name: str, shape: tuple[int, ...]) -> Sender:
    from shared_object import SharedObject

    obj = SharedObject.create(name, np.zeros(shape, np.uint8), mode=0o600)
    return obj.assign


def so_receiver(name: str, shape: tuple[int, ...], mode: str) -> Receiver:
    from shared_object import SharedObject

    obj = SharedObject.attach(name, timeout=30)

    def poll() -> int:
        while not obj.modified:
            pass
        return seq_of(obj.fetch())

    def wait() -> int:
        obj.wait(DEADLINE_S)
        return seq_of(obj.fetch())

    def view() -> int:
        while not obj.modified:
            pass
        while True:
            with obj.view() as v:
                seq = seq_of(v.value)
            if not v.torn:
                return seq

    return {"poll": poll, "wait": wait, "view": view}[mode]


def untracked(shm: shared_memory.SharedMemory) -> shared_memory.SharedMemory:
    """Keep the resource tracker out of a floor segment: run_pair removes it.

    Otherwise the tracker (shared by the spawned consumers) "cleans up" names that run_pair
    already unlinked when the run ends, and prints a warning for each.
    """
    resource_tracker.unregister(shm._name, "shared_memory")  # the tracker knows it by this name
    return shm


def seqlock_views(shm: shared_memory.SharedMemory, shape: tuple[int, ...]) -> tuple[Any, list[Any], Callable[[], None]]:
    """The floor's layout in ``shm``: a sequence word, two slots, and a close() that drops them first.

    SharedMemory.close() refuses while views exist, and a closure frees its cells in no set order.
    """
    nbytes = int(np.prod(shape))
    words = shm.buf[:64].cast("Q")
    slots = [np.ndarray(shape, np.uint8, shm.buf, 64 + i * nbytes) for i in (0, 1)]

    def close() -> None:
        slots.clear()
        words.release()
        shm.close()

    return words, slots, close


def seqlock_sender(name: str, shape: tuple[int, ...]) -> Sender:
    shm = untracked(shared_memory.SharedMemory(name=name, create=True, size=64 + 2 * int(np.prod(shape))))
    words, slots, close = seqlock_views(shm, shape)
    words[0] = 0
    state = {"seq": 0}

    def send(frame: np.ndarray[Any, Any]) -> None:
        state["seq"] += 1
        np.copyto(slots[state["seq"] & 1], frame)
        words[0] = state["seq"]

    send.close = close  # type: ignore[attr-defined]
    return send


def seqlock_receiver(name: str, shape: tuple[int, ...]) -> Receiver:
    words, slots, close = seqlock_views(untracked(shared_memory.SharedMemory(name=name)), shape)
    last = [words[0]]
    frame = np.empty(shape, np.uint8)  # the consumer's own copy: preallocated, as a floor should be

    def receive() -> int:
        while True:
            seq = words[0]
            if seq != last[0]:
                np.copyto(frame, slots[seq & 1])
                if words[0] == seq:
                    last[0] = seq
                    return seq_of(frame)

    receive.close = close  # type: ignore[attr-defined]
    return receive


def reference_sender(name: str, shape: tuple[int, ...]) -> Sender:
    from real_robot.utils.multiprocessing import SharedObject as RefSharedObject

    obj = RefSharedObject(name, data=np.zeros(shape, np.uint8))
    return obj.assign  # type: ignore[no-any-return]


def reference_receiver(name: str, shape: tuple[int, ...]) -> Receiver:
    from real_robot.utils.multiprocessing import SharedObject as RefSharedObject

    obj = RefSharedObject(name)

    def receive() -> int:
        while not obj.modified:
            pass
        return seq_of(obj.fetch())

    return receive


def iceoryx_sender(name: str, shape: tuple[int, ...]) -> Sender:
    import ctypes

    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = (node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .history_size(0).subscriber_max_buffer_size(2).enable_safe_overflow(True).open_or_create())
    publisher = service.publisher_builder().initial_max_slice_len(int(np.prod(shape))).create()
    keep = (node, service, publisher)

    def send(frame: np.ndarray[Any, Any]) -> None:
        sample = publisher.loan_slice_uninit(frame.size)
        np.frombuffer(sample.payload().as_memory_view(), np.uint8)[:] = frame.reshape(-1)
        sample.assume_init().send()

    send.keep = keep  # type: ignore[attr-defined]
    return send


def iceoryx_receiver(name: str, shape: tuple[int, ...], zero_copy: bool) -> Receiver:
    import ctypes

    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = (node.service_builder(iox2.ServiceName.new(name)).publish_subscribe(iox2.Slice[ctypes.c_uint8])
               .history_size(0).subscriber_max_buffer_size(2).enable_safe_overflow(True).open_or_create())
    subscriber = service.subscriber_builder().create()

    def receive() -> int:
        latest = None
        while latest is None:
            while (sample := subscriber.receive()) is not None:  # drain: keep the newest
                if latest is not None:
                    latest.delete()
                latest = sample
        view = np.frombuffer(latest.payload().as_memory_view(), np.uint8)
        seq = seq_of(view if zero_copy else view.copy())
        latest.delete()
        return seq

    receive.keep = (node, service, subscriber)  # type: ignore[attr-defined]
    return receive


def zmq_sender(name: str, shape: tuple[int, ...]) -> Sender:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PUSH)
    sock.set_hwm(2)
    sock.bind(f"ipc:///tmp/{name}.zmq")
    return lambda frame: sock.send(frame, copy=False)


def zmq_receiver(name: str, shape: tuple[int, ...]) -> Receiver:
    import zmq

    sock = zmq.Context.instance().socket(zmq.PULL)
    sock.set_hwm(2)
    sock.connect(f"ipc:///tmp/{name}.zmq")
    return lambda: seq_of(np.frombuffer(sock.recv(), np.uint8))


def pipe_pair() -> tuple[Any, Any]:
    return mp.get_context("spawn").Pipe(duplex=False)


OURS_POLLING: Final = "shared_object (copy, polling)"
OURS_WAITING: Final = "shared_object (copy, wait())"
SEQLOCK_FLOOR: Final = "raw shm + 2-slot seqlock (floor)"
#: The two transports of the targets measured in paired windows, in the order measure_duel reports them.
DUEL: Final = (OURS_POLLING, SEQLOCK_FLOOR)
TRANSPORTS: dict[str, dict[str, Any]] = {
    OURS_POLLING: {"send": so_sender, "recv": lambda n, s: so_receiver(n, s, "poll"), "needs": "shared_object"},
    OURS_WAITING: {"send": so_sender, "recv": lambda n, s: so_receiver(n, s, "wait"), "needs": "shared_object"},
    "shared_object (zero-copy view)": {"send": so_sender, "recv": lambda n, s: so_receiver(n, s, "view"), "needs": "shared_object"},
    SEQLOCK_FLOOR: {"send": seqlock_sender, "recv": seqlock_receiver, "needs": "numpy"},
    "reference SharedObject 0.0.6": {"send": reference_sender, "recv": reference_receiver, "needs": "real_robot"},
    "iceoryx2 (copy)": {"send": iceoryx_sender, "recv": lambda n, s: iceoryx_receiver(n, s, False), "needs": "iceoryx2"},
    "iceoryx2 (zero-copy)": {"send": iceoryx_sender, "recv": lambda n, s: iceoryx_receiver(n, s, True), "needs": "iceoryx2"},
    "pyzmq ipc://": {"send": zmq_sender, "recv": zmq_receiver, "needs": "zmq"},
    "multiprocessing Pipe (pickle 5)": {"send": None, "recv": None, "needs": "numpy"},
}


# ------------------------------------------------------------------------------------------------
# The two sides
# ------------------------------------------------------------------------------------------------
def consumer_main(transport: str, name: str, shape: tuple[int, ...], ack_name: str, mode: str, conn: Any) -> None:
    ack_shm = shared_memory.SharedMemory(name=ack_name)
    ack = ack_shm.buf[:8].cast("Q")
    if conn is not None:
        receive: Receiver = lambda: seq_of(conn.recv())  # noqa: E731
    else:
        receive = TRANSPORTS[transport]["recv"](name, shape)
    ack[0] = 1  # ready
    got = 0
    deadline = time.monotonic() + DEADLINE_S * 3
    while time.monotonic() < deadline:
        seq = receive()
        if seq == STOP:
            break
        got += 1
        if mode == "paced":
            ack[0] = seq
    ack[0] = STOP + got  # report the count back
    getattr(receive, "close", lambda: None)()  # the floor's views, before its segment
    del ack, receive
    ack_shm.close()


def _paced(transport: str, send: Sender, ack: Any, frames: list[np.ndarray[Any, Any]], count: int) -> dict[str, Any]:
    samples = []
    for seq in range(2, count + 2):
        frame = frames[seq % 4]
        frame.reshape(-1)[:8].view(np.uint64)[0] = seq
        t0 = time.perf_counter()
        send(frame)
        while ack[0] != seq:
            if time.perf_counter() - t0 > 10:
                msg = f"{transport}: no ack for frame {seq}"
                raise RuntimeError(msg)
        samples.append(time.perf_counter() - t0)
    return {"samples": samples[len(samples) // 10:]}  # the first tenth warms caches and branch predictors


def _summary(samples: list[float]) -> dict[str, float]:
    warm = sorted(samples)
    return {"median_us": statistics.median(warm) * 1e6, "p99_us": warm[int(len(warm) * 0.99)] * 1e6,
            "fps": 1 / statistics.mean(warm)}


def _free_running(send: Sender, ack: Any, frames: list[np.ndarray[Any, Any]], seconds: float) -> dict[str, Any]:
    sent, seq, end = 0, 1, time.monotonic() + seconds
    while time.monotonic() < end:
        seq += 1
        frame = frames[seq % 4]
        frame.reshape(-1)[:8].view(np.uint64)[0] = seq
        send(frame)
        sent += 1
    return {"sent": sent}


def _stop(send: Sender, ack: Any, frames: list[np.ndarray[Any, Any]]) -> int | None:
    """Send the stop frame until the consumer reports how many frames it got (None: it did not)."""
    time.sleep(0.05)
    stop = frames[0]
    stop.reshape(-1)[:8].view(np.uint64)[0] = STOP
    for _ in range(20):  # a lossy transport may drop the stop frame: resend until counted
        send(stop)
        time.sleep(0.05)
        if ack[0] >= STOP:
            return int(ack[0] - STOP)
    return None


def run_pair(transport: str, shape: tuple[int, ...], mode: str, count: int, seconds: float) -> dict[str, Any]:
    name = unique_name("peer").replace("-", "_")
    ack_shm = shared_memory.SharedMemory(create=True, size=64)
    ack = ack_shm.buf[:8].cast("Q")
    ack[0] = 0
    ctx = mp.get_context("spawn")
    conn_recv = conn_send = None
    if TRANSPORTS[transport]["send"] is None:  # multiprocessing Pipe
        conn_recv, conn_send = pipe_pair()
        send: Sender = conn_send.send
    else:
        send = TRANSPORTS[transport]["send"](name, shape)
    consumer = ctx.Process(target=consumer_main, args=(transport, name, shape, ack_shm.name, mode, conn_recv))
    consumer.start()
    try:
        deadline = time.monotonic() + DEADLINE_S
        while ack[0] != 1:
            if time.monotonic() > deadline or not consumer.is_alive():
                msg = f"{transport}: consumer did not start"
                raise RuntimeError(msg)
            time.sleep(0.01)
        time.sleep(0.2)
        frames = [frame_for(shape, 0) for _ in range(4)]
        if mode == "paced":
            result = _paced(transport, send, ack, frames, count)
        else:
            result = _free_running(send, ack, frames, seconds)
        result["got"] = _stop(send, ack, frames)
        consumer.join(30)
        return result
    finally:
        if consumer.is_alive():
            consumer.kill()
            consumer.join(5)
        getattr(send, "close", lambda: None)()
        del ack
        ack_shm.close()
        ack_shm.unlink()
        for leftover in (f"/dev/shm/{name}", f"/tmp/{name}.zmq"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if TRANSPORTS[transport]["needs"] == "real_robot":
            # The reference attaches through multiprocessing.shared_memory, whose resource tracker
            # would try to remove the segment again at exit, and warn that it is gone.
            resource_tracker.unregister(f"/{name}", "shared_memory")


def _targets(paced: dict[tuple[str, str], dict[str, Any] | str], free: dict[str, dict[str, Any]],
             duel_paced: list[float], duel_free: list[float]) -> str:
    """The issue's targets, as ratios between rows of this run.

    Each ratio is the median, over rounds, of the ratio within one round. Ours against the floor
    comes from measure_duel's paired windows (``duel_*``: per-pair ratios), where the two ran
    milliseconds apart; the other rows from run_pair's rounds, where they ran seconds apart.
    """
    ours, view, waiting = (OURS_POLLING, "shared_object (zero-copy view)", OURS_WAITING)
    floor, iceoryx = SEQLOCK_FLOOR, "iceoryx2 (copy)"
    checks: list[tuple[str, tuple[str, str] | list[float], str, float | None, str]] = [
        ("latency 1.22 MB, copy vs iceoryx2 copy", (ours, iceoryx), "lat", 1.0, "<="),
        ("latency 1.22 MB, copy vs seqlock floor (paired windows)", duel_paced, "", 1.1, "<="),
        ("latency 1.22 MB, copy vs seqlock floor (separate runs)", (ours, floor), "lat", None, ""),
        ("latency 1.22 MB, zero-copy view vs iceoryx2 copy", (view, iceoryx), "lat", 0.5, "<="),
        ("latency 1.22 MB, wait() vs polling", (waiting, ours), "lat", 2.0, "<="),
        ("free-running frames got, copy polling vs seqlock floor (paired windows)", duel_free, "", 0.9, ">="),
        ("free-running frames got, copy polling vs seqlock floor (separate runs)", (ours, floor), "free", None, ""),
        ("free-running frames got, wait() vs seqlock floor", (waiting, floor), "free", None, ""),
        ("free-running frames got, zero-copy view vs seqlock floor", (view, floor), "free", None, ""),
    ]
    lines = ["| target (median of per-round ratios) | ratio | wanted | | rounds: min - max |",
             "| --- | --- | --- | --- | --- |"]
    for text, rows, kind, limit, op in checks:
        try:
            if isinstance(rows, list):
                ratios = rows
            else:
                a, b = rows
                if kind == "lat":
                    mine, theirs = paced[a, "1.22 MB"]["rounds"], paced[b, "1.22 MB"]["rounds"]  # type: ignore[index]
                else:
                    mine, theirs = free[a]["rounds"], free[b]["rounds"]
                ratios = [x / y for x, y in zip(mine, theirs, strict=True)]
            ratio = statistics.median(ratios)
            spread = f"{min(ratios):.2f}x - {max(ratios):.2f}x"
        except (KeyError, TypeError, ZeroDivisionError, ValueError, statistics.StatisticsError):
            lines.append(f"| {text} | not measured | | | |")
            continue
        if limit is None:
            lines.append(f"| {text} | {ratio:.2f}x | (info) | | {spread} |")
            continue
        ok = ratio <= limit if op == "<=" else ratio >= limit
        lines.append(f"| {text} | {ratio:.2f}x | {op} {limit}x | {'ok' if ok else 'MISSED'} | {spread} |")
    return "\n".join(lines)


def available(transport: str) -> bool:
    needs = TRANSPORTS[transport]["needs"]
    module = {"real_robot": "real_robot", "zmq": "zmq", "iceoryx2": "iceoryx2"}.get(needs, needs)
    return importlib.util.find_spec(module) is not None


def _round_order(installed: list[str], index: int) -> list[str]:
    """Round ``index``'s order: ours and the floor first, back to back, swapped every other round."""
    pair = [t for t in (OURS_POLLING, SEQLOCK_FLOOR) if t in installed]
    return (pair if index % 2 == 0 else pair[::-1]) + [t for t in installed if t not in pair]


def measure_paced(installed: list[str], count: int, rounds: int) -> dict[tuple[str, str], dict[str, Any] | str]:
    """Ack-paced latency per (transport, payload), or the reason it failed.

    Every measurement runs in interleaved rounds: this machine's speed drifts over seconds (a
    shared host), so each transport gets a slice of every period instead of a period of its own.
    Within a round, payload by payload, our polling consumer and the seqlock floor run back to
    back in alternating order (see measure_free).
    """
    samples: dict[tuple[str, str], list[float]] = {}
    round_medians: dict[tuple[str, str], list[float]] = {}
    paced: dict[tuple[str, str], dict[str, Any] | str] = {}
    for index in range(rounds):
        for label, shape in SIZES.items():
            for transport in _round_order(installed, index):
                if isinstance(paced.get((transport, label)), str):
                    continue
                frames = max(count // rounds, 50) // (4 if label == "9.8 MB" else 1)
                try:
                    result = run_pair(transport, shape, "paced", frames, 0)
                except Exception as exc:  # one broken peer must not end the run
                    paced[transport, label] = f"failed: {exc}"
                    continue
                samples.setdefault((transport, label), []).extend(result["samples"])
                round_medians.setdefault((transport, label), []).append(statistics.median(result["samples"]))
    for key, values in samples.items():
        if key not in paced:
            summary = paced[key] = {**_summary(values), "rounds": round_medians[key]}
            print(*key, f"{summary['median_us']:.1f} us", flush=True)
    return paced


def measure_free(installed: list[str], seconds: float, rounds: int) -> dict[str, dict[str, Any]]:
    """Free-running at 1.22 MB: frames got and sent per transport, summed over interleaved rounds.

    The target compares our polling consumer with the seqlock floor, so those two run back to
    back in every round, in alternating order (ours first in even rounds, the floor first in odd
    ones): the machine's drift between them then cancels instead of landing on one side.
    """
    free: dict[str, dict[str, Any]] = {t: {"got": 0, "sent": 0, "rounds": []} for t in installed}
    for index in range(rounds):
        for transport in _round_order(installed, index):
            try:
                result = run_pair(transport, SIZES["1.22 MB"], "free", 0, seconds)
            except Exception as exc:  # one broken peer must not end the run
                print(transport, "free-running failed:", exc, flush=True)
                continue
            free[transport]["got"] += result["got"] or 0
            free[transport]["sent"] += result["sent"]
            free[transport]["rounds"].append(result["got"] or 0)
    return free


# ------------------------------------------------------------------------------------------------
# Ours against the floor in short alternating windows (the targets' measurement)
# ------------------------------------------------------------------------------------------------
#: Words of the duel's control segment: the window the producer opens (its index << 1 | which
#: transport), the window the consumer is ready for, the count it got in the window it closed,
#: that window, and the ack of a paced window (the last frame's seq).
OPEN, READY, GOT, CLOSED, ACK = 0, 1, 2, 3, 4
DUEL_IDLE: Final = 2**63  # OPEN's value when no window is open; the consumer exits on DUEL_DONE
DUEL_DONE: Final = 2**63 + 1


class Window(NamedTuple):
    got: int  # frames the consumer got
    sent: int  # frames the producer sent
    samples: list[float]  # paced windows: each frame's round trip, seconds (the first tenth dropped)


def duel_consumer(transports: tuple[str, str], names: list[str], shape: tuple[int, ...], ctrl_name: str) -> None:
    """One consumer process for both transports: counts (and acks) what it gets in each window it is told to open."""
    ctrl_shm = shared_memory.SharedMemory(name=ctrl_name)
    words = ctrl_shm.buf[:64].cast("Q")
    receivers = [TRANSPORTS[t]["recv"](n, shape) for t, n in zip(transports, names, strict=True)]
    words[READY] = DUEL_IDLE
    seen = DUEL_IDLE
    deadline = time.monotonic() + DEADLINE_S * 3
    while time.monotonic() < deadline:
        command = words[OPEN]
        if command == DUEL_DONE:
            break
        if command in (seen, DUEL_IDLE):
            continue
        seen, window = command, command >> 1
        receive = receivers[command & 1]
        words[READY] = window
        got = 0
        while True:  # until this window's stop frame: a stale stop frame of an earlier window is skipped
            seq = receive()
            if seq == STOP + window:
                break
            if seq < STOP:
                got += 1
                words[ACK] = seq  # read only by paced windows; one store either way
        words[GOT] = got
        words[CLOSED] = window
    for receive in receivers:
        getattr(receive, "close", lambda: None)()
    words.release()
    ctrl_shm.close()


def measure_duel(pairs: int, seconds: float = 0.25, paced: int = 0,
                 transports: tuple[str, str] = DUEL) -> list[tuple[Window, Window]]:
    """(ours, floor) windows, ``pairs`` times, back to back in ABBA order, at 1.22 MB.

    A window free-runs for ``seconds``, or, with ``paced``, sends that many frames one at a time,
    each after the ack of the one before (as run_pair's paced mode).

    Why not run_pair's rounds: this VM switches for seconds at a time between ~2,000 and ~30,000
    1.2 MB frames/s, for every transport alike, and two run_pair calls start about 2 s apart
    (process spawn), so one round's two halves often ran in different regimes (per-round ratios
    0.08x-5.8x in one run). Here one producer and one consumer process serve both transports, and
    the two windows of a pair follow each other within milliseconds.
    """
    shape = SIZES["1.22 MB"]
    names = [unique_name("duel").replace("-", "_") for _ in transports]
    ctrl_shm = shared_memory.SharedMemory(create=True, size=64)
    words = ctrl_shm.buf[:64].cast("Q")
    ack = ctrl_shm.buf[8 * ACK : 8 * ACK + 8].cast("Q")  # _paced's one-word ack
    words[OPEN] = words[READY] = words[CLOSED] = DUEL_IDLE
    words[ACK] = 0
    senders = [TRANSPORTS[t]["send"](n, shape) for t, n in zip(transports, names, strict=True)]
    consumer = mp.get_context("spawn").Process(target=duel_consumer, args=(transports, names, shape, ctrl_shm.name))
    consumer.start()
    frames = [frame_for(shape, 0) for _ in range(4)]
    windows: list[tuple[Window, Window]] = []
    try:
        _await(words, READY, DUEL_IDLE, consumer)
        window = 0
        for index in range(pairs):
            pair: list[Window] = [Window(0, 0, []), Window(0, 0, [])]
            for which in ((0, 1) if index % 2 == 0 else (1, 0)):
                words[OPEN] = window << 1 | which
                _await(words, READY, window, consumer)
                if paced:
                    samples = _paced(transports[which], senders[which], ack, frames, paced)["samples"]
                    sent = paced
                else:
                    samples, sent = [], _free_running(senders[which], None, frames, seconds)["sent"]
                stop = frames[0]
                stop.reshape(-1)[:8].view(np.uint64)[0] = STOP + window
                for _ in range(200):  # resend until counted: the consumer may be mid-copy of an older frame
                    senders[which](stop)
                    if _await(words, CLOSED, window, consumer, timeout=0.05):
                        break
                else:
                    msg = f"duel: the consumer did not close window {window}"
                    raise RuntimeError(msg)
                pair[which] = Window(int(words[GOT]), sent, samples)
                window += 1
            windows.append((pair[0], pair[1]))
        words[OPEN] = DUEL_DONE
        consumer.join(30)
    finally:
        if consumer.is_alive():
            consumer.kill()
            consumer.join(5)
        for send in senders:
            getattr(send, "close", lambda: None)()
        ack.release()  # not del: a traceback may still hold them
        words.release()
        ctrl_shm.close()
        ctrl_shm.unlink()
        for name in names:
            if os.path.exists(f"/dev/shm/{name}"):
                os.unlink(f"/dev/shm/{name}")
    return windows


def _await(words: Any, index: int, value: int, consumer: Any, timeout: float = DEADLINE_S) -> bool:
    """Spin until ``words[index] == value``; False after ``timeout``; RuntimeError if the consumer died."""
    end = time.monotonic() + timeout
    while words[index] != value:
        if not consumer.is_alive():
            msg = "duel: the consumer process died"
            raise RuntimeError(msg)
        if time.monotonic() > end:
            return False
    return True


def duel_medians(windows: list[tuple[Window, Window]]) -> tuple[float, float]:
    """Median round trip (seconds) of ours and of the floor over all paced windows."""
    return tuple(statistics.median(x for pair in windows for x in pair[i].samples) for i in (0, 1))  # type: ignore[return-value]


def duel_ratios(windows: list[tuple[Window, Window]]) -> list[float]:
    """Per pair: ours / floor, of frames got (free-running) or of median round trips (paced)."""
    if windows and windows[0][0].samples:
        return [statistics.median(a.samples) / statistics.median(b.samples) for a, b in windows]
    return [a.got / b.got for a, b in windows]


def plot(latency: dict[str, dict[str, float]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    fig, ax = plt.subplots(figsize=(9, 5))
    sizes_bytes = {"8 B": 8, "1 KiB": 1024, "1.22 MB": 1221120, "9.8 MB": 9768960}
    for transport, by_size in latency.items():
        xs = [sizes_bytes[k] for k in by_size]
        ax.plot(xs, list(by_size.values()), marker="o", label=transport)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("payload (bytes)")
    ax.set_ylabel("ack-paced latency, median (us)")
    ax.set_title("producer -> consumer holding the frame, ack-paced")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    count, seconds, rounds = (200, 1.0, 1) if args.quick else (1000, 1.0, 5)
    free_rounds = 1 if args.quick else 5  # the target's free-running ratio comes from measure_duel
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    installed = [t for t in TRANSPORTS if available(t)]
    paced = measure_paced(installed, count, rounds)
    free = measure_free(installed, seconds, free_rounds)
    duel_pairs, duel_seconds, duel_frames = (2, 0.25, 100) if args.quick else (20, 0.25, 300)
    duel_free = measure_duel(duel_pairs, duel_seconds)
    duel_paced = measure_duel(duel_pairs, paced=duel_frames)
    rows, latency = [], {}
    for transport in TRANSPORTS:
        if transport not in installed:
            rows.append(f"| {transport} | skipped: not installed (run benchmarks/setup_peers.sh) | | | | |")
            continue
        for label in SIZES:
            result = paced[transport, label]
            if isinstance(result, str):
                rows.append(f"| {transport} | {label} | {result} | | | |")
                continue
            latency.setdefault(transport, {})[label] = result["median_us"]
            free_text = f"{free[transport]['got']} / {free[transport]['sent']}" if label == "1.22 MB" else ""
            rows.append(f"| {transport} | {label} | {result['median_us']:.1f} | {result['p99_us']:.1f} | "
                        f"{result['fps']:.0f} | {free_text} |")
    header = (f"# {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}; "
              f"{count} ack-paced frames per row in {rounds} interleaved rounds; "
              f"free-running at 1.22 MB: {free_rounds} interleaved rounds of {seconds:.0f} s; "
              "in every round our polling consumer and the floor run back to back, in alternating order\n\n"
              "| transport | payload | median us | p99 us | max lossless fps (paced) | free-running: got / sent |\n"
              "| --- | --- | --- | --- | --- | --- |")
    ours_got, ours_sent = sum(p[0].got for p in duel_free), sum(p[0].sent for p in duel_free)
    floor_got, floor_sent = sum(p[1].got for p in duel_free), sum(p[1].sent for p in duel_free)
    ours_lat, floor_lat = (seconds * 1e6 for seconds in duel_medians(duel_paced))
    duel_text = (f"Paired windows (measure_duel: one producer and one consumer process serve both, {duel_pairs} pairs "
                 f"back to back, ABBA), 1.22 MB. Paced, {duel_frames} frames per window: {OURS_POLLING} "
                 f"{ours_lat:.1f} us, {SEQLOCK_FLOOR} {floor_lat:.1f} us (median round trip). Free-running, "
                 f"{duel_seconds} s per window: {OURS_POLLING} got {ours_got} / sent {ours_sent}; "
                 f"{SEQLOCK_FLOOR} got {floor_got} / sent {floor_sent}.")
    table = (header + "\n" + "\n".join(rows) + "\n\n" + duel_text + "\n\n"
             + _targets(paced, free, duel_ratios(duel_paced), duel_ratios(duel_free)))
    (out_dir / "peers.md").write_text(table + "\n")
    print(table)
    plot(latency, out_dir / "peers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
