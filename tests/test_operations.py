"""shared-object health, top, record and play, end to end through the command line."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import SharedDynamicObject, SharedObject, _probe

from .helpers import PROCESS_DEADLINE, SPAWN

mcap = pytest.importorskip(
    "mcap", reason="record and play need the mcap extra: pip install -e '.[mcap]'"
)

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


@pytest.fixture
def prefix(shm_name: str) -> str:
    """A name prefix of the test's own (shm_name's clean-up removes every name it starts)."""
    return shm_name


# ---------------------------------------------------------------------------------------------
# health
# ---------------------------------------------------------------------------------------------
def test_health_reads_the_header_without_importing_numpy(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(3)):
        code = (
            "import sys; from shared_object import _probe; "
            f"ok, text = _probe.health({shm_name!r}, 5.0); print(ok, text); "
            "print('numpy' in sys.modules, 'shared_object._codecs' in sys.modules)"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
        )
        assert result.stdout.splitlines()[-1] == "False False", result.stdout + result.stderr
        assert result.stdout.startswith("True healthy"), result.stdout
        result = cli("health", shm_name, "--max-age", "0.0001")
        assert (
            result.returncode == 1
            and "unhealthy" in result.stdout
            and "last changed" in result.stdout
        )


def test_health_of_a_file_that_is_not_ours_or_missing_is_unhealthy(shm_name: str) -> None:
    with open(f"/dev/shm/{shm_name}", "wb") as f:
        f.write(b"not ours" * 100)
    ok, text = _probe.health(shm_name, 5.0)
    assert not ok and "not a shared_object segment" in text
    os.unlink(f"/dev/shm/{shm_name}")
    ok, text = _probe.health(shm_name, 5.0)
    assert not ok and "no shared object named" in text


# ---------------------------------------------------------------------------------------------
# top
# ---------------------------------------------------------------------------------------------
def test_top_once_counts_exactly_what_the_header_says(prefix: str, spawn: Any) -> None:
    started = SPAWN.Event()
    producer = spawn(produce, prefix, 40, 0.0, started)
    assert started.wait(PROCESS_DEADLINE)
    producer.join(PROCESS_DEADLINE)
    with SharedObject.attach(prefix + "-frame") as held:  # one handle: top must count it
        result = cli("top", "--once", "--json", "--interval", "0.2", prefix + "-*")
        assert result.returncode == 0, result.stderr
        rows = {row["name"]: row for row in json.loads(result.stdout)}
        cam = rows[prefix + "-frame"]
        assert cam["changes"] == 40  # every assign, exactly; nobody writes any more
        assert cam["updates_per_s"] == 0 and cam["mb_per_s"] == 0
        assert cam["kind"] == "ndarray[uint8, (48, 64, 3)]" and cam["size"] == held.fetch().nbytes
        assert cam["handles"] == 1
        assert cam["age_s"] >= 0
        assert rows[prefix + "-dyn"]["dynamic"] is True


def test_top_in_a_terminal_shows_the_rate_of_a_producer_running_at_a_known_rate(
    prefix: str, spawn: Any
) -> None:
    """At 50 Hz the screen must show about 50 updates/s (bounds far wider than any sleep drift)."""
    started = SPAWN.Event()
    producer = spawn(produce, prefix, 500, 0.02, started)
    assert started.wait(PROCESS_DEADLINE)
    pid, fd = pty.fork()
    if pid == 0:  # the child: top in a pseudo-terminal, refreshing every 0.5 s
        os.execv(
            sys.executable, [*CLI, "top", "--interval", "0.5", "--sort", "rate", prefix + "-*"]
        )
    screen = b""
    deadline = time.monotonic() + 30
    rates: list[float] = []
    try:
        while time.monotonic() < deadline and len(rates) < 4:
            if select.select([fd], [], [], 1.0)[0]:
                screen += os.read(fd, 65536)
            rates = [
                float(r)
                for r in re.findall(
                    rf"{re.escape(prefix)}-frame +([0-9.]+)", screen.decode(errors="replace")
                )
            ]
        os.write(fd, b"q")  # the quit key
        _, status = os.waitpid(pid, 0)
    finally:
        os.close(fd)
        producer.terminate()
    text = screen.decode(errors="replace")
    assert "\x1b[H" in text, "top did not redraw in place"
    assert "ndarray[uint8, (48, 64, 3)]" in text
    assert len(rates) >= 2, text[-2000:]
    assert 10 < rates[-1] < 80, f"top showed {rates} updates/s for a 50 Hz producer"
    assert os.waitstatus_to_exitcode(status) == 0


# ---------------------------------------------------------------------------------------------
# record and play
# ---------------------------------------------------------------------------------------------
def record(prefix: str, output: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, "record", f"{prefix}-*", "-o", str(output), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_objects(process: subprocess.Popen[str], count: int) -> None:
    """Until the recorder's progress says it follows ``count`` objects."""
    assert process.stdout is not None
    for line in process.stdout:
        if json.loads(line)["objects"] >= count:
            return
    pytest.fail(f"the recorder ended early: {process.stderr.read() if process.stderr else ''}")


def test_a_recording_holds_every_change_in_order_and_plays_back_intact(
    prefix: str, spawn: Any, tmp_path: Path
) -> None:
    output = tmp_path / "run.mcap"
    with (
        SharedObject(prefix + "-frame", data=frame(0)),
        SharedObject(prefix + "-pose", data=np.zeros(7)),
        SharedDynamicObject(prefix + "-dyn", data=0),
    ):
        recorder = record(prefix, output)
        wait_for_objects(recorder, 3)
        started = SPAWN.Event()
        producer = spawn(produce, prefix, 30, 0.02, started)
        producer.join(PROCESS_DEADLINE)
        time.sleep(0.5)
        recorder.send_signal(signal.SIGINT)  # Ctrl-C: a complete, indexed file
        recorder.communicate(timeout=PROCESS_DEADLINE)
        assert recorder.returncode == 0
    from mcap.reader import make_reader

    with open(output, "rb") as f:
        reader = make_reader(f)
        summary = reader.get_summary()
        assert summary is not None and summary.statistics is not None  # the index was written
        messages: dict[str, list[tuple[int, bytes]]] = {}
        for schema, channel, message in reader.iter_messages():
            assert schema is not None and schema.encoding == "shared_object.schema"
            messages.setdefault(channel.topic, []).append((message.log_time, message.data))
    cam = messages[prefix + "-frame"]
    # Every change, in order: the value when recording began, the producer's attach-and-assign of
    # frame 0 (a change too), then its 30 frames.
    assert [bytes(data)[0] for _, data in cam] == [0, 0, *range(1, 31)]
    assert all(a <= b for (a, _), (b, _) in zip(cam, cam[1:], strict=False))
    assert {len(data) for _, data in cam} == {int(np.prod(FRAME))}

    # Play it into renamed objects, twice as fast; a consumer in another process receives it.
    consumer_out = SPAWN.Queue()
    spawn(consume, prefix + "-replayed", consumer_out)
    assert consumer_out.get(timeout=PROCESS_DEADLINE) == "ready"
    played = cli(
        "play", str(output), "--rate", "2", "--rename", f"{prefix}-frame={prefix}-replayed"
    )
    assert played.returncode == 0, played.stderr
    assert "played" in played.stdout
    received = consumer_out.get(timeout=PROCESS_DEADLINE)
    assert received == sorted(received) and received[-1] == 30, received  # in order, to the last
    assert all(ok for ok in consumer_out.get(timeout=PROCESS_DEADLINE))  # every frame intact
    for suffix in ("-replayed", "-pose", "-dyn"):
        with open_by_kind(prefix + suffix) as obj:
            obj.unlink()


def consume(name: str, out: Any) -> None:
    """Receive frames until the 30th: their ids in order, and whether each was whole."""
    with SharedObject(name, data=frame(0)) as obj:
        out.put("ready")
        seen: list[int] = []
        whole: list[bool] = []
        while not seen or seen[-1] != 30:
            if not obj.wait(30):
                break
            value = obj.fetch()
            seen.append(int(value[0, 0, 0]))
            whole.append(bool((value == value[0, 0, 0]).all()))
        out.put(seen)
        out.put(whole)


def open_by_kind(name: str) -> SharedObject:
    from shared_object._dynamic import open_any

    return open_any(name)


@pytest.mark.parametrize("compression", ["none", "zstd"])  # records of their own; chunks
def test_a_recorder_killed_with_sigkill_leaves_a_file_that_still_plays(
    prefix: str, tmp_path: Path, compression: str
) -> None:
    output = tmp_path / "killed.mcap"
    with SharedObject(prefix + "-frame", data=frame(0)) as cam:
        recorder = record(prefix, output, "--compression", compression)
        wait_for_objects(recorder, 1)
        for i in range(1, 200):
            cam.assign(frame(i))
            time.sleep(0.002)
        os.kill(recorder.pid, signal.SIGKILL)
        recorder.wait(PROCESS_DEADLINE)
        played = cli(
            "play", str(output), "--rate", "100", "--rename", f"{prefix}-frame={prefix}-again"
        )
        assert played.returncode == 0, played.stderr
        assert "ends without its index" in played.stderr
        count = int(re.search(r"played (\d+) messages", played.stdout).group(1))  # type: ignore[union-attr]
        assert count >= 1
        with SharedObject.attach(prefix + "-again") as again:
            value = again.fetch()
            assert (value == value[0, 0, 0]).all()  # a whole frame, the last complete one
            again.unlink()
        cam.unlink()


def test_bad_input_gets_a_clear_error_and_nothing_else_is_lost(prefix: str, tmp_path: Path) -> None:
    not_mcap = tmp_path / "notes.txt"
    not_mcap.write_text("hello")
    result = cli("play", str(not_mcap))
    assert (
        result.returncode == 1
        and "is not an MCAP file" in result.stderr
        and "Traceback" not in result.stderr
    )

    # A file with a foreign channel (another tool's schema) and a corrupt message of ours among good ones.
    from mcap.writer import Writer

    from shared_object._codecs import encode

    mixed = tmp_path / "mixed.mcap"
    with open(mixed, "wb") as f:
        writer = Writer(f)
        writer.start()
        foreign = writer.register_schema(
            name="sensor_msgs/Image", encoding="ros2msg", data=b"uint32 height"
        )
        writer.add_message(writer.register_channel("/camera", "cdr", foreign), 1, b"\x00" * 8, 1)
        text, payload = encode(np.arange(4.0))
        ours = writer.register_schema(
            name="ndarray[float64, (4,)]", encoding="shared_object.schema", data=text
        )
        channel = writer.register_channel(
            prefix + "-vec", "shared_object.payload", ours, {"dynamic": "false"}
        )
        writer.add_message(channel, 2, payload, 2)
        writer.add_message(channel, 3, payload[:-3], 3)  # cut short: corrupt
        writer.add_message(channel, 4, encode(np.full(4, 9.0))[1], 4)
        writer.finish()
    result = cli("play", str(mixed))
    assert result.returncode == 0, result.stderr
    assert "'/camera' is not shared_object's" in result.stderr
    assert "payload of 29 bytes" in result.stderr and "skipped" in result.stderr
    assert "played 2 messages" in result.stdout and "skipped 1" in result.stdout
    with SharedObject.attach(prefix + "-vec") as vec:
        assert vec.fetch().tolist() == [9.0] * 4  # the good messages all landed
        vec.unlink()


def test_record_never_writes_over_an_earlier_recording(prefix: str, tmp_path: Path) -> None:
    earlier = tmp_path / "run.mcap"
    earlier.write_bytes(b"an earlier recording")
    result = cli("record", f"{prefix}-*", "-o", str(earlier), "--duration", "0.1")
    assert result.returncode == 2 and "--overwrite" in result.stderr  # usage
    assert earlier.read_bytes() == b"an earlier recording"

    # strftime fields: each run its own file, named when it starts
    pattern = str(tmp_path / "run-%Y%m%d-%H%M%S.mcap")
    result = cli("record", f"{prefix}-*", "-o", pattern, "--duration", "0.1")
    assert result.returncode == 0, result.stderr
    [made] = [p for p in tmp_path.iterdir() if p.name.startswith("run-2")]
    assert re.fullmatch(r"run-\d{8}-\d{6}\.mcap", made.name) and made.name in result.stdout

    result = cli("record", f"{prefix}-*", "-o", str(earlier), "--duration", "0.1", "--overwrite")
    assert result.returncode == 0 and earlier.read_bytes().startswith(b"\x89MCAP")


def test_play_streams_a_recording_bigger_than_what_it_holds_in_memory(
    prefix: str, tmp_path: Path
) -> None:
    """A recording may be bigger than the machine's memory: play reads it as it goes."""
    from shared_object.recording import Recorder

    path = tmp_path / "big.mcap"
    with SharedObject.create(prefix + "-cam", np.zeros((480, 848, 3), np.uint8)) as cam:
        with open(path, "wb") as f:
            recorder = Recorder(f, [prefix + "-cam"])
            recorder.scan()

            def recorded(count: int) -> None:
                deadline = time.monotonic() + PROCESS_DEADLINE
                while recorder.messages < count and time.monotonic() < deadline:
                    time.sleep(0.001)
                assert recorder.messages == count and recorder.dropped == 0

            recorded(1)  # the value it found, then each frame, none skipped as a gap
            for i in range(150):  # 150 frames of 1.2 MB: a 180 MB file
                cam.assign(np.full((480, 848, 3), i % 256, np.uint8))
                recorded(i + 2)
            recorder.finish()
        cam.unlink()
    size_mb = path.stat().st_size / 2**20
    code = (
        "import sys; from shared_object.cli import main; "
        f"code = main(['play', {str(path)!r}, '--rate', '1000', '--rename', "
        f"'{prefix}-cam={prefix}-copy']); "
        # VmHWM, not ru_maxrss: exec copies the parent's (pytest's) peak into ru_maxrss.
        "peak = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]; "
        "print('PEAK', int(peak.split()[1]) / 1024); sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "played 151 messages" in result.stdout, result.stdout
    peak_mb = float(result.stdout.split("PEAK")[1])
    assert size_mb > 150 and peak_mb < size_mb / 2, (peak_mb, size_mb)
    with SharedObject.attach(prefix + "-copy") as copy:
        assert copy.fetch()[0, 0, 0] == 149
        copy.unlink()


def test_record_takes_its_buffer_in_mb_and_refuses_none(prefix: str, tmp_path: Path) -> None:
    refused = cli("record", f"{prefix}-*", "-o", str(tmp_path / "a.mcap"), "--buffer-mb", "0")
    assert refused.returncode == 2 and "expected a number > 0" in refused.stderr
    assert not (tmp_path / "a.mcap").exists()
    with SharedObject(prefix + "-frame", data=frame(3)):
        result = cli(
            "record", f"{prefix}-*", "-o", str(tmp_path / "b.mcap"), "--buffer-mb", "0.5",
            "--duration", "0.5",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    from mcap.reader import make_reader

    with open(tmp_path / "b.mcap", "rb") as f:
        assert [bytes(m.data)[0] for _, _, m in make_reader(f).iter_messages()] == [3]
