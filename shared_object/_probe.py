"""A segment's header, read without a handle, a lock, numpy or the codecs: health probes, ``top``.

A container's healthcheck runs a probe every few seconds for as long as the container lives, so a
probe must cost little more than starting Python. It imports only this module, ``_layout`` and
``_names`` (no numpy: importing it alone costs more than the interpreter's start), maps the first
page of the segment read-only, checks its identity as ``attach`` does, and reads the state and
mtime words as single 8-byte loads (see ``_layout``). It takes no lock and reads no payload, so
it never waits for a writer and never disturbs one.
"""

from __future__ import annotations

import mmap
import os
import time

from . import _layout
from ._errors import LayoutError, SegmentNotFoundError, SegmentPermissionError
from ._names import SHM_DIR, segment_path


class HeaderState:
    """What a segment's header says right now."""

    __slots__ = (
        "changes",
        "current_slot",
        "dynamic",
        "file_size",
        "history",
        "lost",
        "mtime_ns",
        "name",
        "single_slot",
        "writing",
    )

    def __init__(
        self,
        name: str,
        *,
        dynamic: bool,
        single_slot: bool,
        state: int,
        mtime_ns: int,
        file_size: int,
        history: int = 0,
        lost: int = 0,
    ) -> None:
        self.name = name
        self.dynamic = dynamic
        self.single_slot = single_slot
        #: How many assigns and triggers the object has had (the state word's change counter).
        self.changes = state >> _layout.CHANGE_SHIFT
        #: A writer is filling a slot (or, for a single-slot object, died doing so).
        self.writing = bool(state & _layout.WRITING)
        #: The values a history object keeps (0: none), and the values its readers lost.
        self.history, self.lost = history, lost
        #: The slot readers read now.
        self.current_slot = _layout.current_slot(state, history)
        #: time.time_ns() of the last change.
        self.mtime_ns = mtime_ns
        self.file_size = file_size

    def age_s(self, now_ns: int | None = None) -> float:
        """Seconds since the last change."""
        return max(0, (time.time_ns() if now_ns is None else now_ns) - self.mtime_ns) / 1e9


def read_state(name: str) -> HeaderState:
    """The header of segment ``name``.

    Raises SegmentNotFoundError, SegmentPermissionError, or LayoutError if it is not one of ours.
    """
    path = segment_path(name)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        msg = f"no shared object named {name!r} in {SHM_DIR}"
        raise SegmentNotFoundError(msg, name=name) from None
    except PermissionError as exc:
        msg = f"segment {name!r} exists but this process may not read it ({exc.strerror})"
        raise SegmentPermissionError(msg, name=name) from None
    try:
        size = os.fstat(fd).st_size
        if size < _layout.HEADER_SIZE:
            _layout.check_identity(b"", size, name)  # raises: truncated
        with mmap.mmap(fd, _layout.HEADER_SIZE, prot=mmap.PROT_READ) as page:
            view = memoryview(page)
            try:
                dynamic, single = _layout.check_identity(view, size, name)
                words = _layout.header_words(view)
                state, mtime = words[_layout.STATE_WORD], words[_layout.MTIME_WORD]
                history = lost = 0
                if not dynamic and not single and words[_layout.RING_WORD]:  # version 2: a ring
                    history, lost = words[_layout.RING_WORD], words[_layout.LOST_WORD]
                words.release()
            finally:
                view.release()
    finally:
        os.close(fd)
    return HeaderState(
        name, dynamic=dynamic, single_slot=single, state=state, mtime_ns=mtime, file_size=size,
        history=history, lost=lost,
    )  # fmt: skip


def health(name: str, max_age_s: float) -> tuple[bool, str]:
    """(healthy, what to print): the segment exists, is ours, and changed within ``max_age_s``."""
    try:
        state = read_state(name)
    except (LayoutError, SegmentNotFoundError, SegmentPermissionError, OSError) as exc:
        return False, f"unhealthy: {exc}"
    age = state.age_s()
    if age > max_age_s:
        return False, f"unhealthy: {name!r} last changed {age:.1f} s ago (over {max_age_s} s)"
    return True, f"healthy: {name!r} changed {age:.2f} s ago"


def starts_with_magic(path: str) -> bool:
    """Whether the file at ``path`` begins as every segment of this library does (OSError if
    unreadable).
    """
    with open(path, "rb") as f:
        return f.read(len(_layout.MAGIC)) == _layout.MAGIC


def is_ours(path: str) -> bool:
    try:
        return starts_with_magic(path)
    except OSError:
        return False


def segment_names() -> list[str]:
    """The names of the segments of this library in SHM_DIR (files that start with its magic)."""
    try:
        entries = os.listdir(SHM_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in entries if not n.startswith(".") and is_ours(os.path.join(SHM_DIR, n)))


__all__ = [
    "HeaderState",
    "health",
    "is_ours",
    "read_state",
    "segment_names",
    "starts_with_magic",
]
