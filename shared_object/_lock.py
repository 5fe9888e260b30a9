"""ReadersLock: the reference library's shared ``fcntl.flock`` lock, kept as a public utility.

shared_object's own objects do not use it: ``flock`` costs two system calls per acquisition and
promises no fairness (a busy writer can starve readers indefinitely). They use a lock-free
two-slot protocol for reads and a robust mutex for writers instead (see ``_layout`` and
``_sync``). ReadersLock remains for code that coordinates its own files the reference's way.

``flock`` locks belong to the open file description: two ``os.open`` calls on one file contend
even inside one process, while a forked child shares its parent's lock.
"""

from __future__ import annotations

import fcntl
import time
from types import TracebackType

from ._errors import LockTimeoutError


class ReadersLock:
    """A shared (readers) ``flock`` on ``fd``: many holders at once, none while a writer holds LOCK_EX.

    ``lock.acquire()`` / ``lock.release()`` is slightly faster than ``with lock:``.
    """

    __slots__ = ("fd",)

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def acquire(self, timeout: float | None = None) -> None:
        """Take the shared lock; with ``timeout`` (seconds), raise LockTimeoutError when it passes."""
        if timeout is None:
            fcntl.flock(self.fd, fcntl.LOCK_SH)
            return
        deadline = time.monotonic() + timeout
        pause = 0.0001
        while True:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    msg = f"the readers lock on fd {self.fd} was not granted within {timeout} s"
                    raise LockTimeoutError(msg) from None
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
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


__all__ = ["ReadersLock"]
