"""Segments: files in /dev/shm, opened with ``os.open`` and mapped with ``mmap``.

We never go through ``multiprocessing.shared_memory``: its resource tracker registers a segment
in every process that merely attaches (Python < 3.13) and unlinks it when that process exits,
under every other user's feet. Here a segment disappears only when someone calls ``unlink``.

Creation is atomic: the creator fills a private temporary file (``.shared_object-tmp-...``),
then publishes it under its name with ``link``, which fails if the name exists. So nobody can
attach to a half-initialized segment, and two creators racing for one name cannot both win.
"""

from __future__ import annotations

import errno
import mmap
import os
import re
import secrets
import stat
import time
from typing import Final

from ._errors import (
    InvalidNameError,
    LayoutError,
    OutOfSharedMemoryError,
    SegmentExistsError,
    SegmentNotFoundError,
    SegmentPermissionError,
)
from ._lock import hold_liveness

#: Where segments live. Override with SHARED_OBJECT_DIR (e.g. a tmpfs bind-mounted into containers).
SHM_DIR: Final = os.environ.get("SHARED_OBJECT_DIR", "/dev/shm")  # noqa: S108 - it is the shared-memory dir
TEMP_PREFIX: Final = ".shared_object-tmp-"
MAX_NAME_LENGTH: Final = 200  # NAME_MAX is 255; leave room for the temporary prefix and suffix
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

IPC_HINT: Final = (
    "Processes in different containers see each other's segments only when they share an IPC "
    "namespace (compose: `ipc: shareable` on the producer and `ipc: \"service:<producer>\"` on the "
    "consumer; docker run: --ipc container:<producer>) or bind-mount the same /dev/shm."
)
SHM_SIZE_HINT: Final = (
    "In a container, /dev/shm is 64 MiB unless the producer sets `shm_size` "
    "(compose `shm_size: 512m`, docker run --shm-size 512m)."
)


def validate_name(name: object) -> str:
    """Return ``name`` if it can name a segment file, else raise InvalidNameError."""
    if not isinstance(name, str):
        msg = f"a segment name must be a str, not {type(name).__name__}"
        raise InvalidNameError(msg)
    if not name or len(name) > MAX_NAME_LENGTH or not _NAME_RE.fullmatch(name):
        msg = (
            f"invalid segment name {name!r}: use 1 to {MAX_NAME_LENGTH} characters from "
            "letters, digits, '_', '-' and '.', not starting with '.' or '-' (no '/', no NUL)"
        )
        raise InvalidNameError(msg)
    return name


def segment_path(name: str) -> str:
    """The file that holds segment ``name``."""
    return os.path.join(SHM_DIR, validate_name(name))


class Segment:
    """An open, mapped segment file. The mapping covers the whole file and can be refreshed."""

    __slots__ = ("_retired", "buf", "fd", "mm", "name", "path")

    def __init__(self, name: str, path: str, fd: int) -> None:
        self.name = name
        self.path = path
        self.fd = fd
        size = os.fstat(fd).st_size
        if size == 0:  # mmap refuses empty files; say what it means for us
            msg = f"segment {name!r} is truncated: 0 bytes"
            raise LayoutError(msg)
        self.mm: mmap.mmap = mmap.mmap(fd, size)
        self.buf: memoryview = memoryview(self.mm)
        # Old mappings that callers may still hold views into; unmapped when those views die.
        self._retired: list[mmap.mmap] = []

    # -- creation and opening -------------------------------------------------------------
    @classmethod
    def create_private(cls, name: str, size: int, mode: int) -> Segment:
        """Make a fully reserved, not yet visible segment file; ``publish`` makes it visible."""
        validate_name(name)
        path = os.path.join(SHM_DIR, f"{TEMP_PREFIX}{name}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        except FileNotFoundError as exc:
            msg = f"the shared-memory directory {SHM_DIR} does not exist"
            raise SegmentNotFoundError(msg) from exc
        try:
            os.fchmod(fd, mode)  # the umask must not narrow the mode asked for
            hold_liveness(fd)  # a private file: nobody else can hold it yet
            reserve(fd, 0, size, name)
            return cls(name, path, fd)
        except BaseException:
            os.close(fd)
            os.unlink(path)
            raise

    def publish(self) -> None:
        """Give the private file its name; SegmentExistsError if the name is taken."""
        final = segment_path(self.name)
        try:
            os.link(self.path, final)
        except FileExistsError as exc:
            msg = f"a segment named {self.name!r} already exists in {SHM_DIR}"
            raise SegmentExistsError(msg) from exc
        finally:
            os.unlink(self.path)
        self.path = final

    def discard(self) -> None:
        """Close and delete a private segment that was never published."""
        self.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    @classmethod
    def open(cls, name: str) -> Segment:
        """Open and map an existing segment by name."""
        path = segment_path(name)
        for _ in range(1000):  # retried only while `gc` is removing this very name
            try:
                fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
            except FileNotFoundError as exc:
                msg = f"no shared object named {name!r} in {SHM_DIR}. {IPC_HINT}"
                raise SegmentNotFoundError(msg) from exc
            except PermissionError as exc:
                msg = f"segment {name!r} exists but this process may not open it ({_owner(path)}); {_mode_hint()}"
                raise SegmentPermissionError(msg) from exc
            if hold_liveness(fd) and _same_file(path, fd):
                break
            os.close(fd)  # gc held it, or removed the name after we opened it: look again
            time.sleep(0.001)
        else:
            msg = f"segment {name!r} kept being removed while attaching"
            raise SegmentNotFoundError(msg)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            msg = f"{path} is not a regular file"
            raise SegmentNotFoundError(msg)
        try:
            return cls(name, path, fd)
        except BaseException:
            os.close(fd)
            raise

    # -- size ------------------------------------------------------------------------------
    def file_size(self) -> int:
        return os.fstat(self.fd).st_size

    def refresh(self) -> bool:
        """Map the file again if it grew since it was mapped; True if the mapping changed.

        The old mapping is kept (not unmapped) until ``close``: addresses taken from it, such as
        the writer mutex's, stay valid, and views handed out earlier never dangle. It costs
        address space only; the pages are the file's, shared with the new mapping.
        """
        size = self.file_size()
        if size <= len(self.mm):
            return False
        self._retired.append(self.mm)
        self.mm = mmap.mmap(self.fd, size)
        self.buf = memoryview(self.mm)
        return True

    def grow(self, size: int) -> None:
        """Grow the file to ``size`` bytes, reserving the memory now, and remap."""
        current = self.file_size()
        if size > current:
            reserve(self.fd, current, size - current, self.name)
        self.refresh()

    # -- teardown --------------------------------------------------------------------------
    def close(self) -> None:
        """Unmap and close the file descriptor; the segment itself stays."""
        if self.fd < 0:
            return
        try:
            self.buf.release()
        except BufferError:
            pass
        for mm in (*self._retired, self.mm):
            try:
                mm.close()
            except BufferError:  # a caller still holds a view into it: unmapped when that view dies
                pass
        self._retired.clear()
        os.close(self.fd)
        self.fd = -1


def reserve(fd: int, offset: int, length: int, name: str) -> None:
    """Allocate the pages now, so a full /dev/shm fails here and not with SIGBUS later."""
    try:
        os.posix_fallocate(fd, offset, length)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EFBIG):
            raise
        vfs = os.statvfs(SHM_DIR)
        free, total = vfs.f_bavail * vfs.f_frsize, vfs.f_blocks * vfs.f_frsize
        msg = (
            f"no room in {SHM_DIR} for segment {name!r}: asked for {_fmt(length)}, "
            f"{_fmt(free)} free of {_fmt(total)}. {SHM_SIZE_HINT}"
        )
        raise OutOfSharedMemoryError(errno.ENOSPC, msg) from exc


def unlink(name: str) -> None:
    """Remove segment ``name`` from /dev/shm; handles keep their mapping until they close."""
    try:
        os.unlink(segment_path(name))
    except FileNotFoundError as exc:
        msg = f"no shared object named {name!r} in {SHM_DIR}"
        raise SegmentNotFoundError(msg) from exc


def _same_file(path: str, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False


def _owner(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "owner unknown"
    mode = stat.S_IMODE(st.st_mode)
    return f"owner uid {st.st_uid}, gid {st.st_gid}, mode {mode:#o}; this process is uid {os.getuid()}"


def _mode_hint() -> str:
    return (
        "the creator must pass mode=0o666 (any user) or mode=0o660 with a group both processes share "
        "(in compose, run both services with the same `user:`)"
    )


def _fmt(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"  # pragma: no cover


__all__ = [
    "IPC_HINT", "SHM_DIR", "SHM_SIZE_HINT", "TEMP_PREFIX",
    "Segment", "reserve", "segment_path", "unlink", "validate_name",
]
