"""The bridge's importer, in process and without a network: what it applies, in which order, from
whom. Zenoh may call it on several threads at once (one per link, and the late joiners' query):
its check of a message against the last one applied, and the assign, are one step per name."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import numpy as np
import pytest

from shared_object import SharedObject
from shared_object.payload import encode

pytest.importorskip("zenoh", reason="the bridge needs the zenoh extra: pip install -e '.[zenoh]'")
from shared_object.bridge import core, wire  # noqa: E402


def message(sequence: int, source: bytes = b"s" * 16, mtime_ns: int | None = None) -> bytes:
    schema_text, payload = encode(np.full(64, float(sequence)))
    return bytes(
        wire.encode(
            sequence=sequence, mtime_ns=1_000_000 + sequence if mtime_ns is None else mtime_ns,
            change=sequence, source=source, dynamic=False, single_slot=False,
            schema_text=schema_text, payload=payload,
        )
    )  # fmt: skip


def test_two_threads_applying_at_once_never_apply_an_older_value_after_a_newer_one(
    shm_name: str,
) -> None:
    bridge = core.Bridge(None, imports=[shm_name])
    key = bridge.prefix + shm_name
    bridge._apply(key, message(1))  # creates the local object
    messages = [message(i) for i in range(2, 402)]
    halves = [messages[0::2], messages[1::2]]  # each thread in order; the two interleave
    seen: list[float] = []
    stop = threading.Event()

    def apply(batch: list[bytes]) -> None:
        for data in batch:
            bridge._apply(key, data)
            if random.random() < 0.1:
                time.sleep(0)

    def watch() -> None:
        with SharedObject.attach(shm_name) as obj:
            while not stop.is_set():
                if obj.wait(0.01):
                    seen.append(float(obj.fetch()[0]))

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=apply, args=(half,)) for half in halves]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    time.sleep(0.1)
    stop.set()
    watcher.join()
    bridge.stop()
    assert seen == sorted(seen), "an older value was applied after a newer one"
    totals = bridge.stats.totals
    assert totals["received"] + totals["stale"] == 401  # each message applied or refused, once
    with SharedObject.attach(shm_name) as obj:
        assert obj.fetch()[0] == 401.0  # the newest wins
        obj.unlink()


def test_a_source_gone_quiet_is_forgotten_and_two_at_once_are_reported(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bridge = core.Bridge(None, imports=[shm_name])
    now = [1000.0]
    monkeypatch.setattr(core.time, "monotonic", lambda: now[0])
    bridge._note_source(shm_name, b"a" * 16)
    now[0] += core.SOURCE_WINDOW_S + 1  # a restarted exporter: a new source, the old one silent
    bridge._note_source(shm_name, b"b" * 16)
    assert list(bridge._sources[shm_name]) == [b"b" * 16]
    assert bridge.stats.totals["errors"] == 0
    bridge._note_source(shm_name, b"c" * 16)  # a second exporter of the name, now
    assert bridge.stats.totals["errors"] == 1
    bridge._note_source(shm_name, b"c" * 16)
    assert bridge.stats.totals["errors"] == 1  # reported once


def test_a_bridge_is_a_context_manager_that_stops() -> None:
    stopped: list[Any] = []
    bridge = core.Bridge(None, exports=[], imports=[])
    bridge.stop = lambda: stopped.append(True)  # type: ignore[method-assign]
    with bridge as same:
        assert same is bridge
    assert stopped == [True]
