"""The Recorder: changes are copied as they come and written behind, so a stalled file system
delays the file, not the copies; what its buffer cannot hold is counted, never silently lost."""

from __future__ import annotations

import io
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shared_object import InvalidArgumentError, SharedObject

from .helpers import PROCESS_DEADLINE

pytest.importorskip("mcap", reason="record and play need the mcap extra: pip install -e '.[mcap]'")

from shared_object.recording import Recorder  # noqa: E402 - after the extra's check

FRAME = (48, 64, 3)
CHANGES = 40


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


def record_through_a_stall(name: str, path: Path, buffer_bytes: int) -> Recorder:
    """Record ``CHANGES`` frames, 5 ms apart, while the file's first write after the first frame
    blocks for half a second."""
    with SharedObject.create(name, np.zeros(FRAME, np.uint8)) as obj:
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


def test_the_buffer_must_hold_something(tmp_path: Path) -> None:
    with (
        open(tmp_path / "run.mcap", "wb") as f,
        pytest.raises(InvalidArgumentError, match="buffer must hold"),
    ):
        Recorder(f, ["x"], buffer_bytes=0)
