"""Producer -> consumer across processes: shared_object beside its peers, in one run.

    python=$(bash benchmarks/setup_peers.sh)        # a venv with the peers (not our dependencies)
    $python benchmarks/bench_peers.py [--quick]

For each transport and payload size, a producer process sends frames to a consumer process that
ends up holding the frame's data (a private copy, except the zero-copy rows), then acknowledges
through one raw shared 8-byte word, the same for every transport, so only the frame direction
differs. Measured:

* ack-paced one-way latency (median, p99): from the producer calling send to the consumer holding
  its copy, both stamped with CLOCK_MONOTONIC (one clock for every process on the machine); and
  the frames per second that pacing allows (1 / mean round trip, send to ack seen: the most a
  consumer can take without loss);
* free-running: the producer sends as fast as it can for a fixed time; frames the consumer got
  versus frames the producer sent.

How: one producer process and one consumer process serve every transport, in windows that take
turns (measure_windows: A B C ... C B A, a few cycles per payload), so every transport meets
the same machine. This VM's speed changes for seconds at a time, some 3x: measured in separate
process pairs started seconds apart, as this benchmark used to, the same code read 0.5x
iceoryx2's latency one day and 2.5x another. The targets, which compare two transports, are
decided in paired windows of those two alone (measure_duel: ABBA, milliseconds apart); the same
ratio from the rotation is printed beside them.

Writes benchmarks/results/peers.md (the table) and benchmarks/results/peers.png (latency versus
payload size). Transports that are not installed are listed as skipped.
"""

from __future__ import annotations

import argparse
import contextlib
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
STOP = 2**62  # STOP + w: the seq of the frame that ends window w (see measure_windows)
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
    """Keep the resource tracker out of a floor segment: measure_windows removes it.

    Otherwise the tracker (shared by the spawned consumers) "cleans up" names that measure_windows
    already unlinked when the run ends, and prints a warning for each.
    """
    resource_tracker.unregister(shm._name, "shared_memory")  # the tracker knows it by this name
    return shm


def seqlock_views(
    shm: shared_memory.SharedMemory, shape: tuple[int, ...]
) -> tuple[Any, list[Any], Callable[[], None]]:
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
    shm = untracked(
        shared_memory.SharedMemory(name=name, create=True, size=64 + 2 * int(np.prod(shape)))
    )
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


def iceoryx_service(name: str) -> tuple[Any, Any]:
    """(node, service): the byte-slice publish-subscribe service both ends open, keeping only
    the newest frames (no history, two buffered, the oldest overwritten)."""
    import ctypes

    import iceoryx2 as iox2

    iox2.set_log_level(iox2.LogLevel.Error)
    node = iox2.NodeBuilder.new().create(iox2.ServiceType.Ipc)
    service = (
        node.service_builder(iox2.ServiceName.new(name))
        .publish_subscribe(iox2.Slice[ctypes.c_uint8])
        .history_size(0)
        .subscriber_max_buffer_size(2)
        .enable_safe_overflow(True)
        .open_or_create()
    )
    return node, service


def iceoryx_sender(name: str, shape: tuple[int, ...]) -> Sender:
    node, service = iceoryx_service(name)
    publisher = service.publisher_builder().initial_max_slice_len(int(np.prod(shape))).create()
    keep = (node, service, publisher)

    def send(frame: np.ndarray[Any, Any]) -> None:
        sample = publisher.loan_slice_uninit(frame.size)
        np.frombuffer(sample.payload().as_memory_view(), np.uint8)[:] = frame.reshape(-1)
        sample.assume_init().send()

    send.keep = keep  # type: ignore[attr-defined]
    return send


def iceoryx_receiver(name: str, shape: tuple[int, ...], zero_copy: bool) -> Receiver:
    node, service = iceoryx_service(name)
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
OURS_VIEW: Final = "shared_object (zero-copy view)"
SEQLOCK_FLOOR: Final = "raw shm + 2-slot seqlock (floor)"
ICEORYX_COPY: Final = "iceoryx2 (copy)"
#: measure_duel's default pair, in the order it reports them.
DUEL: Final = (OURS_POLLING, SEQLOCK_FLOOR)
TRANSPORTS: dict[str, dict[str, Any]] = {
    OURS_POLLING: {
        "send": so_sender,
        "recv": lambda n, s: so_receiver(n, s, "poll"),
        "needs": "shared_object",
    },
    OURS_WAITING: {
        "send": so_sender,
        "recv": lambda n, s: so_receiver(n, s, "wait"),
        "needs": "shared_object",
    },
    OURS_VIEW: {
        "send": so_sender,
        "recv": lambda n, s: so_receiver(n, s, "view"),
        "needs": "shared_object",
    },
    SEQLOCK_FLOOR: {"send": seqlock_sender, "recv": seqlock_receiver, "needs": "numpy"},
    "reference SharedObject 0.0.6": {
        "send": reference_sender,
        "recv": reference_receiver,
        "needs": "real_robot",
    },
    ICEORYX_COPY: {
        "send": iceoryx_sender,
        "recv": lambda n, s: iceoryx_receiver(n, s, False),
        "needs": "iceoryx2",
    },
    "iceoryx2 (zero-copy)": {
        "send": iceoryx_sender,
        "recv": lambda n, s: iceoryx_receiver(n, s, True),
        "needs": "iceoryx2",
    },
    "pyzmq ipc://": {"send": zmq_sender, "recv": zmq_receiver, "needs": "zmq", "lossless": True},
    "multiprocessing Pipe (pickle 5)": {
        "send": None,
        "recv": None,
        "needs": "numpy",
        "lossless": True,
    },
}


# ------------------------------------------------------------------------------------------------
# The measurement: windows, every transport in turn between the same two processes
# ------------------------------------------------------------------------------------------------
#: Words of the control segment: the window the producer opens (its index << 8 | which transport),
#: the window the consumer is ready for, the count it got in the window it closed, that window,
#: the ack of a paced window (the last frame's seq), and when the consumer held that frame
#: (time.monotonic_ns(), stored before the ack).
OPEN, READY, GOT, CLOSED, ACK, HELD = 0, 1, 2, 3, 4, 5
IDLE: Final = 2**63  # OPEN's value when no window is open; the consumer exits on DONE
DONE: Final = 2**63 + 1
#: Seqs of window w start at w * SEQS_PER_WINDOW: an ack or a frame left from an earlier window never counts.
SEQS_PER_WINDOW: Final = 1_000_000
#: A paced window sends at least this many frames, however long they take.
MIN_PACED: Final = 12


class Window(NamedTuple):
    """One window's counts and, if paced, per-frame times in seconds (the first tenth dropped)."""

    got: int  # frames the consumer got
    sent: int  # frames the producer sent
    samples: list[float]  # one-way latency: send called -> the consumer holds the frame
    round_trips: list[float]  # send called -> the producer sees the ack
    after_send: list[float]  # send returned -> the consumer holds the frame (a waiter's wake-up)


def window_consumer(
    transports: tuple[str, ...],
    names: list[str],
    shape: tuple[int, ...],
    ctrl_name: str,
    pipe_end: Any,
) -> None:
    """The consumer process: counts (and acks) what it gets in each window the producer opens."""
    ctrl_shm = shared_memory.SharedMemory(name=ctrl_name)
    words = ctrl_shm.buf[:64].cast("Q")
    receivers: list[Receiver] = [
        (lambda: seq_of(pipe_end.recv()))
        if TRANSPORTS[t]["recv"] is None
        else TRANSPORTS[t]["recv"](n, shape)
        for t, n in zip(transports, names, strict=True)
    ]
    words[READY] = IDLE
    seen = IDLE
    deadline = time.monotonic() + DEADLINE_S * 10
    while time.monotonic() < deadline:
        command = words[OPEN]
        if command == DONE:
            break
        if command in (seen, IDLE):
            continue
        seen, window = command, command >> 8
        receive = receivers[command & 0xFF]
        words[READY] = window
        got = 0
        while (
            True
        ):  # until this window's stop frame: a stale stop frame of an earlier window is skipped
            seq = receive()
            if seq == STOP + window:
                break
            if window * SEQS_PER_WINDOW <= seq < STOP:
                got += 1
                words[HELD] = time.monotonic_ns()  # read only by paced windows, like the ack
                words[ACK] = seq
        words[GOT] = got
        words[CLOSED] = window
    for receive in receivers:
        getattr(receive, "close", lambda: None)()  # the floor's views, before its segment
    words.release()
    ctrl_shm.close()


def measure_windows(
    transports: tuple[str, ...],
    shape: tuple[int, ...],
    cycles: int,
    *,
    paced: int = 0,
    seconds: float = 0.25,
    max_seconds: float | None = None,
) -> list[list[tuple[str, Window]]]:
    """Every transport in turn, ``cycles`` times: per cycle, its windows in visiting order.

    One producer (this process) and one consumer process serve every transport. A cycle opens a
    window for each in order and then in reverse (A B C C B A), so every transport's windows
    average to the middle of the cycle and the machine's drift lands on all of them alike. A
    window free-runs for ``seconds``, or with ``paced`` sends up to that many frames, each after
    the ack of the one before (at least MIN_PACED, and no more once ``max_seconds`` have passed).

    Why: this VM switches for seconds at a time between speeds some 3x apart, for every transport
    alike. Run in separate process pairs, started seconds apart (as this benchmark used to), the
    same code measured 0.5x iceoryx2's latency one day and 2.5x on another.
    """
    names = [unique_name("win").replace("-", "_") for _ in transports]
    ctrl_shm = shared_memory.SharedMemory(create=True, size=64)
    words = ctrl_shm.buf[:64].cast("Q")
    words[OPEN] = words[READY] = words[CLOSED] = IDLE
    words[ACK] = words[HELD] = 0
    senders, pipe_end = _senders(transports, names, shape)
    consumer = mp.get_context("spawn").Process(
        target=window_consumer, args=(tuple(transports), names, shape, ctrl_shm.name, pipe_end)
    )
    consumer.start()
    frames = [frame_for(shape, 0) for _ in range(4)]
    order = list(range(len(transports)))
    order += order[::-1]
    result: list[list[tuple[str, Window]]] = []
    try:
        _await(words, READY, IDLE, consumer)
        window = 0
        for _ in range(cycles):
            visits = []
            for which in order:
                words[OPEN] = window << 8 | which
                _await(words, READY, window, consumer)
                first = window * SEQS_PER_WINDOW + 2
                if paced:
                    timed, sent = _paced(
                        transports[which], senders[which], words, frames, paced, first, max_seconds
                    )
                else:
                    timed, sent = (
                        Window(0, 0, [], [], []),
                        _free_running(senders[which], frames, seconds, first),
                    )
                _stop(transports[which], senders[which], frames[0], window, words, consumer)
                visits.append((transports[which], timed._replace(got=int(words[GOT]), sent=sent)))
                window += 1
            result.append(visits)
        words[OPEN] = DONE
        consumer.join(30)
    finally:
        if consumer.is_alive():
            consumer.kill()
            consumer.join(5)
        words.release()  # not del: a traceback may still hold it
        ctrl_shm.close()
        ctrl_shm.unlink()
        _clean_up(transports, names, senders)
    return result


def _senders(
    transports: tuple[str, ...], names: list[str], shape: tuple[int, ...]
) -> tuple[list[Sender], Any]:
    """One sender per transport, and the receiving end of the Pipe's pipe for the consumer (or None)."""
    pipe_end = None
    senders: list[Sender] = []
    for transport, name in zip(transports, names, strict=True):
        if TRANSPORTS[transport]["send"] is None:  # multiprocessing Pipe
            pipe_end, pipe_send = pipe_pair()
            senders.append(pipe_send.send)
        else:
            senders.append(TRANSPORTS[transport]["send"](name, shape))
    return senders, pipe_end


def _clean_up(transports: tuple[str, ...], names: list[str], senders: list[Sender]) -> None:
    for send in senders:
        getattr(send, "close", lambda: None)()
    for transport, name in zip(transports, names, strict=True):
        for leftover in (f"/dev/shm/{name}", f"/tmp/{name}.zmq"):
            if os.path.exists(leftover):
                os.unlink(leftover)
        if TRANSPORTS[transport]["needs"] == "real_robot":
            # The reference attaches through multiprocessing.shared_memory, whose resource
            # tracker would try to remove the segment again at exit, and warn that it is gone.
            with contextlib.suppress(KeyError, ValueError):
                resource_tracker.unregister(f"/{name}", "shared_memory")


def _paced(
    transport: str,
    send: Sender,
    words: Any,
    frames: list[np.ndarray[Any, Any]],
    count: int,
    first: int,
    max_seconds: float | None,
) -> tuple[Window, int]:
    """Send up to ``count`` frames, each after the ack of the one before: (their times, frames sent).

    The consumer stamps words[HELD] with time.monotonic_ns() when it holds a frame, before its
    ack; CLOCK_MONOTONIC is one clock for every process (and container) on the machine.
    """
    clock = time.monotonic_ns
    one_way, round_trips, after_send = [], [], []
    started = clock()
    for seq in range(first, first + count):
        frame = frames[seq % 4]
        frame.reshape(-1)[:8].view(np.uint64)[0] = seq
        t0 = clock()
        send(frame)
        t1 = clock()
        while words[ACK] != seq:
            if clock() - t0 > 10e9:
                msg = f"{transport}: no ack for frame {seq}"
                raise RuntimeError(msg)
        t2 = clock()
        held = words[HELD]
        one_way.append((held - t0) / 1e9)
        round_trips.append((t2 - t0) / 1e9)
        after_send.append((held - t1) / 1e9)
        if (
            max_seconds is not None
            and len(one_way) >= MIN_PACED
            and (clock() - started) / 1e9 > max_seconds
        ):
            break
    warm = len(one_way) // 10  # the first tenth warms caches and branch predictors
    return Window(0, 0, one_way[warm:], round_trips[warm:], after_send[warm:]), len(one_way)


def _free_running(
    send: Sender, frames: list[np.ndarray[Any, Any]], seconds: float, first: int
) -> int:
    """Send as fast as the transport takes them for ``seconds``: frames sent."""
    sent, seq, end = 0, first, time.monotonic() + seconds
    while time.monotonic() < end:
        frame = frames[seq % 4]
        frame.reshape(-1)[:8].view(np.uint64)[0] = seq
        send(frame)
        sent += 1
        seq += 1
    return sent


def _stop(
    transport: str,
    send: Sender,
    frame: np.ndarray[Any, Any],
    window: int,
    words: Any,
    consumer: Any,
) -> None:
    """Send this window's stop frame until the consumer closes the window.

    A lossy transport may drop it (or the consumer may be mid-copy of an older frame): resend.
    A lossless one delivers it after every frame still queued, and a resend could block for good
    in a pipe nobody reads once the window is closed: send it once and wait.
    """
    frame.reshape(-1)[:8].view(np.uint64)[0] = STOP + window
    if TRANSPORTS[transport].get("lossless"):
        send(frame)
        if _await(words, CLOSED, window, consumer):
            return
    else:
        for _ in range(200):
            send(frame)
            if _await(words, CLOSED, window, consumer, timeout=0.05):
                return
    msg = f"{transport}: the consumer did not close window {window}"
    raise RuntimeError(msg)


def _await(words: Any, index: int, value: int, consumer: Any, timeout: float = DEADLINE_S) -> bool:
    """Spin until ``words[index] == value``; False after ``timeout``; RuntimeError if the consumer died."""
    end = time.monotonic() + timeout
    while words[index] != value:
        if not consumer.is_alive():
            msg = "the consumer process died"
            raise RuntimeError(msg)
        if time.monotonic() > end:
            return False
    return True


def _summary(window: Window) -> dict[str, float]:
    one_way = sorted(window.samples)
    return {
        "median_us": statistics.median(one_way) * 1e6,
        "p99_us": one_way[int(len(one_way) * 0.99)] * 1e6,
        "fps": 1 / statistics.mean(window.round_trips),
    }


def per_transport(cycles: list[list[tuple[str, Window]]]) -> dict[str, Window]:
    """Each transport's windows of all cycles, merged: frames got and sent summed, samples pooled."""
    merged: dict[str, Window] = {}
    for visits in cycles:
        for transport, w in visits:
            m = merged.get(transport, Window(0, 0, [], [], []))
            merged[transport] = Window(
                m.got + w.got,
                m.sent + w.sent,
                m.samples + w.samples,
                m.round_trips + w.round_trips,
                m.after_send + w.after_send,
            )
    return merged


def cycle_ratios(
    cycles: list[list[tuple[str, Window]]], a: str, b: str, field: str = "samples"
) -> list[float]:
    """Per cycle, ``a`` over ``b``: of median paced times (``field`` of Window), or of frames got (free-running)."""
    ratios = []
    for visits in cycles:
        mine = [w for t, w in visits if t == a]
        theirs = [w for t, w in visits if t == b]
        if mine and mine[0].samples:
            ratios.append(
                statistics.median(x for w in mine for x in getattr(w, field))
                / statistics.median(x for w in theirs for x in getattr(w, field))
            )
        else:
            ratios.append(sum(w.got for w in mine) / max(sum(w.got for w in theirs), 1))
    return ratios


# ------------------------------------------------------------------------------------------------
# Two transports in paired windows: the targets' measurement (also bench_core's cross-process row)
# ------------------------------------------------------------------------------------------------
def measure_duel(
    pairs: int, seconds: float = 0.25, paced: int = 0, transports: tuple[str, str] = DUEL
) -> list[tuple[Window, Window]]:
    """(first, second) windows of two transports at 1.22 MB, ``pairs`` pairs back to back (ABBA).

    measure_windows with two transports: the two windows of a pair follow each other within
    milliseconds, the tightest pairing there is (a rotation of nine transports spreads a cycle
    over seconds). A paced window sends ``paced`` frames.
    """
    cycles = measure_windows(
        transports, SIZES["1.22 MB"], -(-pairs // 2), paced=paced, seconds=seconds
    )
    windows = [w for visits in cycles for w in visits]
    result = []
    for i in range(0, len(windows), 2):  # A B | B A: each half of a cycle is one pair
        first, second = windows[i], windows[i + 1]
        if first[0] != transports[0]:
            first, second = second, first
        result.append((first[1], second[1]))
    return result[:pairs]


def duel_medians(
    windows: list[tuple[Window, Window]], field: str = "samples"
) -> tuple[float, float]:
    """Median paced time (seconds; ``field`` of Window) of the first and second transport over all windows."""
    return tuple(
        statistics.median(x for pair in windows for x in getattr(pair[i], field)) for i in (0, 1)
    )  # type: ignore[return-value]


def duel_ratios(windows: list[tuple[Window, Window]], field: str = "samples") -> list[float]:
    """Per pair: first / second, of frames got (free-running) or of median paced times (``field``)."""
    if windows and windows[0][0].samples:
        return [
            statistics.median(getattr(a, field)) / statistics.median(getattr(b, field))
            for a, b in windows
        ]
    return [a.got / b.got for a, b in windows]


#: The targets that compare two transports at 1.22 MB, each decided in paired windows:
#: key -> (text, the two transports, wanted ratio, which time of Window). Latency is one-way: send
#: called -> the consumer holds the frame. The wake-up target times from send *returning*, as the
#: issue words it ("from assign returning to the waiter holding its copy"), for both consumers.
PAIRED_TARGETS: Final = {
    "floor": (
        "one-way latency 1.22 MB, copy vs seqlock floor",
        (OURS_POLLING, SEQLOCK_FLOOR),
        1.1,
        "samples",
    ),
    "iceoryx2": (
        "one-way latency 1.22 MB, copy vs iceoryx2 copy",
        (OURS_POLLING, ICEORYX_COPY),
        1.0,
        "samples",
    ),
    "view": (
        "one-way latency 1.22 MB, zero-copy view vs iceoryx2 copy",
        (OURS_VIEW, ICEORYX_COPY),
        0.5,
        "samples",
    ),
    "wait": (
        "assign returned -> consumer holds its copy, 1.22 MB, wait() vs polling",
        (OURS_WAITING, OURS_POLLING),
        2.0,
        "after_send",
    ),
}


def _targets(
    rotation: list[list[tuple[str, Window]]],
    free: list[list[tuple[str, Window]]],
    paired: dict[str, list[float]],
    duel_free: list[float],
) -> str:
    """The issues' targets, as ratios between transports measured in this run.

    Each ratio is the median over pairs (or cycles) of the ratio within one. A target is decided
    in paired windows (``paired``, ``duel_free``: measure_duel's per-pair ratios). The same
    ratio from the rotation of every transport (per cycle, windows up to seconds apart) is shown
    beside it as (info).
    """
    checks: list[tuple[str, list[float], float | None, str]] = []
    for key, (text, (a, b), limit, field) in PAIRED_TARGETS.items():
        checks.append((f"{text} (paired windows)", paired.get(key, []), limit, "<="))
        checks.append((f"{text} (rotation)", _safe(cycle_ratios, rotation, a, b, field), None, ""))
    checks += [
        (
            "free-running frames got, copy polling vs seqlock floor (paired windows)",
            duel_free,
            0.9,
            ">=",
        ),
        (
            "free-running frames got, copy polling vs seqlock floor (rotation)",
            _safe(cycle_ratios, free, OURS_POLLING, SEQLOCK_FLOOR),
            None,
            "",
        ),
        (
            "free-running frames got, wait() vs seqlock floor (rotation)",
            _safe(cycle_ratios, free, OURS_WAITING, SEQLOCK_FLOOR),
            None,
            "",
        ),
        (
            "free-running frames got, zero-copy view vs seqlock floor (rotation)",
            _safe(cycle_ratios, free, OURS_VIEW, SEQLOCK_FLOOR),
            None,
            "",
        ),
    ]
    lines = [
        "| target (median of per-pair ratios) | ratio | wanted | | pairs: min - max |",
        "| --- | --- | --- | --- | --- |",
    ]
    for text, ratios, limit, op in checks:
        if not ratios:
            lines.append(f"| {text} | not measured | | | |")
            continue
        ratio = statistics.median(ratios)
        spread = f"{min(ratios):.2f}x - {max(ratios):.2f}x"
        if limit is None:
            lines.append(f"| {text} | {ratio:.2f}x | (info) | | {spread} |")
            continue
        ok = ratio <= limit if op == "<=" else ratio >= limit
        lines.append(
            f"| {text} | {ratio:.2f}x | {op} {limit}x | {'ok' if ok else 'MISSED'} | {spread} |"
        )
    return "\n".join(lines)


def _safe(fn: Callable[..., list[float]], *args: Any) -> list[float]:
    try:
        return fn(*args)
    except (statistics.StatisticsError, ZeroDivisionError, IndexError):
        return []  # a transport not installed, or without samples


def available(transport: str) -> bool:
    needs = TRANSPORTS[transport]["needs"]
    module = {"real_robot": "real_robot", "zmq": "zmq", "iceoryx2": "iceoryx2"}.get(needs, needs)
    return importlib.util.find_spec(module) is not None


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
    ax.set_ylabel("one-way latency, median (us)")
    ax.set_title("producer -> consumer holding the frame, ack-paced")
    ax.legend(fontsize=7)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    cycles, frames, max_seconds = (1, 100, 0.1) if args.quick else (5, 300, 0.3)
    free_cycles, free_seconds = (1, 0.25) if args.quick else (3, 0.25)
    duel_pairs, duel_frames = (2, 100) if args.quick else (20, 300)
    # Free-running pairs scatter more than paced ones (0.29x-2.13x for single pairs on 2026-11-27):
    # the machine's speed changes within a 0.25 s window. In three runs of 120 pairs, medians of 20
    # consecutive pairs ranged 0.92x-1.07x (5th to 95th percentile), of 40 pairs 0.94x-1.02x.
    free_pairs = 2 if args.quick else 40
    out_dir = ROOT / "benchmarks" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    installed = tuple(t for t in TRANSPORTS if available(t))

    rotation: dict[str, list[list[tuple[str, Window]]]] = {}
    for label, shape in SIZES.items():
        rotation[label] = measure_windows(
            installed, shape, cycles, paced=frames, max_seconds=max_seconds
        )
        print(f"rotation at {label}: done", flush=True)
    free = measure_windows(installed, SIZES["1.22 MB"], free_cycles, seconds=free_seconds)
    duel_free = measure_duel(free_pairs, free_seconds)
    duels = {
        key: measure_duel(duel_pairs, paced=duel_frames, transports=pair)
        for key, (_, pair, _, _) in PAIRED_TARGETS.items()
        if all(t in installed for t in pair)
    }

    free_totals = per_transport(free)
    rows, latency = [], {}
    for transport in TRANSPORTS:
        if transport not in installed:
            rows.append(
                f"| {transport} | skipped: not installed (run benchmarks/setup_peers.sh) | | | | |"
            )
            continue
        for label in SIZES:
            summary = _summary(per_transport(rotation[label])[transport])
            latency.setdefault(transport, {})[label] = summary["median_us"]
            total = free_totals[transport]
            free_text = f"{total.got} / {total.sent}" if label == "1.22 MB" else ""
            rows.append(
                f"| {transport} | {label} | {summary['median_us']:.1f} | {summary['p99_us']:.1f} | "
                f"{summary['fps']:.0f} | {free_text} |"
            )
    header = (
        f"# {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}; "
        f"every transport in turn between the same two processes (measure_windows): per payload, {cycles} "
        f"cycles of one paced window each way per transport (up to {frames} frames or {max_seconds} s); "
        f"free-running at 1.22 MB: {free_cycles} cycles of {free_seconds} s windows\n\n"
        "| transport | payload | one-way median us | p99 us | max lossless fps (paced) | free-running: got / sent |\n"
        "| --- | --- | --- | --- | --- | --- |"
    )
    ours_got, ours_sent = sum(p[0].got for p in duel_free), sum(p[0].sent for p in duel_free)
    floor_got, floor_sent = sum(p[1].got for p in duel_free), sum(p[1].sent for p in duel_free)
    pairs_text = "; ".join(
        f"{a} {x * 1e6:.1f} us vs {b} {y * 1e6:.1f} us"
        + (" (from assign returning)" if field != "samples" else "")
        for key, windows in duels.items()
        for (_, (a, b), _, field) in [PAIRED_TARGETS[key]]
        for (x, y) in [duel_medians(windows, field)]
    )
    duel_text = (
        f"Paired windows (measure_duel: the two transports of a pair only, {duel_pairs} pairs of windows back "
        f"to back, ABBA), 1.22 MB. Paced, {duel_frames} frames per window, median one-way latency: {pairs_text}. "
        f"Free-running, {free_pairs} pairs of {free_seconds} s windows: {OURS_POLLING} got {ours_got} / sent {ours_sent}; "
        f"{SEQLOCK_FLOOR} got {floor_got} / sent {floor_sent}."
    )
    paired = {key: duel_ratios(w, PAIRED_TARGETS[key][3]) for key, w in duels.items()}
    targets = _targets(rotation["1.22 MB"], free, paired, duel_ratios(duel_free))
    table = header + "\n" + "\n".join(rows) + "\n\n" + duel_text + "\n\n" + targets
    (out_dir / "peers.md").write_text(table + "\n")
    print(table)
    plot(latency, out_dir / "peers.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
