"""_sync: the robust process-shared mutex and the futex, on their own."""

from __future__ import annotations

import ctypes
import errno
import os
import threading
import time
from collections.abc import Iterator

import pytest

from shared_object import LayoutError, SharedObject, _layout, _sync, testing

from .helpers import PROCESS_DEADLINE, SPAWN
from .markers import needs_robust_locks


@pytest.fixture
def mutex() -> Iterator[_sync.WriterMutex]:
    """A fresh robust mutex in private memory, registered as segment ("test", id) would be."""
    memory = ctypes.create_string_buffer(_sync.MUTEX_SPACE)
    mutex = _sync.WriterMutex(
        ctypes.addressof(memory), segment=("test", id(memory)), mapping=memory
    )
    mutex.initialize()
    yield mutex
    mutex.forget()


def in_another_thread(call: object) -> object:
    """What ``call()`` returns in a thread of its own (a robust mutex belongs to a thread)."""
    result: list[object] = []
    thread = threading.Thread(target=lambda: result.append(call()))  # type: ignore[operator]
    thread.start()
    thread.join(PROCESS_DEADLINE)
    return result[0]


def test_the_holder_excludes_every_other_thread(mutex: _sync.WriterMutex) -> None:
    mutex.acquire()
    assert in_another_thread(mutex.try_acquire) is False
    assert in_another_thread(lambda: mutex.lock_within(0.01)) == errno.ETIMEDOUT
    mutex.release()
    assert in_another_thread(lambda: _take_and_give_back(mutex)) == 0  # free again


def _take_and_give_back(mutex: _sync.WriterMutex) -> int:
    rc: int = mutex.trylock(mutex.ref)
    if rc == 0:
        mutex.unlock(mutex.ref)
    return rc


def test_acquire_with_a_timeout_raises_lock_timeout_error(mutex: _sync.WriterMutex) -> None:
    mutex.acquire()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not free within 0.05 s"):
        _raise_from_thread(mutex, 0.05)
    assert time.monotonic() - started >= 0.04
    mutex.release()


def _raise_from_thread(mutex: _sync.WriterMutex, timeout: float) -> None:
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            mutex.acquire(timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(PROCESS_DEADLINE)
    raise errors[0]


@needs_robust_locks
def test_this_thread_knows_what_it_holds_and_the_lock_word_names_it(
    mutex: _sync.WriterMutex,
) -> None:
    assert mutex.held_by_this_thread() is False and not mutex.lock_word_names_this_thread()
    mutex.acquire()
    assert mutex.held_by_this_thread() is True and mutex.lock_word_names_this_thread()
    assert in_another_thread(mutex.held_by_this_thread) is False
    mutex.release()
    assert mutex.held_by_this_thread() is False


def _take_and_die(name: str) -> None:
    obj = SharedObject.attach(name, timeout=30)
    testing.writer_mutex(obj).acquire()
    os._exit(0)  # dies holding it: no unlock, no close


@needs_robust_locks
def test_a_holder_that_dies_leaves_a_lock_the_next_locker_recovers(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        child = SPAWN.Process(target=_take_and_die, args=(shm_name,))
        child.start()
        child.join(PROCESS_DEADLINE)
        assert child.exitcode == 0
        mutex = testing.writer_mutex(obj)
        before = mutex.owner_died_count
        assert mutex.trylock(mutex.ref) == errno.EOWNERDEAD  # the kernel marked it
        mutex.acquire_contended(errno.EOWNERDEAD)  # consistent again, and held
        assert mutex.owner_died_count == before + 1
        mutex.release()
        assert obj.assign(2).fetch() == 2
        obj.unlink()


def test_scribbled_type_bytes_are_refused_before_glibc_trusts_them(shm_name: str) -> None:
    with SharedObject.create(shm_name, 1) as obj:
        raw = bytearray(obj._buf[: _layout.HEADER_SIZE])
        _sync.check_mutex_type(memoryview(raw), _layout.MUTEX_OFFSET, shm_name)  # as created: fine
        offset, value = _sync._type_bytes()[0]
        raw[_layout.MUTEX_OFFSET + offset] = value ^ 0xFF
        with pytest.raises(LayoutError, match="writer lock is no longer the robust"):
            _sync.check_mutex_type(memoryview(raw), _layout.MUTEX_OFFSET, shm_name)
        obj.unlink()


def test_robust_lists_are_kept_on_this_kernel() -> None:
    """CI runs natively on x86 Linux: a dead writer's lock must be recoverable there."""
    if os.environ.get("CI", "").lower() != "true" and _sync.robust_locks_supported() is not True:
        pytest.skip(
            "this kernel keeps no robust lock lists (qemu-user?): see `shared-object doctor`"
        )
    assert _sync.robust_locks_supported() is True


# ---------------------------------------------------------------------------------------------
# futex
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def word() -> ctypes.c_uint32:
    return ctypes.c_uint32(7)


def test_futex_wait_returns_at_once_when_the_word_already_differs(word: ctypes.c_uint32) -> None:
    started = time.monotonic()
    _sync.futex_wait(ctypes.addressof(word), 8, 5.0)
    assert time.monotonic() - started < 1.0


def test_futex_wait_sleeps_until_its_timeout_when_nothing_changes(word: ctypes.c_uint32) -> None:
    started = time.monotonic()
    _sync.futex_wait(ctypes.addressof(word), 7, 0.1)
    assert time.monotonic() - started >= 0.09


def test_futex_wake_wakes_a_sleeping_thread(word: ctypes.c_uint32) -> None:
    woke = threading.Event()

    def sleeper() -> None:
        _sync.futex_wait(ctypes.addressof(word), 7, 30.0)
        woke.set()

    thread = threading.Thread(target=sleeper)
    thread.start()
    time.sleep(0.1)  # asleep in the kernel by now
    assert not woke.is_set()
    word.value = 8
    _sync.futex_wake(ctypes.addressof(word))
    assert woke.wait(5.0), "futex_wake did not wake the sleeper (it would have slept 30 s)"
    thread.join(5)
