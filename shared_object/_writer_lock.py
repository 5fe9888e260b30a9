"""The writer mutex as this process holds it: taking it in turn, knowing who holds it, releasing it.

One :class:`WriterLock` per segment per process, shared by every handle on the segment (two
handles map the mutex at different addresses; this object locks it at one). It owns every
acquisition of the segment's robust mutex (``_sync.WriterMutex``): writers (assign, trigger),
and readers where reads take the lock (single-slot objects, CPUs other than x86, readers lapped
again and again).

Turns. The mutex is not fair: a reader that releases it and takes it again at once wins over a
writer asleep in the kernel, and a writer publishing back to back laps a reader for ever. So
whoever is kept waiting asks the other side to let it go first, with a stamp in the header
(``reader_request``, ``writer_request``; see ``_layout``, "Turns at the mutex").

Ownership is explicit state kept here, never guessed:

* ``inline``: how many sections of this process are between taking the mutex and releasing it
  on the inline path (assign, trigger, a single-slot fetch). A section counts itself *before*
  its trylock and uncounts itself right before its unlock.
* ``_records``: per thread, the sections that wait for the mutex or hold it as readers (a
  ``read`` call, a locked ``view()`` block), as a stack: a signal handler may nest one section
  in another. A view block's record is a weak reference to the view: its ``__exit__`` can be
  skipped (below), and the view's death then says that the block ended.

Why counting comes first. Python raises KeyboardInterrupt, and whatever a signal handler raises,
between two bytecodes: right after a C call returns (our trylock among them), and at the first
bytecode of a Python function. A section that took the mutex and was interrupted before storing
the result does not know that it holds it; a handler that runs there and calls this library on
the same segment must not take the lock from under it. A sequence of bytecodes without a call
(``lock.inline += 1``, storing into a dict, the C unlock's operands) runs without such a break,
and so without a thread switch, so each count and record is in place before the call it guards.

Who holds it, asked only on rare paths (the mutex is busy, or a section's outcome is unknown):
the kernel's robust list says whether *this thread* holds the mutex (``held_by_this_thread``).
If it does, and a section of ours is counted or recorded, our code holds it: a write there would
wait for itself (LockReentryError); a read nested in a read block reads under the block's lock.
If it does and nothing of ours knows, the lock was *abandoned* by an interrupted section: it is
released, with a warning. Where the kernel cannot tell (get_robust_list refused: qemu-user, some
seccomp profiles), nothing is released that may not be ours.

The release is always the C unlock itself, called from the frame that holds the ``finally``: a
Python call in between would be a place for an interrupt to skip it. One place is beyond that:
the first bytecode of a locked ``view()`` block's ``__exit__``. The view's record then outlives
the block, and the lock is recovered once the view is gone (a call from the same frame, which
may still hold the view, gets LockReentryError instead).

These rules need a build with the GIL (bytecodes without a call are not atomic without it).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar, Final, TypeVar

from . import _layout
from ._errors import ClosedError, LockReentryError, LockTimeoutError
from ._sync import WriterMutex, futex_wake, robust_locks_supported
from ._tuning import Tuning

log = logging.getLogger("shared_object")
T = TypeVar("T")

_monotonic_ns = time.monotonic_ns
_get_ident = threading.get_ident
_REQUEST: Final = _layout.REQUEST_WORD
_WRITER_REQUEST: Final = _layout.WRITER_REQUEST_WORD
_WAITER: Final = _layout.WAITER_WORD

#: Who holds the mutex, as seen from this thread (see the module docstring).
NOT_HELD: Final = "not held by this thread"
HELD_WRITING: Final = "held by a writing section of this thread"
HELD_READING: Final = "held by a read block of this thread"
ABANDONED: Final = "held by this thread, abandoned by an interrupted section"

#: Kinds of a record.
READING: Final = "reading"
WAITING: Final = "waiting"


class WriterLock:
    """One segment's writer mutex as this process holds it. Get it with :meth:`of`."""

    __slots__ = (
        "__weakref__",
        "_mutex",
        "_records",
        "futex_address",
        "inline",
        "name",
        "ref",
        "trylock",
        "unlock",
        "words",
    )

    #: segment identity (device, inode) -> its lock, while a handle uses it.
    _of_segment: ClassVar[weakref.WeakValueDictionary[tuple[int, int], WriterLock]] = (
        weakref.WeakValueDictionary()
    )
    #: Locks that a thread of ours may still hold where the kernel cannot tell: glibc writes
    #: into every robust mutex a thread holds, so their mapping must stay for the process's life.
    _kept_mapped: ClassVar[list[WriterLock]] = []

    def __init__(self, name: str, key: tuple[int, int], mapping: memoryview, address: int) -> None:
        self.name = name
        self._mutex = WriterMutex(address + _layout.MUTEX_OFFSET, segment=key, mapping=mapping)
        #: The two C calls of the inline path, and the mutex's address as ctypes wants it (see
        #: _sync): ``rc = lock.trylock(lock.ref)`` and ``lock.unlock(lock.ref)``.
        self.trylock = self._mutex.trylock
        self.unlock = self._mutex.unlock
        self.ref = self._mutex.ref
        self.words = _layout.header_words(mapping)
        self.futex_address = address + _layout.STATE_OFFSET
        self.inline = 0
        self._records: dict[int, list[tuple[str, Any]]] = {}
        # Unregistered (see WriterMutex) before the mutex, and with it the mapping, can go.
        weakref.finalize(self, self._mutex.forget)

    @classmethod
    def of(cls, name: str, key: tuple[int, int], mapping: memoryview, address: int) -> WriterLock:
        """The lock of segment ``key``, made on ``mapping`` (at ``address``) if no handle has it
        yet.

        It keeps that mapping alive for as long as any handle uses the lock.
        """
        lock = cls._of_segment.get(key)
        if lock is None:
            lock = cls._of_segment[key] = cls(name, key, mapping, address)
        return lock

    @property
    def owner_died_count(self) -> int:
        """How many times a holder's death was noticed and its lock recovered, by this process."""
        return self._mutex.owner_died_count

    # -----------------------------------------------------------------------------------------
    # Writers
    # -----------------------------------------------------------------------------------------
    def take_after_trylock(self, rc: int, tuning: Tuning) -> int:
        """Finish an inline section's acquisition after its trylock returned ``rc``; returns 0.

        EOWNERDEAD: the section now holds a dead holder's mutex: mark it consistent (what the
        dead writer left is in a slot readers do not read, or flagged WRITING). EBUSY: raise
        LockReentryError if our own code holds it, release it if it was abandoned, then wait
        for it, asking readers to let us go first. LockTimeoutError after ``lock_timeout_s``.

        The inline protocol, at the call site (``inline`` counts the caller)::

            rc = -1
            try:
                lock.inline += 1
                rc = lock.trylock(lock.ref)
                if rc:
                    busy, rc = rc, -1
                    rc = lock.take_after_trylock(busy, tuning)
                ...                              # the section
            finally:
                lock.inline -= 1
                if not rc:
                    lock.unlock(lock.ref)
                elif rc == -1:                   # interrupted: does this thread hold it?
                    lock.release_if_abandoned()
        """
        mutex = self._mutex
        if rc == errno.EBUSY:
            holder = self.holder(inline_self=1)
            if holder in (HELD_WRITING, HELD_READING):
                raise self.reentry_error("assign() or trigger()")
            if holder is ABANDONED:
                self._release_abandoned()
            # While it waits, the section is a record of this thread, not a count: a count says
            # "between trylock and unlock", which a thread that waits is not.
            records = self._push(WAITING, None)
            self.inline -= 1
            try:
                rc = self._wait_for_turn(
                    _WRITER_REQUEST,
                    tuning,
                    lambda: mutex.trylock(mutex.ref),
                    lambda: mutex.lock_within(tuning.writer_slice_s),
                )
            finally:
                self.inline += 1
                del records[-1]  # no call between these two: see the module docstring
        if rc:
            try:
                mutex.acquire_contended(
                    rc, tuning.lock_timeout_s
                )  # EOWNERDEAD: recover a dead holder's mutex
            except LockTimeoutError:
                raise self.timeout_error(tuning) from None
        return 0

    def write(self, tuning: Tuning, section: Callable[[], T]) -> T:
        """Run ``section()`` holding the mutex as a writer (the inline protocol, as a call)."""
        rc = -1
        try:
            self.inline += 1
            rc = self.trylock(self.ref)
            if rc:
                busy, rc = rc, -1
                rc = self.take_after_trylock(busy, tuning)
            return section()
        finally:
            self.inline -= 1
            if not rc:
                self.unlock(self.ref)
            elif rc == -1:
                self.release_if_abandoned()

    # -----------------------------------------------------------------------------------------
    # Readers
    # -----------------------------------------------------------------------------------------
    def read(self, tuning: Tuning, section: Callable[[], T]) -> T:
        """Run ``section()`` holding the mutex as a reader, after any writer that asked to go first.

        Nested in a read block of this thread that holds the mutex (fn calling fetch, say),
        ``section`` runs under that block's lock: it keeps every writer out.
        """
        records = self._push(READING, None)
        taken: bool | None = None  # None until we know whether we took it
        try:
            taken = self._take_as_reader(tuning)
            return section()
        finally:
            del records[-1]  # no call before the unlock: see the module docstring
            if taken:
                self.unlock(self.ref)
            elif taken is None:
                self.release_if_abandoned()

    def open_block(self, block: object, tuning: Tuning) -> bool:
        """Take the mutex for a read block that ``block`` (a view) ends with :meth:`close_block`.

        False when nested in a read block of this thread that holds it already (nothing to
        release then). On any error nothing is held and nothing recorded.
        """
        records = self._push(READING, weakref.ref(block))
        taken: bool | None = None
        try:
            taken = self._take_as_reader(tuning)
        finally:
            if not taken:
                records.pop()
                if taken is None:
                    self.release_if_abandoned()
        return taken

    def close_block(self, block: object) -> None:
        """Forget ``block``'s record; the caller then unlocks, inline (see the module docstring)."""
        records = self._records.get(_get_ident(), [])
        for i in range(len(records) - 1, -1, -1):
            token = records[i][1]
            if token is not None and token() is block:
                del records[i]
                return

    def _take_as_reader(self, tuning: Tuning) -> bool:
        """The mutex for the read section on top of this thread's records: True if taken, False if
        nested.
        """
        mutex = self._mutex
        words = self.words
        # Nested in a section of ours (a record below ours, or an inline one): it may hold the
        # mutex, and then a waiting writer cannot go first. Asking the kernel is a system call.
        nested = len(self._records[_get_ident()]) > 1 or self.inline > 0
        if words[_WRITER_REQUEST] and not (nested and self.holder(asking=True) is HELD_READING):
            self._let_requester_go(_WRITER_REQUEST, tuning.reader_yield_max_ns, tuning)
        if mutex.try_acquire():
            return True
        holder = self.holder(asking=True)
        if holder is HELD_READING:
            return False
        if holder is HELD_WRITING:
            raise self.reentry_error("reading it again")
        if holder is ABANDONED:
            self._release_abandoned()
        self._wait_for_turn(_REQUEST, tuning, lambda: 0 if mutex.try_acquire() else errno.EBUSY)
        return True

    # -----------------------------------------------------------------------------------------
    # Who holds it
    # -----------------------------------------------------------------------------------------
    def holder(self, *, inline_self: int = 0, asking: bool = False) -> str:
        """Who holds the mutex, as far as this thread is concerned (a system call: rare paths only).

        ``inline_self``: 1 when the caller is itself counted in ``inline``; ``asking``: the
        caller is the record on top of this thread's stack. Neither counts as a holder.
        """
        held = self._mutex.held_by_this_thread()
        records = self._records.get(_get_ident())
        if records:
            records[:] = [
                r for r in records if r[1] is None or r[1]() is not None
            ]  # views gone: blocks ended
        if held is False:
            return NOT_HELD
        mine = records[: len(records) - 1] if (asking and records) else (records or [])
        if mine:
            # The newest section of this thread below the caller holds it, or took it and is
            # about to learn so (interrupted right after its C call): either way it is ours.
            return HELD_READING if mine[-1][0] == READING else HELD_WRITING
        if self.inline > inline_self and (held or self._mutex.lock_word_names_this_thread()):
            return HELD_WRITING
        if held is None:  # the kernel cannot tell: never release what may not be ours
            return NOT_HELD
        return ABANDONED

    def release_if_abandoned(self, *, inline_self: int = 0) -> None:
        """For a section whose outcome is unknown (interrupted): release the mutex if this thread
        holds it and none of its code knows."""
        if self.holder(inline_self=inline_self) is ABANDONED:
            self._release_abandoned()

    def _release_abandoned(self) -> None:
        log.warning(
            "released the writer lock of %r, which an interrupted call had taken", self.name
        )
        self._mutex.release_abandoned()

    def keep_mapped_if_held_here(self) -> None:
        """Where the kernel cannot tell and the lock word names this thread, keep the mapping for
        good.

        For a handle's close: glibc writes into the robust mutexes a thread holds, so the memory
        of one this thread may hold, abandoned, must stay mapped. The lock word first: a load,
        where asking the kernel is a system call.
        """
        mutex = self._mutex
        if mutex.lock_word_names_this_thread() and mutex.held_by_this_thread() is None:
            self._kept_mapped.append(self)

    def _push(self, kind: str, token: Any) -> list[tuple[str, Any]]:
        """Record a section of this thread; the caller pops it (``records.pop()``)."""
        records = self._records.get(_get_ident())
        if records is None:
            records = self._records[_get_ident()] = []
        records.append((kind, token))
        return records

    # -----------------------------------------------------------------------------------------
    # Turns
    # -----------------------------------------------------------------------------------------
    def _wait_for_turn(
        self,
        word: int,
        tuning: Tuning,
        attempt: Callable[[], int],
        block: Callable[[], int] | None = None,
    ) -> int:
        """Retry ``attempt`` (a trylock: 0, EBUSY, EOWNERDEAD...) until it is not EBUSY, and return
        that.

        Meanwhile ``words[word]`` holds a fresh stamp asking the other side to let us go first
        (REQUEST: writers pause; WRITER_REQUEST: readers hold off), cleared once we have the
        mutex. First it yields the CPU between attempts (a holder copies one value, and a
        wake-up from the kernel costs more than that); then it naps between attempts, or, given
        ``block`` (a lock that waits in the kernel for a short slice: ETIMEDOUT when it runs
        out), waits in that instead, woken when the mutex is released.
        """
        words = self.words
        spins = 0
        deadline = _monotonic_ns() + int(tuning.lock_timeout_s * 1e9)
        while True:
            stamp = _monotonic_ns()
            if stamp > deadline:
                raise self.timeout_error(tuning)
            words[word] = stamp
            if block is not None and spins >= tuning.spins:
                rc = block()
                if rc == errno.ETIMEDOUT:
                    continue
            else:
                spins = wait_step(spins, tuning)
                rc = attempt()
            if rc != errno.EBUSY:
                if words[word] == stamp:
                    words[word] = 0
                return rc

    def _let_requester_go(self, word: int, max_ns: int, tuning: Tuning) -> None:
        """Wait while ``words[word]`` holds a fresh request of the other side, at most ``max_ns``.

        The other half of _wait_for_turn. It ends when the requester clears its stamp (it has
        its turn), when the stamp goes stale (it gave up, or died), or after ``max_ns``.
        """
        words = self.words
        spins = 0
        end = 0
        while True:
            stamp = words[word]
            now = _monotonic_ns()
            if not stamp or now - stamp >= tuning.request_fresh_ns:
                return
            if not end:
                end = now + max_ns
            elif now >= end:
                return
            spins = wait_step(spins, tuning)

    def after_publish(self, tuning: Tuning) -> None:
        """After a publication, outside the mutex: wake wait()ers, and let starving readers read.

        The mutex release before it is a full memory barrier: the state store is visible before
        the waiter announcement is loaded, so a waiter that announced itself is never missed.
        """
        words = self.words
        waiter, request = words[_WAITER], words[_REQUEST]
        if waiter > _monotonic_ns():
            futex_wake(self.futex_address)
        if request:
            # A reader failed to get a clean copy several times: pause until it has read (it
            # clears its request) or the pause runs out, before our next write can lap it again.
            self._let_requester_go(_REQUEST, tuning.writer_yield_max_ns, tuning)

    # -----------------------------------------------------------------------------------------
    # Errors
    # -----------------------------------------------------------------------------------------
    def timeout_error(self, tuning: Tuning) -> LockTimeoutError:
        msg = (
            f"the writer lock of segment {self.name!r} stayed taken for {tuning.lock_timeout_s} s: "
            "a writer is stuck, or the lock bytes are corrupt (see: shared-object inspect "
            f"{self.name})"
        )
        if robust_locks_supported() is False:
            msg += (
                "; or its holder died: this kernel does not keep robust lock lists (qemu-user "
                "emulation, or a seccomp profile that refuses set_robust_list), so a dead "
                "holder's lock is never released; re-create the object, and see `shared-object "
                "doctor`"
            )
        return LockTimeoutError(msg, name=self.name, timeout=tuning.lock_timeout_s)

    def reentry_error(self, what: str) -> LockReentryError:
        msg = (
            f"this thread holds the writer lock of {self.name!r} as a reader, inside a view() "
            "block or fetch(fn) on it (on this object reads take the lock: it has one slot, or "
            f"this CPU is not x86), or in a call that a signal handler interrupted, so {what} "
            "would wait for itself: do it after the block, or outside fn. (If no such block is "
            "open, a KeyboardInterrupt ended one just before it released the lock, and the lock "
            "goes back once that view is gone.)"
        )
        return LockReentryError(msg, name=self.name)


class ClosedLock:
    """Stands in for a closed handle's lock: every acquisition raises ClosedError."""

    __slots__ = ("inline", "name", "ref")
    owner_died_count = 0

    def __init__(self, name: str) -> None:
        self.name = name
        self.inline = 0
        self.ref = None

    def _closed(self, *args: object, **kwargs: object) -> Any:
        raise ClosedError(f"the handle on {self.name!r} is closed", name=self.name)

    trylock = take_after_trylock = write = read = open_block = _closed

    @staticmethod
    def unlock(ref: object) -> int:
        return 0

    def release_if_abandoned(self, **kwargs: object) -> None:
        """Nothing is held through a closed handle."""

    def close_block(self, block: object) -> None:
        """No block holds a closed handle's lock."""

    def after_publish(self, tuning: Tuning) -> None:
        """Waiters of a closed handle's segment were woken by the call that published."""


def wait_step(spins: int, tuning: Tuning) -> int:
    """One step of waiting for another process's turn: yield the CPU ``spins`` times, then nap."""
    if spins < tuning.spins:
        os.sched_yield()
    else:
        time.sleep(tuning.poll_s)
    return spins + 1


__all__ = [
    "ABANDONED",
    "HELD_READING",
    "HELD_WRITING",
    "NOT_HELD",
    "ClosedLock",
    "WriterLock",
    "wait_step",
]
