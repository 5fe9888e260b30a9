"""Helpers for tests, examples and containers: collision-free names and ports, and the seams
tests use.

The seams reach what no public call shows on purpose: the raw writer mutex (to hold it as a
stuck or dead writer would, unknown to every section of ours) and the handle's writer lock (who
this process thinks holds it).
"""

from __future__ import annotations

import os
import secrets
import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._object import SharedObject
    from ._sync import WriterMutex
    from ._writer_lock import WriterLock


def unique_name(prefix: str = "so-test") -> str:
    """A segment name no other process will pick: ``<prefix>-<pid>-<random hex>``."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_port_pair() -> int:
    """A free port whose next one is free too (the live view's page and its data)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    msg = "no two adjacent free ports on 127.0.0.1 in 50 tries"
    raise OSError(msg)


def writer_lock(obj: SharedObject) -> WriterLock:
    """The WriterLock of ``obj``'s segment in this process (shared by every handle on it)."""
    from ._writer_lock import WriterLock

    lock = obj._lock
    if not isinstance(lock, WriterLock):
        msg = f"{obj!r} is closed: it has no writer lock"
        raise TypeError(msg)
    return lock


def writer_mutex(obj: SharedObject) -> WriterMutex:
    """The raw robust mutex behind ``obj``: ``acquire()`` it to be a writer no section of ours knows
    (stuck, or abandoned by an interrupt), ``release()`` to end that; ``owner_died_count`` counts
    the dead holders this process recovered it from."""
    return writer_lock(obj)._mutex


__all__ = ["free_port", "free_port_pair", "unique_name", "writer_lock", "writer_mutex"]
