"""The read protocol: lock-free reads and their validation, reads under the lock, fetch(fn), view().

Lock-free (x86, two slots; see ``_layout``): load the state word, read the current slot, load
the state again; a read is whole if ``read_was_whole`` says so, else a writer lapped it and it
is retried. A reader still lapped after ``Tuning.optimistic_budget_ns`` asks writers to pause
and reads under the writer mutex, so a writer assigning in a tight loop cannot starve it.

Under the lock (single-slot objects, CPUs other than x86, readers lapped again and again): the
segment's WriterLock takes the mutex as a reader (``WriterLock.read``); nothing changes while it
is held, so an error there is corruption, never a lap.

fetch(fn) hands ``fn`` read-only views into the slot and copies only what its result still
points into shared memory (``apply``). view() hands out the views themselves, for the length of
a ``with`` block (:class:`ZeroCopyView`).

Every function here works on a :class:`~._handle.Handle` and its fields.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

from . import _codecs, _layout, _schema
from ._errors import IncompleteValueError, InvalidArgumentError, TypeMismatchError
from ._handle import DECODE_ERRORS, Handle, Slot
from ._writer_lock import ClosedLock, WriterLock

FetchFn = Callable[[Any], Any]
_monotonic_ns = time.monotonic_ns
_getrefcount = sys.getrefcount
_read_was_whole = _layout.read_was_whole
_STATE = _layout.STATE_WORD

try:  # numpy >= 2.0 moved it
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # pragma: no cover - numpy 1.x
    _byte_bounds = np.byte_bounds  # type: ignore[attr-defined]


#: What a lock-free attempt answers when a writer overtook it (see read_lock_free).
LAPPED: Any = object()


def read_lock_free(h: Handle, attempt: Callable[[int], Any], tries: int | None = None) -> Any:
    """``attempt(state)``, a read of the slot that the state word ``state`` names, until one is
    whole: its value, or LAPPED if writers overtook every try (``tries``, by default the
    handle's ``header_read_tries``).

    This is the retry of every lock-free read but fetch's own, which ``_fetch_open`` (and, inline,
    ``SharedObject.fetch``) repeat for speed, on a time budget rather than a count of tries (a
    test runs every read path through the same laps and corruptions). A read that fails on
    data a writer was overwriting is a lap, tried again; a read that fails on data that stayed
    whole is corruption: LayoutError. ``attempt`` checks that what it read stayed whole and
    answers LAPPED if not.
    """
    words = h._words
    whole = h._whole
    for _ in range(h._tuning.header_read_tries if tries is None else tries):
        state = words[_STATE]
        try:
            value = attempt(state)
        except DECODE_ERRORS as exc:
            if whole(state, words[_STATE]):
                raise h._as_layout_error(exc) from exc
            continue
        if value is not LAPPED:
            return value
    return LAPPED


def fetch_slow(h: Handle, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
    """fetch() beyond its inline fast paths: fn, out=, a lap, the lock, a closed handle."""
    h._check_open()
    if fn is not None or out is not None:
        fetch_arguments(fn, out)
    try:
        return _fetch_open(h, fn, out)
    except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile? (fn can take a while)
        raise h._closed_during("fetch", exc, started_open=True)  # noqa: B904 - sets the cause; re-raises exc if open


def fetch_arguments(fn: Callable[[Any], Any] | None, out: np.ndarray[Any, Any] | None) -> None:
    """Refuse what fetch cannot honour (the kind of ``out`` is checked on reading)."""
    if fn is not None and out is not None:
        msg = (
            "fetch takes fn or out=, not both (to copy fn's result into your array: "
            "np.copyto(out, obj.fetch(fn)))"
        )
        raise InvalidArgumentError(msg)
    if fn is not None and not callable(fn):
        msg = f"fetch(fn): fn must be callable (it gets the value), not {fn!r}"
        raise InvalidArgumentError(msg)
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        msg = "fetch(out=...): out is read-only; pass a writable array"
        raise InvalidArgumentError(msg)


def _fetch_open(h: Handle, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
    # A handle whose last copy took more than half the budget (a 10 MB array, or any frame on a
    # starved CPU) goes straight to the mutex: another lock-free copy that long would most likely
    # be lapped again. fetch_locked re-measures, so a handle whose copies got fast again goes
    # back to lock-free retries, which do not block the writer.
    if h._lock_free and not h._slow_reads:
        budget = h._tuning.optimistic_budget_ns
        budget_end = _monotonic_ns() + budget
        while True:
            started = _monotonic_ns()
            done, value = _read_once(h, fn, out)
            if done:
                return value
            now = _monotonic_ns()
            if now >= budget_end:
                h._slow_reads = now - started > budget // 2
                break
    return fetch_locked(h, fn, out)


def _read_once(h: Handle, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> tuple[bool, Any]:
    """One lock-free read: (True, value), or (False, None) if a writer lapped it.

    An error on data that stayed stable is real: corruption becomes LayoutError, and fn's own
    exceptions propagate as they are. An error on torn data is just a lap.
    """
    words = h._words
    whole = h._whole
    s1 = words[_STATE]
    try:
        slot = h._slot_for_read(h._slot_index(s1))
        buf = h._buf  # after the lookup: it may have remapped a grown segment
        if out is not None:
            value = copy_into(out, slot.node, buf, slot.base)
        elif fn is not None:
            views = ViewsForFn(slot.node, buf, slot.base)
        else:
            value = slot.read()
    except DECODE_ERRORS as exc:
        if whole(s1, words[_STATE]):
            raise h._as_layout_error(exc) from exc
        return False, None
    if fn is not None:
        try:
            value = apply(h, fn, views)
        except Exception:  # fn on torn data may raise anything: a lap, unless the data was whole
            if whole(s1, words[_STATE]):
                raise
            return False, None
    if not whole(s1, words[_STATE]):
        return False, None
    if h._dynamic:
        h._keep(h._slot_index(s1), slot)
    h._seen = s1 >> _layout.CHANGE_SHIFT
    if h._ring:
        h._history.next = h._seen + 1
    return True, value


def fetch_locked(h: Handle, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
    """Read under the writer mutex; ``fn`` runs while it is held (writers wait for it, as for a
    view() block), so it sees the stored data in place and only what its result keeps is copied."""
    lock = h._lock  # the one we lock is the one we unlock, even if fn closes this handle

    def section() -> tuple[int, Any]:
        state = locked_state(h)
        try:
            index = h._slot_index(state)
            slot = h._keep(index, h._slot_for_read(index))
            timed = (
                h._lock_free
            )  # only lock-free handles use _slow_reads: no clock reads for the others
            started = _monotonic_ns() if timed else 0
            if out is not None:
                value = copy_into(out, slot.node, h._buf, slot.base)
            elif fn is not None:
                views = ViewsForFn(slot.node, h._buf, slot.base)
            else:
                value = slot.read()
            if timed:
                h._slow_reads = _monotonic_ns() - started > h._tuning.optimistic_budget_ns // 2
        except DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: this is corruption
            raise h._as_layout_error(exc) from exc
        if fn is not None:  # fn's own exceptions propagate as they are
            value = apply(h, fn, views)
        return state, value

    state, value = lock.read(h._tuning, section)
    h._seen = state >> _layout.CHANGE_SHIFT
    if h._ring:
        h._history.next = h._seen + 1
    return value


def locked_state(h: Handle) -> int:
    """The state word, read holding the mutex; IncompleteValueError where a writer died mid-assign.

    A single-slot object's WRITING bit set while we hold the mutex means its last writer died
    in the middle of an assign: its one slot is incomplete until the next assign.
    """
    state: int = h._words[_STATE]
    if state & _layout.WRITING and h._single_slot:
        msg = (
            f"the last writer of single-slot segment {h.name!r} died in the middle of an assign: "
            "its value is incomplete until the next assign (two-slot objects keep the last "
            "complete value)"
        )
        raise IncompleteValueError(msg, name=h.name)
    return state


def current_node(h: Handle) -> _codecs.Node:
    """The node of the value readers read now (for kind and repr), read as fetch reads it.

    A fixed object's slots were loaded at open and never change. A dynamic object's current slot
    header may be rewritten under us: it is read lock-free and validated as a value is (a lap
    retries), or under the writer mutex where reads take it.
    """
    if not h._dynamic:
        return h._slot_for_read(0).node
    if h._lock_free:

        def attempt(state: int) -> Any:
            slot = h._slot_for_read(h._slot_index(state))
            if not h._whole(state, h._words[_STATE]):
                return LAPPED
            return h._keep(h._slot_index(state), slot).node

        node = read_lock_free(h, attempt)
        if node is not LAPPED:
            return node  # type: ignore[no-any-return]

    def section() -> _codecs.Node:
        state = locked_state(h)
        try:
            index = h._slot_index(state)
            return h._keep(index, h._slot_for_read(index)).node
        except DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: this is corruption
            raise h._as_layout_error(exc) from exc

    return h._lock.read(h._tuning, section)


class RawValue(NamedTuple):
    """A value as it lies in its slot, copied whole: what a recorder or a bridge sends on.

    ``shared_object.payload`` reads it back into a value, and ``create``s or ``assign``s of
    that value lay it out the same way again.
    """

    #: The schema's JSON text (see ``shared_object.payload``), as stored in the slot.
    schema_text: bytes
    #: The payload bytes, laid out by the schema: the caller's ``into`` buffer, if it gave one.
    payload: bytes | bytearray
    #: The change counter of this value: one more for every assign and trigger.
    change: int
    #: time.time_ns() of the change.
    mtime_ns: int


def fetch_raw(h: Handle, into: bytearray | None = None) -> RawValue:
    """The current value's schema text and payload bytes, never torn, without decoding them.

    Lock-free where reads are: a copy that a writer lapped, or whose change counter or mtime
    moved meanwhile, is read again; after ``header_read_tries`` laps, under the mutex. Like
    fetch, it marks the change seen (``modified`` turns false).

    ``into``: a buffer of the caller's (the previous payload), resized to the payload's size if
    it must be, written over, and returned as the payload. A follower of a camera frame copies
    into the same memory every time: a fresh megabyte allocation costs the kernel a page fault
    per 4 KiB page, more than the copy itself. Without it the payload is new bytes.
    """
    h._check_open()
    try:
        raw = _raw_lock_free(h, into) if h._lock_free else None
        if raw is None:

            def section() -> RawValue:
                state = locked_state(h)
                try:
                    return _copy_slot(h, state, h._words[_layout.MTIME_WORD], into)
                except DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: corruption
                    raise h._as_layout_error(exc) from exc

            raw = h._lock.read(h._tuning, section)
    except _ResizeError as exc:
        raise InvalidArgumentError(str(exc)) from exc.__cause__
    except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
        raise h._closed_during("fetch", exc, started_open=True)  # noqa: B904 - sets the cause
    h._seen = raw.change
    h._history.next = raw.change + 1
    return raw


class _ResizeError(Exception):
    """``fetch_raw``'s ``into`` cannot be resized (something holds a view of it): not a lap."""


def _raw_lock_free(h: Handle, into: bytearray | None) -> RawValue | None:
    """A whole copy read without the lock, or None if writers lapped every try."""

    def attempt(state: int) -> Any:
        mtime = h._words[_layout.MTIME_WORD]
        raw = _copy_slot(h, state, mtime, into)
        # The same change and the same mtime after the copy: the value and its time agree.
        words = h._words
        if (
            words[_STATE] >> _layout.CHANGE_SHIFT == raw.change
            and words[_layout.MTIME_WORD] == mtime
        ):
            return raw
        return LAPPED

    raw = read_lock_free(h, attempt)
    return None if raw is LAPPED else raw


def _copy_slot(h: Handle, state: int, mtime_ns: int, into: bytearray | None) -> RawValue:
    slot = h._slot_for_read(h._slot_index(state))
    buf = h._buf
    schema_len = _layout.SLOT_HEADER.unpack_from(buf, slot.offset)[1]
    start = slot.offset + _layout.SLOT_HEADER_SIZE
    text = bytes(buf[start : start + schema_len])
    source = buf[slot.base : slot.base + slot.node.size]
    payload: bytes | bytearray
    if into is not None:
        if len(into) != len(source):
            try:
                if len(into) > len(source):
                    del into[len(source) :]
                else:
                    into.extend(bytes(len(source) - len(into)))
            except BufferError as exc:
                msg = (
                    f"fetch_raw(into=...): the buffer must grow to {len(source)} bytes, and "
                    "something holds a view of it (a memoryview, a numpy array): release it, "
                    "or give another buffer"
                )
                raise _ResizeError(msg) from exc
        with memoryview(into) as target:  # one memcpy (a bytearray slice assignment is
            target[:] = source  # twice as slow, and a slow copy is lapped by a fast writer)
        payload = into
    else:
        payload = bytes(source)
    return RawValue(text, payload, state >> _layout.CHANGE_SHIFT, mtime_ns)


# ---------------------------------------------------------------------------------------------
# fetch(fn): views in, private values out
# ---------------------------------------------------------------------------------------------
class ViewsForFn:
    """The read-only views ``fetch(fn)`` hands to fn, and the root arrays they were made from."""

    __slots__ = ("base", "buf", "node", "roots", "value")

    def __init__(self, node: _codecs.Node, buf: memoryview, base: int) -> None:
        self.node, self.buf, self.base = node, buf, base
        self.roots: list[object] = [object()]  # a control first: see apply
        self.value: Any = node.view(buf, base, self.roots)

    def take(self) -> Any:
        """The views, dropping our own reference: from then on only what the caller keeps holds
        them.
        """
        value, self.value = self.value, None
        return value


def apply(h: Handle, fn: FetchFn, views: ViewsForFn) -> Any:
    """``fn`` of the value's read-only views, with a result that no longer points into shared
    memory.

    Views in the result's arrays, tuples, lists and dicts are copied (only what fn kept: a slice
    of a frame costs the slice). A view that something else still holds (a namedtuple or
    dataclass of the caller's, ``torch.from_numpy(x)``, a closure) cannot be copied from outside,
    and would show later assigns: then fn runs again, on a private copy.
    """
    result = _detach(h, fn(views.take()))  # the call's argument is the views' only holder
    # roots[0] is a control that only the list holds: held by more, a root has escaped. (Not a
    # number: what getrefcount reports differs between versions; 3.14 borrows its argument.)
    counts = [_getrefcount(root) for root in views.roots]
    if max(counts) > counts[0]:
        return fn(views.node.read(views.buf, views.base))
    return result


def _detach(h: Handle, value: Any) -> Any:
    """Copy whatever in ``value`` still points into the shared mapping."""
    if isinstance(value, np.ndarray):
        return value.copy() if _points_into_mapping(h, value) else value
    if type(value) in (tuple, list):
        return type(value)(_detach(h, v) for v in value)
    if type(value) is dict:
        return {k: _detach(h, v) for k, v in value.items()}
    if isinstance(value, memoryview):  # of a view, or of a slice of one: keep its format and shape
        try:
            array = np.asarray(value)
        except (ValueError, TypeError):  # a format numpy does not read: copy the bytes
            return memoryview(value.tobytes())
        return memoryview(array.copy()) if _points_into_mapping(h, array) else value
    return value  # anything else holding a view: see apply


def _points_into_mapping(h: Handle, array: np.ndarray[Any, Any]) -> bool:
    if not array.size:
        return False
    lo, hi = _byte_bounds(array)
    return any(lo < end and hi > start for start, end in h._map_ranges)


def copy_into(
    out: np.ndarray[Any, Any], node: _codecs.Node, buf: memoryview, base: int
) -> np.ndarray[Any, Any]:
    """fetch(out=...): copy an ndarray value into the caller's array of the same dtype and shape."""
    if not isinstance(node, _codecs.ArrayNode):
        msg = f"fetch(out=...) needs an ndarray object; this one holds {node.describe()}"
        raise TypeMismatchError(msg)
    if not isinstance(out, np.ndarray) or out.dtype != node.dtype or out.shape != node.shape:
        msg = f"fetch(out=...): stored kind is {node.describe()}, out is {_schema.describe(out)}"
        raise TypeMismatchError(msg)
    np.copyto(out, node.views(buf, base)[1])
    return out


# ---------------------------------------------------------------------------------------------
# view(): the zero-copy read
# ---------------------------------------------------------------------------------------------
class ZeroCopyView:
    """What ``SharedObject.view()`` returns: ``value`` inside the block, ``torn`` after it."""

    __slots__ = (
        "__weakref__",
        "_handle",
        "_lock",
        "_locked",
        "_slot",
        "_state",
        "_words",
        "torn",
        "value",
    )

    def __init__(self, handle: Handle) -> None:
        self._handle = handle
        self._state = 0
        #: The words the block started from: the handle may be closed inside the block.
        self._words: memoryview | None = None
        #: Whether the block reads under the mutex (this block's, or an enclosing read block's).
        self._locked = False
        #: The lock this block took, released through it even if the handle is closed inside
        #: the block; None when it took none (lock-free, or nested in a block that holds it).
        self._lock: WriterLock | ClosedLock | None = None
        #: The slot a lock-free block views: its handle keeps it once the block proved untorn.
        self._slot: Slot | None = None
        #: The value, with array leaves as read-only views into shared memory (inside the block).
        self.value: Any = None
        #: After the block: True if a writer overwrote the viewed data during it.
        self.torn = False

    def __enter__(self) -> ZeroCopyView:
        h = self._handle
        try:
            if h._lock_free and self._enter_lock_free(h):
                return self
            lock: WriterLock | ClosedLock = (
                h._lock
            )  # closed since view(): open_block raises ClosedError
            self._lock = lock
            taken = lock.open_block(self, h._tuning)
            self._locked = True
            if not taken:
                self._lock = (
                    None  # nested in a read block of this thread: the lock stays with that block
                )
            self._state = locked_state(h)
            slot = h._slot_for_read(h._slot_index(self._state))
            if h._dynamic:
                h._keep(h._slot_index(self._state), slot)  # under the mutex: whole
            self.value = slot.node.view(h._buf, slot.base)
        except BaseException as exc:
            held = self._lock
            self._lock = None
            if self._locked:
                self._locked = False
                if held is not None:
                    held.unlock(held.ref)
                    held.close_block(self)
            elif held is not None:  # open_block's outcome is unknown: interrupted as it returned
                held.close_block(self)
                held.release_if_abandoned()
            if isinstance(exc, Exception):  # closed by another thread meanwhile?
                raise h._closed_during("view", exc)  # noqa: B904 - it sets the cause itself
            raise
        return self

    def _enter_lock_free(self, h: Handle) -> bool:
        """Make the views without the lock; False if writers lapped every try (take the lock then).

        Setting up reads a dynamic object's slot header and schema, which a writer lapping us may
        be rewriting: that is a lap to retry, while an error on data that stayed put is corruption.
        """
        self._words = h._words

        def attempt(state: int) -> Any:
            slot = h._slot_for_read(h._slot_index(state))
            self.value = slot.node.view(h._buf, slot.base)
            self._state = state
            return slot  # whole or not, __exit__ says (``torn``)

        slot = read_lock_free(h, attempt)
        if slot is LAPPED:
            self._words = None
            return False
        self._slot = slot
        return True

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        h = self._handle
        if self._locked:
            lock = self._lock
            self._locked = False
            if lock is not None:
                self._lock = None
                lock.unlock(lock.ref)  # the C unlock first, with no Python call before it
                lock.close_block(self)
            self.torn = False
        else:
            # The words from __enter__: they keep the mapping, so this holds even if the handle
            # was closed inside the block.
            words = self._words
            self.torn = words is None or not h._whole(self._state, words[_STATE])
            slot, self._slot = self._slot, None
            if not self.torn and slot is not None and h._dynamic and not h.closed:
                h._keep(h._slot_index(self._state), slot)
        self._words = None
        if not self.torn:
            h._seen = self._state >> _layout.CHANGE_SHIFT
        self.value = None  # drop the views: they must not outlive the block


__all__ = [
    "LAPPED",
    "FetchFn",
    "RawValue",
    "ZeroCopyView",
    "apply",
    "copy_into",
    "current_node",
    "fetch_locked",
    "fetch_raw",
    "fetch_slow",
    "locked_state",
    "read_lock_free",
]
