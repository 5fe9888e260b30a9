"""Core benchmark: every operation beside its physical floor, measured in the same run.

    python benchmarks/bench_core.py            # full run (about a minute)
    python benchmarks/bench_core.py --quick    # fewer repetitions

Prints one table of medians and ratios (ours / floor) with the issue's targets. Ratios, not
absolute times, are what count: the machines are shared and noisy, and both sides of a ratio are
measured interleaved, round by round, so a slow moment slows both.
"""

from __future__ import annotations

import argparse
import contextlib
import mmap
import multiprocessing as mp
import os
import statistics
import struct
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_peers  # the cross-process measurement, shared with the peer benchmark

from shared_object import SharedObject
from shared_object.testing import unique_name, writer_lock

FRAME = (480, 848, 3)


@contextlib.contextmanager
def shm_array(shape: tuple[int, ...], dtype: Any) -> Iterator[np.ndarray[Any, Any]]:
    """A writable array in a fresh /dev/shm file, mapped shared and populated (no library involved)."""
    path = f"/dev/shm/{unique_name('bench-raw')}"
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.unlink(path)
        os.ftruncate(fd, nbytes)
        region = mmap.mmap(fd, nbytes)
    finally:
        os.close(fd)
    array = np.frombuffer(region, dtype).reshape(shape)
    array.fill(0)  # fault every page in, as an object's slots are after their first assign
    yield array  # the mapping goes when the last view of it does


def bare_assign(obj: SharedObject, src: np.ndarray[Any, Any]) -> Callable[[], None]:
    """What no pure-Python crash-safe writer can do without: ``assign``'s steps on ``obj``, inlined.

    Writer mutex (two ctypes calls, and the count that says a section of ours holds it), WRITING
    mark, the copy into the other slot, the clock, the publication; no call into the library, no
    checks, no error handling. Its ratio is the floor of ``assign``'s: where this row misses a
    target, no Python-level change to ``assign`` meets it. It reaches into the object's private
    fields on purpose (see _layout's state word).
    """
    lock = writer_lock(obj)
    words, (_, _, slot0, slot1) = obj._words, obj._fast_array  # type: ignore[misc]
    trylock, unlock, ref, clock, copyto = (
        lock.trylock,
        lock.unlock,
        lock.ref,
        time.time_ns,
        np.copyto,
    )

    def bare() -> None:
        lock.inline += 1
        if trylock(ref):
            lock.inline -= 1
            msg = "bare_assign: the writer mutex is busy"
            raise RuntimeError(msg)
        state = words[2]
        target = (state & 1) ^ 1
        words[2] = state | 2
        copyto(slot1 if target else slot0, src)
        words[3] = clock()
        words[2] = ((state >> 2) + 1) << 2 | target
        lock.inline -= 1
        unlock(ref)

    return bare


def per_call(fn: Callable[[], Any], number: int) -> float:
    """Seconds per call of ``fn``, over ``number`` calls."""
    t0 = time.perf_counter()
    for _ in range(number):
        fn()
    return (time.perf_counter() - t0) / number


class Timing(NamedTuple):
    ours: float  # median seconds per call
    floor: float
    ratio: float  # median over rounds of ours / floor within the round


def compare(ours: Callable[[], Any], floor: Callable[[], Any], number: int, rounds: int) -> Timing:
    """Per-call times of ``ours`` and ``floor``, measured alternately round by round.

    The ratio is the median of the ratios within a round: the machine's speed drifts between
    rounds (a shared host), and both sides of one round ran milliseconds apart.
    """
    a, b = [], []
    per_call(ours, max(1, number // 10))  # warm up caches and allocator
    per_call(floor, max(1, number // 10))
    for _ in range(rounds):
        a.append(per_call(ours, number))
        b.append(per_call(floor, number))
    return Timing(
        statistics.median(a),
        statistics.median(b),
        statistics.median(x / y for x, y in zip(a, b, strict=True)),
    )


def row(
    rows: list[tuple[str, ...]],
    op: str,
    payload: str,
    timing: Timing,
    target: float,
    floor_name: str,
) -> None:
    """A row with a target: ``ok`` or ``MISSED`` beside it."""
    verdict = "ok" if timing.ratio <= target else "MISSED"
    _append(rows, op, payload, timing, floor_name, f"<= {target}x", verdict)


def info_row(
    rows: list[tuple[str, ...]],
    op: str,
    payload: str,
    timing: Timing,
    floor_name: str,
    target_text: str = "",
) -> None:
    """A row for information: no verdict (``target_text`` "(info)" where the op does not say so)."""
    _append(rows, op, payload, timing, floor_name, target_text, "")


def _append(
    rows: list[tuple[str, ...]],
    op: str,
    payload: str,
    timing: Timing,
    floor_name: str,
    target_text: str,
    verdict: str,
) -> None:
    rows.append(
        (
            op,
            payload,
            f"{timing.ours * 1e6:.3f}",
            f"{timing.floor * 1e6:.3f}",
            floor_name,
            f"{timing.ratio:.2f}x",
            target_text,
            verdict,
        )
    )


def bench_100mb(rows: list[tuple[str, ...]], quick: bool) -> None:
    """100 MiB: allocating fetch, fetch into a preallocated array, assign, and a zero-copy reduction."""
    big_n, big_rounds = (3, 3) if quick else (5, 7)
    src = np.full(100 * 2**20, 5, np.uint8)
    dst = np.empty_like(src)
    out = np.empty_like(src)
    name = unique_name("bench")
    with SharedObject.create(name, src) as obj:
        fetch = compare(obj.fetch, lambda: np.copyto(dst, src), big_n, big_rounds)
        row(rows, "fetch", "uint8 100 MiB", fetch, 1.10, "np.copyto")
        fetch_out = compare(
            lambda: obj.fetch(out=out), lambda: np.copyto(dst, src), big_n, big_rounds
        )
        row(rows, "fetch(out=preallocated)", "uint8 100 MiB", fetch_out, 1.10, "np.copyto")
        assign = compare(lambda: obj.assign(src), lambda: np.copyto(dst, src), big_n, big_rounds)
        row(rows, "assign", "uint8 100 MiB", assign, 1.10, "np.copyto")
        with shm_array(
            src.shape, np.uint8
        ) as into_shm:  # what any writer into /dev/shm pays (see below)
            raw = compare(
                lambda: np.copyto(into_shm, src), lambda: np.copyto(dst, src), big_n, big_rounds
            )
        info_row(
            rows, "(info) np.copyto into /dev/shm, no library", "uint8 100 MiB", raw, "np.copyto"
        )

        def reduce_in_place() -> None:
            with obj.view() as v:
                v.value.max()

        view_t = compare(reduce_in_place, src.max, big_n, big_rounds)
        info_row(
            rows,
            "view(): reduce in place (max)",
            "uint8 100 MiB",
            view_t,
            "max() on a private array",
            "(info)",
        )
        obj.unlink()


def bench_in_process(rows: list[tuple[str, ...]], quick: bool) -> None:
    scalar_n, scalar_rounds = (20_000, 7) if quick else (100_000, 15)
    region = mmap.mmap(-1, 4096)
    view = memoryview(region)
    i64, f64, b8 = struct.Struct("<q"), struct.Struct("<d"), struct.Struct("<?")
    u64 = struct.Struct("<Q")
    for label, value, new, fmt in (
        ("bool", True, False, b8),
        ("int", 7, 9, i64),
        ("float", 1.5, 2.5, f64),
    ):
        name = unique_name("bench")
        with SharedObject.create(name, value) as obj:
            fetch = compare(
                obj.fetch, lambda fmt=fmt: fmt.unpack_from(view, 64), scalar_n, scalar_rounds
            )
            row(rows, "fetch", label, fetch, 10, "struct.unpack_from")
            assign = compare(
                lambda obj=obj, new=new: obj.assign(new),
                lambda fmt=fmt, new=new: fmt.pack_into(view, 64, new),
                scalar_n,
                scalar_rounds,
            )
            row(rows, "assign", label, assign, 15, "struct.pack_into")
            if label == "int":
                mod = compare(
                    lambda obj=obj: obj.modified,
                    lambda: u64.unpack_from(view, 16),
                    scalar_n,
                    scalar_rounds,
                )
                row(rows, "modified", label, mod, 4, "8-byte unpack")
            obj.unlink()

    # 1 KiB (a 32x32 uint8 array): no target in the issues; at this size the call itself dominates.
    small_n = scalar_n // 5
    src_k, dst_k = np.full((32, 32), 3, np.uint8), np.empty((32, 32), np.uint8)
    name = unique_name("bench")
    with SharedObject.create(name, src_k) as obj:
        for op, timing in (
            ("fetch", compare(obj.fetch, lambda: np.copyto(dst_k, src_k), small_n, scalar_rounds)),
            (
                "assign",
                compare(
                    lambda: obj.assign(src_k),
                    lambda: np.copyto(dst_k, src_k),
                    small_n,
                    scalar_rounds,
                ),
            ),
        ):
            info_row(rows, op, "uint8 1 KiB (32x32)", timing, "np.copyto", "(info)")
        obj.unlink()

    frame_n, frame_rounds = (50, 7) if quick else (200, 11)
    for label, dtype, n in (
        ("uint8 480x848x3", np.uint8, frame_n),
        ("float64 480x848x3", np.float64, max(10, frame_n // 5)),
    ):
        src = np.full(FRAME, 3, dtype)
        dst = np.empty(FRAME, dtype)
        for slots in (2, 1):
            suffix = "" if slots == 2 else " (slots=1)"
            name = unique_name("bench")
            with SharedObject.create(name, src, slots=slots) as obj:
                fetch = compare(
                    obj.fetch, lambda src=src, dst=dst: np.copyto(dst, src), n, frame_rounds
                )
                row(rows, "fetch" + suffix, label, fetch, 1.10, "np.copyto")
                assign = compare(
                    lambda obj=obj, src=src: obj.assign(src),
                    lambda src=src, dst=dst: np.copyto(dst, src),
                    n,
                    frame_rounds,
                )
                if slots == 2:
                    # A double-buffered writer's floor is one copy into two alternating destinations
                    # (crash safety keeps the last complete value in the other slot): the target.
                    # Against one destination it is information.
                    flip = [dst, np.empty(FRAME, dtype)]
                    alternating = compare(
                        lambda obj=obj, src=src: obj.assign(src),
                        lambda flip=flip, src=src: np.copyto(flip.reverse() or flip[0], src),
                        n,
                        frame_rounds,
                    )
                    row(rows, "assign", label, alternating, 1.10, "np.copyto, 2 destinations")
                    info_row(
                        rows, "(info) assign, against one destination", label, assign, "np.copyto"
                    )
                else:
                    row(rows, "assign" + suffix, label, assign, 1.10, "np.copyto")
                if slots == 2:
                    bare = compare(
                        bare_assign(obj, src),
                        lambda src=src, dst=dst: np.copyto(dst, src),
                        n,
                        frame_rounds,
                    )
                    info_row(
                        rows, "(info) assign's protocol alone, inlined", label, bare, "np.copyto"
                    )
                obj.unlink()
            if slots == 2:
                # Why the default's assign can miss: a writer alternates between two slots (crash
                # safety), so its destination footprint is twice the floor's. The same floor, alternating:
                flip = [dst, np.empty(FRAME, dtype)]
                alt = compare(
                    lambda flip=flip, src=src: np.copyto(flip.reverse() or flip[0], src),
                    lambda src=src, dst=dst: np.copyto(dst, src),
                    n,
                    frame_rounds,
                )
                info_row(
                    rows, "(info) np.copyto alternating 2 destinations", label, alt, "np.copyto"
                )
                # And what any writer into /dev/shm pays: tmpfs pages are 4 KiB (shmem_enabled is
                # usually "never"), where a private array of 4 MB or more gets transparent huge pages.
                with shm_array(FRAME, dtype) as into_shm:
                    raw = compare(
                        lambda into_shm=into_shm, src=src: np.copyto(into_shm, src),
                        lambda src=src, dst=dst: np.copyto(dst, src),
                        n,
                        frame_rounds,
                    )
                info_row(
                    rows, "(info) np.copyto into /dev/shm, no library", label, raw, "np.copyto"
                )

    payload = os.urandom(1 << 20)
    src_b = np.frombuffer(payload, np.uint8)
    dst_b = np.empty(1 << 20, np.uint8)
    name = unique_name("bench")
    with SharedObject.create(name, payload) as obj:
        fetch = compare(obj.fetch, lambda: np.copyto(dst_b, src_b), frame_n, frame_rounds)
        row(rows, "fetch", "bytes 1 MiB", fetch, 1.2, "memcpy")
        assign = compare(
            lambda: obj.assign(payload), lambda: np.copyto(dst_b, src_b), frame_n, frame_rounds
        )
        row(rows, "assign", "bytes 1 MiB", assign, 1.2, "memcpy")
        obj.unlink()


# ------------------------------------------------------------------------------------------------
# Producer -> consumer across processes, paced by an ack
# ------------------------------------------------------------------------------------------------
def bench_cross_process(rows: list[tuple[str, ...]], quick: bool) -> None:
    """One 1.22 MB frame from a producer process to a consumer process that holds its copy, paced by an ack.

    The latency is one-way: from the producer calling assign (or the floor's send) to the
    consumer holding its copy, both stamped with CLOCK_MONOTONIC. The measurement is
    bench_peers' measure_duel: one producer and one consumer process serve both transports, in
    short windows back to back (ABBA), and every transport acks through the same raw 8-byte
    word before the next frame is sent. (This benchmark used to
    ack through a second SharedObject, which charged ours an extra assign and poll per frame,
    and to run ours and the floor in separate process pairs seconds apart, on a VM whose speed
    changes for seconds at a time.)
    """
    pairs, frames = (2, 100) if quick else (10, 300)
    for transport, target in ((bench_peers.OURS_POLLING, 1.1), (bench_peers.OURS_WAITING, None)):
        windows = bench_peers.measure_duel(
            pairs, paced=frames, transports=(transport, bench_peers.SEQLOCK_FLOOR)
        )
        ours, floor = bench_peers.duel_medians(windows)
        timing = Timing(ours, floor, statistics.median(bench_peers.duel_ratios(windows)))
        op = "frame to consumer, one-way (" + ("polling)" if target else "wait())")
        if target:
            row(rows, op, "uint8 480x848x3", timing, target, "2-slot seqlock")
        else:
            info_row(rows, op, "uint8 480x848x3", timing, "2-slot seqlock", "(info)")


def idle_consumer(name: str, mode: str, seconds: float) -> None:
    obj = SharedObject.attach(name, timeout=30)
    end = time.monotonic() + seconds
    if mode == "wait":
        while time.monotonic() < end:
            obj.wait(end - time.monotonic())
    else:
        while time.monotonic() < end:
            obj.modified  # noqa: B018 - the polling consumer's whole job


def cpu_share(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bench_history(rows: list[tuple[str, ...]], quick: bool) -> None:
    """History objects: what assign costs beside a two-slot object's, what catching up on 64
    missed values costs beside 64 fetches, and (``history_stream``) a 10 kHz stream."""
    scalar_n, scalar_rounds = (20_000, 7) if quick else (100_000, 15)
    frame_n, frame_rounds = (100, 5) if quick else (400, 9)
    for label, value, n, rounds in (
        ("float", 2.5, scalar_n, scalar_rounds),
        ("uint8 480x848x3", np.full(FRAME, 3, np.uint8), frame_n, frame_rounds),
    ):
        with (
            SharedObject.create(unique_name("bench-hist"), value, history=8) as ring,
            SharedObject.create(unique_name("bench-two"), value) as two,
        ):
            assign = compare(lambda: ring.assign(value), lambda: two.assign(value), n, rounds)
            row(rows, "assign, history=8", label, assign, 1.10, "assign, two slots")
            ring.unlink()
            two.unlink()
    # Catching up: 64 values a reader missed, in one fetch_new, beside 64 fetch() of the newest
    kib = np.zeros(1024, np.uint8)
    batches, batch_rounds = (100, 7) if quick else (400, 15)
    with (
        SharedObject.create(unique_name("bench-catch"), kib, history=128) as writer,
        SharedObject.attach(writer.name) as reader,
    ):
        values = [np.full(1024, i, np.uint8) for i in range(64)]
        reader.fetch_new()  # the first value
        ratios, ours_t, floor_t = [], [], []
        for _ in range(batch_rounds):
            catch_up = fetches = 0.0
            for _ in range(batches):
                for v in values:
                    writer.assign(v)
                t0 = time.perf_counter()
                caught = reader.fetch_new()
                t1 = time.perf_counter()
                for _ in range(64):
                    reader.fetch()
                t2 = time.perf_counter()
                assert len(caught) == 64
                catch_up, fetches = catch_up + t1 - t0, fetches + t2 - t1
            ours_t.append(catch_up / batches)
            floor_t.append(fetches / batches)
            ratios.append(catch_up / fetches)
        writer.unlink()
    timing = Timing(
        statistics.median(ours_t), statistics.median(floor_t), statistics.median(ratios)
    )
    row(rows, "fetch_new: 64 values missed", "uint8 1 KiB", timing, 1.2, "64 fetch()")


def history_reader(name: str, seconds: float, out: Any) -> None:
    """Every 10 ms, fetch_new(): (values received, torn or out of order, gaps between values
    received, lost) at the end."""
    with SharedObject.attach(name, timeout=60) as obj:
        obj.fetch_new()  # value 0, there before the writer started
        out.put("ready")
        received = bad = gaps = 0
        previous = 0
        end = time.monotonic() + seconds + 1.0
        while time.monotonic() < end:
            for value in obj.fetch_new():
                number = int(value[0])
                received += 1
                bad += number <= previous or not (value == value[0]).all()
                gaps += max(0, number - previous - 1)
                previous = number
            time.sleep(0.010)
        out.put((received, bad, gaps, obj.lost))


def bench_history_stream(rows: list[tuple[str, ...]], quick: bool) -> None:
    """A writer assigning a 7-float64 joint state at 10 kHz, a reader that wakes every 10 ms and
    calls fetch_new: with history=256 nothing is lost (all in order); with history=8, ``lost``
    is exactly the values it never received (the gaps in what it received)."""
    seconds = 5.0 if quick else 60.0
    ctx = mp.get_context("spawn")
    for history in (256, 8):
        name = unique_name("bench-stream")
        out = ctx.Queue()
        with SharedObject.create(name, np.zeros(7), history=history) as obj:
            reader = ctx.Process(target=history_reader, args=(name, seconds, out))
            reader.start()
            assert out.get(timeout=60) == "ready"
            sent = 0
            period = 1e-4
            next_t = time.perf_counter()
            end = next_t + seconds
            while (now := time.perf_counter()) < end:  # paced: a sleep when far ahead, else spin
                if now >= next_t:
                    sent += 1
                    obj.assign(np.full(7, float(sent)))
                    next_t += period
                elif next_t - now > 3e-4:
                    time.sleep(next_t - now - 2e-4)
            received, bad, gaps, lost = out.get(timeout=120)
            reader.join(30)
            obj.unlink()
        accounted = received + lost == sent and gaps == lost and bad == 0
        if history == 256:
            target, verdict = "0 lost", "ok" if accounted and lost == 0 else "MISSED"
        else:
            target, verdict = "lost exact", "ok" if accounted else "MISSED"
        rows.append(
            (
                f"10 kHz writer, fetch_new every 10 ms, history={history}, {seconds:g} s",
                "7 float64",
                f"{sent} sent",
                f"{received} received",
                f"{lost} lost, {gaps} gaps",
                f"{bad} torn/out of order",
                target,
                verdict,
            )
        )


def bench_idle_cpu(rows: list[tuple[str, ...]], quick: bool) -> None:
    """CPU used by a consumer waiting for a change that does not come: wait() vs polling."""
    seconds = 2.0 if quick else 5.0
    name = unique_name("bench-idle")
    ctx = mp.get_context("spawn")
    shares = {}
    with SharedObject.create(name, 0) as obj:
        for mode in ("wait", "poll"):
            proc = ctx.Process(target=idle_consumer, args=(name, mode, seconds + 1.0))
            proc.start()
            time.sleep(1.0)  # past the interpreter's start-up
            before = cpu_share(proc.pid)
            time.sleep(seconds)
            shares[mode] = (cpu_share(proc.pid) - before) / seconds
            proc.join(30)
        obj.unlink()
    rows.append(
        (
            "idle consumer CPU, wait()",
            "-",
            f"{shares['wait'] * 100:.2f}% of a core",
            "",
            "",
            "",
            "< 1%",
            "ok" if shares["wait"] < 0.01 else "MISSED",
        )
    )
    rows.append(
        (
            "idle consumer CPU, polling modified",
            "-",
            f"{shares['poll'] * 100:.0f}% of a core",
            "",
            "",
            "",
            "(info)",
            "",
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (for a smoke run)")
    parser.add_argument("--skip-cross-process", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, ...]] = []
    bench_in_process(rows, args.quick)
    bench_history(rows, args.quick)
    bench_100mb(rows, args.quick)
    if not args.skip_cross_process:
        bench_cross_process(rows, args.quick)
        bench_history_stream(rows, args.quick)
        bench_idle_cpu(rows, args.quick)
    header = ("operation", "payload", "ours us", "floor us", "floor", "ratio", "target", "")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(
        f"# {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}, numpy {np.__version__}"
    )
    for r in [header, *rows]:
        print("| " + " | ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
