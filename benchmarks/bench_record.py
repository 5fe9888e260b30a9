"""shared-object record: does it keep up with a camera, and how fast does it write?

    python benchmarks/bench_record.py [--seconds 3] [--rounds 3] [--dir /tmp]

Two measurements, with a producer process publishing a 480x848x3 uint8 frame and a 7-float pose:

1. Paced at 30, 100 and 300 Hz: the frames the recorder missed (gaps in the change counter),
   and the producer's longest gap between two frames (a stall of the machine: after one, the
   producer keeps its period rather than catching up in a burst).
2. Free-running (the producer as fast as it can): MB/s the recorder wrote, beside a plain file
   write of the same bytes (a loop of ``f.write`` of a frame) while the same producer runs, so
   that both compete with it for the same cores and memory bandwidth; alternated round by round.
   Target: at least 0.8x.
3. A 7-float64 joint state at 1 kHz for ``--joint-seconds`` (60 by default): the messages in the
   file, beside the values the producer assigned, without a history and with ``history=64``
   (the recorder reads it with ``fetch_new``). Target, with the history: every one of them.

The files go to ``--dir`` (default: the system's temporary directory, usually on disk, through the
page cache) and are removed after each round.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from shared_object import SharedObject
from shared_object.recording import Recorder
from shared_object.testing import unique_name

FRAME = (480, 848, 3)


def produce(prefix: str, rate: float, seconds: float, started: Any, sent: Any) -> None:
    frames = [np.full(FRAME, i, np.uint8) for i in range(4)]
    with (
        SharedObject(prefix + "-frame", data=frames[0]) as cam,
        SharedObject(prefix + "-pose", data=np.zeros(7)) as pose,
    ):
        started.wait(60)
        period = 1 / rate if rate else 0.0
        end = time.monotonic() + seconds
        n = 0
        next_t = last_t = time.monotonic()
        longest_gap = 0.0
        while (now := time.monotonic()) < end:
            longest_gap, last_t = max(longest_gap, now - last_t), now
            cam.assign(frames[n % 4])
            pose.assign(np.full(7, float(n)))
            n += 1
            if period:
                # A camera's period: after a stall (this machine is shared), the next frame comes
                # a period later, not in a burst of back-to-back frames no reader could tell apart.
                next_t = max(next_t + period, time.monotonic())
                time.sleep(max(0.0, next_t - time.monotonic()))
        sent.put((n, longest_gap))


def produce_joints(
    name: str, history: int | None, rate: float, seconds: float, started: Any, sent: Any
) -> None:
    """A 7-float64 joint state, numbered from 1, ``rate * seconds`` values at ``rate`` Hz: after
    a stall it catches up (a burst), as a controller that must deliver every sample does; the
    number of values assigned."""
    with SharedObject.create(name, np.zeros(7), history=history) as joints:
        started.wait(60)
        period = 1 / rate
        count = round(rate * seconds)
        next_t = time.monotonic()
        for n in range(1, count + 1):
            joints.assign(np.full(7, float(n)))
            next_t += period
            delay = next_t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        sent.put(count)


def joints_round(history: int | None, seconds: float, directory: str) -> tuple[int, int, int]:
    """(values assigned, messages in the file, dropped as the recorder counted them)."""
    from mcap.reader import make_reader

    ctx = mp.get_context("spawn")
    name = unique_name("bench-joints")
    started, sent = ctx.Event(), ctx.Queue()
    producer = ctx.Process(
        target=produce_joints, args=(name, history, 1000.0, seconds, started, sent)
    )
    producer.start()
    path = os.path.join(directory, name + ".mcap")
    deadline = time.monotonic() + 60
    while not os.path.exists(f"/dev/shm/{name}") and time.monotonic() < deadline:
        time.sleep(0.01)
    with open(path, "wb") as output:
        recorder = Recorder(output, [name])
        recorder.scan()
        time.sleep(0.2)  # its thread waits on the object, and has recorded the first value
        started.set()
        n = sent.get(timeout=seconds + 120)
        time.sleep(0.5)  # the last values reach the file
        recorder.finish()
    producer.join(30)
    with SharedObject.attach(name) as joints:  # the producer closed it; nothing else removes it
        joints.unlink()
    with open(path, "rb") as f:
        numbers = [
            int(np.frombuffer(message.data, np.float64)[0])
            for _, _, message in make_reader(f).iter_messages()
        ]
    os.unlink(path)
    recorded = len([v for v in numbers if v >= 1])  # the assigned values (0 is the first value)
    return n, recorded, recorder.dropped


def wait_for_producer(prefix: str) -> None:
    """Until the producer has made both its objects (the pose is made last)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not os.path.exists(f"/dev/shm/{prefix}-pose"):
        time.sleep(0.01)


def remove_objects(prefix: str) -> None:
    for suffix in ("-frame", "-pose"):
        try:
            SharedObject.attach(prefix + suffix).unlink()
        except OSError:
            pass


def record_round(rate: float, seconds: float, directory: str) -> tuple[int, int, int, float, float]:
    """(frames sent, frames recorded, frames dropped, MB/s written, the producer's longest gap
    between frames in ms) for one round."""
    ctx = mp.get_context("spawn")
    prefix = unique_name("bench-rec")
    started, sent = ctx.Event(), ctx.Queue()
    producer = ctx.Process(target=produce, args=(prefix, rate, seconds, started, sent))
    producer.start()
    path = os.path.join(directory, prefix + ".mcap")
    with open(path, "wb") as output:
        wait_for_producer(prefix)
        recorder = Recorder(output, [prefix + "-*"])
        recorder.scan()
        time.sleep(0.2)  # its threads wait on the objects
        before = recorder.messages, recorder.bytes
        t0 = time.monotonic()
        started.set()
        n, longest_gap = sent.get(timeout=120)
        elapsed = time.monotonic() - t0
        written = recorder.bytes  # what reached the file while the producer ran
        time.sleep(0.2)
        recorder.finish()
    producer.join(30)
    messages = recorder.messages - before[0]
    mb_per_s = (written - before[1]) / 1e6 / elapsed
    os.unlink(path)
    remove_objects(prefix)
    frames = messages // 2  # a frame and a pose per step
    return n, frames, recorder.dropped // 2, mb_per_s, longest_gap * 1e3


def plain_write_mb_per_s(seconds: float, directory: str) -> float:
    """MB/s of a loop of plain ``f.write`` of one frame, while a free-running producer runs."""
    ctx = mp.get_context("spawn")
    prefix = unique_name("bench-plain")
    started, sent = ctx.Event(), ctx.Queue()
    producer = ctx.Process(target=produce, args=(prefix, 0, seconds, started, sent))
    producer.start()
    frame = np.full(FRAME, 7, np.uint8).tobytes()
    path = os.path.join(directory, prefix + ".bin")
    wait_for_producer(prefix)
    started.set()
    written = 0
    t0 = time.monotonic()
    with open(path, "wb") as f:
        while time.monotonic() - t0 < seconds:
            f.write(frame)
            written += len(frame)
    elapsed = time.monotonic() - t0
    sent.get(timeout=120)
    producer.join(30)
    os.unlink(path)
    remove_objects(prefix)
    return written / 1e6 / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--joint-seconds", type=float, default=60.0, help="section 3's length")
    args = parser.parse_args()
    print(
        f"# {os.uname().machine}, {os.cpu_count()} cores, Python {sys.version.split()[0]}; files in {args.dir}"
    )
    print("| producer | frames sent | recorded | dropped | producer's longest gap | target |")
    print("| --- | --- | --- | --- | --- | --- |")
    for rate in (30, 100, 300):
        sent, recorded, dropped, _, gap_ms = record_round(rate, args.seconds, args.dir)
        target = (
            "0 (ok)" if rate == 30 and dropped == 0 else ("0 MISSED" if rate == 30 else "(info)")
        )
        print(
            f"| {rate} Hz, 1.22 MB frame + pose | {sent} | {recorded} | {dropped} | "
            f"{gap_ms:.0f} ms | {target} |"
        )
    ratios, ours, floors = [], [], []
    for _ in range(args.rounds):
        _, _, _, mb, _ = record_round(0, args.seconds, args.dir)
        floor = plain_write_mb_per_s(args.seconds, args.dir)
        ours.append(mb)
        floors.append(floor)
        ratios.append(mb / floor)
    ratio = statistics.median(ratios)
    print()
    print("| free-running, 1.22 MB frames | MB/s | floor: plain file write MB/s | ratio | target |")
    print("| --- | --- | --- | --- | --- |")
    print(
        f"| record (no compression) | {statistics.median(ours):.0f} | {statistics.median(floors):.0f} | "
        f"{ratio:.2f}x | >= 0.8x {'ok' if ratio >= 0.8 else 'MISSED'} |"
    )
    print()
    print(
        f"| a 7-float64 joint state at 1 kHz for {args.joint_seconds:g} s | assigned | in the file | dropped | target |"
    )
    print("| --- | --- | --- | --- | --- |")
    for history in (None, 64):
        n, recorded, dropped = joints_round(history, args.joint_seconds, args.dir)
        if history:
            label, target = f"history={history}", "all " + ("(ok)" if recorded == n else "MISSED")
        else:
            label, target = "no history", "(info)"
        print(f"| {label} | {n} | {recorded} | {dropped} | {target} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
