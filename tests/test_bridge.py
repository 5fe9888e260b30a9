"""Two bridges on loopback, each for its own "host": a /dev/shm directory of its own.

Each side's processes see only their host's objects (SHARED_OBJECT_DIR), so everything that
crosses goes through Zenoh, over TCP (Zenoh's own shared memory is off in the bridge).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object.testing import free_port

zenoh = pytest.importorskip(
    "zenoh", reason="the bridge needs the zenoh extra: pip install -e '.[zenoh]'"
)

DEADLINE = 60.0


class Host:
    """A pretend host: its own shm directory, and the processes that run on it."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"so-bridge-{name}-", dir="/dev/shm")
        self.processes: list[subprocess.Popen[str]] = []
        self.env = {**os.environ, "SHARED_OBJECT_DIR": self.dir}

    def bridge(self, *args: str) -> subprocess.Popen[str]:
        return self.python_with("-m", "shared_object", "bridge", "--json", *args)

    def python(self, code: str, *args: str) -> subprocess.Popen[str]:
        return self.python_with("-c", code, *args)

    def python_with(self, *args: str) -> subprocess.Popen[str]:
        """``python args...`` on this host, its output piped; closed with the host."""
        process = subprocess.Popen(
            [sys.executable, *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.processes.append(process)
        return process

    def run(self, code: str, timeout: float = DEADLINE) -> str:
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def hosts() -> Iterator[Callable[[str], Host]]:
    made: list[Host] = []

    def make(name: str) -> Host:
        made.append(Host(name))
        return made[-1]

    yield make
    for host in made:
        host.close()


def stats_until(
    bridge: subprocess.Popen[str], done: Callable[[dict[str, Any]], bool], seconds: float = DEADLINE
) -> dict[str, Any]:
    """Read the bridge's JSON statistics lines until one satisfies ``done``; that line."""
    assert bridge.stdout is not None
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        line = bridge.stdout.readline()
        if not line:
            pytest.fail(f"the bridge exited: {bridge.stderr.read() if bridge.stderr else ''}")
        if line.startswith("{"):
            stats = json.loads(line)
            if done(stats):
                return stats
    pytest.fail("the bridge never reported what was expected")


PRODUCE = """
import sys, time, numpy as np
from shared_object import SharedObject
frames = SharedObject(sys.argv[1], data=np.zeros((480, 848, 3), np.uint8))
for i in range(int(sys.argv[2])):
    frame = np.full((480, 848, 3), i % 251, np.uint8)
    frame[0, 0, :] = (i % 256, i // 256 % 256, 0)
    frames.assign(frame)
    time.sleep(float(sys.argv[3]))
time.sleep(float(sys.argv[4]) if len(sys.argv) > 4 else 0)
"""

CONSUME = """
import sys, numpy as np
from shared_object import SharedObject
obj = SharedObject.attach(sys.argv[1], timeout=60)
seen, bad, last = 0, 0, -1
while obj.wait(10):
    frame = obj.fetch()
    i = int(frame[0, 0, 0]) + 256 * int(frame[0, 0, 1])
    bad += not (frame[1:] == i % 251).all()   # whole: every pixel from one frame
    bad += i < last                            # never an older frame after a newer one
    last, seen = i, seen + 1
    if i == int(sys.argv[2]) - 1:
        break
print(seen, bad, last)
"""


def test_frames_cross_whole_and_in_order_into_a_renamed_object(
    hosts: Callable[[str], Host],
) -> None:
    a, b = hosts("a"), hosts("b")
    port = free_port()
    exporter = a.bridge("--export", "cam-*", "--listen", f"tcp/127.0.0.1:{port}")
    importer = b.bridge("--import", "cam-frame=camera", "--connect", f"tcp/127.0.0.1:{port}")
    consumer = b.python(CONSUME, "camera", "150")
    producer = a.python(PRODUCE, "cam-frame", "150", "0.01", "2")
    out, err = consumer.communicate(timeout=DEADLINE)
    assert consumer.returncode == 0, err
    seen, bad, last = map(int, out.split())
    assert bad == 0 and last == 149 and seen > 10
    stats = stats_until(importer, lambda s: s["totals"]["received"] >= seen)
    assert stats["totals"]["malformed"] == 0
    assert not Path(b.dir, "cam-frame").exists()  # renamed: only "camera" on host b
    producer.wait(DEADLINE)
    exporter.terminate()


def test_every_value_of_an_object_with_a_history_crosses_in_order(
    hosts: Callable[[str], Host],
) -> None:
    """A burst of 800 commands assigned back to back on host A: with a history, host B's object
    (created with the same history) gets every one of them, in order, none lost."""
    a, b = hosts("a"), hosts("b")
    port = free_port()
    a.run(
        "import numpy as np; from shared_object import SharedObject\n"
        "SharedObject.create('cmd', np.zeros(7), history=1024).close()"
    )
    a.bridge("--export", "cmd", "--listen", f"tcp/127.0.0.1:{port}")
    b.bridge("--import", "cmd", "--connect", f"tcp/127.0.0.1:{port}")
    consumer = b.python("""
from shared_object import SharedObject
cmd = SharedObject.attach('cmd', timeout=60)
print('READY', cmd.history, flush=True)
numbers = []
for value in cmd.stream(timeout=30):
    numbers.append(int(value[0]))
    if not (value == value[0]).all():
        print('TORN', flush=True)
    if numbers[-1] == 800:
        break
print(len(numbers), numbers == sorted(set(numbers)), numbers[0], numbers[-1], cmd.lost)
""")
    assert consumer.stdout is not None
    assert consumer.stdout.readline().split() == ["READY", "1024"]  # created with its history
    a.run(
        "import numpy as np; from shared_object import SharedObject\n"
        "cmd = SharedObject.attach('cmd')\n"
        "for i in range(1, 801): cmd.assign(np.full(7, float(i)))"
    )
    out, err = consumer.communicate(timeout=DEADLINE)
    assert out.split() == ["801", "True", "0", "800", "0"], out + err


def test_a_trigger_crosses_and_wakes_a_waiter_on_the_other_host(
    hosts: Callable[[str], Host],
) -> None:
    a, b = hosts("a"), hosts("b")
    port = free_port()
    a.run(
        "from shared_object import SharedObject; SharedObject('estop').close()"
    )  # a trigger object
    a.bridge("--export", "estop", "--listen", f"tcp/127.0.0.1:{port}")
    b.bridge("--import", "estop", "--connect", f"tcp/127.0.0.1:{port}")
    waiter = b.python("""
from shared_object import SharedObject
stop = SharedObject.attach('estop', timeout=60)  # its current value arrives first (a late joiner)
stop.fetch()
print('READY', flush=True)
print('WOKE', stop.wait(60), flush=True)
""")
    assert waiter.stdout is not None
    assert waiter.stdout.readline().strip() == "READY"
    time.sleep(0.5)
    a.run("from shared_object import SharedObject; SharedObject.attach('estop').trigger()")
    out, err = waiter.communicate(timeout=DEADLINE)
    assert "WOKE True" in out, err


def test_a_late_joiner_gets_every_current_value_at_once(hosts: Callable[[str], Host]) -> None:
    """Each object sent once, long before the importer exists: all of them arrive, not just
    some (the late joiners' query must not be capped across keys)."""
    a, b = hosts("a"), hosts("b")
    port = free_port()
    names = ["pose", "twist", "mode", "gains"]
    a.run(
        "import numpy as np; from shared_object import SharedObject\n"
        f"for i, name in enumerate({names!r}): SharedObject(name, data=np.arange(7.0) + i).close()"
    )
    exporter = a.bridge("--export", *names, "--listen", f"tcp/127.0.0.1:{port}")
    stats_until(exporter, lambda s: s["totals"]["sent"] >= len(names))
    time.sleep(1.0)
    b.bridge("--import", *names, "--connect", f"tcp/127.0.0.1:{port}")
    out = b.run(
        "from shared_object import SharedObject\n"
        f"for name in {names!r}: print(SharedObject.attach(name, timeout=30).fetch().tolist())"
    )
    assert out.split("\n")[:-1] == [str((np.arange(7.0) + i).tolist()) for i in range(len(names))]


def test_two_bridges_mirror_one_name_both_ways_without_echo(hosts: Callable[[str], Host]) -> None:
    """The demo's shape: the frame flows a -> b, the action b -> a; each bridge exports and imports
    everything, and never sends back what it received."""
    a, b = hosts("a"), hosts("b")
    port = free_port()
    a.run(
        "import numpy as np; from shared_object import SharedObject; "
        "SharedObject('demo-action', data={'seq': 0, 'action': np.zeros(7)}).close()"
    )
    bridge_a = a.bridge(
        "--export", "demo-*", "--import", "demo-*", "--listen", f"tcp/127.0.0.1:{port}"
    )
    bridge_b = b.bridge(
        "--export", "demo-*", "--import", "demo-*", "--connect", f"tcp/127.0.0.1:{port}"
    )
    b.run("""
import numpy as np
from shared_object import SharedObject
action = SharedObject.attach('demo-action', timeout=60)   # imported from a
for seq in range(1, 6):
    action.assign({'seq': seq, 'action': np.full(7, float(seq))})
""")
    out = a.run("""
import time
from shared_object import SharedObject
action = SharedObject.attach('demo-action', timeout=60)
deadline = time.monotonic() + 30
while action.fetch()['seq'] != 5 and time.monotonic() < deadline:
    action.wait(1)
print(action.fetch()['seq'])
""")
    assert out.strip() == "5"
    # Echo would show as messages bouncing for ever: both links go quiet once the changes are done.
    quiet_a, quiet_b = quiet(bridge_a), quiet(bridge_b)
    assert quiet_a["totals"]["sent"] == 1, quiet_a  # its own initial action; nothing it imported
    assert 1 <= quiet_b["totals"]["sent"] <= 5, (
        quiet_b
    )  # its five changes, the newest of each burst
    assert quiet_a["totals"]["errors"] == 0 and quiet_b["totals"]["errors"] == 0


def quiet(bridge: subprocess.Popen[str]) -> dict[str, Any]:
    """The bridge's statistics once it sends and receives nothing for three seconds in a row."""
    stats_until(bridge, lambda s: s["sent_per_s"] == 0 and s["received_per_s"] == 0)
    later = [stats_until(bridge, lambda s: True, seconds=5) for _ in range(2)]
    assert all(s["sent_per_s"] == 0 and s["received_per_s"] == 0 for s in later), later
    return later[-1]


def test_malformed_and_stale_messages_are_counted_and_change_nothing(
    hosts: Callable[[str], Host],
) -> None:
    b = hosts("b")
    port = free_port()
    importer = b.bridge("--import", "vec", "--listen", f"tcp/127.0.0.1:{port}")
    from shared_object._codecs import encode
    from shared_object.bridge import build_config, wire

    session = zenoh.open(build_config(connect=[f"tcp/127.0.0.1:{port}"]))
    try:
        publisher = session.declare_publisher("shared_object/vec")
        time.sleep(1.0)
        text, payload = encode(np.arange(3.0))
        good = wire.encode(
            sequence=5,
            mtime_ns=time.time_ns(),
            change=5,
            source=b"s" * 16,
            dynamic=False,
            single_slot=False,
            schema_text=text,
            payload=payload,
        )
        publisher.put(bytes(good))
        value = b.run(
            "from shared_object import SharedObject; print(SharedObject.attach('vec', timeout=30).fetch().tolist())"
        )
        assert value.strip() == "[0.0, 1.0, 2.0]"
        hostile_encoding = wire.encode(  # flagged encoded, but its table is nonsense
            sequence=6,
            mtime_ns=time.time_ns(),
            change=6,
            source=b"s" * 16,
            dynamic=False,
            single_slot=False,
            schema_text=text,
            payload=b"\x01\x00" + bytes(6) + b"\xff" * 24,
            encoded=True,
        )
        for garbage in (
            b"",
            b"SOBM",
            bytes(good[:60]),
            b"x" * 500,
            bytes(good).replace(b"SOBM", b"SOBN"),
            bytes(hostile_encoding),
        ):
            publisher.put(garbage)
            time.sleep(0.05)
        older = wire.encode(
            sequence=4,
            mtime_ns=1,
            change=4,
            source=b"s" * 16,
            dynamic=False,
            single_slot=False,
            schema_text=text,
            payload=encode(np.full(3, 9.0))[1],
        )
        publisher.put(bytes(older))
        stats = stats_until(
            importer, lambda s: s["totals"]["malformed"] >= 6 and s["totals"]["stale"] >= 1
        )
        assert stats["totals"]["received"] == 1
        assert importer.poll() is None  # still running
        value = b.run(
            "from shared_object import SharedObject; print(SharedObject.attach('vec').fetch().tolist())"
        )
        assert value.strip() == "[0.0, 1.0, 2.0]"  # untouched by any of them
    finally:
        session.close()


def test_a_killed_exporter_restarted_resumes_the_flow(hosts: Callable[[str], Host]) -> None:
    a, b = hosts("a"), hosts("b")
    port = free_port()
    producer = a.python(PRODUCE, "cam-frame", "100000", "0.02")
    exporter = a.bridge("--export", "cam-*", "--listen", f"tcp/127.0.0.1:{port}")
    importer = b.bridge("--import", "cam-*", "--connect", f"tcp/127.0.0.1:{port}")
    stats_until(importer, lambda s: s["received_per_s"] > 5)
    exporter.kill()
    exporter.wait(DEADLINE)
    stats_until(importer, lambda s: s["received_per_s"] == 0)  # a pause
    a.bridge("--export", "cam-*", "--listen", f"tcp/127.0.0.1:{port}")
    resumed = stats_until(
        importer, lambda s: s["received_per_s"] > 5
    )  # by itself: nothing restarted on b
    assert resumed["totals"]["malformed"] == 0
    producer.terminate()


def test_encoded_frames_cross_whole_and_a_repeated_option_adds_up(
    hosts: Callable[[str], Host],
) -> None:
    """PNG is lossless: the consumer's exact check of every pixel holds. ``--import`` given twice
    mirrors both patterns (and renames), as ``--import a b`` would."""
    a, b = hosts("a"), hosts("b")
    port = free_port()
    exporter = a.bridge(
        "--export", "cam-*", "--encode", "cam-*=png:1", "--listen", f"tcp/127.0.0.1:{port}"
    )
    importer = b.bridge(
        "--import", "cam-frame=camera", "--import", "cam-other=other",
        "--connect", f"tcp/127.0.0.1:{port}",
    )  # fmt: skip
    consumer = b.python(CONSUME, "camera", "60")
    producer = a.python(PRODUCE, "cam-frame", "60", "0.02", "2")
    a.python(PRODUCE, "cam-other", "1", "0", "30")
    out, err = consumer.communicate(timeout=DEADLINE)
    assert consumer.returncode == 0, err
    seen, bad, last = map(int, out.split())
    assert bad == 0 and last == 59 and seen >= 3  # PNG costs ~30 ms: the newest ones
    stats = stats_until(exporter, lambda s: "cam-frame" in s["objects"])
    frame = stats["objects"]["cam-frame"]
    assert frame["encoding"] == "png:1" and frame["message_bytes"] < frame["payload_bytes"] / 10
    assert (
        b.run(
            "from shared_object import SharedObject; "
            "print(SharedObject.attach('other', timeout=30).fetch().shape)"
        ).strip()
        == "(480, 848, 3)"
    )
    assert stats_until(importer, lambda s: s["totals"]["received"] >= 2)["totals"]["malformed"] == 0
    producer.wait(DEADLINE)


def test_max_rate_caps_the_messages_of_the_objects_it_names(hosts: Callable[[str], Host]) -> None:
    a = hosts("a")
    port = free_port()
    a.python(PRODUCE, "cam-fast", "100000", "0.01")
    a.python(PRODUCE, "cam-slow", "100000", "0.01")
    exporter = a.bridge(
        "--export", "cam-*", "--max-rate", "cam-slow=4", "--listen", f"tcp/127.0.0.1:{port}"
    )
    stats_until(exporter, lambda s: {"cam-fast", "cam-slow"} <= set(s["objects"]))
    lines = [stats_until(exporter, lambda s: True) for _ in range(3)]
    slow = [s["objects"].get("cam-slow", {}).get("out_per_s", 0) for s in lines]
    fast = [s["objects"].get("cam-fast", {}).get("out_per_s", 0) for s in lines]
    assert max(slow) <= 5, lines  # 4 a second, and the report's second is not exact
    assert sum(fast) > 2 * sum(slow), lines  # the other object is not capped


def test_an_encoding_that_does_not_fit_an_object_is_refused_at_start_up(
    hosts: Callable[[str], Host],
) -> None:
    a = hosts("a")
    a.run(
        "import numpy as np; from shared_object import SharedObject\n"
        "SharedObject('cam-depth', data=np.zeros((48, 64), np.uint16)).close()\n"
        "SharedObject('cam-rgb', data=np.zeros((48, 64, 3), np.uint8)).close()"
    )
    bridge = a.bridge(
        "--export", "cam-*", "--encode", "cam-*=jpeg", "--listen", f"tcp/127.0.0.1:{free_port()}"
    )
    out, err = bridge.communicate(timeout=DEADLINE)
    assert bridge.returncode == 2, out + err
    assert "--encode cam-*=jpeg: jpeg takes uint8 images" in err
    assert "'cam-depth' holds ndarray[uint16, (48, 64)]" in err and "cam-rgb" not in err
    for bad, says in (
        (["--encode", "cam-*=webp"], "unknown codec 'webp'"),
        (["--max-rate", "cam-*=fast"], "--max-rate 'cam-*=fast': write PATTERN=HZ"),
        (["--link-rate", "0"], "--link-rate must be a positive number"),
    ):
        refused = a.bridge("--export", "cam-*", *bad)
        out, err = refused.communicate(timeout=DEADLINE)
        assert refused.returncode == 2 and says in err, out + err
