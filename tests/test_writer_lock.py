"""WriterLock: the writer mutex as this process holds it."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest

from shared_object import (
    ClosedError,
    LockReentryError,
    LockTimeoutError,
    SharedDynamicObject,
    SharedObject,
    Tuning,
    _sync,
    _writer_lock,
    testing,
)

from .markers import needs_robust_locks


@pytest.mark.parametrize(
    ("cls", "operation"),
    [
        (SharedObject, lambda obj: obj.assign(np.ones(1000))),
        (SharedObject, lambda obj: obj.trigger()),
        (SharedDynamicObject, lambda obj: obj.assign(np.ones(5))),
    ],
    ids=["assign", "trigger", "dynamic assign"],
)
def test_a_stuck_writer_makes_other_writers_time_out_not_hang(
    shm_name: str, monkeypatch: pytest.MonkeyPatch, cls: type[SharedObject], operation: Any
) -> None:
    """A writer frozen while holding the lock (debugger, SIGSTOP, corrupt lock bytes) must not hang the next."""
    quick = Tuning(lock_timeout_s=0.2)
    with (
        cls.create(shm_name, np.zeros(1000)) as stuck,
        cls.attach(shm_name, tuning=quick) as writer,
    ):
        taken, done = threading.Event(), threading.Event()
        mutex = testing.writer_mutex(stuck)

        def hold_the_lock() -> None:
            mutex.acquire()
            taken.set()
            done.wait(30)
            mutex.release()

        thread = threading.Thread(target=hold_the_lock)
        thread.start()
        try:
            assert taken.wait(30)
            with pytest.raises(
                LockTimeoutError, match=f"{shm_name}.*stayed taken for 0.2 s"
            ) as caught:
                operation(writer)
            assert (caught.value.name, caught.value.timeout) == (shm_name, 0.2)  # what it is about
            native = (
                _sync.robust_locks_supported() is not False
            )  # this kernel would release a dead holder's lock
            assert ("qemu-user" in str(caught.value)) != native
            if _sync.LOCK_FREE_READS:
                assert writer.fetch().sum() == 0  # two slots: readers never needed the lock
            else:  # aarch64: reads take the lock too
                with pytest.raises(LockTimeoutError):
                    writer.fetch()
            monkeypatch.setattr(
                _writer_lock, "robust_locks_supported", lambda: False
            )  # as under qemu-user
            with pytest.raises(
                LockTimeoutError, match="holder died.*qemu-user.*shared-object doctor"
            ):
                operation(writer)
        finally:
            done.set()
            thread.join()
        operation(writer)  # and writing works again once the lock is free
        assert writer.fetch().sum() in (0, 1000, 5)
        stuck.unlink()


# ---------------------------------------------------------------------------------------------
# Who holds it: the explicit state WriterLock keeps
# ---------------------------------------------------------------------------------------------
def test_one_lock_per_segment_shared_by_its_handles(shm_name: str) -> None:
    with (
        SharedObject.create(shm_name, 1) as a,
        SharedObject.attach(shm_name) as b,
        SharedObject.create(shm_name + "-other", 1) as other,
    ):
        assert testing.writer_lock(a) is testing.writer_lock(b)
        assert testing.writer_lock(a) is not testing.writer_lock(other)
        a.unlink()
        other.unlink()


@needs_robust_locks
def test_who_holds_it_as_this_thread_sees_it(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        lock = testing.writer_lock(obj)
        tuning = Tuning()
        assert lock.holder() is _writer_lock.NOT_HELD
        seen: dict[str, str] = {}
        lock.write(tuning, lambda: seen.setdefault("write", lock.holder()))
        lock.read(tuning, lambda: seen.setdefault("read", lock.holder()))
        assert seen == {"write": _writer_lock.HELD_WRITING, "read": _writer_lock.HELD_READING}
        assert lock.holder() is _writer_lock.NOT_HELD  # both released
        mutex = testing.writer_mutex(obj)
        mutex.acquire()  # held, and no section of ours knows it
        assert lock.holder() is _writer_lock.ABANDONED
        assert in_another_thread(lock.holder) is _writer_lock.NOT_HELD  # not that thread's
        mutex.release()
        obj.unlink()


@needs_robust_locks
def test_an_abandoned_lock_is_released_and_a_held_one_is_not(
    shm_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        lock = testing.writer_lock(obj)
        lock.write(Tuning(), lock.release_if_abandoned)  # inside a section: ours, kept
        assert "released the writer lock" not in caplog.text
        testing.writer_mutex(obj).acquire()
        lock.release_if_abandoned()
        assert "released the writer lock" in caplog.text
        assert in_another_thread(lambda: testing.writer_mutex(obj).try_acquire()) is True
        obj.unlink()


def test_a_section_releases_the_lock_whatever_its_body_raises(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        lock = testing.writer_lock(obj)

        def fails() -> None:
            raise KeyError("from the body")

        for run in (lock.write, lock.read):
            with pytest.raises(KeyError, match="from the body"):
                run(Tuning(), fails)
            assert lock.inline == 0 and not any(lock._records.values())
            obj.assign(2)  # free: a writer gets it at once
        obj.unlink()


def test_a_read_inside_a_read_reads_under_the_outer_lock_and_a_write_there_fails_at_once(
    shm_name: str,
) -> None:
    with SharedObject.create(shm_name, 5, tuning=Tuning(lock_timeout_s=0.05)) as obj:
        lock = testing.writer_lock(obj)
        tuning = Tuning(lock_timeout_s=0.05)
        assert lock.read(tuning, lambda: lock.read(tuning, lambda: "nested")) == "nested"
        with pytest.raises(LockReentryError, match="would wait for itself"):
            lock.read(tuning, lambda: lock.write(tuning, lambda: None))
        with pytest.raises(LockReentryError):
            lock.write(
                tuning, lambda: lock.read(tuning, lambda: None)
            )  # a handler inside an assign
        assert obj.assign(6).fetch() == 6
        obj.unlink()


@needs_robust_locks
def test_a_block_whose_view_is_gone_no_longer_counts_as_ours(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1, slots=1) as obj:
        lock = testing.writer_lock(obj)

        class Block:
            pass

        block = Block()
        assert lock.open_block(block, Tuning()) is True
        assert lock.holder() is _writer_lock.HELD_READING
        del block  # its __exit__ never ran: the record outlives it, and says so
        assert lock.holder() is _writer_lock.ABANDONED
        lock.release_if_abandoned()
        assert lock.holder() is _writer_lock.NOT_HELD
        obj.unlink()


def test_a_closed_handle_holds_nothing_and_says_so(shm_name: str) -> None:
    obj = SharedObject.create(shm_name, 1)
    obj.close()
    closed = obj._lock
    assert isinstance(closed, _writer_lock.ClosedLock)
    with pytest.raises(ClosedError, match="is closed"):
        closed.write(Tuning(), lambda: None)
    closed.release_if_abandoned()  # nothing to release
    SharedObject.attach(shm_name).unlink()


def in_another_thread(call: Any) -> Any:
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(call()))
    thread.start()
    thread.join(30)
    return result[0]
