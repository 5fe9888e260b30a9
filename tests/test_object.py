"""SharedObject (``_object.py``): which changes a handle sees (modified, triggered, mtime and wait(),
as the reference counts them); what it tells tools (fetch_raw, seen_change, slots, ``attach``);
and its two hot paths, inlined for speed, pinned to the code they repeat."""

from __future__ import annotations

import inspect
import re
import threading
import time

import numpy as np
import pytest

from shared_object import (
    SegmentNotFoundError,
    SharedDynamicObject,
    SharedObject,
    Tuning,
    _reading,
    _ring,
    _writer_lock,
    attach,
)


def test_a_handle_sees_its_own_trigger_but_not_its_own_assign(shm_name: str) -> None:
    """The reference's rule: its documented ``so.trigger(); so.triggered`` is True."""
    with SharedObject(shm_name) as so, SharedObject(shm_name) as other:
        so.trigger()
        assert so.modified and other.modified
        assert so.wait(0) and other.wait(0)  # wait() returns at once when modified would be True
        assert so.triggered and other.triggered
        assert not so.triggered and not so.modified and not so.wait(0)
    with (
        SharedObject.create(shm_name + "-v", 1) as writer,
        SharedObject.attach(shm_name + "-v") as reader,
    ):
        writer.assign(2)
        assert not writer.modified and not writer.triggered and not writer.wait(0)
        assert reader.modified
        writer.trigger()  # seen again after the assign
        assert writer.modified
        writer.assign(3)  # an assign counts every earlier change as seen by its handle
        assert not writer.modified
        writer.unlink()


def test_modified_does_not_reset_until_fetch(shm_name: str, read_path: Tuning) -> None:
    with (
        SharedObject.create(shm_name, 1, tuning=read_path) as writer,
        SharedObject.attach(shm_name, tuning=read_path) as reader,
    ):
        assert not reader.modified
        writer.assign(2)
        assert not writer.modified  # its own write does not count
        assert reader.modified and reader.modified
        assert reader.fetch() == 2
        assert not reader.modified
        writer.trigger()
        assert reader.modified


def test_mtime_moves_with_every_change(shm_name: str) -> None:
    before = time.time_ns()
    with SharedObject.create(shm_name, 1) as obj:
        created = obj.mtime
        assert before <= created <= time.time_ns()
        obj.assign(2)
        assigned = obj.mtime
        obj.trigger()
        assert created <= assigned <= obj.mtime


def test_assign_returns_self(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        assert obj.assign(3) is obj
        assert obj.assign(4).fetch() == 4


def test_wait_returns_at_once_when_already_changed(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as writer, SharedObject.attach(shm_name) as reader:
        assert reader.wait(0) is False
        writer.assign(2)
        started = time.monotonic()
        assert reader.wait(10) is True
        assert time.monotonic() - started < 5
        assert reader.wait(0) is True  # still unseen until fetched
        reader.fetch()
        assert reader.wait(0.05) is False


def test_wait_wakes_on_assign_from_another_thread(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as writer, SharedObject.attach(shm_name) as reader:
        woke: list[bool] = []
        waiter = threading.Thread(target=lambda: woke.append(reader.wait(30)))
        waiter.start()
        time.sleep(0.2)
        writer.assign(1)
        waiter.join(30)
        assert woke == [True]
        assert reader.fetch() == 1


def test_wait_timeout_returns_false(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as obj:
        started = time.monotonic()
        assert obj.wait(0.1) is False
        assert time.monotonic() - started >= 0.09


# ---------------------------------------------------------------------------------------------
# What tools read of an object
# ---------------------------------------------------------------------------------------------
def test_seen_change_is_the_change_this_handle_last_read_or_wrote(shm_name: str) -> None:
    with SharedObject.create(shm_name, 0) as writer, SharedObject.attach(shm_name) as reader:
        start = writer.seen_change
        writer.assign(1)
        assert writer.seen_change == start + 1  # its own assign
        assert reader.modified
        reader.fetch()
        assert reader.seen_change == writer.seen_change and not reader.modified
        writer.assign(2)
        writer.trigger()  # a trigger: seen by every handle, this one included
        assert writer.seen_change == start + 2 and writer.modified
        raw = reader.fetch_raw()
        assert raw.change == reader.seen_change == start + 3


def test_slots_says_how_many_the_object_keeps(shm_name: str) -> None:
    with SharedObject.create(shm_name, np.zeros(4), slots=1) as one:
        assert one.slots == 1
        one.unlink()
    with SharedObject.create(shm_name, np.zeros(4)) as two:
        assert two.slots == 2


def test_attach_opens_an_object_as_what_it_was_created_as(shm_name: str) -> None:
    with (
        SharedDynamicObject.create(shm_name + "-d", 1),
        SharedObject.create(shm_name + "-f", 1),
        attach(shm_name + "-d") as dynamic,
        attach(shm_name + "-f") as fixed,
    ):
        assert type(dynamic) is SharedDynamicObject and type(fixed) is SharedObject
        dynamic.assign("a str now")  # as a dynamic object does
    with pytest.raises(SegmentNotFoundError, match="IPC namespace"):
        attach(shm_name + "-none", timeout=0.05)

    def create_later() -> None:
        time.sleep(0.2)
        SharedObject.create(shm_name + "-later", 7).close()

    maker = threading.Thread(target=create_later)
    maker.start()
    with attach(shm_name + "-later", timeout=30) as later:
        assert later.fetch() == 7
    maker.join()


# ---------------------------------------------------------------------------------------------
# The hot paths' inline copies, pinned to what they repeat
# ---------------------------------------------------------------------------------------------
def _lines(code: object) -> list[str]:
    """The code's lines, stripped, without comments or blank lines, ``self.`` read as ``lock.``."""
    out = []
    for line in inspect.getsource(code).splitlines():  # type: ignore[arg-type]
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line.replace("self.", "lock."))
    return out


def _contains_in_order(lines: list[str], expected: list[str]) -> bool:
    it = iter(lines)
    return all(any(line == want for line in it) for want in expected)


#: The writer mutex's inline protocol, as WriterLock.take_after_trylock's docstring spells it.
TAKE = ["rc = -1", "lock.inline += 1", "rc = lock.trylock(lock.ref)"]
RELEASE = [
    "finally:",
    "lock.inline -= 1",
    "if not rc:",
    "lock.unlock(lock.ref)",
    "elif rc == -1:",
    "lock.release_if_abandoned()",
]


def _sections(code: object) -> list[list[str]]:
    """The lines of each hold of the mutex in ``code``: from each ``rc = -1`` to the next."""
    lines = _lines(code)
    starts = [
        i
        for i, line in enumerate(lines)
        if line.startswith("rc = -1") and i + 1 < len(lines) and lines[i + 1] == "try:"
    ]
    return [lines[a:b] for a, b in zip(starts, [*starts[1:], len(lines)], strict=True)]


@pytest.mark.parametrize(
    ("code", "holds"),
    [
        (_writer_lock.WriterLock.write, 1),
        (SharedObject.assign, 2),  # a scalar's, and everything else's
        (SharedObject.fetch, 1),
        (_ring.RingPaths.assign, 2),
    ],
    ids=["WriterLock.write", "assign (inline)", "fetch of one slot (inline)", "a ring's assign"],
)
def test_every_hold_of_the_writer_mutex_follows_the_documented_protocol(
    code: object, holds: int
) -> None:
    documented = inspect.getdoc(_writer_lock.WriterLock.take_after_trylock) or ""
    spelled = [line.split("#", 1)[0].strip() for line in documented.splitlines()]
    assert _contains_in_order(spelled, TAKE + RELEASE)  # the docstring is the reference
    sections = _sections(code)
    assert len(sections) == holds, code
    for lines in sections:  # each copy in full, not the first one found
        assert _contains_in_order(lines, TAKE), code
        assert _contains_in_order(lines, RELEASE), code


#: The write protocol's steps (_layout, "Writer"), as the inline copies spell them.
WRITE = [
    "state = words[2]",
    "change = (state >> 2) + 1",
    "words[2] = state | 2",
    "words[2] = change << 2 | target",
    "lock._seen = change",  # _lines spells self as lock: see above
    "if words[4] or words[5]:",
    "lock.after_publish(lock._tuning)",
]
RING_WRITE = [
    "state = words[2]",
    "change = (state >> 2) + 1",
    "target = change % ring",
    "words[2] = state | 2",
    "now = _time_ns()",
    "words[3] = now",
    "words[2] = change << 2",
    "lock._seen = change",
    "if words[4] or words[5]:",
]


def test_the_inline_writes_are_the_same_protocol_step_for_step() -> None:
    """assign's two copies (a scalar's and the rest's) and the ring's: the same steps in order."""
    for lines in _sections(SharedObject.assign):
        assert _contains_in_order(lines, WRITE), lines
        assert "target = (state & 1) ^ 1" in lines and "words[3] = _time_ns()" in lines
    for ring in _sections(_ring.RingPaths.assign):
        assert _contains_in_order(ring, RING_WRITE), ring


def test_fetchs_inline_lock_free_read_is_read_once_s() -> None:
    """SharedObject.fetch reads lock-free as _reading._read_once does: the state, the slot it
    names, the state again through read_was_whole (the handle's, for a ring), and the change it
    saw."""
    inline = " ".join(_lines(SharedObject.fetch))
    once = " ".join(_lines(_reading._read_once))
    for twin, state in ((inline, r"words\[2\]"), (once, r"words\[_STATE\]")):
        assert re.search(rf"s1 = {state}", twin), twin
        assert re.search(r"(_read_was_whole|whole)\(\s*s1, (s2|words\[_STATE\])\s*\)", twin), twin
        assert re.search(r"_seen = s1 >> (2|_layout.CHANGE_SHIFT)", twin), twin
    # And every other lock-free read retries through the one loop, read_lock_free.
    for code in (
        _reading._raw_lock_free,
        _reading.current_node,
        _reading.ZeroCopyView._enter_lock_free,
    ):
        assert "read_lock_free(h, attempt)" in " ".join(_lines(code)), code
