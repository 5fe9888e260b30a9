"""_flock: the reference's ReadersLock, kept as a public utility, and segment liveness."""

from __future__ import annotations

import fcntl
import os
from typing import Any

import pytest

from shared_object import InvalidArgumentError, LockTimeoutError, ReadersLock, SharedObject


def test_readers_lock_is_a_shared_flock(tmp_path: pytest.TempPathFactory) -> None:
    import fcntl
    import os

    path = os.path.join(str(tmp_path), "lockfile")
    fd1 = os.open(path, os.O_CREAT | os.O_RDWR)
    fd2 = os.open(path, os.O_RDWR)
    fd3 = os.open(path, os.O_RDWR)
    try:
        with ReadersLock(fd1):
            ReadersLock(fd2).acquire(timeout=1)  # readers share
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd3, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a writer is kept out
            ReadersLock(fd2).release()
        fcntl.flock(fd3, fcntl.LOCK_EX)
        from shared_object import LockTimeoutError

        with pytest.raises(LockTimeoutError):
            ReadersLock(fd1).acquire(timeout=0.05)
    finally:
        for fd in (fd1, fd2, fd3):
            os.close(fd)


@pytest.mark.parametrize("fd", [-1, "3", None, True, 2.0])
def test_readers_lock_needs_a_file_descriptor(fd: Any) -> None:
    with pytest.raises(InvalidArgumentError, match="ReadersLock needs an open file descriptor"):
        ReadersLock(fd)


def test_readers_lock_takes_a_file_object(tmp_path: pytest.TempPathFactory) -> None:
    import fcntl
    import os

    path = os.path.join(str(tmp_path), "lockfile")
    with open(path, "w") as file, open(path) as other:
        with ReadersLock(file), pytest.raises(BlockingIOError):
            fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released


def test_readers_lock_gives_up_after_its_timeout(tmp_path: pytest.TempPathFactory) -> None:
    path = str(tmp_path / "f")  # type: ignore[operator]
    with open(path, "w") as writer_file, open(path) as reader_file:
        fcntl.flock(writer_file, fcntl.LOCK_EX)
        with pytest.raises(LockTimeoutError, match="not granted within 0.05 s"):
            ReadersLock(reader_file).acquire(timeout=0.05)
        fcntl.flock(writer_file, fcntl.LOCK_UN)
        ReadersLock(reader_file).acquire(timeout=0.05)


def test_liveness_tells_a_held_segment_from_a_stale_one(shm_name: str) -> None:
    from shared_object import _flock, _segment

    path = _segment.segment_path(shm_name)
    with SharedObject.create(shm_name, 1):
        assert _flock.held_by_anyone(path)
        assert not _flock.remove_if_unused(path)  # a handle holds it: left alone
    assert not _flock.held_by_anyone(path)
    assert _flock.remove_if_unused(path)  # nobody holds it: removed
    assert not os.path.exists(path)
