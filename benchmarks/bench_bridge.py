"""The bridge against raw Zenoh and a plain TCP socket, on one machine's loopback.

    python benchmarks/bench_bridge.py [--rounds 5] [--messages 100] [--seconds 3]

Two pretend hosts, each a /dev/shm directory of its own (SHARED_OBJECT_DIR). On host A a sender
process, on host B a receiver process; between them three paths, all over TCP on 127.0.0.1:

- bridge: the sender assigns a SharedObject on A; `shared-object bridge --export` on A and
  `--import` on B carry it (Zenoh, its shared memory off); the receiver waits on B's object.
- zenoh: the sender `put`s the same bytes on a Zenoh publisher configured as the bridge's
  (peer mode, express, congestion BLOCK, priority DATA at 1.22 MB and REAL_TIME at 100 B, one
  link per priority range, shared memory off); the receiver's subscriber callback copies them
  into an array it holds.
- tcp: the sender writes them, length-prefixed, to a socket; the receiver `recv_into`s an
  array it holds. The floor: no middleware at all.

Payloads: 100 B (uint8[100]) and a 480x848x3 uint8 frame (1.22 MB). Each carries the sender's
time.time_ns() in its first 8 bytes; one clock, one machine.

1. Latency, paced (one message every 5 ms at 100 B, 20 ms at 1.22 MB, so nothing queues):
   one-way median and p99, sender's stamp to the receiver holding the bytes. Windows of
   --messages per path, the paths' order reversed each round; ratios of the medians over
   all rounds. Targets: bridge at most 1.3x raw Zenoh at 100 B, 1.15x at 1.22 MB.
2. Saturated, for --seconds a window: frames delivered per second at B and MB/s, bridge against
   raw Zenoh (target: at least 0.9x). "free": the sender as fast as it can, as the target is
   worded; on two cores a sender spinning on 1 us assigns takes a core from the two bridges,
   while raw Zenoh's sender is slowed by its own puts, so also "offered": the sender paced at
   twice raw Zenoh's free rate, more than either path delivers. The age of B's newest value,
   sampled every 2 ms, against two delivered-frame periods plus one median transfer (the
   bound); the bridges' CPU per delivered frame, and their peak RSS (VmHWM) at the end.
3. ROS 2 (with the ros2 extra): an exporter alone on A, `--export bench-frame` against
   `--ros2-export bench-frame=/camera/image_raw` (a sensor_msgs/Image, as rmw_zenoh puts it),
   the frame assigned at 30 Hz, a plain Zenoh subscriber to everything on the other end; the
   exporter's CPU per frame delivered, each a median over rounds, the two alternating (target:
   ROS 2 at most 1.2x native).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from shared_object.testing import free_port  # noqa: E402

SIZES = {"100B": (100,), "1.22MB": (480, 848, 3)}
#: The payloads measured (--sizes): all of them unless told.
MEASURED = list(SIZES)
PACED_PERIOD_S = {"100B": 0.005, "1.22MB": 0.020}
PATHS = ("bridge", "zenoh", "tcp")
OBJECT = {"100B": "bench-small", "1.22MB": "bench-frame"}


def stamp(array: np.ndarray[Any, Any]) -> None:
    array.reshape(-1)[:8] = np.frombuffer(time.time_ns().to_bytes(8, "little"), np.uint8)


def stamp_of(buffer: Any) -> int:
    return int.from_bytes(bytes(memoryview(buffer).cast("B")[:8]), "little")


def zenoh_config(listen: str | None = None, connect: str | None = None) -> Any:
    from shared_object.bridge.session import build_config

    return build_config(listen=[listen] if listen else [], connect=[connect] if connect else [])


# ---------------------------------------------------------------------------------------------
# The receiver (host B): three paths in, arrival times and newest values kept per path and size
# ---------------------------------------------------------------------------------------------
class Receiver:
    def __init__(self, zenoh_port: int, tcp_port: int) -> None:
        import zenoh

        from shared_object import SharedObject

        self.lock = threading.Lock()
        self.arrivals: dict[tuple[str, str], list[tuple[int, int]]] = {}
        self.held = {size: np.zeros(shape, np.uint8) for size, shape in SIZES.items()}
        self.zenoh_held = {size: np.zeros(shape, np.uint8) for size, shape in SIZES.items()}
        self.tcp_held = {size: np.zeros(shape, np.uint8) for size, shape in SIZES.items()}
        self.delivered: dict[tuple[str, str], int] = {}
        self.ages: list[float] = []
        self.sampling: tuple[str, str] | None = None
        self.window_start_ns = 0
        self.session = zenoh.open(zenoh_config(listen=f"tcp/127.0.0.1:{zenoh_port}"))
        self.subscriber = self.session.declare_subscriber("bench/raw/*", self._on_zenoh)
        self.objects = {size: SharedObject.attach(OBJECT[size], timeout=60) for size in SIZES}
        self.server = socket.create_server(("127.0.0.1", tcp_port))
        for target in (self._tcp, self._sample, *(self._bridge_thread(size) for size in SIZES)):
            threading.Thread(target=target, daemon=True).start()

    def _note(self, path: str, size: str, sent_ns: int) -> None:
        now = time.time_ns()
        with self.lock:
            self.arrivals.setdefault((path, size), []).append((sent_ns, now))
            self.delivered[path, size] = self.delivered.get((path, size), 0) + 1

    def _on_zenoh(self, sample: Any) -> None:
        size = str(sample.key_expr).rsplit("/", 1)[1]
        data = sample.payload.to_bytes()
        held = self.zenoh_held[size]
        held.reshape(-1)[:] = np.frombuffer(
            data, np.uint8
        )  # the bytes held, as B's object holds them
        self._note("zenoh", size, stamp_of(held))

    def _bridge_thread(self, size: str) -> Any:
        obj = self.objects[size]

        def run() -> None:
            while True:
                if obj.wait(1.0):
                    with obj.view() as view:  # B's object holds the copy; read just the stamp
                        sent = stamp_of(view.value)
                    self._note("bridge", size, sent)

        return run

    def _tcp(self) -> None:
        connection, _ = self.server.accept()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        header = bytearray(8)
        while True:
            if connection.recv_into(header, 8, socket.MSG_WAITALL) < 8:
                return
            n = int.from_bytes(header, "little")
            size = "100B" if n == 100 else "1.22MB"
            view = memoryview(self.tcp_held[size]).cast("B")
            got = 0
            while got < n:
                got += connection.recv_into(view[got:], n - got)
            self._note("tcp", size, stamp_of(self.tcp_held[size]))

    def _sample(self) -> None:
        """While a free-running window lasts: the age of the newest value at B, every 2 ms."""
        while True:
            time.sleep(0.002)
            which = self.sampling
            if which is None:
                continue
            path, size = which
            if path == "bridge":
                with self.objects[size].view() as view:
                    sent = stamp_of(view.value)
            elif path == "zenoh":
                sent = stamp_of(self.zenoh_held[size])
            else:
                sent = stamp_of(self.tcp_held[size])
            if sent >= self.window_start_ns:  # from this window: the first value has landed
                self.ages.append((time.time_ns() - sent) / 1e6)

    def command(self, line: str) -> dict[str, Any]:
        words = line.split()
        with self.lock:
            if words[0] == "reset":
                self.arrivals.clear()
                self.delivered.clear()
                self.ages = []
                self.window_start_ns = time.time_ns()
                self.sampling = (words[1], words[2]) if len(words) > 2 else None
                return {}
            self.sampling = None
            if words[0] == "stop":  # the sender stopped: the newest value only ages from here
                return {}
            return {
                "latencies_ms": {
                    f"{p}/{s}": [(b - a) / 1e6 for a, b in v] for (p, s), v in self.arrivals.items()
                },
                "delivered": {f"{p}/{s}": n for (p, s), n in self.delivered.items()},
                "ages_ms": self.ages,
            }


# ---------------------------------------------------------------------------------------------
# The sender (host A)
# ---------------------------------------------------------------------------------------------
class Sender:
    def __init__(self, zenoh_port: int, tcp_port: int) -> None:
        import zenoh

        from shared_object import SharedObject

        self.values = {size: np.zeros(shape, np.uint8) for size, shape in SIZES.items()}
        self.objects = {size: SharedObject(OBJECT[size], data=v) for size, v in self.values.items()}
        self.session = zenoh.open(zenoh_config(connect=f"tcp/127.0.0.1:{zenoh_port}"))
        self.publishers = {
            size: self.session.declare_publisher(
                f"bench/raw/{size}",
                congestion_control=zenoh.CongestionControl.BLOCK,
                priority=zenoh.Priority.DATA if size == "1.22MB" else zenoh.Priority.REAL_TIME,
                express=True,
            )
            for size in SIZES
        }
        self.raw = {size: bytearray(v.nbytes) for size, v in self.values.items()}
        self.tcp_port = tcp_port
        self.tcp: socket.socket | None = None

    def send(self, path: str, size: str) -> None:
        value = self.values[size]
        stamp(value)
        if path == "bridge":
            self.objects[size].assign(value)
        elif path == "zenoh":
            # Into a buffer used again and again, as the bridge does: a fresh megabyte
            # (value.tobytes()) costs a page fault per 4 KiB on its first write.
            raw = self.raw[size]
            raw[:] = memoryview(value).cast("B")
            self.publishers[size].put(raw)
        else:
            if self.tcp is None:
                self.tcp = socket.create_connection(("127.0.0.1", self.tcp_port))
                self.tcp.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.tcp.sendall(value.nbytes.to_bytes(8, "little"))
            self.tcp.sendall(memoryview(value).cast("B"))

    def command(self, line: str) -> dict[str, Any]:
        kind, path, size, amount, period = line.split()
        sent, started = 0, time.monotonic()
        if kind == "paced":
            next_t = started
            for _ in range(int(amount)):
                self.send(path, size)
                sent += 1
                next_t += float(period)
                time.sleep(max(0.0, next_t - time.monotonic()))
        else:  # free: as fast as it can, for `amount` seconds
            end = started + float(amount)
            while time.monotonic() < end:
                self.send(path, size)
                sent += 1
        return {"sent": sent, "seconds": time.monotonic() - started}


class Sink:
    """Section 3's far end: a Zenoh peer that takes every big sample put, whatever its format."""

    def __init__(self, endpoint: str) -> None:
        import zenoh

        self.lock = threading.Lock()
        self.got = 0
        self.session = zenoh.open(zenoh_config(connect=endpoint))
        self.subscriber = self.session.declare_subscriber("**", self._on_sample)

    def _on_sample(self, sample: Any) -> None:
        if len(sample.payload.to_bytes()) > 1_000_000:  # a frame (not a heartbeat, not stats)
            with self.lock:
                self.got += 1

    def command(self, line: str) -> dict[str, Any]:
        with self.lock:
            got = self.got
            if line.strip() == "reset":
                self.got = 0
        return {"got": got}


def serve(role: str, zenoh_port: int, tcp_port: int) -> None:
    """A sender, receiver or sink process: one JSON answer per command line on stdin."""
    worker: Sender | Receiver | Sink
    if role == "sink":
        worker = Sink(f"tcp/127.0.0.1:{zenoh_port}")
    elif role == "sender":
        worker = Sender(zenoh_port, tcp_port)
    else:
        worker = Receiver(zenoh_port, tcp_port)
    print(json.dumps({"ready": True}), flush=True)
    for line in sys.stdin:
        print(json.dumps(worker.command(line)), flush=True)


# ---------------------------------------------------------------------------------------------
# The driver
# ---------------------------------------------------------------------------------------------
class Process:
    def __init__(self, args: list[str], env: dict[str, str], interactive: bool = True) -> None:
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stdout=subprocess.PIPE if interactive else subprocess.DEVNULL,
            stderr=None,
            text=True,
        )

    def ask(self, line: str = "") -> dict[str, Any]:
        assert self.popen.stdin is not None
        assert self.popen.stdout is not None
        if line:
            self.popen.stdin.write(line + "\n")
            self.popen.stdin.flush()
        answer = self.popen.stdout.readline()
        if not answer:
            raise SystemExit(f"a benchmark process died: {self.popen.args}")
        return dict(json.loads(answer))

    def cpu_s(self) -> float:
        with open(f"/proc/{self.popen.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def peak_rss_mb(self) -> float:
        with open(f"/proc/{self.popen.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def measure_latency(
    sender: Process, receiver: Process, rounds: int, messages: int
) -> dict[tuple[str, str], list[float]]:
    """Paced windows of every path, their order reversed each round: one-way latencies (ms)."""
    latency: dict[tuple[str, str], list[float]] = {}
    for size in MEASURED:
        for round_ in range(rounds):
            for path in PATHS if round_ % 2 == 0 else PATHS[::-1]:
                receiver.ask("reset")
                sender.ask(f"paced {path} {size} {messages} {PACED_PERIOD_S[size]}")
                time.sleep(0.2)  # the last one lands
                got = receiver.ask("dump")["latencies_ms"].get(f"{path}/{size}", [])
                latency.setdefault((path, size), []).extend(got)
    return latency


def print_latency(latency: dict[tuple[str, str], list[float]]) -> None:
    print("\n1. one-way latency, paced (ms): median / p99; ratio of medians")
    print(f"   {'payload':8} {'bridge':>15} {'raw zenoh':>15} {'tcp':>15}  bridge/zenoh  bridge/tcp  target")  # fmt: skip
    for size in MEASURED:
        medians = {path: statistics.median(latency[path, size]) for path in PATHS}
        cells = [f"{medians[p]:6.3f} / {p99(latency[p, size]):6.3f}" for p in PATHS]
        target = "1.30x" if size == "100B" else "1.15x"
        print(
            f"   {size:8} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15}  "
            f"{medians['bridge'] / medians['zenoh']:11.2f}x {medians['bridge'] / medians['tcp']:10.2f}x  <= {target}"
        )  # fmt: skip


class Window:
    """One free-running window's results."""

    def __init__(self, sent: dict[str, Any], dump: dict[str, Any], key: str, cpu_s: float) -> None:
        self.offered = sent["sent"] / sent["seconds"]
        self.got = dump["delivered"].get(key, 0)
        self.rate = self.got / sent["seconds"]
        self.ages = dump["ages_ms"] or [float("nan")]
        self.cpu_per_frame_ms = 1e3 * cpu_s / max(self.got, 1)


def free_window(
    sender: Process, receiver: Process, bridges: list[Process], path: str, size: str, how: str
) -> Window:
    receiver.ask(f"reset {path} {size}")
    cpu0 = sum(b.cpu_s() for b in bridges)
    sent = sender.ask(how)
    receiver.ask("stop")
    time.sleep(0.3)
    return Window(
        sent, receiver.ask("dump"), f"{path}/{size}", sum(b.cpu_s() for b in bridges) - cpu0
    )


def measure_free(
    sender: Process,
    receiver: Process,
    bridges: list[Process],
    latency: dict[tuple[str, str], list[float]],
    rounds: int,
    seconds: float,
) -> None:
    print("\n2. saturated: delivered at B per second, MB/s, the age of B's newest value (ms)")
    print("   free: the sender as fast as it can; offered: paced at twice raw Zenoh's free rate")
    print(f"   {'payload':8} {'path':7} {'mode':8} {'sent/s':>8} {'got/s':>8} {'MB/s':>8} {'age p99':>8} {'age max':>8} {'bound':>7}  bridge CPU/frame")  # fmt: skip
    for size in MEASURED:
        shape = SIZES[size]
        totals: dict[tuple[str, str], float] = {}
        offered_rate = 0.0
        for mode in ("free", "offered"):
            for round_ in range(rounds):
                for path in ("bridge", "zenoh") if round_ % 2 == 0 else ("zenoh", "bridge"):
                    how = (
                        f"free {path} {size} {seconds} 0"
                        if mode == "free"
                        else f"paced {path} {size} {int(offered_rate * seconds)} {1 / offered_rate}"
                    )
                    w = free_window(sender, receiver, bridges, path, size, how)
                    totals[path, mode] = totals.get((path, mode), 0.0) + w.rate
                    # Saturated, a value at B is replaced once per delivered frame: its age is at
                    # most one transfer plus that period; the bound allows two periods.
                    bound = 2e3 / max(w.rate, 1e-9) + statistics.median(latency[path, size])
                    cpu = f"{w.cpu_per_frame_ms:.3f} ms" if path == "bridge" else ""
                    print(
                        f"   {size:8} {path:7} {mode:8} {w.offered:8.0f} {w.rate:8.0f} "
                        f"{w.rate * int(np.prod(shape)) / 1e6:8.1f} {p99(w.ages):8.2f} "
                        f"{max(w.ages):8.2f} {bound:7.2f}  {cpu}"
                    )
            if mode == "free":
                offered_rate = 2 * totals["zenoh", "free"] / rounds
            ratio = totals["bridge", mode] / totals["zenoh", mode]
            print(
                f"   {size:8} {mode}: delivered, bridge / raw zenoh {ratio:.2f}x (target >= 0.9x)"
            )


def measure_ros2_export(
    sender: Process, env: dict[str, str], bridge: list[str], rounds: int, seconds: float
) -> None:
    print("\n3. exporting the 1.22 MB frame at 30 Hz: the exporter's CPU per frame delivered")
    exports = {
        "native": ["--export", OBJECT["1.22MB"]],
        "ros2": ["--ros2-export", f"{OBJECT['1.22MB']}=/camera/image_raw"],
    }
    per_frame: dict[str, list[float]] = {mode: [] for mode in exports}
    frames = max(30, int(60 * seconds))  # CPU time counts in 10 ms ticks: 6 s by default
    for round_ in range(rounds):
        for mode in exports if round_ % 2 == 0 else list(exports)[::-1]:
            port = free_port()
            exporter = Process(
                [*bridge, *exports[mode], "--listen", f"tcp/127.0.0.1:{port}"], env, False
            )
            me = [sys.executable, os.path.abspath(__file__), "--ports", str(port), "0"]
            sink = Process([*me, "--role", "sink"], env)
            try:
                sink.ask()
                sender.ask(f"paced bridge 1.22MB 30 {1 / 30}")  # publishers declared, links up
                time.sleep(0.5)
                sink.ask("reset")
                cpu0 = exporter.cpu_s()
                sender.ask(f"paced bridge 1.22MB {frames} {1 / 30}")
                time.sleep(0.3)
                got = sink.ask("dump")["got"]
                cpu = exporter.cpu_s() - cpu0
            finally:
                sink.stop()
                exporter.stop()
            per_frame[mode].append(1e3 * cpu / max(got, 1))
            print(
                f"   round {round_ + 1} {mode:7} {got:4d} of {frames} frames, {per_frame[mode][-1]:.3f} ms CPU/frame"
            )
    native, ros2 = (statistics.median(per_frame[m]) for m in exports)
    print(
        f"   median: native {native:.3f} ms, ROS 2 Image {ros2:.3f} ms per frame: ROS 2 / native {ros2 / native:.2f}x (target <= 1.2x)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=100, help="per path and round (paced)")
    parser.add_argument("--seconds", type=float, default=3.0, help="per saturated window")
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--role", choices=["sender", "receiver", "sink"], help=argparse.SUPPRESS)
    parser.add_argument("--ports", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role:
        serve(args.role, *args.ports)
        return 0
    MEASURED[:] = args.sizes

    hosts = {h: tempfile.mkdtemp(prefix=f"so-bench-{h}-", dir="/dev/shm") for h in "ab"}
    env = {h: {**os.environ, "SHARED_OBJECT_DIR": d} for h, d in hosts.items()}
    bridge_port, zenoh_port, tcp_port = free_port(), free_port(), free_port()
    me = [sys.executable, os.path.abspath(__file__), "--ports", str(zenoh_port), str(tcp_port)]
    bridge = [sys.executable, "-m", "shared_object", "bridge"]
    endpoint = f"tcp/127.0.0.1:{bridge_port}"
    processes: list[Process] = []
    try:
        bridges = [
            Process([*bridge, "--export", "bench-*", "--listen", endpoint], env["a"], False),
            Process([*bridge, "--import", "bench-*", "--connect", endpoint], env["b"], False),
        ]
        processes += bridges
        sender = Process([*me, "--role", "sender"], env["a"])
        processes.append(sender)
        sender.ask()
        receiver = Process([*me, "--role", "receiver"], env["b"])
        processes.append(receiver)
        receiver.ask()
        for size in SIZES:  # warm up every path: connections, publishers, first imports
            for path in PATHS:
                sender.ask(f"paced {path} {size} 20 {PACED_PERIOD_S[size]}")
        time.sleep(1.0)

        print(f"bench_bridge: {args.rounds} rounds; loopback TCP; Zenoh shared memory off")
        latency = measure_latency(sender, receiver, args.rounds, args.messages)
        print_latency(latency)
        measure_free(sender, receiver, bridges, latency, max(2, args.rounds // 2), args.seconds)
        exporter, importer = (b.peak_rss_mb() for b in bridges)
        print(f"\n   bridges' peak RSS: exporter {exporter:.0f} MB, importer {importer:.0f} MB")
        for process in bridges:
            process.stop()
        if "1.22MB" in MEASURED:
            try:
                import rosbags  # noqa: F401 - the ros2 extra
            except ImportError:
                print("\n3. skipped: ROS 2 export needs the ros2 extra (pip install -e '.[ros2]')")
            else:
                measure_ros2_export(sender, env["a"], bridge, max(2, args.rounds), args.seconds)
    finally:
        for process in processes:
            process.stop()
        for directory in hosts.values():
            shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
