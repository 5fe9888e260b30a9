"""The bridge on the links robots have: a camera frame and a command stream over a shaped link.

    sudo python benchmarks/bench_link.py [--rates 1000 300 100 30] [--codecs raw jpeg:90 jpeg:75]
                                         [--seconds 10] [--congestion-control bbr]

Two "hosts" on this machine (tests/hosts.py): two network namespaces, each with a /dev/shm of
its own, joined by a veth pair whose ends are shaped with ``tc qdisc ... tbf rate R burst 256kb
latency 50ms``: a rate and one bounded FIFO queue, as a Wi-Fi hop is to the processes on it
(this kernel has no netem: no delay, no loss). On host A a producer assigns the demo's frame
value, ``{"seq", "stamp_ns", "frame"}`` with a 480x848x3 uint8 natural image (scikit-image's
astronaut and chelsea, tiled; each frame shifted a little), at 30 Hz, and a 16-float64 command
(its sequence number and send time in it) at 100 Hz. ``shared-object bridge --export 'lk-*'
--listen`` runs on A, ``--import 'lk-*' --connect`` on B, and a consumer on B waits on both
objects and notes what arrives, when, and how old.

Rows, per rate and frame codec: frames/s arriving, frame age p50/p99 (the producer's stamp to the
consumer's fetch), commands/s arriving as distinct values (of 100), their age p50/p99 and whether
they came in order, each bridge's CPU per frame, and the decoded frame's PSNR. Targets:

1. commands, at every rate and codec: >= 99 of 100 a second, in order, p99 age <= 25 ms;
2. raw frames: >= 0.8x the link's frame capacity (rate / frame bits), p99 age <= 3 frame
   transmission times, never zero;
3. jpeg:90 at 100 Mbit/s: >= 29.5 fps, p99 <= 50 ms; jpeg:75 at 30 Mbit/s: >= 28 fps,
   p99 <= 80 ms; PSNR >= 35 dB at quality 90; JPEG encode plus decode <= 10 ms a frame (the
   first rows: each codec alone, in this process);
4. loopback and 1 Gbit/s, raw: bench_bridge.py's rows unchanged (run it beside this one).

Each bridge is given ``--link-rate`` of its link, as docs/bridge.md says to; ``--default-buffers``
measures them without it. ``--command-history N`` makes the command an object with a history
(``history=N``): the consumer then reads every command with ``fetch_new()``, the bridges carry
each one, and the row adds how many the consumer lost (target: none, and all 100 a second).
``--ros2-commands`` sends the command as a ROS 2 topic instead (``--ros2-export lk-cmd=/lk_cmd``
on A, ``--ros2-import /lk_cmd:std_msgs/msg/Float64MultiArray=lk-cmd`` on B: rmw_zenoh's
messages, at the priority the native ones get), the frame as before.

Needs root (namespaces, tc, mounts) and the zenoh extra, and scikit-image for the image.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from tests.hosts import TwoHosts, missing  # noqa: E402

FRAME_SHAPE = (480, 848, 3)
FRAME_HZ = 30.0
COMMAND_HZ = 100.0
PORT = 7447
FLOATS = "std_msgs/msg/Float64MultiArray"
#: Frames the producer cycles through: the image shifted by a few pixels each.
VARIANTS = 8


def natural_frame() -> np.ndarray[Any, Any]:
    """A 480x848x3 uint8 natural image that a package ships: scikit-image's astronaut (512x512)
    beside its chelsea (300x451), the rest of the width filled from the astronaut."""
    from skimage import data

    astronaut, chelsea = data.astronaut(), data.chelsea()
    frame = np.empty(FRAME_SHAPE, np.uint8)
    frame[:, :512] = astronaut[:480]
    frame[:300, 512:] = chelsea[:, :336]
    frame[300:, 512:] = astronaut[:180, 100:436]
    return frame


def variants() -> list[np.ndarray[Any, Any]]:
    frame = natural_frame()
    return [np.ascontiguousarray(np.roll(frame, 3 * i, axis=1)) for i in range(VARIANTS)]


def psnr(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------------------------
# The producer (host A) and the consumer (host B)
# ---------------------------------------------------------------------------------------------
def produce(seconds: float, command_history: int) -> None:
    from shared_object import SharedObject

    frames = variants()
    frame = SharedObject.create(
        "lk-frame", {"seq": 0, "stamp_ns": time.time_ns(), "frame": frames[0]}
    )
    command = SharedObject.create(
        "lk-cmd", np.zeros(16, np.float64), history=command_history or None
    )
    print(json.dumps({"ready": True}), flush=True)
    start = time.monotonic()
    next_frame = next_command = start
    seq_frame = seq_command = 0
    value = np.zeros(16, np.float64)
    while (now := time.monotonic()) < start + seconds:
        if now >= next_command:
            seq_command += 1
            value[0], value[1] = seq_command, time.time()
            command.assign(value)
            next_command += 1 / COMMAND_HZ
        if now >= next_frame:
            seq_frame += 1
            frame.assign(
                {
                    "seq": seq_frame,
                    "stamp_ns": time.time_ns(),
                    "frame": frames[seq_frame % VARIANTS],
                }
            )
            next_frame += 1 / FRAME_HZ
        # Keep the period after a stall of the machine rather than catch up in a burst.
        next_command = max(next_command, time.monotonic() - 1 / COMMAND_HZ)
        next_frame = max(next_frame, time.monotonic() - 1 / FRAME_HZ)
        time.sleep(max(0.0, min(next_command, next_frame) - time.monotonic()))
    frame.unlink()
    command.unlink()


def consume(what: str, warmup: float, seconds: float, psnr_every: int = 5) -> None:
    """Follow one object (a process each: the frame's PSNR must not delay the commands' reader);
    every value of one with a history (``fetch_new``), else the newest at each change."""
    from shared_object import SharedObject

    frames = variants() if what == "frame" else []
    obj = SharedObject.attach(f"lk-{what}", timeout=60)
    print(json.dumps({"ready": True}), flush=True)
    begin = time.time() + warmup
    end = begin + seconds
    seen: list[tuple[float, float]] = []  # (seq, age ms)
    psnrs: list[float] = []
    errors: list[str] = []
    if obj.history:
        obj.fetch_new()  # what the ring held when it came: before the window
    lost_before = obj.lost
    while time.time() < end:
        if not obj.wait(0.2):
            continue
        values = obj.fetch_new() if obj.history else [obj.fetch()]
        now = time.time()
        for value in values:
            if what == "frame":
                seq, sent = value["seq"], value["stamp_ns"] / 1e9
                if value["frame"].shape != FRAME_SHAPE or value["frame"].dtype != np.uint8:
                    errors.append(f"frame {value['frame'].dtype}{value['frame'].shape}")
                elif now >= begin and seq % psnr_every == 0:
                    psnrs.append(psnr(value["frame"], frames[seq % VARIANTS]))
            else:
                seq, sent = float(value[0]), float(value[1])
            if now >= begin:
                seen.append((seq, (now - sent) * 1e3))
        if now < begin:
            lost_before = obj.lost  # the window counts from its beginning
    lost = obj.lost - lost_before
    print(json.dumps({"seen": seen, "psnr": psnrs, "errors": errors, "lost": lost}), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Cell:
    """One measurement: a link rate (Mbit/s), the frame's codec, and how long."""

    rate: int
    codec: str = "raw"
    seconds: float = 10.0
    warmup: float = 3.0
    link_rate: bool = True  # give the bridges --link-rate (what docs/bridge.md says to do)
    bridge_args: tuple[str, ...] = ()
    command_history: int = 0  # the command's history= (0: none, the newest only)
    ros2_commands: bool = False  # the command as a ROS 2 topic (Float64MultiArray)


@dataclass
class Result:
    fps: float
    frame_age: tuple[float, float]  # p50, p99, ms
    cmds: float  # distinct commands seen a second
    cmd_age: tuple[float, float]
    in_order: bool
    cmd_lost: int  # commands the consumer's fetch_new() lost (with a history; else 0)
    cpu_ms: tuple[float, float]  # exporter, importer: CPU per frame
    psnr: float
    errors: list[str]
    bridge_output: list[str]

    def transmission_ms(self, rate: int) -> float:
        """How long one raw frame takes to cross a link of ``rate`` Mbit/s."""
        return FRAME_BITS / (rate * 1e6) * 1e3


FRAME_BITS = (int(np.prod(FRAME_SHAPE)) + 64) * 8


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def increasing(values: list[float]) -> bool:
    return all(b > a for a, b in itertools.pairwise(values))


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def stop(processes: list[subprocess.Popen[str]]) -> dict[int, str]:
    """Terminate ``processes``; what each printed, by pid."""
    for process in processes:
        if process.poll() is None:
            process.terminate()
    outputs = {}
    for process in processes:
        try:
            outputs[process.pid], _ = process.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            outputs[process.pid], _ = process.communicate()
    return outputs


def run_cell(hosts: TwoHosts, cell: Cell) -> Result:
    """Bridges, producer and consumers started for ``cell`` on ``hosts``, measured, stopped."""
    me = [sys.executable, os.path.abspath(__file__)]
    bridge = [sys.executable, "-m", "shared_object", "bridge", "--json", *cell.bridge_args]
    if cell.codec != "raw":
        bridge += ["--encode", f"lk-frame={cell.codec}"]
    if cell.link_rate:
        bridge += ["--link-rate", str(cell.rate)]
    endpoint = f"tcp/{hosts.address['a']}:{PORT}"
    env = {**os.environ, "PYTHONPATH": ROOT}
    piped: dict[str, Any] = {"env": env, "stdout": subprocess.PIPE, "text": True}
    exports, imports = ["--export", "lk-*"], ["--import", "lk-*"]
    if cell.ros2_commands:
        exports = ["--export", "lk-frame", "--ros2-export", "lk-cmd=/lk_cmd"]
        imports = ["--import", "lk-frame", "--ros2-import", f"/lk_cmd:{FLOATS}=lk-cmd"]
    exporter = hosts.popen("a", [*bridge, *exports, "--listen", endpoint], **piped)
    importer = hosts.popen("b", [*bridge, *imports, "--connect", endpoint], **piped)
    total = cell.warmup + cell.seconds + 15  # the producer outlives the window
    producer = hosts.popen(
        "a",
        [*me, "--role", "producer", "--total", str(total),
         "--command-history", str(cell.command_history)],
        **piped,
    )  # fmt: skip
    consumers: dict[str, subprocess.Popen[str]] = {}
    started = [exporter, importer, producer]
    try:
        assert producer.stdout is not None
        producer.stdout.readline()
        for what in ("frame", "cmd"):
            consumers[what] = hosts.popen(
                "b",
                [*me, "--role", "consumer", "--object", what, "--warmup", str(cell.warmup),
                 "--seconds", str(cell.seconds)],
                **piped,
            )  # fmt: skip
            started.append(consumers[what])
        for consumer in consumers.values():
            assert consumer.stdout is not None
            consumer.stdout.readline()  # attached: the first values crossed
        time.sleep(cell.warmup)
        cpu0 = cpu_s(exporter.pid), cpu_s(importer.pid)
        seen: dict[str, Any] = {}
        for what, consumer in consumers.items():
            assert consumer.stdout is not None
            out = consumer.stdout.readline()
            if not out:
                raise RuntimeError(f"the {what} consumer died")
            seen[what] = json.loads(out)
        cpu1 = cpu_s(exporter.pid), cpu_s(importer.pid)
    finally:
        outputs = stop(started)
        hosts.clear_shm()  # what a terminated producer or importer left behind
    frames, commands = seen["frame"]["seen"], seen["cmd"]["seen"]
    frame_seqs, command_seqs = [s for s, _ in frames], [s for s, _ in commands]
    psnrs = seen["frame"]["psnr"]
    return Result(
        fps=len(set(frame_seqs)) / cell.seconds,
        frame_age=(p([a for _, a in frames], 0.5), p([a for _, a in frames], 0.99)),
        cmds=len(set(command_seqs)) / cell.seconds,
        cmd_age=(p([a for _, a in commands], 0.5), p([a for _, a in commands], 0.99)),
        in_order=increasing(command_seqs) and increasing(frame_seqs),
        cmd_lost=seen["cmd"]["lost"],
        cpu_ms=(
            1e3 * (cpu1[0] - cpu0[0]) / max(1, len(frames)),
            1e3 * (cpu1[1] - cpu0[1]) / max(1, len(frames)),
        ),
        psnr=statistics.median(psnrs) if psnrs else float("nan"),
        errors=seen["frame"]["errors"],
        bridge_output=[outputs[exporter.pid], outputs[importer.pid]],
    )


def verdict(cell: Cell, r: Result) -> bool:
    """The issue's targets for this cell (see the module's docstring)."""
    checks = [r.cmds >= 99 and r.cmd_age[1] <= 25 and r.in_order and not r.errors]
    if cell.command_history:  # every command, none lost
        checks.append(r.cmd_lost == 0)
    if cell.codec == "raw":
        capacity = cell.rate * 1e6 / FRAME_BITS
        checks.append(r.fps >= min(0.8 * capacity, 0.98 * FRAME_HZ))
        checks.append(r.frame_age[1] <= 3 * r.transmission_ms(cell.rate))
    elif cell.codec == "jpeg:90" and cell.rate == 100:
        checks.append(r.fps >= 29.5 and r.frame_age[1] <= 50)
    elif cell.codec == "jpeg:75" and cell.rate == 30:
        checks.append(r.fps >= 28 and r.frame_age[1] <= 80)
    if cell.codec == "jpeg:90":
        checks.append(r.psnr >= 35)
    return all(checks)


def codec_row(codec: str) -> str:
    """The codec alone, in this process: encode and decode of the natural frame, size, PSNR."""
    from shared_object.bridge import encoding
    from shared_object.payload import Decoder, encode

    frame = natural_frame()
    schema_text, payload = encode(frame)
    node = Decoder().layout(schema_text)
    made = encoding.parse_rule(f"x={codec}").codec()
    assert made is not None
    plan = encoding.plan(made, node, "frame")
    times: list[tuple[float, float]] = []
    for _ in range(30):
        t0 = time.perf_counter()
        section = encoding.encode(plan, memoryview(payload))
        t1 = time.perf_counter()
        decoded = encoding.decode(memoryview(section), node)
        times.append((t1 - t0, time.perf_counter() - t1))
    back = np.frombuffer(decoded, np.uint8).reshape(FRAME_SHAPE)
    enc_ms = statistics.median(t for t, _ in times) * 1e3
    dec_ms = statistics.median(t for _, t in times) * 1e3
    return (
        f"   {codec}: {len(section) / 1e3:.0f} kB a frame ({len(section) * 8 * FRAME_HZ / 1e6:.1f} "
        f"Mbit/s at 30 fps), encode {enc_ms:.2f} ms + decode {dec_ms:.2f} ms = "
        f"{enc_ms + dec_ms:.2f} ms (target <= 10), PSNR {psnr(back, frame):.1f} dB"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rates", nargs="+", type=int, default=[1000, 300, 100, 30],
                        help="link rates, Mbit/s")  # fmt: skip
    parser.add_argument("--codecs", nargs="+", default=["raw", "jpeg:90", "jpeg:75"])
    parser.add_argument("--seconds", type=float, default=10.0, help="per cell, measured")
    parser.add_argument("--warmup", type=float, default=3.0, help="per cell, before measuring")
    parser.add_argument("--congestion-control", default=None, help="TCP's, in both hosts")
    parser.add_argument("--bridge-args", default="", help="more options for both bridges")
    parser.add_argument(
        "--default-buffers",
        action="store_true",
        help="run the bridges without --link-rate (by default each is given the link's rate)",
    )
    parser.add_argument(
        "--command-history",
        type=int,
        default=0,
        help="make the command an object with this history: every command crosses (0: none)",
    )
    parser.add_argument(
        "--ros2-commands",
        action="store_true",
        help="send the command as a ROS 2 topic (needs the ros2 extra), the frame natively",
    )
    parser.add_argument("--role", choices=["producer", "consumer"], help=argparse.SUPPRESS)
    parser.add_argument("--total", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--object", choices=["frame", "cmd"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "producer":
        produce(args.total, args.command_history)
        return 0
    if args.role == "consumer":
        consume(args.object, args.warmup, args.seconds)
        return 0
    why = missing()
    if why:
        print(f"bench_link: {why}", file=sys.stderr)
        return 2
    print("bench_link: the codecs alone, on the natural frame (480x848x3 uint8)")
    for codec in args.codecs:
        if codec != "raw":
            print(codec_row(codec), flush=True)
    print(
        f"\nthe bridge on shaped links: tbf burst 256kb latency 50ms on both ends; "
        f"{args.seconds:.0f} s a cell; TCP congestion control "
        f"{args.congestion_control or 'the system default'}; "
        + ("default buffers" if args.default_buffers else "--link-rate set to the link's rate")
        + (f"; bridge options {args.bridge_args}" if args.bridge_args else "")
        + (f"; commands with history={args.command_history}" if args.command_history else "")
        + ("; commands as a ROS 2 topic" if args.ros2_commands else "")
    )
    print(
        f"{'link':>10} {'codec':8} {'fps':>6} {'frame age p50/p99':>18} {'cmds/s':>7} "
        f"{'cmd age p50/p99':>16} {'order':>5} {'CPU/frame A/B ms':>17} {'PSNR':>5}  targets"
    )
    with TwoHosts(congestion_control=args.congestion_control) as hosts:
        for rate in args.rates:
            hosts.shape(f"{rate}mbit")
            for codec in args.codecs:
                cell = Cell(
                    rate, codec, args.seconds, args.warmup, not args.default_buffers,
                    tuple(shlex.split(args.bridge_args)), args.command_history,
                    args.ros2_commands,
                )  # fmt: skip
                r = run_cell(hosts, cell)
                print(
                    f"{rate:>5} Mb/s {codec:8} {r.fps:6.1f} "
                    f"{r.frame_age[0]:8.1f} /{r.frame_age[1]:7.1f} {r.cmds:7.1f} "
                    f"{r.cmd_age[0]:7.1f} /{r.cmd_age[1]:6.1f} {'yes' if r.in_order else 'NO':>5} "
                    f"{r.cpu_ms[0]:8.2f} /{r.cpu_ms[1]:6.2f} {r.psnr:5.1f}  "
                    f"{'met' if verdict(cell, r) else 'MISSED'}"
                    + (f"  commands lost {r.cmd_lost}" if cell.command_history else "")
                    + (f"  errors {r.errors[:3]}" if r.errors else ""),
                    flush=True,
                )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
