"""Which changes a handle sees: modified, triggered, mtime and wait(), as the reference counts them."""

from __future__ import annotations

import threading
import time

from shared_object import (
    SharedObject,
    Tuning,
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
