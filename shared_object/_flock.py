"""Everything that uses ``fcntl.flock``: segment liveness, and the public ReadersLock.

Liveness: every handle holds a shared flock on its segment file for as long as it is open (the
kernel drops it when the process dies, however it dies). ``shared-object gc`` removes only
segments on which it can take an exclusive lock, that is, that no live handle holds. flock works
on the file, so this holds across containers sharing /dev/shm, where PIDs mean nothing.

ReadersLock: the reference library's shared ``fcntl.flock`` lock, kept as a public utility.

shared_object's own objects do not use it: ``flock`` costs two system calls per acquisition and
promises no fairness (a busy writer can starve readers indefinitely). They use a lock-free
two-slot protocol for reads and a robust mutex for writers instead (see ``_layout`` and
``_sync``). ReadersLock remains for code that coordinates its own files the reference's way.

``flock`` locks belong to the open file description: two ``os.open`` calls on one file contend
even inside one process, while a forked child shares its parent's lock.
"""

from __future__ import annotations

import fcntl
import os
import time
from types import TracebackType
from typing import Protocol

from ._arguments import timeout_seconds
from ._errors import InvalidArgumentError, LockTimeoutError


def hold_liveness(fd: int) -> bool:
    """Take a shared lock on a segment's fd, held until the fd is closed: "a live handle uses this".

    Returns False (without waiting) if ``gc`` holds its exclusive lock at this moment.
    """
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def held_by_anyone(path: str) -> bool:
    """True if some open handle (in any process or container sharing the file) holds ``path``."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops our probe lock, if we got it
    return False


def remove_if_unused(path: str) -> bool:
    """Unlink ``path`` if no handle holds it, atomically with respect to new attachers; True if
    removed.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        # An attacher that opened the file just now waits for our lock, then sees the name is gone.
        if os.path.exists(path) and os.stat(path).st_ino == os.fstat(fd).st_ino:
            os.unlink(path)
            return True
        return False
    finally:
        os.close(fd)


class HasFileno(Protocol):
    def fileno(self) -> int: ...


class ReadersLock:
    """A shared (readers) ``flock`` on ``fd``: many holders at once, none while a writer holds
    LOCK_EX.

    ``lock.acquire()`` / ``lock.release()`` is slightly faster than ``with lock:``.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int | HasFileno) -> None:
        """``fd``: an open file descriptor, or an object with ``fileno()`` (an open file)."""
        if isinstance(fd, bool) or not (
            (isinstance(fd, int) and fd >= 0) or callable(getattr(fd, "fileno", None))
        ):
            msg = (
                "ReadersLock needs an open file descriptor (an int >= 0) or a file object, not "
                f"{fd!r}"
            )
            raise InvalidArgumentError(msg)
        self.fd = fd

    def acquire(self, timeout: float | None = None) -> None:
        """Take the shared lock; with ``timeout`` (seconds), LockTimeoutError when it passes."""
        seconds = timeout_seconds(timeout, "ReadersLock.acquire(timeout=...)")
        if seconds is None:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            return
        deadline = time.monotonic() + seconds
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    msg = f"the readers lock on fd {self.fd} was not granted within {timeout} s"
                    raise LockTimeoutError(msg, timeout=seconds) from None
                time.sleep(pause)
                pause = min(pause * 2, 0.01)
            else:
                return

    def release(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    def __enter__(self) -> ReadersLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


__all__ = ["ReadersLock", "held_by_anyone", "hold_liveness", "remove_if_unused"]
