"""Synchronization primitives that live inside the shared mapping.

Two primitives, both reached through ``ctypes`` on the C library:

* :class:`WriterMutex`: a process-shared, *robust* ``pthread_mutex_t`` stored in the segment
  header. Writers exclude each other with it. Uncontended lock + unlock costs two C calls and no
  system call, where ``fcntl.flock`` or an OFD lock costs two system calls (docs/design.md).
  Robust means that when a holder dies (even by SIGKILL) the kernel marks the mutex, and the next
  locker gets ``EOWNERDEAD``, marks it consistent and carries on: a crashed writer never leaves a
  stale lock. It works across containers that share the segment, because a process-shared mutex
  waits on a futex keyed by the shared file, not by process.
  Its layout is the C library's ABI, so the header records which ABI made it
  (``glibc-x86_64`` ...) and attaching from another ABI is refused with a clear error.

* :func:`futex_wait` / :func:`futex_wake` on a 32-bit word of the mapping: ``wait()`` sleeps in
  the kernel until a writer changes the word, without spinning a core.

Memory ordering. Readers do not lock: they read a state word, the payload, and the state word
again (see ``_layout``). That is correct only where the CPU keeps loads in order with loads and
stores in order with stores, which x86 (TSO) guarantees. Elsewhere (aarch64, ...) loads and
stores may be reordered, so :data:`LOCK_FREE_READS` is false there and readers take the writer
mutex, whose acquire/release give the ordering. ``modified`` stays lock-free everywhere: it is
one aligned 8-byte load, which is single-copy atomic on every 64-bit architecture.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import sys
import threading
import time
from typing import Any, Final

from ._errors import LayoutError, LockTimeoutError, UnsupportedPlatformError

#: x86 never reorders a load with an older load, nor a store with an older store.
LOCK_FREE_READS: Final[bool] = platform.machine().lower() in {"x86_64", "amd64", "i386", "i686"}

#: Bytes reserved for the mutex in the header; glibc's pthread_mutex_t is 40 (x86-64) or 48
#: (aarch64).
MUTEX_SPACE: Final = 64

_SYS_FUTEX: Final[dict[str, int]] = {
    "x86_64": 202,
    "amd64": 202,
    "i386": 240,
    "i686": 240,
    "aarch64": 98,
    "arm64": 98,
    "armv7l": 240,
    "riscv64": 98,
    "ppc64le": 221,
    "s390x": 238,
}
#: get_robust_list(2), by machine: the kernel's list of the robust mutexes a thread holds.
_SYS_GET_ROBUST_LIST: Final[dict[str, int]] = {
    "x86_64": 274,
    "amd64": 274,
    "aarch64": 100,
    "arm64": 100,
}
#: A thread holds a handful of robust mutexes at most; a longer walk means a corrupt list.
_ROBUST_LIST_MAX: Final = 4096
_FUTEX_WAIT: Final = 0
_FUTEX_WAKE: Final = 1
_INT_MAX: Final = 0x7FFFFFFF
_PTHREAD_PROCESS_SHARED: Final = 1
_PTHREAD_MUTEX_ROBUST: Final = 1


def lock_abi() -> str:
    """Name of the C library ABI whose pthread_mutex_t this process would write."""
    libc, _ = platform.libc_ver()
    return f"{libc or 'unknown'}-{platform.machine().lower()}"


class _Libc:
    """The few C library entry points we use, resolved once."""

    def __init__(self) -> None:
        if sys.platform != "linux":
            msg = (
                "shared_object needs Linux (shared memory in /dev/shm, futexes); this is "
                f"{sys.platform}"
            )
            raise UnsupportedPlatformError(msg)
        if sys.byteorder != "little":
            msg = "shared_object's segment layout is little-endian; this CPU is big-endian"
            raise UnsupportedPlatformError(msg)
        if not lock_abi().startswith("glibc-"):
            msg = (
                "shared_object needs the GNU C library (glibc) for its process-shared robust "
                f"mutex; this process runs {lock_abi()} (for example Alpine's musl): use a "
                "Debian/Ubuntu based image"
            )
            raise UnsupportedPlatformError(msg)
        # CDLL releases the GIL around calls (for blocking ones); PyDLL keeps it (cheaper, for
        # calls that never block).
        blocking = ctypes.CDLL(None, use_errno=True)
        quick = ctypes.PyDLL(None, use_errno=True)
        ptr = ctypes.c_void_p
        # The two hot calls (every assign makes both): PYFUNCTYPE keeps the GIL, and the prototype
        # has no argtypes, so the argument, a ctypes.byref() each WriterMutex makes once, is passed
        # through as it is (no converter, no allocation): the cheapest call ctypes makes.
        # Never call these two with a plain int: without argtypes it would go as a 32-bit C int.
        hot = ctypes.PYFUNCTYPE(ctypes.c_int)
        self.trylock = hot(_address_of_function(quick.pthread_mutex_trylock))
        self.unlock = hot(_address_of_function(quick.pthread_mutex_unlock))
        self.lock = _fn(blocking.pthread_mutex_lock, [ptr])
        self.timedlock = _fn(blocking.pthread_mutex_timedlock, [ptr, ptr])
        self.consistent = _fn(quick.pthread_mutex_consistent, [ptr])
        self.init = _fn(quick.pthread_mutex_init, [ptr, ptr])
        self.attr_init = _fn(quick.pthread_mutexattr_init, [ptr])
        self.attr_setpshared = _fn(quick.pthread_mutexattr_setpshared, [ptr, ctypes.c_int])
        self.attr_setrobust = _fn(quick.pthread_mutexattr_setrobust, [ptr, ctypes.c_int])
        self.syscall_blocking = blocking.syscall
        self.syscall_blocking.restype = ctypes.c_long
        self.syscall_quick = quick.syscall
        self.syscall_quick.restype = ctypes.c_long
        self.sys_futex = _SYS_FUTEX.get(platform.machine().lower())
        self.sys_get_robust_list = _SYS_GET_ROBUST_LIST.get(platform.machine().lower())


@functools.cache
def robust_locks_supported() -> bool | None:
    """Does the kernel keep this thread's robust mutex list, and so notice a lock holder's death?

    It is what lets the next writer take over the lock of a writer that died holding it. False
    under qemu-user emulation (an arm64 container on an x86 host, say: qemu answers ENOSYS to
    set_robust_list and get_robust_list, as the host kernel cannot walk a guest's list), or
    where set_robust_list was refused (glibc then registered no list). None when it cannot
    tell: this CPU's system call number is unknown, or get_robust_list alone is refused.
    """
    lib = libc()
    if lib.sys_get_robust_list is None:
        return None
    head, length = ctypes.c_void_p(), ctypes.c_size_t()
    if lib.syscall_quick(lib.sys_get_robust_list, 0, ctypes.byref(head), ctypes.byref(length)) != 0:
        return False if ctypes.get_errno() == errno.ENOSYS else None
    return bool(head.value)  # glibc registers every thread's list when the thread starts


def _address_of_function(f: ctypes._CFuncPtr) -> int:  # type: ignore[name-defined]
    address = ctypes.cast(f, ctypes.c_void_p).value
    if not address:
        msg = f"cannot resolve the C function {f!r}"
        raise UnsupportedPlatformError(msg)
    return address


def _fn(f: ctypes._CFuncPtr, argtypes: list[type]) -> ctypes._CFuncPtr:  # type: ignore[name-defined]
    f.argtypes = argtypes
    f.restype = ctypes.c_int
    return f


@functools.cache
def libc() -> _Libc:
    """The resolved C library; raises UnsupportedPlatformError where we cannot run (not cached
    then).
    """
    return _Libc()


@functools.cache
def _type_bytes() -> tuple[tuple[int, int], ...]:
    """(offset, value) of the bytes that pthread_mutex_init sets in our writer mutex: its type.

    A fresh mutex is all zeros but for its type field (``__kind``: robust, process-shared), and
    locking never changes that field, so these bytes must read the same in every segment.
    """
    raw = ctypes.create_string_buffer(MUTEX_SPACE)
    WriterMutex(ctypes.addressof(raw)).initialize()
    return tuple((i, b) for i, b in enumerate(raw.raw) if b)


def check_mutex_type(buf: memoryview, offset: int, name: str) -> None:
    """LayoutError unless the mutex at ``offset`` still has the type we initialize it with.

    Why: glibc trusts that field. A scribbled "recursive" type whose owner happens to be this
    thread (easy in a container, where the process is PID 1) makes unlock follow garbage list
    pointers and crash the process, so a segment must not get that far.
    """
    for i, value in _type_bytes():
        if buf[offset + i] != value:
            msg = (
                f"segment {name!r} is corrupt: its writer lock is no longer the robust, "
                "process-shared mutex shared_object makes (its type bytes were overwritten); "
                "recreate the object"
            )
            raise LayoutError(msg)


class _Timespec(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long))


#: The writer mutexes of this process's open handles, by address: address -> segment identity.
#: Their memory is mapped while they are here (each keeps its mapping alive): the only addresses
#: that held_by_this_thread dereferences.
_MAPPED_MUTEXES: dict[int, object] = {}
#: The owner's thread id in a robust futex word (linux/futex.h FUTEX_TID_MASK).
_FUTEX_TID_MASK: Final = 0x3FFFFFFF


class WriterMutex:
    """A robust, process-shared pthread mutex at a fixed address inside a shared mapping.

    Given ``segment`` (any identity of the segment file) and ``mapping`` (a view of the mapping
    it lives in), it keeps that mapping alive and registers itself, until :meth:`forget`, so that
    :meth:`held_by_this_thread` can recognise it, through any handle on the same segment.
    Otherwise the caller keeps the mapping alive for as long as the mutex is used.
    """

    __slots__ = (
        "_address",
        "_lib",
        "_mapping",
        "owner_died_count",
        "ref",
        "segment",
        "trylock",
        "unlock",
    )

    def __init__(self, address: int, segment: object = None, mapping: object = None) -> None:
        self._lib = libc()
        self._address = address
        self.segment = segment
        self._mapping = mapping
        if segment is not None:
            _MAPPED_MUTEXES[address] = segment
        #: The raw C calls, for hot paths: ``rc = m.trylock(m.ref)``; on non-zero ``rc`` call
        #: :meth:`acquire_contended`; release with ``m.unlock(m.ref)`` (returns non-zero on error).
        #: ``ref`` is the mutex's address as a ctypes.byref, made once (see _Libc for why).
        self.ref: Any = ctypes.byref((ctypes.c_ubyte * MUTEX_SPACE).from_address(address))
        self.trylock = self._lib.trylock
        self.unlock = self._lib.unlock
        #: How many times this handle found the mutex abandoned by a dead holder and recovered it.
        self.owner_died_count = 0

    def initialize(self) -> None:
        """Write a fresh robust, process-shared mutex at the address (creator only)."""
        lib = self._lib
        attr = ctypes.create_string_buffer(64)  # pthread_mutexattr_t is 4 bytes; be generous
        _check(lib.attr_init(attr), "pthread_mutexattr_init")
        _check(lib.attr_setpshared(attr, _PTHREAD_PROCESS_SHARED), "pthread_mutexattr_setpshared")
        _check(lib.attr_setrobust(attr, _PTHREAD_MUTEX_ROBUST), "pthread_mutexattr_setrobust")
        _check(lib.init(self._address, attr), "pthread_mutex_init")

    def acquire(self, timeout: float | None = None) -> None:
        """Take the mutex, waiting at most ``timeout`` seconds (None: no limit)."""
        rc = self._lib.trylock(self.ref)
        if rc:
            self.acquire_contended(rc, timeout)

    def acquire_contended(self, rc: int, timeout: float | None = None) -> None:
        """Finish taking the mutex after ``trylock`` returned ``rc`` (EBUSY or EOWNERDEAD)."""
        if rc == errno.EBUSY:
            if timeout is None:
                rc = self._lib.lock(self._address)
            else:
                rc = self.lock_within(max(timeout, 0.0))
                if rc == errno.ETIMEDOUT:
                    msg = f"the writer lock was not free within {timeout} s"
                    raise LockTimeoutError(msg, timeout=timeout)
        if rc == errno.EOWNERDEAD:
            # The previous holder died while holding the lock. Whatever it was writing is in a
            # slot that readers never look at (two slots), or flagged by the WRITING bit that
            # readers report as incomplete (one slot; see _layout): mark the mutex consistent
            # and go on; the next write repairs the object.
            _check(self._lib.consistent(self._address), "pthread_mutex_consistent")
            self.owner_died_count += 1
            rc = 0
        _check(rc, "pthread_mutex_lock")

    def lock_within(self, seconds: float) -> int:
        """Wait in the kernel up to ``seconds`` for the mutex: 0 (taken), ETIMEDOUT, EOWNERDEAD
        (taken)...

        The raw result, like ``trylock``'s: the caller finishes an EOWNERDEAD with
        acquire_contended.
        """
        deadline = time.time() + seconds  # pthread_mutex_timedlock takes CLOCK_REALTIME
        spec = _Timespec(int(deadline), int((deadline % 1) * 1e9))
        rc: int = self._lib.timedlock(self._address, ctypes.byref(spec))
        return rc

    def try_acquire(self) -> bool:
        """Take the mutex if it is free; never blocks."""
        rc = self._lib.trylock(self.ref)
        if rc == errno.EBUSY:
            return False
        if rc == errno.EOWNERDEAD:
            _check(self._lib.consistent(self._address), "pthread_mutex_consistent")
            self.owner_died_count += 1
            rc = 0
        _check(rc, "pthread_mutex_trylock")
        return True

    def release(self) -> None:
        """Release the mutex (held by this thread)."""
        _check(self._lib.unlock(self.ref), "pthread_mutex_unlock")

    def forget(self) -> None:
        """Unregister (its lock is gone); the mapping goes with the last reference to it."""
        if _MAPPED_MUTEXES.get(self._address) is self.segment:
            del _MAPPED_MUTEXES[self._address]

    def lock_word_names_this_thread(self) -> bool:
        """Does the mutex's lock word carry this thread's id? Not proof that this thread holds it
        (threads in another PID namespace share ids): only for erring on the safe side where
        :meth:`held_by_this_thread` cannot tell."""
        word = ctypes.c_uint32.from_address(
            self._address
        ).value  # glibc's __lock: owner tid | flags
        return word & _FUTEX_TID_MASK == threading.get_native_id()

    def held_by_this_thread(self) -> bool | None:
        """Does the calling thread hold this segment's mutex, through any of our handles on it?

        Exact, from the kernel's robust list of this thread (get_robust_list), where glibc links
        every robust mutex the thread holds. Not from the owner id inside the mutex: that is a
        thread id, and threads in different PID namespaces (containers) share ids: both sides
        are often PID 1. The walk stops at an entry that is not a registered mutex (another
        library's, or one whose mapping may be gone) rather than read memory it does not know.
        None when it cannot tell. A system call and a short walk: for rare paths only.
        """
        lib = self._lib
        if lib.sys_get_robust_list is None or self.segment is None:
            return None
        head, length = ctypes.c_void_p(), ctypes.c_size_t()
        if (
            lib.syscall_quick(lib.sys_get_robust_list, 0, ctypes.byref(head), ctypes.byref(length))
            != 0
        ):
            return None  # refused (a seccomp profile, say)
        start = head.value
        if not start:
            return None
        # struct robust_list_head { struct robust_list *next; long futex_offset; ... }: each entry
        # is a pointer inside a held mutex, futex_offset bytes past the mutex's lock word (its
        # start).
        offset = ctypes.c_long.from_address(start + ctypes.sizeof(ctypes.c_void_p)).value
        entry = ctypes.c_void_p.from_address(start).value
        for _ in range(_ROBUST_LIST_MAX):
            if not entry or entry == start:
                return False
            segment = _MAPPED_MUTEXES.get(entry + offset)
            if segment is None:
                return None  # not ours, or no longer mapped: do not read on
            if segment == self.segment:
                return True
            entry = ctypes.c_void_p.from_address(entry).value
        return None

    def release_abandoned(self) -> None:
        """Release a mutex this thread holds but no code of it knows about (see _object).

        It may still be marked inconsistent, if the call that took it got EOWNERDEAD: unlocking
        it so would make it unrecoverable, so it is marked consistent first (glibc answers EINVAL,
        harmlessly, for a mutex that is not inconsistent).
        """
        if self._lib.consistent(self._address) == 0:
            self.owner_died_count += 1
        self._lib.unlock(self.ref)


def _check(rc: int, what: str) -> None:
    if rc == 0:
        return
    if rc == errno.ENOTRECOVERABLE:
        msg = (
            f"{what}: the segment's writer lock is not recoverable (ENOTRECOVERABLE); recreate the "
            "object"
        )
        raise LayoutError(msg)
    if rc == errno.EINVAL:  # glibc checks the mutex's kind bits: garbage there is corruption
        msg = f"{what}: the segment's writer lock is corrupt (EINVAL); recreate the object"
        raise LayoutError(msg)
    raise OSError(rc, f"{what}: {os.strerror(rc)}")


def futex_wait(address: int, expected: int, timeout: float) -> None:
    """Sleep while the 32-bit word at ``address`` equals ``expected``, at most ``timeout`` s.

    Returns on a wake-up, a timeout, a signal, or at once when the word already differs; the
    caller re-checks its condition in every case. The GIL is released while sleeping.
    """
    lib = libc()
    if lib.sys_futex is None:  # an architecture we have no number for: degrade to a nap
        time.sleep(min(timeout, 0.001))
        return
    seconds = max(timeout, 0.0)
    spec = _Timespec(int(seconds), int((seconds % 1) * 1e9))
    lib.syscall_blocking(
        lib.sys_futex,
        ctypes.c_void_p(address),
        _FUTEX_WAIT,
        ctypes.c_uint32(expected),
        ctypes.byref(spec),
        None,
        0,
    )


def futex_wake(address: int) -> None:
    """Wake every process sleeping in :func:`futex_wait` on the word at ``address``."""
    lib = libc()
    if lib.sys_futex is not None:
        lib.syscall_quick(
            lib.sys_futex, ctypes.c_void_p(address), _FUTEX_WAKE, _INT_MAX, None, None, 0
        )


__all__ = [
    "LOCK_FREE_READS",
    "MUTEX_SPACE",
    "WriterMutex",
    "check_mutex_type",
    "futex_wait",
    "futex_wake",
    "libc",
    "lock_abi",
    "robust_locks_supported",
]
