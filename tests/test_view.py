"""shared-object view, end to end: in a real browser, into a .rrd file, and refusing bad input."""

from __future__ import annotations

import collections
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from browser import chromium, fraction_of_colour

from shared_object import SharedDynamicObject, SharedObject
from shared_object.testing import free_port_pair

rerun = pytest.importorskip(
    "rerun", reason="the live view needs the view extra: pip install -e '.[view]'"
)

CLI = [sys.executable, "-m", "shared_object"]
DEADLINE = 90.0


class Producer:
    """Assigns frames of one solid colour at 10 Hz in a thread, until told another."""

    def __init__(self, name: str) -> None:
        self.colour = (230, 40, 200)
        self.obj = SharedObject.create(name, np.zeros((240, 320, 3), np.uint8))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stop.wait(0.1):
            self.obj.assign(np.full((240, 320, 3), self.colour, np.uint8))

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.obj.unlink()
        self.obj.close()


@pytest.fixture
def view() -> Iterator[Any]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*CLI, "view", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def page_url(process: subprocess.Popen[str]) -> str:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line.startswith("view: open "), line + (process.stderr.read() if process.stderr else "")
    return line.split("view: open ", 1)[1].strip()


def wait_for_colour(page: Any, rgb: tuple[int, int, int]) -> np.ndarray[Any, Any]:
    deadline = time.monotonic() + DEADLINE
    shot = page.screenshot()
    while time.monotonic() < deadline:
        shot = page.screenshot()
        if fraction_of_colour(shot, rgb) > 0.05:  # the image area, not a stray pixel
            return shot
        time.sleep(1.0)
    pytest.fail(
        f"the page never showed {rgb}; colours on screen: {np.unique(shot.reshape(-1, 3), axis=0)[:20]}"
    )


def test_the_browser_shows_the_frame_and_follows_it_when_it_changes(
    shm_name: str, view: Any
) -> None:
    producer = Producer(shm_name)
    try:
        port = free_port_pair()
        url = page_url(view(shm_name, "--port", str(port)))
        assert url.startswith(f"http://127.0.0.1:{port}/?url=")
        with chromium() as browser:
            page = browser.open(url)
            first = wait_for_colour(page, (230, 40, 200))
            producer.colour = (40, 200, 90)
            then = wait_for_colour(page, (40, 200, 90))
            # The same image area, now the new colour: it was repainted, not added beside.
            assert fraction_of_colour(then, (230, 40, 200)) < 0.01
            assert fraction_of_colour(first, (40, 200, 90)) < 0.01
    finally:
        producer.close()


def rrd_rows(path: Path) -> collections.Counter[str]:
    import rerun.chunk

    rows: collections.Counter[str] = collections.Counter()
    for chunk in rerun.chunk.RrdReader(str(path)).stream():
        rows[chunk.entity_path] += chunk.num_rows
    return rows


def test_save_records_every_leaf_at_most_max_rate_and_names_what_it_skips(
    shm_name: str, tmp_path: Path, view: Any
) -> None:
    state = {"pose": np.array([0, 0, 1, 1, 0, 0, 0.0]), "speed": 0.0, "mode": "auto", "raw": b"xy"}
    with SharedObject.create(shm_name, state) as obj:
        out = tmp_path / "run.rrd"
        process = view(shm_name, "--save", str(out), "--max-rate", "10", "--duration", "3")
        end = time.monotonic() + 3.5
        i = 0
        while time.monotonic() < end:  # 200 Hz: twenty times what the view may log
            obj.assign({**state, "speed": float(i)})
            i += 1
            time.sleep(0.005)
        stdout, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, stderr
        obj.unlink()
    assert f"not shown: {shm_name}/raw: bytes" in stdout
    rows = rrd_rows(out)
    for leaf in ("pose", "speed", "mode"):
        assert 5 <= rows[f"/{shm_name}/{leaf}"] <= 3 * 10 + 2, rows  # sampled, not every change
    assert f"/{shm_name}/raw" not in rows


def test_a_dynamic_object_that_changes_kind_is_shown_in_each(
    shm_name: str, tmp_path: Path, view: Any
) -> None:
    with SharedDynamicObject(shm_name, data=1.5) as obj:
        out = tmp_path / "run.rrd"
        process = view(shm_name, "--save", str(out), "--duration", "3")
        time.sleep(1.5)
        obj.assign(np.zeros((32, 32, 3), np.uint8))
        stdout, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 0, stderr
        obj.unlink()
    assert rrd_rows(out)[f"/{shm_name}"] >= 2
    assert "logged 2 values" in stdout or "logged 3 values" in stdout, stdout


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the sockets listening on ``port`` (IPv4), from /proc/net/tcp."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.add(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def test_it_listens_on_loopback_only_and_sends_no_analytics(shm_name: str) -> None:
    from shared_object.view.server import RerunServer

    port = free_port_pair()
    with RerunServer("127.0.0.1", port, port + 1, "64MiB") as server:
        assert listening_addresses(port) == {"127.0.0.1"}
        assert listening_addresses(port + 1) == {"127.0.0.1"}
        config = json.loads(
            Path(server._env["XDG_CONFIG_HOME"], "rerun", "analytics.json").read_text()
        )
        assert config["analytics_enabled"] is False
    assert not listening_addresses(port)  # stopped with us
    assert not os.path.exists(server._home)


def test_bad_arguments_are_refused_with_the_reason(view: Any) -> None:
    for args, expected in [
        (["x", "--as", "x=pose"], "--as 'x=pose': expected NAME=KIND"),
        (["x", "--jpeg", "0"], "--jpeg takes a quality from 1 to 100"),
        (["x", "--max-rate", "0"], "--max-rate must be positive"),
    ]:
        process = view(*args)
        _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 2 and expected in stderr and "Traceback" not in stderr, stderr
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = view("x", "--port", str(port))
        _, stderr = process.communicate(timeout=DEADLINE)
        assert process.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in stderr, stderr
