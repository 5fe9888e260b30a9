"""History objects (``history=N``): a reader that falls behind catches up on every value it
missed, and counts exactly the ones the writer overwrote before it could read them.

The ring keeps the last N values; ``fetch_new`` returns every one since the handle's last
``fetch``/``fetch_new``, oldest first; ``lost`` is exact; a damaged ring is refused on attach.
A writer killed mid-assign leaves nothing torn: test_torture kills writers of history objects
too."""

from __future__ import annotations

import os
import pickle
import struct
import time
from typing import Any

import helpers
import numpy as np
import pytest
from helpers import PROCESS_DEADLINE, SPAWN, joint_state

from shared_object import (
    InvalidArgumentError,
    LayoutError,
    SharedDynamicObject,
    SharedObject,
    _layout,
    _segment,
    attach,
)


# ---------------------------------------------------------------------------------------------
# Creating one
# ---------------------------------------------------------------------------------------------
def test_a_history_object_says_what_it_keeps(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(7), history=8) as obj:
        assert (obj.history, obj.slots) == (8, 8)
        assert "history=8" in repr(obj) and type(obj).__name__ == "SharedObject"
        assert isinstance(obj, SharedObject)
        with attach(shm_name) as other:  # attaching finds the ring
            assert other.history == 8
        with SharedObject(shm_name, data=np.ones(7)) as again:  # the constructor attaches too
            assert again.history == 8
    with SharedObject.create(shm_name + "-plain", 1.5) as plain:
        assert (plain.history, plain.slots) == (None, 2)


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"history": 1}, "from 2 to"),
        ({"history": True}, "from 2 to"),
        ({"history": "8"}, "from 2 to"),
        ({"history": _layout.MAX_HISTORY + 1}, "from 2 to"),
        ({"history": 8, "slots": 1}, "cannot be combined with slots=1"),
    ],
)
def test_a_history_that_cannot_be_is_refused_before_anything_exists(
    shm_name: str, kwargs: dict[str, Any], says: str
) -> None:
    with pytest.raises(InvalidArgumentError, match=says):
        SharedObject.create(shm_name, 1.0, **kwargs)
    with pytest.raises(FileNotFoundError):
        attach(shm_name)


def test_a_dynamic_object_refuses_a_history_saying_why(shm_name: str) -> None:
    with pytest.raises(InvalidArgumentError, match="keeps no history: its value may change size"):
        SharedDynamicObject.create(shm_name, 1.0, history=8)


def test_a_history_object_pickles_as_attach_by_name(shm_name: str) -> None:
    with (
        SharedObject.create(shm_name, 3, history=4) as obj,
        pickle.loads(pickle.dumps(obj)) as again,
    ):
        assert again.history == 4 and again.fetch() == 3


# ---------------------------------------------------------------------------------------------
# fetch_new, lost, stream
# ---------------------------------------------------------------------------------------------
def test_fetch_new_returns_every_value_since_the_last_call_oldest_first(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0, history=4) as writer, attach(shm_name) as reader:
        assert reader.fetch_new() == [0]  # the first call: what the ring holds
        assert reader.fetch_new() == []
        for i in range(1, 4):
            writer.assign(i)
        assert reader.fetch_new() == [1, 2, 3] and reader.lost == 0
        for i in range(4, 11):  # 7 values, the ring keeps 4: the first 3 are gone
            writer.assign(i)
        assert reader.fetch_new() == [7, 8, 9, 10] and reader.lost == 3
        writer.assign(11)
        writer.assign(12)
        assert reader.fetch() == 12 and reader.fetch_new() == []  # fetch() reads up to the newest
        assert reader.lost == 3  # skipped by choice: not lost
        assert not reader.modified  # fetch, modified, wait: the newest value, as ever
        writer.assign(13)
        assert reader.modified and reader.wait(0) and reader.fetch_new() == [13]


def test_a_late_reader_gets_what_the_ring_still_holds(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0, history=8) as writer:
        for i in range(1, 20):
            writer.assign(i)
        with attach(shm_name) as late:
            assert late.fetch() == 19  # the newest, as without a history
        with attach(shm_name) as late:
            assert late.fetch_new() == list(range(12, 20)) and late.lost == 0


def test_limit_takes_the_oldest_and_leaves_the_rest_for_the_next_call(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0, history=16) as writer, attach(shm_name) as reader:
        reader.fetch_new()
        for i in range(1, 8):
            writer.assign(i)
        assert reader.fetch_new(limit=3) == [1, 2, 3]
        assert reader.modified  # more to come
        assert reader.fetch_new(limit=3) == [4, 5, 6]
        assert reader.fetch_new() == [7] and not reader.modified
        with pytest.raises(InvalidArgumentError, match="positive"):
            reader.fetch_new(limit=0)


def test_two_presses_between_two_reads_are_two_values(shm_name: str) -> None:
    with SharedObject.create(shm_name, None, history=8) as button, attach(shm_name) as reader:
        reader.fetch_new()
        button.trigger()
        button.trigger()
        assert reader.fetch_new() == [None, None]
    with SharedObject.create(shm_name + "-v", 5, history=8) as value, attach(shm_name + "-v") as r:
        r.fetch_new()
        value.trigger()  # a change without a new value: the same value again, as a change
        value.assign(6)
        assert r.fetch_new() == [5, 6]


def test_raw_values_carry_their_own_change_number_and_time(shm_name: str) -> None:
    from shared_object.payload import Decoder

    with (
        SharedObject.create(shm_name, joint_state(0), history=8) as writer,
        attach(shm_name) as reader,
    ):
        reader.fetch_new()
        times = []
        for i in range(1, 4):
            writer.assign(joint_state(i))
            times.append(writer.mtime)
            time.sleep(0.002)
        raws = reader.fetch_new_raw()
        assert [r.change for r in raws] == [1, 2, 3]
        assert [r.mtime_ns for r in raws] == times
        decoder = Decoder()
        for i, raw in enumerate(raws, 1):
            np.testing.assert_array_equal(
                decoder.decode(raw.schema_text, raw.payload), joint_state(i)
            )


def test_without_a_history_fetch_new_is_the_newest_and_the_rest_is_lost(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as writer, attach(shm_name) as reader:
        assert reader.fetch_new() == []  # nothing since attaching
        for i in range(1, 6):
            writer.assign(i)
        assert reader.fetch_new() == [5] and reader.lost == 4


def test_stream_yields_every_value_and_ends_on_timeout_or_when_orphaned(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0, history=64) as writer, attach(shm_name) as reader:
        for i in range(1, 11):
            writer.assign(i)
        assert list(reader.stream(timeout=0.2)) == list(range(11))
        started = time.monotonic()
        writer.unlink()  # the producer went away: a stream without a timeout ends too
        assert list(reader.stream()) == [] and time.monotonic() - started < PROCESS_DEADLINE


def test_values_lost_by_every_reader_add_up_in_the_segment(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0, history=2) as writer:
        readers = [attach(shm_name) for _ in range(3)]
        for reader in readers:
            reader.fetch_new()
        for i in range(1, 6):  # 5 values, 2 kept: 3 lost by each
            writer.assign(i)
        for reader in readers:
            assert reader.fetch_new() == [4, 5] and reader.lost == 3
            reader.close()
        assert writer._words[_layout.LOST_WORD] == 9


# ---------------------------------------------------------------------------------------------
# Across processes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("history", [256, 8])
def test_a_reader_that_falls_behind_loses_nothing_the_ring_covers_and_counts_the_rest(
    shm_name: str, spawn: Any, history: int
) -> None:
    """A writer as fast as it can, a reader that sleeps between fetch_new calls. With bursts
    shorter than the ring (the writer waits for the reader after each), nothing is lost; with
    a small ring and no waiting, ``lost`` is exactly the values it never received."""
    count = 20_000
    burst = history // 2 if history == 256 else 0
    caught_up = SPAWN.Value("q", 0)
    out, started = SPAWN.Queue(), SPAWN.Event()
    with SharedObject.create(shm_name, joint_state(0), history=history):
        spawn(helpers.read_new_until, shm_name, count, 0.001, caught_up, out)
        assert out.get(timeout=PROCESS_DEADLINE) == "ready"
        spawn(helpers.write_numbered, shm_name, count, burst, caught_up, started)
        report = out.get(timeout=PROCESS_DEADLINE * 2)
    assert report["last"] == count, report
    assert report["whole"] == report["received"], report  # nothing torn
    assert report["in_order"] == report["received"] - 1, report  # each newer than the one before
    # Every value (0, held when the reader came, to count) is accounted for: received or counted
    # as lost, never both, never neither; and the lost ones are exactly the gaps in what arrived.
    assert report["received"] + report["lost"] == count + 1, report
    assert report["gaps"] + report["first"] == report["lost"], report
    if burst:
        assert report["lost"] == 0 and report["received"] == count + 1, report


# ---------------------------------------------------------------------------------------------
# Damage
# ---------------------------------------------------------------------------------------------
def _corrupt(name: str, offset: int, fmt: str, value: int) -> None:
    path = os.path.join(_segment.SHM_DIR, name)
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


@pytest.mark.parametrize(
    ("offset", "fmt", "value", "says"),
    [
        (_layout.RING_OFFSET, "<Q", 1, "a ring of 1 slots"),
        (_layout.RING_OFFSET, "<Q", 10_000, "a ring of 10000 slots"),
        (_layout.RING_OFFSET + 8, "<Q", 100, "100 apart"),
        (12, "<I", _layout.FLAG_HISTORY | _layout.FLAG_DYNAMIC, "corrupt header"),
        (6, "<H", _layout.VERSION, "corrupt header"),
    ],
)
def test_a_damaged_ring_is_refused_on_attach_naming_the_segment(
    shm_name: str, offset: int, fmt: str, value: int, says: str
) -> None:
    with SharedObject.create(shm_name, np.zeros(7), history=8):
        _corrupt(shm_name, offset, fmt, value)
        with pytest.raises(LayoutError, match=says) as caught:
            attach(shm_name)
        assert shm_name in str(caught.value)


def test_a_ring_slot_describing_another_value_is_refused(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(7), history=4) as obj:
        stride = obj._words[_layout.RING_STRIDE_WORD]
        first = _layout.SLOT_ENTRY.unpack_from(obj._buf, _layout.slot_entry_offset(0))[0]
        text_at = first + 3 * stride + _layout.SLOT_HEADER_SIZE
        _corrupt(shm_name, text_at + 2, "<B", ord("i"))  # '["ndarray"' -> '["idarray"'
        with pytest.raises(LayoutError, match="slots 0 and 3 describe different values"):
            attach(shm_name)
