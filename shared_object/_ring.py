"""History objects' hot paths: ``fetch``, ``assign`` and ``trigger`` on a ring of N slots, where
change ``k``'s value lies in slot ``k mod N`` (``_layout``, "The ring").

A history object is an instance of ``_object._with_ring(cls)``, a class made of ``RingPaths``
and the class asked for, chosen when the object is made: neither these paths nor those of an
object without a history test which one they are on, each is a method of its own. What else a
history object does (``fetch_new``, ``lost``) is in ``_history``.

The same protocol as ``SharedObject``'s, inlined as its hot paths are, and pinned to it by a test
(tests/test_object.py); what differs: the slot written is the ring's next, its change time is
stored with it, and a trigger copies the value into the next slot (every change has one).
"""

from __future__ import annotations

import os
import struct
import time
from typing import Any, ClassVar, TypeVar

import numpy as np

from . import _layout, _segment
from ._handle import DECODE_ERRORS, Handle
from ._reading import FetchFn, fetch_slow

Self = TypeVar("Self", bound="RingPaths")

_time_ns = time.time_ns
_copyto = np.copyto
_STATE, _MTIME = _layout.STATE_WORD, _layout.MTIME_WORD


class RingPaths(Handle):
    """The hot paths of a SharedObject with a history (mixed in before its class: see the
    module's docstring); their documentation is SharedObject's."""

    #: The class this one was made from (what pickling attaches as, what a handle whose name
    #: comes to hold a segment without a history becomes).
    _made_from: ClassVar[type[Handle]]

    def fetch(self, fn: FetchFn | None = None, *, out: np.ndarray[Any, Any] | None = None) -> Any:
        if fn is None and out is None and self._lock_free:
            # Lock-free: the newest value's slot is its change number mod the ring's size.
            words = self._words
            try:
                s1 = words[2]  # STATE
                value = self._slots[(s1 >> 2) % self._ring].read()  # type: ignore[union-attr]  # fixed objects: all loaded
                s2 = words[2]
                if s2 == s1 or self._whole(s1, s2):
                    change = s1 >> 2
                    self._seen = change
                    self._history.next = change + 1
                    return value
                del value  # a lap: see SharedObject.fetch
            except DECODE_ERRORS:  # closed (ClosedError below), torn or corrupt: slow path
                self._check_open()
            except Exception as exc:  # noqa: BLE001 - closed by another thread during the read?
                raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        return fetch_slow(self, fn, out)

    def assign(self: Self, data: Any) -> Self:  # noqa: PLR0912, PLR0915 - inlined, as SharedObject's
        fast = self._fast
        if type(data) is fast[0]:
            # A bool/int/float, as in SharedObject.assign. A ring's fast tuple holds each slot's
            # offset, then each slot's mtime word index (see Handle._load_fixed_slots).
            words = self._words
            lock = self._lock
            ring = self._ring
            rc = -1  # the inline protocol: see WriterLock.take_after_trylock
            try:
                lock.inline += 1
                rc = lock.trylock(lock.ref)
                if rc:
                    busy, rc = rc, -1
                    rc = lock.take_after_trylock(busy, self._tuning)
                state = words[2]
                change = (state >> 2) + 1
                target = change % ring  # the ring's next slot: the oldest value's
                words[2] = state | 2  # WRITING: the oldest value is being overwritten
                fast[1](self._buf, fast[2 + target], data)
                now = _time_ns()
                words[fast[2 + ring + target]] = now  # the slot's change time
                words[3] = now
                words[2] = change << 2  # the publication (bit 0 unused)
            except struct.error:  # an int beyond 64 bits: nothing was written
                words[2] = state
                self._prepare(data)
                raise
            except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
                raise self._closed_during("assign", exc)  # noqa: B904 - sets the cause; re-raises exc if open
            finally:
                lock.inline -= 1
                if not rc:
                    lock.unlock(lock.ref)
                elif rc == -1:
                    lock.release_if_abandoned()
            self._seen = change
            if words[4] or words[5]:  # a waiter or a starving reader: wake it, let it read
                lock.after_publish(self._tuning)
            return self
        array = None
        if (
            (array := self._fast_array) is not None
            and type(data) is np.ndarray
            and data.shape == array[1]
            and (data.dtype is array[0] or data.dtype == array[0])
        ):
            writes = None
        else:
            array = None
            writes = self._prepare(data)
            slots = self._slots
        buf = self._buf
        words = self._words
        lock = self._lock
        history = self._history
        ring = self._ring
        rc = -1  # the inline protocol: see WriterLock.take_after_trylock
        try:
            lock.inline += 1
            rc = lock.trylock(lock.ref)
            if rc:
                busy, rc = rc, -1
                rc = lock.take_after_trylock(busy, self._tuning)
            state = words[2]
            change = (state >> 2) + 1
            target = change % ring  # the ring's next slot: the oldest value's
            words[2] = state | 2  # WRITING: the oldest value is being overwritten
            if array is not None:
                _copyto(array[2 + target], data)
            else:
                base = slots[target].base  # type: ignore[union-attr]
                for leaf, value in writes:  # type: ignore[union-attr]  # array is None => writes
                    leaf.write(buf, base, value)
            now = _time_ns()
            words[history.mtime_word + target * history.stride_words] = now  # the slot's time
            words[3] = now
            words[2] = change << 2  # the publication (bit 0 unused)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("assign", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        finally:
            lock.inline -= 1
            if not rc:
                lock.unlock(lock.ref)
            elif rc == -1:
                lock.release_if_abandoned()
        self._seen = change
        if words[4] or words[5]:  # a waiter or a starving reader: wake it, let it read
            lock.after_publish(self._tuning)
        return self

    def trigger(self: Self) -> Self:
        self._check_open()
        words, lock, ring, slots, buf = self._words, self._lock, self._ring, self._slots, self._buf
        history = self._history

        def publish() -> None:  # every change has its slot: the value goes on into the next one
            state = words[_STATE]
            change = (state >> _layout.CHANGE_SHIFT) + 1
            source, target = slots[(change - 1) % ring], slots[change % ring]
            size = source.node.size  # type: ignore[union-attr]  # fixed objects: all loaded
            words[_STATE] = state | _layout.WRITING
            buf[target.base : target.base + size] = buf[source.base : source.base + size]  # type: ignore[union-attr]
            now = _time_ns()
            words[history.mtime_word_of(change % ring)] = now
            words[_MTIME] = now
            words[_STATE] = change << _layout.CHANGE_SHIFT

        try:
            lock.write(self._tuning, publish)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("trigger", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        lock.after_publish(self._tuning)
        return self


def is_history_header(head: Any) -> bool:
    """Whether a segment's first bytes are a history object's: our magic, layout version 2."""
    return len(head) >= _layout.IDENTITY.size and _layout.IDENTITY.unpack_from(head, 0)[:2] == (
        _layout.MAGIC,
        _layout.VERSION_HISTORY,
    )


def is_ring(name: object) -> bool:
    """Whether a segment named ``name`` exists and is a history object's (its layout version).
    False when it cannot tell: ``_bind`` makes sure."""
    if not isinstance(name, str) or not name:
        return False
    try:
        fd = os.open(_segment.segment_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except (OSError, ValueError):
        return False
    try:
        head = os.pread(fd, _layout.IDENTITY.size, 0)
    except OSError:
        return False
    finally:
        os.close(fd)
    return is_history_header(head)


__all__ = ["RingPaths", "is_history_header", "is_ring"]
