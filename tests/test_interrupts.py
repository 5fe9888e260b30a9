"""Exceptions the code does not raise itself (Ctrl-C, a signal handler's) and the writer lock.

Python delivers them at bytecode boundaries, and one falls right after the C call that takes the
writer mutex returns. Before these tests, 5% of the Ctrl-Cs of a loop of int assigns and 9-18% of
a loop of triggers left the mutex held by a thread that no longer knew it: every later writer, the
thread's own included, waited Tuning.lock_timeout_s and failed. The exception here comes from a SIGALRM
handler (the mechanism of KeyboardInterrupt, without pytest's own handling of Ctrl-C).
"""

from __future__ import annotations

import errno
import random
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from shared_object import (
    LockReentryError,
    LockTimeoutError,
    SharedDynamicObject,
    SharedObject,
    Tuning,
    _object,
    _sync,
    testing,
)
from shared_object._writer_lock import WriterLock

from .markers import needs_robust_locks

#: Recovering an interrupted lock asks the kernel which locks this thread holds (get_robust_list).
pytestmark = needs_robust_locks


class SignalHandlerError(Exception):
    """What our SIGALRM handler raises: stands for KeyboardInterrupt."""


@pytest.fixture
def alarm() -> Iterator[Callable[[float], None]]:
    """``alarm(seconds)``: raise SignalHandlerError in the main thread after that long."""

    def handler(signum: int, frame: Any) -> None:
        raise SignalHandlerError

    previous = signal.signal(signal.SIGALRM, handler)
    yield lambda seconds: signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, previous)


def held_elsewhere(obj: SharedObject) -> bool:
    """Is obj's writer mutex taken, as another thread sees it?"""
    mutex = testing.writer_mutex(obj)
    result: list[int] = []

    def probe() -> None:  # a robust mutex must be released by the thread that took it
        rc = mutex.trylock(mutex.ref)
        if rc == 0:
            mutex.unlock(mutex.ref)
        result.append(rc)

    thread = threading.Thread(target=probe)
    thread.start()
    thread.join()
    assert result[0] in (0, errno.EBUSY)
    return result[0] == errno.EBUSY


OPERATIONS: dict[str, tuple[type[SharedObject], int, Callable[[SharedObject], Any]]] = {
    "assign": (SharedObject, 2, lambda obj: obj.assign(7)),
    "trigger": (SharedObject, 2, lambda obj: obj.trigger()),
    "dynamic assign": (SharedDynamicObject, 2, lambda obj: obj.assign(7)),
    "single-slot fetch": (SharedObject, 1, lambda obj: obj.fetch()),
    "single-slot fetch(fn)": (SharedObject, 1, lambda obj: obj.fetch(lambda x: x + 1)),
}


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_interrupted_loop_never_leaves_the_lock_taken(
    shm_name: str, alarm: Callable[[float], None], operation: str, caplog: pytest.LogCaptureFixture
) -> None:
    cls, slots, run = OPERATIONS[operation]
    kwargs = {"slots": slots} if slots == 1 else {}
    rng = random.Random(7)
    left_taken = 0
    with cls.create(shm_name, 7, **kwargs) as obj:
        for _ in range(150):
            try:
                # Inside the try: a signal still pending from the last round (seen once in the
                # image's Python 3.11.2) surfaces as this round's interrupt, not as a test error.
                alarm(rng.uniform(0.0005, 0.003))
                while True:
                    run(obj)
            except SignalHandlerError:
                pass
            if held_elsewhere(obj):
                left_taken += 1
                mutex = testing.writer_mutex(obj)
                mutex.unlock(mutex.ref)  # go on counting
        run(obj)  # still usable
    assert left_taken == 0, f"{left_taken} of 150 interrupts left the writer lock taken"


def test_a_lock_abandoned_by_this_thread_is_recovered_by_its_next_call(
    shm_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """If it still happens (an interrupt where no finally can help), the thread's next call recovers.

    Before, that call waited lock_timeout_s for its own thread and failed (here cut to 10 ms).
    """
    quick = Tuning(lock_timeout_s=0.01)
    with (
        SharedObject.create(shm_name, 1, tuning=quick) as obj,
        SharedObject.attach(shm_name, tuning=quick) as other,
    ):
        testing.writer_mutex(obj).acquire()  # taken, and no code of ours knows it: abandoned
        other.assign(2)  # another handle on the same segment, same thread
        assert obj.fetch() == 2 and not held_elsewhere(obj)
        assert "released the writer lock" in caplog.text


def test_a_signal_handler_inside_a_locked_section_never_takes_its_lock_away(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handler runs on top of the code it interrupted, which may hold the lock: leave it held."""
    quick = Tuning(lock_timeout_s=0.01)
    seen: dict[str, Any] = {}
    with (
        SharedObject.create(shm_name, np.zeros(10), tuning=quick) as obj,
        SharedObject.attach(shm_name, tuning=quick) as other,
    ):

        def copy_then_handler_runs(
            dst: Any, src: Any
        ) -> None:  # stands for a handler between two bytecodes
            np.copyto(dst, src)
            try:
                other.trigger()  # needs the lock that the assign below us holds
            except LockReentryError as exc:
                seen["nested"] = exc
            seen["still held"] = held_elsewhere(
                obj
            )  # the nested call's error path left it to its owner

        monkeypatch.setattr(_object, "_copyto", copy_then_handler_runs)
        obj.assign(np.ones(10))
        assert seen["still held"] is True
        assert "would wait for itself" in str(seen["nested"])  # at once, not after LOCK_TIMEOUT_S
        assert not held_elsewhere(obj) and other.fetch().sum() == 10


def test_a_locked_view_that_ended_without_its_exit_is_recovered_once_the_view_is_gone(
    shm_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    """An interrupt at the first bytecode of __exit__ skips the unlock: no Python can prevent that.

    Once the view is gone (the function that opened the block returned), a later call recovers
    the lock. While the view still exists, the block may still be open, so the call gets
    LockReentryError, never the lock.
    """
    with SharedObject.create(
        shm_name, np.zeros(10), slots=1, tuning=Tuning(lock_timeout_s=0.01)
    ) as obj:

        def open_block_and_lose_its_exit() -> None:
            obj.view().__enter__()

        open_block_and_lose_its_exit()
        obj.assign(np.ones(10))  # that view is gone: the lock was abandoned
        assert obj.fetch().sum() == 10 and "released the writer lock" in caplog.text

        view = obj.view()
        view.__enter__()  # the view exists: as if its with block were still running
        with pytest.raises(LockReentryError):
            obj.assign(np.zeros(10))
        view.__exit__(None, None, None)
        obj.assign(np.zeros(10))
        assert not held_elsewhere(obj)


def test_closing_a_handle_inside_its_own_locked_block_releases_the_lock_when_the_block_ends(
    shm_name: str,
) -> None:
    """Regression: the block's end found the closed handle's stand-in mutex and never unlocked.

    The lock then stayed taken (writers timed out), and its memory could be unmapped under
    glibc, which writes into the robust mutexes a thread holds whenever it takes another.
    """
    with SharedObject.create(shm_name, 5, slots=1, tuning=Tuning(lock_timeout_s=0.01)) as writer:
        reader = SharedObject.attach(shm_name)
        with reader.view() as v:
            reader.close()
            seen = v.value
        assert seen == 5 and not held_elsewhere(writer)
        writer.assign(6)

        reader = SharedObject.attach(shm_name)
        assert reader.fetch(lambda x: (reader.close(), x)[1]) == 6
        assert not held_elsewhere(writer)
        writer.assign(7)


def test_where_the_kernel_cannot_tell_nothing_is_released_and_reentry_is_still_caught(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """get_robust_list refused (a strict seccomp profile): keep the old, safe behaviour."""
    monkeypatch.setattr(_sync.WriterMutex, "held_by_this_thread", lambda self: None)
    with SharedObject.create(
        shm_name, np.zeros(10), slots=1, tuning=Tuning(lock_timeout_s=0.01)
    ) as obj:
        with obj.view(), pytest.raises(LockReentryError):  # the block's record is enough
            obj.assign(np.ones(10))
        mutex = testing.writer_mutex(obj)
        mutex.acquire()  # abandoned, but nothing can prove it is ours
        with pytest.raises(LockTimeoutError):
            obj.assign(np.ones(10))
        mutex.release()
        obj.assign(np.ones(10))


def test_where_the_kernel_cannot_tell_a_lock_this_thread_may_hold_keeps_its_mapping(
    shm_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """glibc writes into every robust mutex a thread holds: unmapping one it still holds crashes later.

    Where get_robust_list is refused, an abandoned lock is never released (nothing proves it is
    ours), and closing its handle used to unmap it anyway: on the arm64 run under qemu-user, a
    later lock in that thread died with SIGSEGV. The mapping now stays, as long as the process.
    """
    monkeypatch.setattr(_sync.WriterMutex, "held_by_this_thread", lambda self: None)
    kept = WriterLock._kept_mapped
    before = len(kept)
    with SharedObject.create(shm_name, np.zeros(10)) as obj:
        obj.unlink()
    assert len(kept) == before  # not held: unmapped as always
    obj = SharedObject.create(shm_name, np.zeros(10))
    lock = testing.writer_lock(obj)
    testing.writer_mutex(obj).acquire()  # as an interrupt at the wrong bytecode would leave it
    obj.unlink()
    obj.close()
    assert kept[-1] is lock and len(kept) == before + 1
    lock._mutex.release()  # still mapped: glibc unlinks it from this thread's list
    kept.remove(lock)
