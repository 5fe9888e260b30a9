"""Recording and playing back: the Recorder and the Player, and ``shared-object record`` and
``play`` end to end.

Changes are copied as they come and written behind, so a stalled file system delays the file,
not the copies; what the buffer cannot hold is counted, never silently lost; a producer that
restarts is recorded on; a recording plays back intact, even cut short."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import InvalidArgumentError, SharedDynamicObject, SharedObject

from .helpers import CLI, PROCESS_DEADLINE, SPAWN, cli, frame, produce

pytest.importorskip("mcap", reason="record and play need the mcap extra: pip install -e '.[mcap]'")

from shared_object.recording import Recorder  # noqa: E402 - after the extra's check

FRAME = (48, 64, 3)
CHANGES = 40


@pytest.fixture
def prefix(shm_name: str) -> str:
    """A name prefix of the test's own (shm_name's clean-up removes every name it starts)."""
    return shm_name


class StallingFile(io.BufferedWriter):
    """A file whose writes block for ``seconds`` once ``stall`` is set (then it clears it): a
    disk flushing its cache."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__(io.FileIO(path, "w"))
        self.stall = threading.Event()
        self.seconds = seconds
        self.stalled = threading.Event()

    def write(self, data: Any) -> int:
        if self.stall.is_set():
            self.stall.clear()
            time.sleep(self.seconds)
            self.stalled.set()
        return super().write(data)


def record_through_a_stall(
    name: str, path: Path, buffer_bytes: int, history: int | None = None
) -> Recorder:
    """Record ``CHANGES`` frames, 5 ms apart, while the file's first write after the first frame
    blocks for half a second."""
    with SharedObject.create(name, np.zeros(FRAME, np.uint8), history=history) as obj:
        output = StallingFile(path, seconds=0.5)
        recorder = Recorder(output, [name], buffer_bytes=buffer_bytes)
        recorder.scan()
        deadline = time.monotonic() + PROCESS_DEADLINE
        while recorder.messages < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        output.stall.set()
        for i in range(1, CHANGES + 1):
            obj.assign(np.full(FRAME, i, np.uint8))
            time.sleep(0.005)
        assert output.stalled.wait(PROCESS_DEADLINE)
        time.sleep(0.1)
        recorder.finish()
        output.close()
        obj.unlink()
    return recorder


def recorded_values(path: Path) -> list[int]:
    from mcap.reader import make_reader

    with open(path, "rb") as f:
        return [message.data[0] for _, _, message in make_reader(f).iter_messages()]


def test_a_stalled_file_system_delays_the_file_not_the_copies(
    shm_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.mcap"
    recorder = record_through_a_stall(shm_name, path, buffer_bytes=64 * 1024 * 1024)
    # Every change, in order, though the file took none for half a second (100 frame periods).
    assert recorded_values(path) == list(range(CHANGES + 1))
    assert recorder.dropped == 0 and not recorder.errors
    assert recorder.progress()["queued_bytes"] == 0


def test_what_a_full_buffer_cannot_hold_is_counted_as_dropped(
    shm_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.mcap"
    # Room for one frame: while the file stalls, the copying thread waits, and changes pass by.
    recorder = record_through_a_stall(shm_name, path, buffer_bytes=1)
    values = recorded_values(path)
    assert values == sorted(values) and values[0] == 0 and values[-1] == CHANGES
    assert recorder.dropped > 0
    assert len(values) + recorder.dropped == CHANGES + 1  # each change recorded or counted


def test_an_object_with_a_history_loses_nothing_to_a_stall_its_history_covers(
    shm_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.mcap"
    # The copying thread waits for room all through the stall (a 1-byte buffer), while all 40
    # changes come and go: the ring of 64 still holds them when it reads again.
    recorder = record_through_a_stall(shm_name, path, buffer_bytes=1, history=64)
    assert recorded_values(path) == list(range(CHANGES + 1))
    assert recorder.dropped == 0 and not recorder.errors


def test_what_the_history_did_not_cover_is_dropped_and_counted_exactly(
    shm_name: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.mcap"
    recorder = record_through_a_stall(shm_name, path, buffer_bytes=1, history=4)
    values = recorded_values(path)
    assert values == sorted(values) and values[-1] == CHANGES
    assert recorder.dropped > 0
    assert len(values) + recorder.dropped == CHANGES + 1  # each change recorded or counted
    from mcap.reader import make_reader

    with open(path, "rb") as f:  # and the file says how to re-create it: with its history
        (channel,) = make_reader(f).get_summary().channels.values()  # type: ignore[union-attr]
    assert channel.metadata["history"] == "4"


def test_the_buffer_must_hold_something(tmp_path: Path) -> None:
    with (
        open(tmp_path / "run.mcap", "wb") as f,
        pytest.raises(InvalidArgumentError, match="buffer must hold"),
    ):
        Recorder(f, ["x"], buffer_bytes=0)


def test_a_restarted_producer_is_recorded_on_into_its_new_object(
    shm_name: str, tmp_path: Path
) -> None:
    """A camera driver that crashes and restarts: its object unlinked and created again. Every
    value of both lives reaches the file."""
    path = tmp_path / "restart.mcap"
    with open(path, "wb") as output, Recorder(output, [shm_name]) as recorder:
        first = SharedObject.create(shm_name, np.zeros(FRAME, np.uint8))
        for i in range(1, 11):
            deadline = time.monotonic() + PROCESS_DEADLINE
            while recorder.messages < i and time.monotonic() < deadline:
                time.sleep(0.001)
            first.assign(np.full(FRAME, i, np.uint8))
        first.unlink()
        first.close()
        second = SharedObject.create(shm_name, np.full(FRAME, 100, np.uint8))
        deadline = time.monotonic() + PROCESS_DEADLINE
        while recorder.messages < 12 and time.monotonic() < deadline:
            time.sleep(0.005)
        for i in range(101, 111):
            second.assign(np.full(FRAME, i, np.uint8))
            while recorder.messages < i - 88 and time.monotonic() < deadline:
                time.sleep(0.001)
        second.unlink()
        second.close()
    assert recorded_values(path) == [*range(11), *range(100, 111)]
    assert recorder.dropped == 0 and recorder.errors == []


class FailingFile(io.BufferedWriter):
    """A file whose ``fail``-th write and the ones right after it raise, as a full disk does."""

    def __init__(self, path: Path) -> None:
        super().__init__(io.FileIO(path, "w"))
        self.failing = threading.Event()

    def write(self, data: Any) -> int:
        if self.failing.is_set():
            msg = "No space left on device"
            raise OSError(28, msg)
        return super().write(data)


def test_a_change_whose_write_failed_is_counted_as_failed_not_as_written(
    shm_name: str, tmp_path: Path
) -> None:
    output = FailingFile(tmp_path / "full.mcap")
    with SharedObject.create(shm_name, np.zeros(FRAME, np.uint8)) as obj:
        recorder = Recorder(output, [shm_name])
        recorder.start()
        deadline = time.monotonic() + PROCESS_DEADLINE
        while recorder.messages < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        output.failing.set()
        obj.assign(np.ones(FRAME, np.uint8))
        while recorder.progress()["write_errors"] < 1 and time.monotonic() < deadline:
            time.sleep(0.001)
        output.failing.clear()
        obj.assign(np.full(FRAME, 2, np.uint8))
        while recorder.messages < 2 and time.monotonic() < deadline:
            time.sleep(0.001)
        recorder.finish()
        obj.unlink()
    assert recorder.messages == 2 and recorder.progress()["write_errors"] == 1
    assert any("writing failed" in e and "No space left" in e for e in recorder.take_errors())
    assert recorder.take_errors() == []  # taken: the status line says each error once


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
            name="foxglove.RawImage", encoding="protobuf", data=b"\x0a\x00"
        )
        writer.add_message(
            writer.register_channel("/camera", "protobuf", foreign), 1, b"\x00" * 8, 1
        )
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
    assert "'/camera' is neither shared_object's nor rosbag2's" in result.stderr
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
