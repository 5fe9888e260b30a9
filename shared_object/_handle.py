"""A handle: one process's open view of a segment, its lifetime, and what it caches of the slots.

:class:`Handle` is the state every other part works on: the mapping and its header words, the
segment's :class:`~._writer_lock.WriterLock`, the slots as this handle last saw them, and the
change it last saw. ``SharedObject`` is a Handle with the public verbs on top; the read protocol
(``_reading``) and the dynamic object's slot movement (``_dynamic``) work on its fields.

Closing across threads. ``close()`` may run while other threads use the handle. It first marks
the handle closed (``_buf`` becomes an empty stand-in), then replaces the other fields with
closed stand-ins one by one. A call already running holds its own references (its words, its
lock, its mapping) and finishes, or fails on whichever stand-in it meets first; it then raises
ClosedError (``_closed_during``). Every call that starts later finds the handle closed.
"""

from __future__ import annotations

import functools
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final

import numpy as np

from . import _codecs, _layout, _schema
from ._errors import ClosedError, LayoutError, SharedObjectError, TypeMismatchError
from ._segment import Segment
from ._sync import WriterMutex, check_mutex_type, futex_wake, lock_abi
from ._tuning import Tuning
from ._writer_lock import ClosedLock, WriterLock

log = logging.getLogger("shared_object")

_getrefcount = sys.getrefcount
_copyto = np.copyto
#: Exact reference counts need the GIL (CPython's free-threaded build defers and biases them).
_RECYCLE: Final = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
#: What decoding torn or corrupt bytes raises, besides our own errors (whose leaves are among
#: these). Only these mean "lapped" on a lock-free read, or "corrupt" under the lock: anything
#: else, such as an exception a signal handler raised, propagates as it is.
DECODE_ERRORS: Final = (
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    OverflowError,
    RecursionError,
    struct.error,
)
#: A closed handle's buffer and header words: any index raises IndexError.
CLOSED_BUF: Final = memoryview(b"")
CLOSED_WORDS: Final = memoryview(b"").cast("Q")
#: (dtype, shape, writable view of slot 0, of slot 1, ... of every slot): the assign fast path
#: of a one-ndarray object.
ArrayFast = tuple[Any, ...]
#: (type, pack_into, offset in slot 0, in slot 1, ... in every slot): the assign fast path of
#: one bool/int/float.
ScalarFast = tuple[Any, ...]
#: The scalar fast path of an object that has none: its [0] is no type (``type(x) is None``
#: never holds), so ``assign`` tests one thing (``type(data) is fast[0]``) on every object.
NO_FAST: Final[ScalarFast] = (None,)
#: The slot readers read under a state word, for an object without a ring: its bit 0.
_BIT_0 = _layout.CURRENT_SLOT.__and__


def closed_error(name: str, during: str = "") -> ClosedError:
    """The one wording of "this handle is closed", for a call made after close() or caught by it."""
    return ClosedError(
        f"the handle on {name!r} " + (f"was closed during {during}" if during else "is closed"),
        name=name,
    )


class Slot:
    """What a handle knows of one slot: where its payload starts, the node tree that reads it."""

    __slots__ = ("base", "node", "offset", "read", "schema_id")

    def __init__(
        self,
        node: _codecs.Node,
        buf: memoryview,
        offset: int,
        payload_offset: int,
        schema_id: int,
        spares: list[Any],
        tuning: Tuning,
    ) -> None:
        self.node = node
        self.offset = offset
        self.base = offset + payload_offset
        self.schema_id = schema_id
        #: A zero-argument function that reads the value as a private copy.
        self.read = _fast_reader(node, buf, self.base, spares, tuning)


def _fast_reader(
    node: _codecs.Node, buf: memoryview, base: int, spares: list[Any], tuning: Tuning
) -> Callable[[], Any]:
    if isinstance(node, _codecs.StructNode):
        unpack, offset = node.fmt.unpack_from, base + node.offset
        return lambda: unpack(buf, offset)[0]
    if isinstance(node, _codecs.ArrayNode):
        ro = node.views(buf, base)[1]
        if not _RECYCLE or ro.nbytes < tuning.recycle_min_bytes:
            return ro.copy
        keep = tuning.recycle_keep
        return lambda: _recycling_copy(ro, spares, keep)
    return lambda: node.read(buf, base)


def _recycling_copy(
    view: np.ndarray[Any, Any], spares: list[np.ndarray[Any, Any]], keep: int
) -> np.ndarray[Any, Any]:
    """``view.copy()``, into the array of an earlier fetch that nobody holds any more, if there is
    one.

    Why: a fresh big array costs page faults whenever glibc has given the memory back to the OS
    (always above 32 MiB; below, whenever freeing two copies at once trimmed the heap).
    ``spares`` keeps the handle's last ``keep`` results; one whose only reference is ``spares``
    itself is free: the caller dropped it and every view of it (a view, memoryview or
    ``torch.from_numpy`` holds a reference). It is popped from the list before the check, so
    two threads can never be handed the same array.
    """
    try:
        spare = spares.pop(0)
    except IndexError:
        spare = None
    if spare is not None:
        # Free: held by the name `spare` alone, as `control` is. Compared with a control, not a
        # number: what getrefcount says of a local differs between versions (3.14 borrows the
        # argument's reference: one less), and a count too high would take a held array for free.
        # A dynamic object may have changed kind.
        control = object()
        if (
            _getrefcount(spare) == _getrefcount(control)
            and spare.shape == view.shape
            and spare.dtype == view.dtype
        ):
            _copyto(spare, view)
            spares.append(spare)
            return spare
        spares.append(spare)  # still in use: look at it again next time
    copy: np.ndarray[Any, Any] = view.copy()
    spares.append(copy)
    del spares[:-keep]
    return copy


class History:
    """What ``fetch_new`` keeps of a handle: the next change it returns, how many values it
    lost, and how many of those it has not yet added to the segment's count; for a ring, the
    index in the handle's words of slot 0's mtime word, and the ring's stride."""

    __slots__ = ("lost", "mtime_word", "next", "stride", "stride_words", "unpublished")

    def __init__(self, next_change: int, mtime_word: int, stride: int) -> None:
        self.next = next_change
        self.lost = self.unpublished = 0
        self.mtime_word, self.stride, self.stride_words = mtime_word, stride, stride // 8

    def mtime_word_of(self, slot: int) -> int:
        """The index in the handle's words of ring slot ``slot``'s mtime word."""
        return self.mtime_word + slot * self.stride_words


def _ring_slot(ring: int, state: int) -> int:
    """The slot a ring's state word names: its change number mod the ring's size."""
    return (state >> _layout.CHANGE_SHIFT) % ring


def _remember(cache: dict[Any, Any], key: object, value: object, size: int) -> None:
    """``cache[key] = value``, dropping the oldest entries past ``size``."""
    cache.pop(key, None)  # re-inserted below: the newest
    cache[key] = value
    while len(cache) > size:
        del cache[next(iter(cache))]


class Handle:
    """An open segment: created (:meth:`_create`) or opened (:meth:`_open`), then bound
    (:meth:`_bind`).
    """

    #: SharedDynamicObject: each slot carries its own schema, and assigns may change it.
    _dynamic: ClassVar[bool] = False

    name: str
    _init_size: int
    _tuning: Tuning
    _segment: Segment
    #: (device, inode): the segment's identity, whatever name leads to it.
    _segment_key: tuple[int, int]
    _single_slot: bool
    #: Lock-free reads (see _layout): on x86, for two-slot objects. The fast path of fetch also
    #: needs both slots loaded once for all, which dynamic objects cannot do.
    _lock_free: bool
    _lock_free_fast: bool
    _slots: list[Slot | None]
    #: History objects: the slots in the ring (0 without one).
    _ring: int
    #: ``read_was_whole`` for this object's slots, and the slot a state word names.
    _whole: Callable[[int, int], bool]
    _slot_index: Callable[[int], int]
    #: What fetch_new keeps (few attributes on the handle itself: past 30, CPython stops sharing
    #: the instances' dict keys, and every attribute load of the hot paths slows down).
    _history: History
    _nodes: dict[int, _codecs.Node]
    #: schema text -> the id this handle published it under. An id stands for one text for ever
    #: (ids come from a shared counter), so a dynamic value that flips between kinds reuses its
    #: ids, and readers their cached nodes.
    _schema_ids: dict[bytes, int]
    #: (start, end) of every mapping this handle has had: what fetch(fn) results must not point
    #: into.
    _map_ranges: list[tuple[int, int]]
    #: Earlier fetch results, for _recycling_copy.
    _spares: list[np.ndarray[Any, Any]]
    _lock: WriterLock | ClosedLock
    _futex_address: int
    #: The header as 8-byte words: single loads and stores of the fields others read concurrently.
    _words: memoryview
    _buf: memoryview
    #: The change counter this handle last saw (see ``modified``).
    _seen: int
    #: A handle whose last copy took more than half the optimistic budget reads under the mutex.
    _slow_reads: bool
    _fast: ScalarFast
    _fast_array: ArrayFast | None
    _closing: threading.Lock
    _closing_pid: int

    # -----------------------------------------------------------------------------------------
    # Creation and opening
    # -----------------------------------------------------------------------------------------
    def _create(self, name: str, data: Any, mode: int, single: bool, ring: int = 0) -> None:
        """Make a new segment holding ``data``, publish it under ``name``, and bind to it.
        ``ring``: a history object's slots (0: none)."""
        schema = _schema.schema_of(data, self._init_size)
        node = _codecs.build(schema)
        writes: _codecs.Writes = []
        node.prepare(data, "", writes)  # every check passes before any file exists
        schema_text = _schema.dumps(schema)
        payload_offset, capacity = _layout.slot_size(len(schema_text), node.size)
        first = _layout.align(_layout.HEADER_SIZE, _layout.slot_alignment(node.size))
        if ring:  # the ring: slot i at first + i * capacity (see _layout, "The ring")
            entries = tuple((first + i * capacity, capacity) for i in range(ring))
        else:
            second = first + (0 if single else capacity)  # single: both entries name one slot
            entries = ((first, capacity), (second, capacity))
        size = entries[-1][0] + capacity
        segment = Segment.create_private(name, size, mode)
        try:
            buf = segment.buf
            _layout.write_identity(
                buf, dynamic=self._dynamic, single_slot=single, lock_abi=lock_abi(), ring=ring
            )
            WriterMutex(segment.address + _layout.MUTEX_OFFSET).initialize()
            now = time.time_ns()
            for i, (offset, cap) in enumerate(entries):
                if i < 2:
                    _layout.SLOT_ENTRY.pack_into(buf, _layout.slot_entry_offset(i), offset, cap)
                _layout.write_slot_header(
                    buf, offset, _layout.FIXED_SCHEMA_ID, schema_text, payload_offset, node.size
                )
                if ring and i == 0:  # slot 0 holds change 0; the others nothing yet
                    _layout.U64.pack_into(buf, offset + 8 * _layout.SLOT_MTIME_WORD, now)
            for leaf, value in writes:
                leaf.write(buf, entries[0][0] + payload_offset, value)
            node.clear_cache()
            words = _layout.header_words(buf)
            words[_layout.RING_STRIDE_WORD] = capacity if ring else 0
            words[_layout.SCHEMA_COUNTER_WORD] = _layout.FIXED_SCHEMA_ID
            words[_layout.MTIME_WORD] = now
            words[_layout.STATE_WORD] = 0
            words.release()
            segment.publish()
        except BaseException:
            segment.discard()
            raise
        log.debug("created %r (%s, %d bytes)", name, node.describe(), size)
        self._bind(segment, single_slot=single, ring=ring, stride=capacity if ring else 0)

    def _open(self, segment: Segment) -> None:
        """Check an existing segment's header and bind to it."""
        try:
            header = _layout.read_header(segment.buf, segment.file_size(), segment.name)
            self._check_header(header, segment.name)
            check_mutex_type(
                segment.buf, _layout.MUTEX_OFFSET, segment.name
            )  # same ABI: checked above
            self._bind(
                segment, single_slot=header.single_slot, ring=header.ring, stride=header.stride
            )
        except BaseException:
            segment.close()
            raise
        log.debug("attached %r", segment.name)

    def _check_header(self, header: _layout.Header, name: str) -> None:
        """Refuse segments this class cannot use: the other class's, or another C library's lock."""
        if header.dynamic != self._dynamic:
            made, want = ("SharedDynamicObject", "SharedObject")
            if not header.dynamic:
                made, want = want, made
            msg = f"segment {name!r} was created as a {made}; attach to it with {made}, not {want}"
            raise TypeMismatchError(msg)
        if header.lock_abi != lock_abi():
            msg = (
                f"segment {name!r} was created by a process using {header.lock_abi}, this one uses "
                f"{lock_abi()}: their writer locks are not compatible"
            )
            raise LayoutError(msg)

    def _bind(self, segment: Segment, *, single_slot: bool, ring: int = 0, stride: int = 0) -> None:
        self._closing = threading.Lock()  # close() against _remapped(): see _closing_lock
        self._closing_pid = os.getpid()
        self._segment = segment
        self.name = segment.name
        st = os.fstat(segment.fd)
        self._segment_key = (st.st_dev, st.st_ino)
        self._single_slot = single_slot
        self._ring = ring
        self._lock_free = self._tuning.lock_free_reads and not single_slot
        # fetch's inline fast path reads bit 0's slot: objects with a ring have a path of theirs
        self._lock_free_fast = self._lock_free and not self._dynamic and not ring
        if ring:
            self._whole = functools.partial(_layout.read_was_whole, ring=ring)
            self._slot_index = functools.partial(_ring_slot, ring)
        else:
            self._whole, self._slot_index = _layout.read_was_whole, _BIT_0
        self._slots = [None] * (ring or 2)
        self._nodes = {}
        self._schema_ids = {}
        self._map_ranges = []
        self._spares = []
        # The first mapping stays mapped while the lock or this handle uses it (see
        # Segment.refresh),
        # so the mutex and futex addresses taken from it stay valid after the file grows.
        self._lock = WriterLock.of(self.name, self._segment_key, segment.buf, segment.address)
        self._futex_address = segment.address + _layout.STATE_OFFSET
        # A ring's slot headers are written as words too: its words cover the whole mapping
        # (its size is a multiple of 64), the header's first.
        self._words = segment.buf.cast("Q") if ring else _layout.header_words(segment.buf)
        first = _layout.SLOT_ENTRY.unpack_from(segment.buf, _layout.slot_entry_offset(0))[0]
        self._remapped()
        state = self._words[_layout.STATE_WORD]
        self._seen = state >> _layout.CHANGE_SHIFT
        # The first fetch_new returns the values held (while a write is under way, the oldest is
        # being overwritten: it was not held when we came); without a ring, the one value.
        self._history = History(
            max(0, self._seen - ring + 1 + (1 if state & _layout.WRITING else 0))
            if ring
            else self._seen,
            first // 8 + _layout.SLOT_MTIME_WORD,
            stride,
        )
        self._slow_reads = False
        self._fast = NO_FAST
        self._fast_array = None
        if not self._dynamic:
            self._load_fixed_slots()

    def _load_fixed_slots(self) -> None:
        """A fixed object's slots never change: load them all once, and the assign fast paths."""
        first = self._load_slot(0)
        if self._ring:  # the ring's slots share slot 0's node: their schema texts must equal its
            _remember(self._nodes, first.schema_id, first.node, self._tuning.schema_cache_size)
        slots = [first, *(self._load_slot(i) for i in range(1, self._ring or 2))]
        # Reads decode the current slot, assigns check against slot 0 and write any: a schema
        # that differs between them (corruption of one, still valid JSON) would make the value
        # read refused by assign, or a write land in another slot's layout.
        text = self._schema_text(first)
        for index, other in enumerate(slots[1:], 1):
            if (
                other.node.schema != first.node.schema
                or first.base - first.offset != other.base - other.offset
                or (self._ring and self._schema_text(other) != text)
            ):
                which = "two slots" if not self._ring else f"slots 0 and {index}"
                msg = (
                    f"segment {self.name!r} is corrupt: its {which} describe different values "
                    f"({first.node.describe()}; {other.node.describe()})"
                )
                raise LayoutError(msg)
        self._slots = list(slots)
        node = first.node
        if isinstance(node, _codecs.StructNode) and node.fast_type is not None:
            offset = node.offset
            # A ring's: each slot's mtime word index too, after the offsets (its assign reads
            # fast[2 + ring + slot], one subscript where arithmetic on the History would be four)
            mtime_words = (
                [self._history.mtime_word_of(i) for i in range(self._ring)] if self._ring else []
            )
            self._fast = (
                node.fast_type,
                node.fmt.pack_into,
                *(slot.base + offset for slot in slots),
                *mtime_words,
            )
        elif isinstance(node, _codecs.ArrayNode):
            views = [node.views(self._buf, slot.base)[0] for slot in slots]
            self._fast_array = (node.dtype, node.shape, *views)

    # -----------------------------------------------------------------------------------------
    # The mapping
    # -----------------------------------------------------------------------------------------
    def _closing_lock(self) -> threading.Lock:
        """The lock that close() and _remapped() take turns on.

        A fresh one in a forked child: a thread of the parent may have held it at the fork, and
        nothing in the child would ever release that copy (closing the handle, even at exit,
        would hang). The check is a system call, on these two rare paths only.
        """
        if self._closing_pid != os.getpid():
            self._closing = threading.Lock()
            self._closing_pid = os.getpid()
        return self._closing

    def _remapped(self) -> None:
        """Follow the segment's (new) mapping: drop views into older ones.

        Under the closing lock: a dynamic assign that grew the file while another thread closed
        the handle must not install the new mapping afterwards (the handle would look open again,
        on a file it no longer holds).
        """
        with self._closing_lock():
            if getattr(self, "_buf", None) is CLOSED_BUF:  # (not set yet when _bind calls us)
                self._check_open()  # closed meanwhile: raises
            self._forget_views()
            self._buf = self._segment.buf
            address = self._segment.address
            self._map_ranges.append((address, address + len(self._buf)))

    def _forget_views(self) -> None:
        """Drop every cached view into the mapping (they keep it exported, so it could not be
        closed).
        """
        for node in tuple(
            self._nodes.values()
        ):  # a copy: a dynamic assign in another thread may add one
            node.clear_cache()
        for slot in self._slots:
            if slot is not None:
                slot.node.clear_cache()
        self._slots = [None] * len(self._slots)

    # -----------------------------------------------------------------------------------------
    # The slot cache
    # -----------------------------------------------------------------------------------------
    def _place_of(self, index: int) -> tuple[int, int, bool]:
        """Slot ``index``'s (offset, capacity), checked to lie in the file, and whether reaching it
        took mapping the file again (another handle moved the slot past our mapping)."""
        offset, capacity = _layout.SLOT_ENTRY.unpack_from(
            self._buf, _layout.slot_entry_offset(min(index, 1) if self._ring else index)
        )
        if index > 1:  # the ring: slot 1's entry is slot 0's plus the stride
            offset += (index - 1) * self._history.stride
        remapped = offset + capacity > len(self._buf) and self._segment.refresh()
        if remapped:
            self._remapped()
        _layout.check_slot(self.name, index, offset, capacity, len(self._buf))
        return offset, capacity, remapped

    def _load_slot(self, index: int) -> Slot:
        """Read slot ``index``'s table entry and header; may see torn data unless the caller
        validates.

        It caches nothing: the caller keeps the slot (``_keep``) once its read proved whole, or
        at once under the writer mutex. Writers rewrite a dynamic object's slot headers, and a
        lapped reader may read one mid-rewrite: a torn entry kept would outlive its read (kinds
        reuse their ids, so the slot soon matches it again) and decode garbage that passes every
        check.
        """
        offset, capacity, _ = self._place_of(index)
        buf = self._buf
        schema_id, schema_len, _, payload_offset, payload_len = _layout.SLOT_HEADER.unpack_from(
            buf, offset
        )
        if (
            payload_offset % _layout.ALIGN
            or payload_offset < _layout.SLOT_HEADER_SIZE + schema_len
            or payload_offset + payload_len > capacity
        ):
            msg = (
                f"segment {self.name!r} is corrupt: slot {index} header does not fit its "
                f"{capacity}-byte slot"
            )
            raise LayoutError(msg)
        node = self._nodes.get(schema_id)
        if node is None:
            start = offset + _layout.SLOT_HEADER_SIZE
            source = f"segment {self.name!r}"
            schema = _schema.loads(bytes(buf[start : start + schema_len]), source)
            node = _codecs.build_checked(schema, source)
            if node.size != payload_len:
                msg = (
                    f"segment {self.name!r} is corrupt: its schema needs {node.size} payload "
                    f"bytes, slot {index} has {payload_len}"
                )
                raise LayoutError(msg)
        return Slot(node, buf, offset, payload_offset, schema_id, self._spares, self._tuning)

    def _schema_text(self, slot: Slot) -> bytes:
        """The schema text in ``slot``'s header, as it lies there."""
        schema_len = _layout.SLOT_HEADER.unpack_from(self._buf, slot.offset)[1]
        start = slot.offset + _layout.SLOT_HEADER_SIZE
        return bytes(self._buf[start : start + schema_len])

    def _keep(self, index: int, slot: Slot) -> Slot:
        """Cache ``slot`` as slot ``index``, and its node, once a read proved them whole (see
        _load_slot).
        """
        if self._slots[index] is not slot:
            self._slots[index] = slot
            _remember(self._nodes, slot.schema_id, slot.node, self._tuning.schema_cache_size)
        return slot

    def _remember_schema(self, text: bytes, schema_id: int) -> None:
        """Note the id this handle published ``text`` under (its own: a text read may be torn)."""
        _remember(self._schema_ids, text, schema_id, self._tuning.schema_cache_size)

    def _slot_for_read(self, index: int) -> Slot:
        """Slot ``index`` as cached, or read afresh (not cached: see _load_slot) if a writer changed
        it.
        """
        slot = self._slots[index]
        if self._dynamic and (slot is None or not self._slot_current(slot, index)):
            slot = self._load_slot(index)
        return slot  # type: ignore[return-value]  # fixed objects: both slots loaded at bind

    def _slot_current(self, slot: Slot, index: int) -> bool:
        """Does the segment still describe dynamic slot ``index`` as our cached ``slot`` does?"""
        buf = self._buf
        offset, capacity = _layout.SLOT_ENTRY.unpack_from(buf, _layout.slot_entry_offset(index))
        return bool(
            offset == slot.offset
            and offset + capacity <= len(buf)
            and _layout.U64.unpack_from(buf, offset)[0] == slot.schema_id
        )

    def _prepare(self, data: Any) -> _codecs.Writes:
        """Check ``data`` against the stored kind; what to write, or an error naming both kinds."""
        slot = self._slots[0]
        if slot is None:
            self._check_open()
        writes: _codecs.Writes = []
        slot.node.prepare(data, "", writes)  # type: ignore[union-attr]
        return writes

    # -----------------------------------------------------------------------------------------
    # Errors and closing
    # -----------------------------------------------------------------------------------------
    def _as_layout_error(self, exc: Exception) -> Exception:
        """Our own errors pass as they are; anything else from decoding stable data means
        corruption.
        """
        if isinstance(exc, SharedObjectError):
            return exc
        if self._buf is CLOSED_BUF:  # not corrupt: closed by another thread during the read
            return self._closed_during("fetch", exc)
        return LayoutError(
            f"segment {self.name!r} holds a corrupt value ({type(exc).__name__}: {exc})",
            name=self.name,
        )

    def _closed_during(self, what: str, exc: Exception, *, started_open: bool = False) -> Exception:
        """What to raise for ``exc``, which ended ``what``: ClosedError if another thread closed
        this
        handle meanwhile, else ``exc`` itself. Any error a call meets on a closed stand-in (an
        empty buffer, a None slot, the closed lock) means "closed"; close() marks the handle
        first, so this sees it. ``started_open``: the call checked that the handle was open when
        it began, so even the closed lock's "is closed" means "was closed during".
        """
        if self._buf is not CLOSED_BUF or (isinstance(exc, ClosedError) and not started_open):
            return exc
        error = closed_error(self.name, during=what)
        error.__cause__ = exc
        return error

    def _check_open(self) -> None:
        if self._buf is CLOSED_BUF:
            raise closed_error(self.name)

    @property
    def closed(self) -> bool:
        return self._buf is CLOSED_BUF

    def _close(self, *, explicit: bool) -> None:
        """``explicit``: close() was called, so the mapping is alive; False from __del__, where the
        collector may have unmapped it already: then nothing here reads it."""
        segment = getattr(self, "_segment", None)
        if segment is None:
            return
        with self._closing_lock():  # one close at a time, and never during a _remapped()
            if self._buf is CLOSED_BUF:
                return
            # First of all: from here on every call, in any thread, finds the handle closed.
            self._buf = CLOSED_BUF
            lock = self._lock
            # An abandoned lock must not outlive the mapping it lives in: glibc writes into the
            # memory of the robust mutexes a thread holds whenever that thread takes another.
            lock.release_if_abandoned()
            if explicit and isinstance(lock, WriterLock):
                lock.keep_mapped_if_held_here()  # only here: from __del__ the memory may be gone
            self._lock = ClosedLock(self.name)
            self._forget_views()
            self._spares.clear()  # private copies kept for reuse: free them with the handle
            self._fast = NO_FAST
            self._fast_array = None
            words = self._words
            self._words = CLOSED_WORDS
            if explicit and words[_layout.WAITER_WORD] > time.monotonic_ns():
                # Another thread may be asleep in wait() on this handle: wake it now (it then raises
                # ClosedError) rather than at the end of its nap. Never from __del__: a handle that
                # a
                # thread waits on is not garbage, and when the collector frees a cycle holding a
                # handle and its mapping, it may run the finalizer that unmaps before this.
                futex_wake(self._futex_address)
            # The words are dropped, not released: a call that another thread started before this
            # close holds them (and so the mapping) and finishes, publication and wake-ups included.
            segment.close()

    def __del__(self) -> None:
        try:
            self._close(explicit=False)  # without touching the mapping (see _close)
        except Exception:  # noqa: BLE001, S110 - never raise from a finalizer
            pass


__all__ = [
    "CLOSED_BUF",
    "CLOSED_WORDS",
    "DECODE_ERRORS",
    "ArrayFast",
    "NO_FAST",
    "Handle",
    "History",
    "ScalarFast",
    "Slot",
    "closed_error",
]
