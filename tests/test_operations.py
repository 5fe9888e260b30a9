"""shared-object health and top, end to end through the command line (record and play:
test_recording.py)."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from typing import Any

import numpy as np
import pytest

from shared_object import SharedObject, _probe

from .helpers import PROCESS_DEADLINE, SPAWN, cli, produce

CLI = [sys.executable, "-m", "shared_object"]


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
