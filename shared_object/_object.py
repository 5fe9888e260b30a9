"""SharedObject and SharedDynamicObject: the public classes.

How the pieces fit (each in its own module):

* ``_segment``: the /dev/shm file and its mapping (creation is atomic; no resource tracker).
* ``_layout``: the header and the two slots, byte by byte, and the read/publish protocol.
* ``_codecs``: schemas and payload layout of every supported value.
* ``_sync``: the robust writer mutex and the futex behind ``wait()``.

Reads take no lock (on x86): a reader checks the state word before and after copying and retries
when a writer lapped it. A reader still lapped after :data:`OPTIMISTIC_BUDGET_NS` asks busy
writers to pause (``reader_request`` in the header) and reads under the writer mutex, so a writer
assigning in a tight loop cannot starve readers.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import sys
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, ClassVar, Final, TypeVar

import numpy as np

from . import _codecs, _layout, _segment
from ._errors import (
    ClosedError,
    IncompleteValueError,
    InvalidArgumentError,
    LayoutError,
    LockReentryError,
    LockTimeoutError,
    OutOfSharedMemoryError,
    SegmentExistsError,
    SegmentNotFoundError,
    SharedObjectError,
    TypeMismatchError,
)
from ._layout import STATE_OFFSET, WRITING
from ._sync import (
    LOCK_FREE_READS,
    WriterMutex,
    check_mutex_type,
    futex_wait,
    futex_wake,
    lock_abi,
    robust_locks_supported,
    timeout_seconds,
)

log = logging.getLogger("shared_object")

Self = TypeVar("Self", bound="SharedObject")
FetchFn = Callable[[Any], Any]
#: (dtype, shape, writable view of slot 0, of slot 1): the assign fast path of a one-ndarray object.
_ArrayFast = tuple[np.dtype[Any], tuple[int, ...], np.ndarray[Any, Any], np.ndarray[Any, Any]]

#: A reader lapped by a writer retries lock-free while its attempts fit in OPTIMISTIC_BUDGET_NS,
#: then reads under the writer mutex. A scalar read costs ~0.3 us, so it retries many times; a
#: frame copy that a busy writer slows to hundreds of microseconds (both compete for memory
#: bandwidth) goes to the mutex after one retry, instead of being lapped again and again.
OPTIMISTIC_BUDGET_NS: Final = 100_000
#: Schemas (parsed nodes, and the ids of texts it published) a dynamic object's handle keeps:
#: enough for a value that flips between a few kinds; a writer whose kinds never repeat (a
#: growing string) keeps no more than this.
SCHEMA_CACHE_SIZE: Final = 8
#: A lock-free read of a dynamic object's slot header and schema alone (a view()'s set-up, kind,
#: repr) that writers lapped this many times in a row takes the writer lock instead.
HEADER_READ_TRIES: Final = 100
#: Whoever waits on another process's turn (a reader for the writer mutex, a writer for the
#: reader it paused for, a writer for the mutex) first yields the CPU this many times, then naps
#: POLL_S. A yield costs ~1 us and lets a holder on the same core run; a nap costs ~60 us or far
#: more here (timer slack, and a virtual machine's timer), several times the copy being waited for.
SPINS: Final = 200
#: Whoever waits for the writer mutex (writers, and readers of a single slot or lapped) gives up
#: with LockTimeoutError after this long, rather than hang on a stuck writer (frozen by a debugger
#: or SIGSTOP) or on corrupt lock bytes. A live writer holds the mutex for one copy (about 10 ms for
#: 100 MB), so reaching this means something is wrong, and the error says what to look at.
LOCK_TIMEOUT_S: float = 10.0
#: A starving reader's request makes writers pause only while it is this fresh (a dead reader's expires).
REQUEST_FRESH_NS: Final = 5_000_000
#: How long a writer pauses at most, per assign, for readers that asked.
WRITER_YIELD_MAX_NS: Final = 2_000_000
#: How long a reader lets a waiting writer go first at most, per read, before taking the mutex
#: (see _layout, "Turns at the mutex"). A waiting writer's request is fresh for REQUEST_FRESH_NS.
READER_YIELD_MAX_NS: Final = 2_000_000
#: Poll step of a reader waiting for the writer mutex, and of a writer yielding to readers.
POLL_S: Final = 0.00005
#: A writer waiting for the mutex sleeps in the kernel this long at most between renewals of its
#: writer_request (fresh for REQUEST_FRESH_NS): it wakes at once when the mutex is released.
WRITER_SLICE_S: Final = 0.002
#: A wait()er re-announces itself this often; writers wake it while its announcement is fresh.
WAIT_SLICE_S: Final = 1.0
WAIT_GRACE_NS: Final = 2_000_000_000
#: fetch() of an ndarray this big reuses the array of an earlier fetch once the caller dropped it
#: (see _recycling_copy); the handle keeps its last RECYCLE_KEEP results for that.
RECYCLE_MIN_BYTES: Final = 64 * 1024
RECYCLE_KEEP: Final = 2
DEFAULT_INIT_SIZE: Final = 100
DEFAULT_MODE: Final = 0o600

_u64_unpack = _layout.U64.unpack_from
_monotonic_ns = time.monotonic_ns
_copyto = np.copyto
_time_ns = time.time_ns
_getrefcount = sys.getrefcount
#: Exact reference counts need the GIL (CPython's free-threaded build defers and biases them).
_RECYCLE: Final = bool(getattr(sys, "_is_gil_enabled", lambda: True)())
#: What decoding torn or corrupt bytes raises, besides our own errors (whose leaves are among
#: these). Only these mean "lapped" on a lock-free read, or "corrupt" under the lock: anything
#: else, such as an exception a signal handler raised, propagates as it is.
_DECODE_ERRORS: Final = (ValueError, TypeError, IndexError, KeyError, OverflowError, RecursionError, struct.error)
_CLOSED_BUF: Final = memoryview(b"")
_CLOSED_WORDS: Final = memoryview(b"").cast("Q")  # any index raises IndexError
STATE, MTIME, WAITER, REQUEST = _layout.STATE_WORD, _layout.MTIME_WORD, _layout.WAITER_WORD, _layout.REQUEST_WORD
WRITER_REQUEST = _layout.WRITER_REQUEST_WORD

# ---------------------------------------------------------------------------------------------
# Who in this thread holds a segment's writer mutex. Two things need to know; both look only on
# rare paths (an error, or the mutex found busy), never on the fast ones:
#
# * Where reads take the lock (single-slot objects, CPUs other than x86), a view() block or fn is
#   user code holding it: if that code asks for the lock to write, it would wait for itself, so
#   it gets LockReentryError instead. A read there takes no lock: the block's keeps writers out.
# * An exception that the code does not raise itself (KeyboardInterrupt, or whatever a signal
#   handler raises) arrives at a bytecode boundary: right after the C call that took the mutex
#   returned, before Python stored its result, or at the first bytecode of a Python function on
#   the way to the unlock. Nothing released the mutex then, and the thread kept it until it
#   ended: every writer, its own included, waited LOCK_TIMEOUT_S and failed. Measured (300 Ctrl-Cs
#   each): 1-5% of those of a loop of int assigns, 5% of dynamic assigns, 27% of triggers; and
#   glibc later writes into the memory of the robust mutexes a thread holds, even once unmapped.
#   So each acquisition keeps what it knows in a local that starts as "unknown", every release
#   on those paths is the C unlock itself, called from the frame that holds the ``finally``, and
#   where the outcome is unknown, or the mutex is found busy, SharedObject._self_hold asks the
#   kernel whether this thread holds it: if no code of this thread does, the mutex was
#   abandoned, and is released.
# ---------------------------------------------------------------------------------------------
_blocks = threading.local()
#: Mutexes (and so their mappings) that a thread of ours may still hold where the kernel cannot
#: tell: glibc writes into every robust mutex a thread holds, so their memory must stay mapped.
_NEVER_UNMAPPED: list[WriterMutex] = []
NOT_HELD, HELD_BY_OUR_CODE, ABANDONED = "not held", "held by code of this thread", "abandoned"


def _blocks_here() -> dict[tuple[int, int], tuple[int, Any]]:
    """This thread's blocks that hold a writer lock: segment -> (id, code) of the frame running the block.

    The segment is (device, inode): two handles on one segment map its mutex at different addresses.
    """
    blocks: dict[tuple[int, int], tuple[int, Any]] | None = getattr(_blocks, "held", None)
    if blocks is None:
        blocks = _blocks.held = {}
    return blocks


def _enter_block(key: tuple[int, int], frame: Any) -> None:
    _blocks_here()[key] = (id(frame), frame.f_code)


def _running(block: tuple[int, Any]) -> bool:
    """Is the frame that ran this block still on this thread's stack? (If not, the block ended.)"""
    frame: Any = sys._getframe(1)
    while frame is not None:
        if id(frame) == block[0] and frame.f_code is block[1]:
            return True
        frame = frame.f_back
    return False


def _outer_section_holds(key: tuple[int, int]) -> bool:
    """Is one of our locked sections on segment ``key`` running below other code of this thread?

    A signal handler runs on top of the code it interrupted, which may hold the lock. The frames
    of the call that asks (ours, on top) are skipped: they are not "below other code".
    """
    frame: Any = sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").startswith("shared_object."):
        frame = frame.f_back
    while frame is not None:
        if frame.f_code in _LOCKED_SECTIONS:
            owner = frame.f_locals.get("self")
            obj = getattr(owner, "_obj", owner)  # ZeroCopyView.__enter__: its object
            if getattr(obj, "_segment_key", None) == key:
                return True
        frame = frame.f_back
    return False


try:  # numpy >= 2.0 moved it
    from numpy.lib.array_utils import byte_bounds as _byte_bounds
except ImportError:  # pragma: no cover - numpy 1.x
    _byte_bounds = np.byte_bounds  # type: ignore[attr-defined]


def _closed_error(name: str, during: str = "") -> ClosedError:
    """The one wording of "this handle is closed", for a call made after close() or caught by it."""
    return ClosedError(f"the handle on {name!r} " + (f"was closed during {during}" if during else "is closed"))


class _ClosedMutex:
    """Stands in for the mutex of a closed handle, so writes fail cleanly instead of touching unmapped memory."""

    owner_died_count = 0
    ref = None

    def __init__(self, name: str = "") -> None:
        self.name = name

    def _closed(self, *args: object) -> Any:
        raise _closed_error(self.name)

    acquire = acquire_contended = lock_within = try_acquire = release = trylock = _closed

    @staticmethod
    def unlock(ref: object) -> int:
        return 0


class _Slot:
    """What a handle knows about one slot: where its payload starts and the node tree that reads it."""

    __slots__ = ("base", "node", "offset", "read", "schema_id")

    def __init__(
        self, node: _codecs.Node, buf: memoryview, offset: int, payload_offset: int, schema_id: int, spares: list[Any]
    ) -> None:
        self.node = node
        self.offset = offset
        self.base = offset + payload_offset
        self.schema_id = schema_id
        self.read = _fast_reader(node, buf, self.base, spares)


def _remember(cache: dict[Any, Any], key: object, value: object) -> None:
    """``cache[key] = value``, dropping the oldest entries past SCHEMA_CACHE_SIZE."""
    cache.pop(key, None)  # re-inserted below: the newest
    cache[key] = value
    while len(cache) > SCHEMA_CACHE_SIZE:
        del cache[next(iter(cache))]


def _fast_reader(node: _codecs.Node, buf: memoryview, base: int, spares: list[Any]) -> Callable[[], Any]:
    """A zero-argument function that reads the slot's value as a private copy."""
    if isinstance(node, _codecs.StructNode):
        unpack, offset = node.fmt.unpack_from, base + node.offset
        return lambda: unpack(buf, offset)[0]
    if isinstance(node, _codecs.ArrayNode):
        ro = node.views(buf, base)[1]
        if not _RECYCLE or ro.nbytes < RECYCLE_MIN_BYTES:
            return ro.copy
        return lambda: _recycling_copy(ro, spares)
    return lambda: node.read(buf, base)


def _recycling_copy(view: np.ndarray[Any, Any], spares: list[np.ndarray[Any, Any]]) -> np.ndarray[Any, Any]:
    """``view.copy()``, into the array of an earlier fetch that nobody holds any more, if there is one.

    Why: a fresh big array costs page faults whenever glibc has given the memory back to the OS
    (always above 32 MiB; below, whenever freeing two copies at once trimmed the heap): 1.9x a
    memcpy at 100 MiB, 20x at 1.2 MB. ``spares`` keeps the handle's last RECYCLE_KEEP results;
    one whose only references are ``spares`` itself is free: the caller dropped it and every view
    of it (a view, memoryview or ``torch.from_numpy`` holds a reference). It is popped from the
    list before the check, so two threads can never be handed the same array.
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
        if _getrefcount(spare) == _getrefcount(control) and spare.shape == view.shape and spare.dtype == view.dtype:
            _copyto(spare, view)
            spares.append(spare)
            return spare
        spares.append(spare)  # still in use: look at it again next time
    copy: np.ndarray[Any, Any] = view.copy()
    spares.append(copy)
    del spares[:-RECYCLE_KEEP]
    return copy


class _ViewsForFn:
    """The read-only views that ``fetch(fn)`` hands to fn, and the root arrays they were made from."""

    __slots__ = ("base", "buf", "node", "roots", "value")

    def __init__(self, node: _codecs.Node, buf: memoryview, base: int) -> None:
        self.node, self.buf, self.base = node, buf, base
        self.roots: list[object] = [object()]  # a control first: see SharedObject._apply
        self.value: Any = node.view(buf, base, self.roots)

    def take(self) -> Any:
        """The views, dropping our own reference: from then on only what the caller keeps holds them."""
        value, self.value = self.value, None
        return value


class SharedObject:
    """A value in shared memory that any process (or container) can fetch, assign and trigger.

    ``SharedObject(name, data=...)`` creates the object, or attaches to the existing one and
    assigns ``data``; ``SharedObject(name)`` attaches, or creates a trigger object (holding
    None) when none exists. ``create`` and ``attach`` say exactly which one you want.

    The type identity of the value (type, dtype, shape, structure, dict keys) is fixed at creation;
    assigning a value of another kind raises TypeMismatchError and leaves the stored value as it
    was. str/bytes/bytearray values may be re-assigned with any length up to their capacity,
    ``max(init_size, len(first value))`` bytes (UTF-8 for str), fixed at creation
    (use SharedDynamicObject to change any of this).

    :param name: segment name: letters, digits, ``_ - .``; the file is ``/dev/shm/<name>``.
    :param data: the value to store (see README for the supported types), or None.
    :param init_size: minimum capacity in bytes of each str/bytes/bytearray value.
    :param mode: permission bits of a segment this call creates; 0o666 lets other users attach.
    :param slots: for an object this call creates: 2 (default) or 1. Two slots let readers copy
        without any lock while a writer fills the other slot, and keep the last complete value
        when a writer dies mid-assign. One slot halves the memory and the writer's cache
        footprint (big arrays assign faster); readers and writers then take turns under the
        writer lock, and a writer that dies mid-assign leaves an IncompleteValueError for
        readers until the next assign. Attaching uses whatever the object was created with.

    .. code-block:: python

        frame = SharedObject("frame", data=np.zeros((480, 848, 3), np.uint8))   # producer
        frame = SharedObject.attach("frame", timeout=10)                        # consumer
        if frame.wait(timeout=1.0):
            image = frame.fetch()
    """

    _dynamic: ClassVar[bool] = False

    def __init__(
        self,
        name: str,
        *,
        data: Any = None,
        init_size: int = DEFAULT_INIT_SIZE,
        mode: int = DEFAULT_MODE,
        slots: int = 2,
    ) -> None:
        _segment.validate_name(name)
        self._init_size = _check_init_size(init_size)
        if data is None:
            try:
                self._open(_segment.Segment.open(name))
            except SegmentNotFoundError:
                try:
                    self._create(name, None, mode, slots)
                except SegmentExistsError:  # another process created it in between: attach to that
                    self._open(_segment.Segment.open(name))
            return
        try:
            self._create(name, data, mode, slots)
        except SegmentExistsError:
            self._open(_segment.Segment.open(name))
            try:
                self.assign(data)
            except TypeMismatchError as exc:
                self.close()
                # A producer restarted with a new frame size meets the segment of its last run:
                # say where the stored kind comes from, not only that it differs.
                msg = (f"{exc}. {type(self).__name__}({name!r}, data=...) attaches to the segment of that name "
                       "if one exists, and assigns to it; if an earlier run left it, remove it first "
                       f"(`shared-object rm {name}`), or use SharedDynamicObject, whose kind can change")
                raise TypeMismatchError(msg) from exc
            except BaseException:
                self.close()
                raise

    # ----------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------
    @classmethod
    def create(
        cls: type[Self],
        name: str,
        data: Any = None,
        *,
        init_size: int = DEFAULT_INIT_SIZE,
        mode: int = DEFAULT_MODE,
        slots: int = 2,
    ) -> Self:
        """Create a new object holding ``data``; SegmentExistsError if the name is taken."""
        self = cls.__new__(cls)
        self._init_size = _check_init_size(init_size)
        self._create(name, data, mode, slots)
        return self

    @classmethod
    def attach(cls: type[Self], name: str, *, timeout: float | None = 0.0) -> Self:
        """Attach to an existing object, waiting up to ``timeout`` seconds (None: forever) for it to appear.

        On timeout raises SegmentNotFoundError, whose message explains that processes in
        different containers must share an IPC namespace or /dev/shm. ``timeout=0`` (or less)
        looks once; ``math.inf`` is the same as None.
        """
        _segment.validate_name(name)
        seconds = timeout_seconds(timeout, "attach(timeout=...)")
        deadline = None if seconds is None else time.monotonic() + seconds
        pause = 0.001
        while True:
            try:
                segment = _segment.Segment.open(name)
                break
            except SegmentNotFoundError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f" after waiting {seconds:g} s" if seconds else ""
                    msg = f"no shared object named {name!r} in {_segment.SHM_DIR}{waited}. {_segment.IPC_HINT}"
                    raise SegmentNotFoundError(msg) from exc
                time.sleep(pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic())))
                pause = min(pause * 2, 0.05)
        self = cls.__new__(cls)
        self._init_size = DEFAULT_INIT_SIZE
        self._open(segment)
        return self

    def _create(self, name: str, data: Any, mode: int, slots: int) -> None:
        _segment.validate_name(name)
        if not isinstance(mode, int) or not 0 <= mode <= 0o777:
            msg = f"mode must be permission bits between 0 and 0o777, not {mode!r}"
            raise InvalidArgumentError(msg)
        if slots not in (1, 2) or isinstance(slots, bool):
            msg = f"slots must be 1 or 2, not {slots!r}"
            raise InvalidArgumentError(msg)
        single = slots == 1
        if single and self._dynamic:
            msg = "a SharedDynamicObject needs two slots: it fills the other slot while readers read the current one"
            raise InvalidArgumentError(msg)
        schema = _codecs.schema_of(data, self._init_size)
        node = _codecs.build(schema)
        writes: _codecs.Writes = []
        node.prepare(data, "", writes)  # every check passes before any file exists
        schema_text = _codecs.dumps(schema)
        payload_offset, capacity = _layout.slot_size(len(schema_text), node.size)
        first = _layout.align(_layout.HEADER_SIZE, _layout.slot_alignment(node.size))
        second = first + (0 if single else capacity)  # single: both entries name one slot
        entries = ((first, capacity), (second, capacity))
        size = second + capacity
        segment = _segment.Segment.create_private(name, size, mode)
        try:
            buf = segment.buf
            _layout.write_identity(buf, dynamic=self._dynamic, single_slot=single, lock_abi=lock_abi())
            WriterMutex(segment.address + _layout.MUTEX_OFFSET).initialize()
            for i, (offset, cap) in enumerate(entries):
                _layout.SLOT_ENTRY.pack_into(buf, _layout.SLOT_TABLE_OFFSET + 16 * i, offset, cap)
                _write_slot_header(buf, offset, _layout.FIXED_SCHEMA_ID, schema_text, payload_offset, node.size)
            for leaf, value in writes:
                leaf.write(buf, entries[0][0] + payload_offset, value)
            node.clear_cache()
            words = _layout.header_words(buf)
            words[_layout.SCHEMA_COUNTER_WORD] = _layout.FIXED_SCHEMA_ID
            words[MTIME] = _time_ns()
            words[STATE] = 0
            words.release()
            segment.publish()
        except BaseException:
            segment.discard()
            raise
        log.debug("created %r (%s, %d bytes)", name, node.describe(), size)
        self._bind(segment, single_slot=single)

    def _open(self, segment: _segment.Segment) -> None:
        try:
            header = _layout.read_header(segment.buf, segment.file_size(), segment.name)
            self._check_header(header, segment.name)
            check_mutex_type(segment.buf, _layout.MUTEX_OFFSET, segment.name)  # same ABI: checked above
            self._bind(segment, single_slot=header.single_slot)
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

    def _bind(self, segment: _segment.Segment, *, single_slot: bool) -> None:
        self._closing = threading.Lock()  # close() against _remapped(): see there, and _closing_lock
        self._closing_pid = os.getpid()
        self._segment = segment
        self.name = segment.name
        st = os.fstat(segment.fd)
        self._segment_key = (st.st_dev, st.st_ino)  # see "Who in this thread holds" above
        self._single_slot = single_slot
        #: Lock-free reads (see _layout): on x86, for two-slot objects. The fast path of fetch
        #: also needs both slots loaded once for all, which dynamic objects cannot do.
        self._lock_free = LOCK_FREE_READS and not single_slot
        self._lock_free_fast = self._lock_free and not self._dynamic
        self._slots: list[_Slot | None] = [None, None]
        self._nodes: dict[int, _codecs.Node] = {}
        #: schema text -> the id this handle published it under.
        #: An id stands for one text for ever (ids come from a shared counter), so a dynamic value
        #: that flips between kinds reuses its ids, and readers their cached nodes.
        self._schema_ids: dict[bytes, int] = {}
        self._map_ranges: list[tuple[int, int]] = []
        self._spares: list[np.ndarray[Any, Any]] = []  # earlier fetch results, for _recycling_copy
        address = segment.address
        # The first mapping stays mapped until close (see Segment.refresh), so the mutex and
        # futex addresses taken from it stay valid even after the file grows and is remapped.
        self._mutex: WriterMutex | _ClosedMutex = WriterMutex(
            address + _layout.MUTEX_OFFSET, segment=self._segment_key, mapping=segment.buf
        )
        self._futex_address = address + STATE_OFFSET
        self._words = _layout.header_words(segment.buf)  # single-load/single-store header fields
        self._remapped()
        self._seen = self._words[STATE] >> 2
        self._slow_reads = False
        #: (type, pack_into, offset in slot 0, offset in slot 1) when the value is one bool/int/float.
        self._fast: tuple[type[Any], Callable[..., None], int, int] | None = None
        #: (dtype, shape, writable view of slot 0, of slot 1) when the value is one ndarray.
        self._fast_array: _ArrayFast | None = None
        if not self._dynamic:
            first, second = self._load_slot(0), self._load_slot(1)
            # Reads decode the current slot, assigns check against slot 0 and write either: a
            # schema that differs between them (corruption of one, still valid JSON) would make
            # the value read refused by assign, or a write land in the other slot's layout.
            if first.node.schema != second.node.schema or first.base - first.offset != second.base - second.offset:
                msg = (
                    f"segment {self.name!r} is corrupt: its two slots describe different values "
                    f"({first.node.describe()}; {second.node.describe()})"
                )
                raise LayoutError(msg)
            self._slots = [first, second]
            node = first.node
            if isinstance(node, _codecs.StructNode) and node.fast_type is not None:
                offset = node.offset
                self._fast = (node.fast_type, node.fmt.pack_into, first.base + offset, second.base + offset)
            elif isinstance(node, _codecs.ArrayNode):
                views = node.views(self._buf, first.base)[0], node.views(self._buf, second.base)[0]
                self._fast_array = (node.dtype, node.shape, *views)

    def _forget_views(self) -> None:
        """Drop every cached view into the mapping (they keep it exported, so it could not be closed)."""
        for node in tuple(self._nodes.values()):  # a copy: a dynamic assign in another thread may add one
            node.clear_cache()
        for slot in self._slots:
            if slot is not None:
                slot.node.clear_cache()
        self._slots = [None, None]

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
            if getattr(self, "_buf", None) is _CLOSED_BUF:  # (not set yet when _bind calls us)
                self._check_open()  # closed meanwhile: raises
            self._forget_views()
            self._buf = self._segment.buf
            address = self._segment.address
            self._map_ranges.append((address, address + len(self._buf)))

    def _place_of(self, index: int) -> tuple[int, int, bool]:
        """Slot ``index``'s (offset, capacity), checked to lie in the file, and whether reaching it
        took mapping the file again (another handle moved the slot past our mapping)."""
        offset, capacity = _layout.SLOT_ENTRY.unpack_from(self._buf, _layout.SLOT_TABLE_OFFSET + 16 * index)
        remapped = offset + capacity > len(self._buf) and self._segment.refresh()
        if remapped:
            self._remapped()
        _layout.check_slot(self.name, index, offset, capacity, len(self._buf))
        return offset, capacity, remapped

    def _load_slot(self, index: int) -> _Slot:
        """Read slot ``index``'s table entry and header; may see torn data unless the caller validates.

        It caches nothing: the caller keeps the slot (``_keep``) once its read proved whole, or
        at once under the writer mutex. Writers rewrite a dynamic object's slot headers, and a
        lapped reader may read one mid-rewrite: a torn entry kept would outlive its read (kinds
        reuse their ids, so the slot soon matches it again) and decode garbage that passes every
        check. (Caching it and forgetting on the lap left a window for the handle's other threads.)
        """
        offset, capacity, _ = self._place_of(index)
        buf = self._buf
        schema_id, schema_len, _, payload_offset, payload_len = _layout.SLOT_HEADER.unpack_from(buf, offset)
        if (
            payload_offset % _layout.ALIGN
            or payload_offset < _layout.SLOT_HEADER_SIZE + schema_len
            or payload_offset + payload_len > capacity
        ):
            msg = f"segment {self.name!r} is corrupt: slot {index} header does not fit its {capacity}-byte slot"
            raise LayoutError(msg)
        node = self._nodes.get(schema_id)
        if node is None:
            start = offset + _layout.SLOT_HEADER_SIZE
            schema = _codecs.loads(bytes(buf[start : start + schema_len]), self.name)
            node = _codecs.build_checked(schema, self.name)
            if node.size != payload_len:
                msg = (
                    f"segment {self.name!r} is corrupt: its schema needs {node.size} payload bytes, "
                    f"slot {index} has {payload_len}"
                )
                raise LayoutError(msg)
        return _Slot(node, buf, offset, payload_offset, schema_id, self._spares)

    def _keep(self, index: int, slot: _Slot) -> _Slot:
        """Cache ``slot`` as slot ``index``, and its node, once a read proved them whole (see _load_slot)."""
        if self._slots[index] is not slot:
            self._slots[index] = slot
            self._cache_node(slot.schema_id, slot.node)
        return slot

    def _cache_node(self, schema_id: int, node: _codecs.Node) -> None:
        """Keep ``node`` for ``schema_id``, and the few most recent others (a writer whose value
        changes kind every time, a string growing say, used to keep every one it ever made)."""
        _remember(self._nodes, schema_id, node)

    def _remember_schema(self, text: bytes, schema_id: int) -> None:
        """Note the id this handle published ``text`` under (only its own: a text read may be torn)."""
        _remember(self._schema_ids, text, schema_id)

    # ----------------------------------------------------------------------------------------
    # Reading
    # ----------------------------------------------------------------------------------------
    def fetch(self, fn: FetchFn | None = None, *, out: np.ndarray[Any, Any] | None = None) -> Any:  # noqa: PLR0912 - hot paths inlined
        """A private copy of the value (never torn; never a view into shared memory).

        :param fn: applied to the value with its arrays as *read-only views* into shared memory,
            so ``fetch(lambda x: x.sum())`` reduces a frame without copying it. The result never
            points into shared memory: views left in its arrays, tuples, lists, dicts and
            memoryviews are copied (``lambda x: x[..., 0]`` copies the slice); if anything else
            still holds a view (a namedtuple, an object of yours, ``torch.from_numpy``, a
            closure), fn runs again on a private copy of the value. ``fn`` may also run again
            when a writer overwrote the data under it: keep it pure. Where reads take the writer
            lock (single-slot objects, CPUs other than x86, a reader lapped again and again) the
            lock is held while fn runs: writers wait for fn, so keep it short.
        :param out: for an ndarray object, copy into this preallocated array (same dtype and shape)
            instead of allocating one; returns ``out``.

        An ndarray of 64 KiB or more is copied into the array of an earlier fetch once you have
        dropped it and every view of it, so a steady ``frame = obj.fetch()`` loop neither
        allocates nor page-faults. For that the handle keeps its last two results alive until
        ``close()``. An array you still hold, or view, is never reused.
        """
        if fn is None and out is None and self._lock_free_fast:
            words = self._words
            try:
                s1 = words[2]  # STATE
                value = self._slots[s1 & 1].read()  # type: ignore[union-attr]  # fixed objects: both slots loaded
                s2 = words[2]
                if s2 == s1 or _valid(s1, s2):  # the first test is the common case, without a call
                    self._seen = s1 >> 2
                    return value
                # Free the lapped copy before reading again. Holding two big copies at once and
                # then freeing both lets glibc's malloc trim the heap, so every later copy
                # page-faults its memory in again: 1.2 MB fetches took 500 us instead of 27 us.
                del value
            except _DECODE_ERRORS:  # closed (ClosedError below), torn or corrupt: the slow path decides
                self._check_open()
            except Exception as exc:  # noqa: BLE001 - closed by another thread during the read?
                raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        elif fn is None and out is None and self._single_slot and (words := self._words) is not _CLOSED_WORDS \
                and not words[7]:  # 7: WRITER_REQUEST, a writer waiting for its turn: it goes first (the slow path)
            # One slot (never dynamic: both slots loaded): read under the mutex when it is free;
            # anything else (busy, a dead holder, an incomplete value, a closed handle, a writer
            # that asked to go first) takes the slow path, which says what or waits its turn.
            mutex = self._mutex
            rc = -1  # -1 until we know whether trylock took the mutex (see "Who in this thread holds" above)
            try:
                rc = mutex.trylock(mutex.ref)
                if not rc:
                    try:
                        s = self._words[2]  # STATE
                        if not s & 2:  # WRITING left by a dead writer: the slow path raises
                            value = self._slots[0].read()  # type: ignore[union-attr]  # fixed objects: both slots loaded
                            self._seen = s >> 2
                            return value
                    except _DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: this is corruption
                        raise self._as_layout_error(exc) from exc
                elif rc == errno.EOWNERDEAD:  # we now hold a dead writer's mutex: recover it, then go slow
                    rc = -1
                    mutex.acquire_contended(errno.EOWNERDEAD)
                    rc = 0
            except Exception as exc:  # noqa: BLE001 - closed by another thread during the read?
                raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open
            finally:
                if not rc:
                    mutex.unlock(mutex.ref)
                elif rc == -1:
                    self._release_abandoned()
        return self._fetch_slow(fn, out)

    def _fetch_slow(self, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
        self._check_open()
        if fn is not None or out is not None:
            _check_fetch_arguments(fn, out)
        try:
            return self._fetch_open(fn, out)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile? (fn can take a while)
            raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open

    def _fetch_open(self, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
        # A handle whose last copy took more than half the budget (a 10 MB array, or any frame on
        # a starved CPU) goes straight to the mutex: another lock-free copy that long would most
        # likely be lapped again. _fetch_locked re-measures, so a handle whose copies got fast
        # again (a 1.2 MB frame takes 30 us) goes back to lock-free retries, which do not block
        # the writer. (Reading every lapped frame under the mutex, as a size rule used to, kept a
        # free-running writer waiting for the lock 20-80 ms per second; now about half that.)
        if self._lock_free and not self._slow_reads:
            budget_end = _monotonic_ns() + OPTIMISTIC_BUDGET_NS
            while True:
                started = _monotonic_ns()
                done, value = self._read_once(fn, out)
                if done:
                    return value
                now = _monotonic_ns()
                if now >= budget_end:
                    self._slow_reads = now - started > OPTIMISTIC_BUDGET_NS // 2
                    break
        return self._fetch_locked(fn, out)

    def _read_once(self, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> tuple[bool, Any]:
        """One lock-free read: (True, value), or (False, None) if a writer lapped it.

        An error on data that stayed stable is real: corruption becomes LayoutError, and fn's own
        exceptions propagate as they are. An error on torn data is just a lap.
        """
        words = self._words
        s1 = words[STATE]
        try:
            slot = self._slot_for_read(s1 & 1)
            buf = self._buf  # after the lookup: it may have remapped a grown segment
            if out is not None:
                value = _copy_into(out, slot.node, buf, slot.base)
            elif fn is not None:
                views = _ViewsForFn(slot.node, buf, slot.base)
            else:
                value = slot.read()
        except _DECODE_ERRORS as exc:
            if _valid(s1, words[STATE]):
                raise self._as_layout_error(exc) from exc
            return False, None
        if fn is not None:
            try:
                value = self._apply(fn, views)
            except Exception:  # fn on torn data may raise anything: a lap, unless the data was whole
                if _valid(s1, words[STATE]):
                    raise
                return False, None
        if not _valid(s1, words[STATE]):
            return False, None
        if self._dynamic:
            self._keep(s1 & 1, slot)
        self._seen = s1 >> 2
        return True, value

    def view(self) -> ZeroCopyView:
        """A zero-copy read: ``with obj.view() as v:`` gives ``v.value`` without copying anything.

        Array leaves of ``v.value`` are read-only numpy views straight into shared memory. When
        the block ends, ``v.torn`` says whether a writer overwrote them meanwhile; if it did,
        whatever you computed from them may mix two values: discard it and try again::

            while True:
                with frames.view() as v:
                    brightness = v.value.mean()      # reduce in place: no 1.2 MB copy
                if not v.torn:
                    break

        Safe: reading the views inside the block (they stay mapped even if the object is
        closed or unlinked meanwhile, so nothing can crash). Not safe: trusting a result when
        ``v.torn`` is true, or keeping the views after the block (a writer may change them at
        any time; ``fetch`` gives a private copy). A writer overwrites the slot you are viewing
        only after publishing another value first, so a block shorter than one writer period
        is never torn. On CPUs other than x86, and for single-slot objects, the block holds the
        writer lock instead (writers wait until it ends), and ``torn`` is always false (so does
        a dynamic object's block when writers keep rewriting its slot as it is set up); assigning
        to this object, or triggering it, inside the block from the same thread would wait for
        the block itself, so it raises LockReentryError. Reading it again there works: the
        block's lock keeps writers out.
        """
        self._check_open()
        return ZeroCopyView(self)

    def _as_layout_error(self, exc: Exception) -> Exception:
        """Our own errors pass as they are; anything else from decoding stable data means corruption."""
        if isinstance(exc, SharedObjectError):
            return exc
        if self._buf is _CLOSED_BUF:  # not corrupt: closed by another thread during the read
            return self._closed_during("fetch", exc)
        return LayoutError(f"segment {self.name!r} holds a corrupt value ({type(exc).__name__}: {exc})")

    def _slot_for_read(self, index: int) -> _Slot:
        """Slot ``index`` as cached, or read afresh (not cached: see _load_slot) if a writer changed it."""
        slot = self._slots[index]
        if self._dynamic and (slot is None or not self._slot_current(slot, index)):
            slot = self._load_slot(index)
        return slot  # type: ignore[return-value]

    def _slot_current(self, slot: _Slot, index: int) -> bool:
        """Does the segment still describe dynamic slot ``index`` as our cached ``slot`` does?"""
        buf = self._buf
        offset, capacity = _layout.SLOT_ENTRY.unpack_from(buf, _layout.SLOT_TABLE_OFFSET + 16 * index)
        return bool(
            offset == slot.offset
            and offset + capacity <= len(buf)
            and _u64_unpack(buf, offset)[0] == slot.schema_id
        )

    def _fetch_locked(self, fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> Any:
        """Read under the writer mutex (single-slot objects, repeated collisions, CPUs without load ordering).

        ``fn`` runs on read-only views while the mutex is held (writers wait for it, as for a
        view() block), so it sees the stored data in place, as on the lock-free path, and the
        value is copied only where fn's result still points into shared memory.
        """
        mutex = self._mutex  # the one we lock is the one we unlock, even if fn closes this handle
        s, taken = -1, False  # -1 until we know what _lock_for_read did (see "Who in this thread holds" above)
        try:
            s, taken = self._lock_for_read()
            try:
                slot = self._keep(s & 1, self._slot_for_read(s & 1))  # under the mutex: whole
                timed = self._lock_free  # only lock-free handles use _slow_reads: no clock reads for the others
                started = _monotonic_ns() if timed else 0
                if out is not None:
                    value = _copy_into(out, slot.node, self._buf, slot.base)
                elif fn is not None:
                    views = _ViewsForFn(slot.node, self._buf, slot.base)
                else:
                    value = slot.read()
                if timed:
                    self._slow_reads = _monotonic_ns() - started > OPTIMISTIC_BUDGET_NS // 2  # see _fetch_slow
            except _DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: this is corruption
                raise self._as_layout_error(exc) from exc
            if fn is not None:  # fn's own exceptions propagate as they are
                if taken:  # not when nested in a block that holds the lock: that block stays registered
                    _enter_block(self._segment_key, sys._getframe())
                try:
                    value = self._apply(fn, views)
                finally:
                    if taken:
                        _blocks_here().pop(self._segment_key, None)
        finally:
            if taken:
                mutex.unlock(mutex.ref)  # the C call itself: see "Who in this thread holds" above
            elif s < 0:
                self._release_abandoned()
        self._seen = s >> 2
        return value

    def _lock_for_read(self) -> tuple[int, bool]:
        """Take the writer mutex as a reader: the state word, and whether the caller must release it.

        (Not when a read block of this thread holds it already: see _lock_as_reader.) A
        single-slot object whose WRITING bit is set while we hold the mutex lost its writer
        mid-assign: release and raise IncompleteValueError instead.
        """
        taken = self._lock_as_reader()
        state: int = self._words[STATE]
        if state & WRITING and self._single_slot:
            if taken:
                self._mutex.unlock(self._mutex.ref)
            msg = (
                f"the last writer of single-slot segment {self.name!r} died in the middle of an assign: "
                "its value is incomplete until the next assign (two-slot objects keep the last complete value)"
            )
            raise IncompleteValueError(msg)
        return state, taken

    def _lock_timeout_error(self) -> LockTimeoutError:
        msg = (
            f"the writer lock of segment {self.name!r} stayed taken for {LOCK_TIMEOUT_S} s: a writer "
            f"is stuck, or the lock bytes are corrupt (see: shared-object inspect {self.name})"
        )
        if robust_locks_supported() is False:
            msg += (
                "; or its holder died: this kernel does not keep robust lock lists (qemu-user emulation, "
                "or a seccomp profile that refuses set_robust_list), so a dead holder's lock is never "
                "released; re-create the object, and see `shared-object doctor`"
            )
        return LockTimeoutError(msg)

    def _self_hold(self) -> str:
        """Does this thread hold the writer mutex? NOT_HELD, HELD_BY_OUR_CODE, or ABANDONED (see above).

        Held by our code: a view() block or fn on this segment whose frame is still running, or
        a locked section of ours that other code (a signal handler) interrupted. A system call
        and a walk of the stack: rare paths only.
        """
        key = self._segment_key
        blocks = _blocks_here()
        mutex = self._mutex
        held = mutex.held_by_this_thread() if isinstance(mutex, WriterMutex) else False
        if held is False:
            blocks.pop(key, None)  # a block that released the lock but was stopped before forgetting it
            return NOT_HELD
        block = blocks.get(key)
        if (block is not None and _running(block)) or _outer_section_holds(key):
            return HELD_BY_OUR_CODE
        if held is None:  # the kernel could not tell: never release what may not be ours
            return NOT_HELD
        blocks.pop(key, None)
        return ABANDONED

    def _release_abandoned(self) -> None:
        """On an error path that may have taken the mutex unknowingly: release it if abandoned."""
        if self._self_hold() == ABANDONED:
            self._release_held()

    def _check_busy(self, what: str) -> None:
        """The writer mutex is busy: fail at once if our own code holds it; release it if abandoned."""
        hold = self._self_hold()
        if hold == HELD_BY_OUR_CODE:
            raise self._reentry_error(what)
        if hold == ABANDONED:
            self._release_held()

    def _release_held(self) -> None:
        log.warning("released the writer lock of %r, which an interrupted call had taken", self.name)
        self._mutex.release_abandoned()  # type: ignore[union-attr]  # only called when _self_hold saw a WriterMutex

    def _reentry_error(self, what: str) -> LockReentryError:
        msg = (
            f"this thread holds the writer lock of {self.name!r} as a reader, inside a view() block or "
            f"fetch(fn) on it (on this object reads take the lock: it has one slot, or this CPU is not "
            f"x86), so {what} would wait for itself: do it after the block, or outside fn. (If no such "
            "block is open, a KeyboardInterrupt ended one just before it released the lock, which this "
            "thread then keeps until it ends.)"
        )
        return LockReentryError(msg)

    def _lock_as_writer(self, rc: int | None = None) -> None:
        """Take the writer mutex (``rc``: what the caller's ``trylock`` returned), or raise LockTimeoutError."""
        mutex = self._mutex
        if rc is None:
            rc = mutex.trylock(mutex.ref)
        if rc == errno.EBUSY:
            self._check_busy("assign() or trigger()")
            # The holder is most likely a reader or another writer copying one value. A writer
            # used to just sleep in the kernel here; a reader taking the mutex again at once won
            # over its wake-up every time (the mutex is not fair), and a reader fetching in a loop
            # on a single-slot object, or on a CPU where every read takes the mutex, kept a 30 Hz
            # writer waiting 5-50 ms. Now it asks readers to let it go first (_let_requester_go)
            # and sleeps in the kernel in short slices, renewing the request between them.
            rc = self._wait_for_turn(WRITER_REQUEST, lambda: mutex.trylock(mutex.ref),
                                     lambda: mutex.lock_within(WRITER_SLICE_S))
        if not rc:
            return
        try:
            mutex.acquire_contended(rc, LOCK_TIMEOUT_S)  # EOWNERDEAD: recover a dead holder's mutex
        except LockTimeoutError:
            raise self._lock_timeout_error() from None

    def _wait_for_turn(self, word: int, attempt: Callable[[], int], block: Callable[[], int] | None = None) -> int:
        """Retry ``attempt`` (a trylock: 0, EBUSY, EOWNERDEAD...) until it is not EBUSY, and return that.

        Meanwhile ``words[word]`` holds a fresh stamp asking the other side to let us go first
        (REQUEST: writers pause; WRITER_REQUEST: readers hold off; see _layout, "Turns at the
        mutex"), cleared once we have the mutex. First it yields the CPU between attempts (a
        holder copies one value, and a wake-up from the kernel costs more than that); then it
        naps between attempts, or, given ``block`` (a lock that waits in the kernel for a short
        slice: ETIMEDOUT when it runs out), waits in that instead, woken when the mutex is
        released: a writer behind a view() block held for seconds used 3-4% of a core so, and
        12% napping.
        """
        words = self._words
        spins = 0
        deadline = _monotonic_ns() + int(LOCK_TIMEOUT_S * 1e9)
        while True:
            stamp = _monotonic_ns()
            if stamp > deadline:
                raise self._lock_timeout_error()
            words[word] = stamp
            if block is not None and spins >= SPINS:
                rc = block()
                if rc == errno.ETIMEDOUT:
                    continue
            else:
                spins = _wait_step(spins)
                rc = attempt()
            if rc != errno.EBUSY:
                if words[word] == stamp:
                    words[word] = 0
                return rc

    def _let_requester_go(self, words: memoryview, word: int, max_ns: int) -> None:
        """Wait while ``words[word]`` holds a fresh request of the other side, at most ``max_ns``.

        The other half of _wait_for_turn: a writer lets a starving reader read (REQUEST), a reader
        lets a waiting writer take the mutex first (WRITER_REQUEST). It ends when the requester
        clears its stamp (it has its turn), when the stamp goes stale (it gave up, or died), or
        when ``max_ns`` have passed.
        """
        spins = 0
        end = 0
        while True:
            stamp = words[word]
            now = _monotonic_ns()
            if not stamp or now - stamp >= REQUEST_FRESH_NS:
                return
            if not end:
                end = now + max_ns
            elif now >= end:
                return
            spins = _wait_step(spins)

    def _lock_as_reader(self) -> bool:
        """Take the writer mutex (after any writer that asked to go first), asking busy writers to pause.

        True if this call took it (the caller releases it). False for a read nested in a view()
        block or fetch(fn) of this thread that holds it already: that lock keeps every writer
        out, so the nested read is safe as it is, and must leave the lock to its block.
        """
        mutex = self._mutex
        words = self._words
        if words[WRITER_REQUEST] and not self._read_block_holds():  # a nested read cannot let it go first
            self._let_requester_go(words, WRITER_REQUEST, READER_YIELD_MAX_NS)
        if mutex.try_acquire():
            return True
        if self._read_block_holds():
            return False
        self._check_busy("reading it again")
        self._wait_for_turn(REQUEST, lambda: 0 if mutex.try_acquire() else errno.EBUSY)
        return True

    def _read_block_holds(self) -> bool:
        """Does a view() block or fetch(fn) of this thread, still running, hold this segment's mutex?

        Only a read block: a locked section of ours that a signal handler interrupted (see "Who
        in this thread holds" above) may be mid-assign, so reads there still get LockReentryError.
        A dictionary lookup when no block is open; a stack walk and a system call otherwise.
        """
        block = _blocks_here().get(self._segment_key)
        if block is None or not _running(block):
            return False
        mutex = self._mutex
        return isinstance(mutex, WriterMutex) and mutex.held_by_this_thread() is True

    def _apply(self, fn: FetchFn, views: _ViewsForFn) -> Any:
        """``fn`` of the value's read-only views, with a result that no longer points into shared memory.

        Views in the result's arrays, tuples, lists and dicts are copied (only what fn kept: a
        slice of a frame costs the slice). A view that something else still holds (a namedtuple
        or dataclass of the caller's, ``torch.from_numpy(x)``, a closure) cannot be copied from
        outside, and would show later assigns: then fn runs again, on a private copy.
        """
        result = self._detach(fn(views.take()))  # the call's argument is the views' only holder
        # roots[0] is a control that only the list holds: held by more, a root has escaped. (Not a
        # number: what getrefcount reports differs between versions; 3.14 borrows its argument.)
        counts = [_getrefcount(root) for root in views.roots]
        if max(counts) > counts[0]:
            return fn(views.node.read(views.buf, views.base))
        return result

    def _detach(self, value: Any) -> Any:
        """Copy whatever in ``value`` still points into the shared mapping."""
        if isinstance(value, np.ndarray):
            return value.copy() if self._points_into_mapping(value) else value
        if type(value) in (tuple, list):
            return type(value)(self._detach(v) for v in value)
        if type(value) is dict:
            return {k: self._detach(v) for k, v in value.items()}
        if isinstance(value, memoryview):  # of a view, or of a slice of one: keep its format and shape
            try:
                array = np.asarray(value)
            except (ValueError, TypeError):  # a format numpy does not read: copy the bytes
                return memoryview(value.tobytes())
            return memoryview(array.copy()) if self._points_into_mapping(array) else value
        return value  # anything else holding a view: see _apply

    def _points_into_mapping(self, array: np.ndarray[Any, Any]) -> bool:
        if not array.size:
            return False
        lo, hi = _byte_bounds(array)
        return any(lo < end and hi > start for start, end in self._map_ranges)

    @property
    def modified(self) -> bool:
        """True if the object changed since this handle last fetched (no reset, no system call).

        A change is another handle's assign, or any handle's trigger, this one's included.
        """
        try:
            return bool(self._words[2] >> 2 != self._seen)  # 2: STATE
        except IndexError:  # closed
            self._check_open()
            raise

    @property
    def triggered(self) -> bool:
        """True once for each change since this handle last looked: reading it resets it (no system call).

        Changes are counted as for :attr:`modified`: another handle's assign, any handle's trigger.
        """
        try:
            change = self._words[2] >> 2  # 2: STATE
        except IndexError:  # closed
            self._check_open()
            raise
        if change != self._seen:
            self._seen = change
            return True
        return False

    @property
    def mtime(self) -> int:
        """Time of the last assign or trigger, in ns since the epoch (``time.time_ns()``)."""
        self._check_open()
        return int(self._words[MTIME])

    @property
    def orphaned(self) -> bool:
        """True once the name no longer leads to this handle's segment.

        That happens when someone unlinked it, and stays so if a restarted producer created a new
        object under the same name: this handle still works, but nobody will write to it again,
        so ``wait()`` would only time out. Attach again to follow the new object::

            if not frames.wait(timeout=1.0) and frames.orphaned:
                frames.close()
                frames = SharedObject.attach("frames", timeout=30)

        Costs two system calls (a stat of the name and of the open file): check it when ``wait``
        times out, not on every frame.
        """
        self._check_open()
        return not self._segment.is_named()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the object changes (another handle's assign, any handle's trigger); False on timeout.

        Returns at once when :attr:`modified` would be true: the object changed since this handle
        last fetched (or read ``triggered``), so no change is ever missed between a fetch and the
        next wait, and a trigger of this very handle counts. Sleeps in
        the kernel (a futex on the shared mapping): an idle waiter uses no CPU. Works across
        processes and across containers that share the segment. ``timeout=0`` (or less) only
        checks; ``math.inf`` is the same as None.
        """
        self._check_open()
        seconds = timeout_seconds(timeout, "wait(timeout=...)")
        deadline = None if seconds is None else _monotonic_ns() + int(seconds * 1e9)
        words = self._words
        try:
            while True:
                state = words[STATE]
                if state >> 2 != self._seen:
                    return True
                now = _monotonic_ns()
                if deadline is not None and now >= deadline:
                    return False
                self._check_open()  # closed by another thread, which woke us?
                nap = WAIT_SLICE_S if deadline is None else min(WAIT_SLICE_S, (deadline - now) / 1e9)
                announce = now + int(nap * 1e9) + WAIT_GRACE_NS
                if words[WAITER] < announce:  # noqa: PLR1730 - store only when it moves: writers poll this line
                    words[WAITER] = announce
                # The kernel re-checks the word after our announcement is stored: a writer either sees
                # the announcement and wakes us, or changed the word first and we return at once.
                futex_wait(self._futex_address, state & 0xFFFFFFFF, nap)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("wait", exc)  # noqa: B904 - sets the cause; re-raises exc if open

    # ----------------------------------------------------------------------------------------
    # Writing
    # ----------------------------------------------------------------------------------------
    def assign(self: Self, data: Any) -> Self:  # noqa: PLR0912 - the hottest path, inlined
        """Store ``data``, visible to every handle as a whole or not at all; returns self.

        Other handles see the change (``modified``, ``triggered``, ``wait``); this one does not,
        and counts every earlier change as seen, as the reference does.

        Raises (leaving the stored value unchanged) TypeMismatchError for a value of another kind,
        CapacityError for a str/bytes longer than its capacity, IntegerOverflowError for an int
        beyond 64 bits, UnsupportedTypeError for a type that cannot be stored.
        """
        # The word indices below are _layout's STATE (2), MTIME (3), WAITER (4) and REQUEST (5),
        # written as literals: this is the hottest path of the library and a global lookup costs ~20 ns.
        fast = self._fast
        array = None
        if fast is not None and type(data) is fast[0] and (fast[0] is not int or -(2**63) <= data < 2**63):
            writes = None  # a bool/int/float going into a top-level leaf of exactly its type
        elif (
            (array := self._fast_array) is not None
            and type(data) is np.ndarray
            and data.shape == array[1]
            and (data.dtype is array[0] or data.dtype == array[0])  # builtin dtypes are singletons: skip the slow ==
        ):
            writes = None  # an ndarray of exactly the stored dtype and shape
        else:
            array = None
            writes = self._prepare(data)
            slots = self._slots  # this list: close() in another thread replaces it, and we finish
        buf = self._buf
        words = self._words
        mutex = self._mutex
        rc = -1  # -1 until we know whether we hold the mutex (see "Who in this thread holds" above)
        try:
            rc = mutex.trylock(mutex.ref)
            if rc:
                busy, rc = rc, -1
                self._lock_as_writer(busy)
                rc = 0
            state = words[2]
            target = (state & 1) ^ 1
            words[2] = state | 2  # WRITING: the other slot is being filled
            if array is not None:
                _copyto(array[3] if target else array[2], data)
            elif writes is None:
                fast[1](buf, fast[2 + target], data)  # type: ignore[index]  # writes is None => fast is set
            else:
                base = slots[target].base  # type: ignore[union-attr]
                for leaf, value in writes:
                    leaf.write(buf, base, value)
            change = (state >> 2) + 1
            words[3] = _time_ns()
            words[2] = change << 2 | target  # the publication: one 8-byte store
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("assign", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        finally:
            if not rc:
                mutex.unlock(mutex.ref)
            elif rc == -1:
                self._release_abandoned()
        self._seen = change
        if words[4] or words[5]:
            self._after_publish(words)
        return self

    def _prepare(self, data: Any) -> _codecs.Writes:
        """Check ``data`` against the stored kind; what to write, or an error naming both kinds."""
        slot = self._slots[0]
        if slot is None:
            self._check_open()
        writes: _codecs.Writes = []
        slot.node.prepare(data, "", writes)  # type: ignore[union-attr]
        return writes

    def trigger(self: Self) -> Self:
        """Mark the object changed without changing its value (wakes waiters); returns self.

        Every handle sees a trigger, this one included: after ``obj.trigger()``, ``obj.modified``
        and ``obj.triggered`` are true and ``obj.wait()`` returns at once, as in the reference
        (``so = SharedObject("trigger"); so.trigger(); so.triggered`` is True). An ``assign``
        is seen by every handle but its own.
        """
        self._check_open()
        words = self._words
        mutex = self._mutex
        held = False  # until we know that _lock_as_writer took the mutex (see "Who in this thread holds" above)
        try:
            self._lock_as_writer()
            held = True
            state = words[STATE]
            change = (state >> 2) + 1
            words[MTIME] = _time_ns()
            words[STATE] = change << 2 | (state & 1)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("trigger", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        finally:
            if held:
                mutex.unlock(mutex.ref)  # the C call itself: see "Who in this thread holds" above
            else:
                self._release_abandoned()
        # Not ``self._seen = change``: a trigger is seen by every handle, this one included (the
        # reference's rule: its trigger() stamps the time without updating the handle's own).
        self._after_publish(words)
        return self

    def _after_publish(self, words: memoryview) -> None:
        """Wake waiters and make room for starving readers, if there are any.

        Runs after the mutex release, which is a full memory barrier: the state store above is
        visible before we load the waiter announcement (so a waiter cannot be missed).
        ``words`` are the ones the publication used: this handle may have been closed since, by
        another thread, and the other processes' waiters must still be woken.
        """
        waiter, request = words[WAITER], words[REQUEST]
        if not (waiter or request):
            return
        now = _monotonic_ns()
        if waiter > now:
            futex_wake(self._futex_address)
        if request:
            # A reader failed to get a clean copy several times: pause until it has read (it
            # clears its request) or the pause runs out, before our next write can lap it again.
            self._let_requester_go(words, REQUEST, WRITER_YIELD_MAX_NS)

    # ----------------------------------------------------------------------------------------
    # Lifetime
    # ----------------------------------------------------------------------------------------
    def close(self) -> None:
        """Drop this handle's mapping; the shared object stays for every other handle."""
        self._close(explicit=True)

    def _close(self, *, explicit: bool) -> None:
        """``explicit``: close() was called, so the mapping is alive; False from __del__, where the
        collector may have unmapped it already: then nothing here reads it (see below)."""
        segment = getattr(self, "_segment", None)
        if segment is None:
            return
        with self._closing_lock():  # one close at a time, and never during a _remapped()
            if self._buf is _CLOSED_BUF:
                return
            # First of all: from here on every call, in any thread, finds the handle closed, so a
            # call running meanwhile that meets one of the stand-ins below knows why (_closed_during).
            self._buf = _CLOSED_BUF
            mutex = self._mutex
            if isinstance(mutex, WriterMutex):
                # An abandoned lock must not outlive its mapping: glibc writes into the memory of the
                # robust mutexes a thread holds whenever that thread takes another one.
                self._release_abandoned()
                if explicit and mutex.lock_word_names_this_thread() and mutex.held_by_this_thread() is None:
                    # The kernel cannot say (get_robust_list refused: qemu-user, seccomp), and this
                    # thread may hold it, abandoned: keep the mapping (the mutex keeps it) for good.
                    # Only in close(): from __del__ the collector may have unmapped it already (below).
                    # The lock word first: a load, where asking the kernel is a system call.
                    _NEVER_UNMAPPED.append(mutex)
                mutex.forget()
            self._forget_views()
            self._spares.clear()  # private copies kept for reuse: free them with the handle
            self._fast = None
            self._fast_array = None
            words = self._words
            self._words = _CLOSED_WORDS
            self._mutex = _ClosedMutex(self.name)
            if explicit and words[WAITER] > _monotonic_ns():
                # Another thread may be asleep in wait() on this handle: wake it now (it then raises
                # ClosedError) rather than at the end of its nap. Waiters elsewhere wake, see no
                # change, and sleep again. Never from __del__: a handle that a thread waits on is not
                # garbage, and when the collector frees a cycle holding a handle and its mapping, it
                # runs the weakref callback that unmaps before the handle's __del__ (reading the
                # words then was a segmentation fault).
                futex_wake(self._futex_address)
            # The words are dropped, not released: a call that another thread started before this
            # close holds them (and so the mapping) and finishes, publication and wake-ups included.
            # Every call after it finds the handle closed.
            segment.close()

    def unlink(self) -> None:
        """Remove the object's name from /dev/shm; existing handles keep working until they close.

        Raises SegmentNotFoundError (a FileNotFoundError) if the name is gone, or if it now names
        another segment, created under the same name after this handle attached: that one is
        left alone. (Works on a closed handle too.)
        """
        _segment.unlink(self.name, self._segment_key)

    @property
    def closed(self) -> bool:
        return self._buf is _CLOSED_BUF

    def _closed_during(self, what: str, exc: Exception) -> Exception:
        """What to raise for ``exc``, which ended ``what``: ClosedError if another thread closed this
        handle meanwhile, else ``exc`` itself.

        A call reads several of the handle's fields, and close() in another thread replaces them
        with closed stand-ins one by one, so a call caught in between fails on whichever it meets
        first (an empty buffer, a None slot): any such error means "closed". close() marks the
        handle closed before replacing anything, so the test below sees it.
        """
        if self._buf is not _CLOSED_BUF or isinstance(exc, ClosedError):
            return exc
        error = _closed_error(self.name, during=what)
        error.__cause__ = exc
        return error

    def _check_open(self) -> None:
        if self._buf is _CLOSED_BUF:
            raise _closed_error(self.name)

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self._close(explicit=False)  # without touching the mapping (see _close)
        except Exception:  # noqa: BLE001, S110 - never raise from a finalizer
            pass

    def __reduce__(self) -> tuple[Callable[..., SharedObject], tuple[type[SharedObject], str]]:
        """Pickle as "attach by name": the receiving process opens the same object."""
        return _attach_by_name, (type(self), self.name)

    def __repr__(self) -> str:
        if self.closed:
            return f"{type(self).__name__}({self.name!r}, closed)"
        try:
            node = self._current_node()
            kind, size = node.describe(), node.size
        except Exception:  # noqa: BLE001 - a repr never raises (closed meanwhile, corrupt, a lock we hold)
            kind, size = "unreadable", 0
        slots = ", slots=1" if self._single_slot else ""
        return f"{type(self).__name__}({self.name!r}, type={kind}, size={size} bytes{slots})"

    @property
    def kind(self) -> str:
        """A description of the stored value's type identity, e.g. ``ndarray[uint8, (480, 848, 3)]``."""
        self._check_open()
        try:
            return self._current_node().describe()
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("kind", exc)  # noqa: B904 - sets the cause; re-raises exc if open

    def _current_node(self) -> _codecs.Node:
        """The node of the value readers read now (for kind and repr), read as fetch reads it.

        A fixed object's slots were loaded at open and never change. A dynamic object's current
        slot header may be rewritten under us: it is read lock-free and validated as a value is
        (a lap retries; unvalidated, it used to be cached torn), or under the writer mutex where
        reads take it.
        """
        if not self._dynamic:
            return self._slot_for_read(0).node
        words = self._words
        if self._lock_free:
            for _ in range(HEADER_READ_TRIES):
                s1 = words[STATE]
                try:
                    slot = self._slot_for_read(s1 & 1)
                except _DECODE_ERRORS as exc:
                    if _valid(s1, words[STATE]):
                        raise self._as_layout_error(exc) from exc
                    continue
                if _valid(s1, words[STATE]):
                    return self._keep(s1 & 1, slot).node
        mutex = self._mutex  # the one we lock is the one we unlock
        state, taken = -1, False  # -1 until we know what _lock_for_read did (see "Who in this thread holds" above)
        try:
            state, taken = self._lock_for_read()
            try:
                return self._keep(state & 1, self._slot_for_read(state & 1)).node
            except _DECODE_ERRORS as exc:  # nobody writes while we hold the mutex: this is corruption
                raise self._as_layout_error(exc) from exc
        finally:
            if taken:
                mutex.unlock(mutex.ref)
            elif state < 0:
                self._release_abandoned()


class ZeroCopyView:
    """What ``SharedObject.view()`` returns: ``value`` inside the block, ``torn`` after it."""

    __slots__ = ("_locked", "_mutex", "_obj", "_slot", "_state", "_words", "torn", "value")

    def __init__(self, obj: SharedObject) -> None:
        self._obj = obj
        self._state = 0
        #: The words the block started from: the handle may be closed inside the block.
        self._words: memoryview | None = None
        self._locked = False
        #: The mutex a locked block took (and keeps mapped), released through it even if the
        #: handle is closed inside the block.
        self._mutex: WriterMutex | _ClosedMutex | None = None
        #: The slot a lock-free block views: its handle keeps it once the block proved untorn.
        self._slot: _Slot | None = None
        #: The value, with array leaves as read-only views into shared memory (inside the block).
        self.value: Any = None
        #: After the block: True if a writer overwrote the viewed data during it.
        self.torn = False

    def __enter__(self) -> ZeroCopyView:
        obj = self._obj
        try:
            if obj._lock_free and self._enter_lock_free(obj):
                return self
            self._mutex = obj._mutex  # closed since view(): _lock_for_read raises ClosedError
            self._state, taken = obj._lock_for_read()
            self._locked = True
            if taken:
                _enter_block(obj._segment_key, sys._getframe(1))  # the with block: user code holding the lock
            else:
                self._mutex = None  # nested in a read block of this thread: the lock stays with that block
            slot = obj._slot_for_read(self._state & 1)
            if obj._dynamic:
                obj._keep(self._state & 1, slot)  # under the mutex: whole
            self.value = slot.node.view(obj._buf, slot.base)
        except BaseException as exc:
            mutex = self._mutex
            if self._locked:
                if mutex is not None:  # None: a nested block's lock, which stays with its own block
                    mutex.unlock(mutex.ref)
                    _blocks_here().pop(obj._segment_key, None)
                self._locked = False
            elif not obj._lock_free:
                obj._release_abandoned()
            if isinstance(exc, Exception):  # closed by another thread meanwhile?
                raise obj._closed_during("view", exc)  # noqa: B904 - it sets the cause itself
            raise
        return self

    def _enter_lock_free(self, obj: SharedObject) -> bool:
        """Make the views without the lock; False if writers lapped every try (take the lock then).

        Setting up reads a dynamic object's slot header and schema, which a writer lapping us
        may be rewriting: that is a lap to retry (it used to reach the caller as a LayoutError),
        while an error on data that stayed put is corruption.
        """
        words = self._words = obj._words
        for _ in range(HEADER_READ_TRIES):
            state = words[STATE]
            try:
                slot = obj._slot_for_read(state & 1)
                self.value = slot.node.view(obj._buf, slot.base)
            except _DECODE_ERRORS as exc:
                if _valid(state, words[STATE]):
                    raise obj._as_layout_error(exc) from exc
                continue
            self._state = state
            self._slot = slot
            return True
        self._words = None
        return False

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        obj = self._obj
        if self._locked:
            # The C unlock first, inline: a Python call in between would be a point where a
            # KeyboardInterrupt could skip it (see "Who in this thread holds" above).
            mutex = self._mutex
            if mutex is not None:  # None: nested in a read block of this thread, whose lock it stays
                mutex.unlock(mutex.ref)
                _blocks_here().pop(obj._segment_key, None)
            self._locked = False
            self._mutex = None
            self.torn = False
        else:
            # The words from __enter__: they keep the mapping, so this holds even if the handle
            # was closed inside the block.
            words = self._words
            self.torn = words is None or not _valid(self._state, words[STATE])
            slot, self._slot = self._slot, None
            if not self.torn and slot is not None and obj._dynamic and not obj.closed:
                obj._keep(self._state & 1, slot)
        self._words = None
        if not self.torn:
            obj._seen = self._state >> 2
        self.value = None  # drop the views: they must not outlive the block


DynamicSelf = TypeVar("DynamicSelf", bound="SharedDynamicObject")


class SharedDynamicObject(SharedObject):
    """A SharedObject whose value may change type, size, dtype, shape or structure on ``assign``.

    The segment grows when a value outgrows its slot (never shrinks); other handles follow on
    their next fetch. Each fetch checks the slot's schema, so it is a little slower than a
    SharedObject's. str/bytes values may grow without limit. Each value reads back exactly as
    assigned, type included: none of the lossless conversions a SharedObject makes to fit its
    fixed kind (3 assigned after 1.5 reads back 3, not 3.0).
    """

    _dynamic = True

    def assign(self: DynamicSelf, data: Any) -> DynamicSelf:
        self._check_open()
        offered = _codecs.schema_of(data, self._init_size)  # refuses unsupported types before any lock
        words = self._words  # any mapping's header words will do, for waking waiters after
        mutex = self._mutex
        held = False  # until we know that _lock_as_writer took the mutex (see "Who in this thread holds" above)
        try:
            self._lock_as_writer()
            held = True
            self._assign_locked(data, offered)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("assign", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        finally:
            if held:
                mutex.unlock(mutex.ref)  # the C call itself: see "Who in this thread holds" above
            else:
                self._release_abandoned()
        self._after_publish(words)
        return self

    def _assign_locked(self, data: Any, offered: _codecs.Schema) -> None:
        words = self._words
        state = words[STATE]
        current = self._keep(state & 1, self._load_slot(state & 1))  # under the mutex: whole
        writes: _codecs.Writes = []
        # Keep the current schema when the value fits it as it is (readers then need not read a
        # new schema), not merely after a conversion: 3 written to a float leaf would read back 3.0.
        keep = _codecs.fits_as_is(offered, current.node.schema)
        if keep:
            try:
                current.node.prepare(data, "", writes)
            except (TypeError, ValueError):  # a str past its capacity, say: a new schema makes room
                writes.clear()
                keep = False
        if keep:
            node, schema_id, schema_text = current.node, current.schema_id, b""
        else:
            schema_text = _codecs.dumps(offered)
            known = self._schema_ids.get(schema_text)  # a kind this object held before: its id again
            node = (self._nodes.get(known) if known else None) or _codecs.build(offered)
            node.prepare(data, "", writes)
            schema_id = known or words[_layout.SCHEMA_COUNTER_WORD] + 1
        target = (state & 1) ^ 1
        words[STATE] = state | WRITING  # from here on the target slot is ours
        try:
            target_slot = self._prepare_target(target, node, schema_id, schema_text)
        except BaseException:
            words[STATE] = state  # nothing was touched: undo the mark
            raise
        buf = self._buf
        for leaf, value in writes:
            leaf.write(buf, target_slot.base, value)
        change = (state >> 2) + 1
        words[MTIME] = _time_ns()
        words[STATE] = change << 2 | target
        self._seen = change

    def _prepare_target(self, target: int, node: _codecs.Node, schema_id: int, schema_text: bytes) -> _Slot:
        """Make slot ``target`` hold ``node``'s schema, relocating it to a larger region if needed."""
        offset, capacity, remapped = self._place_of(target)
        if remapped:  # another writer moved this slot past our mapping, while the current slot stayed in it
            self._keep(target ^ 1, self._load_slot(target ^ 1))
        buf = self._buf
        if not schema_text:
            if _layout.U64.unpack_from(buf, offset)[0] == schema_id:
                return self._keep(target, self._load_slot(target))
            schema_text = self._schema_text_of(schema_id)
        payload_offset, needed = _layout.slot_size(len(schema_text), node.size)
        if needed > capacity:
            offset = self._move_slot(target, needed, capacity)
            buf = self._buf
        _write_slot_header(buf, offset, schema_id, schema_text, payload_offset, node.size)
        counter = _layout.SCHEMA_COUNTER_WORD
        self._words[counter] = max(self._words[counter], schema_id)
        self._remember_schema(schema_text, schema_id)
        return self._keep(target, _Slot(node, buf, offset, payload_offset, schema_id, self._spares))

    def _move_slot(self, target: int, needed: int, capacity: int) -> int:
        """Give slot ``target`` a new place of at least ``needed`` bytes; its offset.

        The place may be anywhere but on the current slot (readers read it): the lowest offset
        that fits, before the current slot or right after it, growing the file if it runs past
        the end. Old places are reused, not left behind (a 20 MiB value grown 1 MiB at a time
        left 126 MiB of them, and failed at 13 MiB in a container's 64 MiB /dev/shm), and they
        keep their memory: a lapped reader or a view may still read an old place, and a hole
        punched there would be allocated on that read, which is SIGBUS when /dev/shm is full.
        Overwriting it is what every assign does to the slot readers are not reading.
        """
        page = _layout.PAGE
        current_entry = _layout.SLOT_TABLE_OFFSET + 16 * (target ^ 1)
        other_offset, other_capacity = _layout.SLOT_ENTRY.unpack_from(self._buf, current_entry)
        exact = _layout.align(needed, page)
        roomy = max(exact, _layout.align(capacity + capacity // 2, page))  # room to grow again
        for new_capacity in (roomy, exact) if roomy > exact else (exact,):
            offset = _layout.align(_layout.HEADER_SIZE, page)
            if offset + new_capacity > other_offset:  # no room before the current slot: after it
                offset = _layout.align(other_offset + other_capacity, page)
            try:
                self._segment.grow(offset + new_capacity)  # a no-op if the file is long enough
                break
            except OutOfSharedMemoryError:
                if new_capacity == exact:
                    raise  # a tight /dev/shm: tried without room to spare too
        if self._segment.buf is not self._buf:
            self._remapped()
            self._keep(target ^ 1, self._load_slot(target ^ 1))
        # Schema id 0 (none) until the caller writes the header: the place holds old bytes, which
        # a writer dying in between would leave for the next one to take for a header.
        _layout.U64.pack_into(self._buf, offset, 0)
        _layout.SLOT_ENTRY.pack_into(self._buf, _layout.SLOT_TABLE_OFFSET + 16 * target, offset, new_capacity)
        return offset

    def _schema_text_of(self, schema_id: int) -> bytes:
        """The schema text of the current slot (whose id is ``schema_id``)."""
        for index in (0, 1):
            offset, _ = _layout.SLOT_ENTRY.unpack_from(self._buf, _layout.SLOT_TABLE_OFFSET + 16 * index)
            sid, length = _layout.SLOT_HEADER.unpack_from(self._buf, offset)[:2]
            if sid == schema_id:
                start = offset + _layout.SLOT_HEADER_SIZE
                return bytes(self._buf[start : start + length])
        msg = f"segment {self.name!r}: schema {schema_id} is in neither slot"
        raise LayoutError(msg)


def _write_slot_header(
    buf: memoryview, offset: int, schema_id: int, schema_text: bytes, payload_offset: int, payload_len: int
) -> None:
    # The schema id last: a writer killed before it leaves a header that matches no schema (id 0),
    # never one whose id promises a schema text or sizes it did not finish writing.
    _layout.SLOT_HEADER.pack_into(buf, offset, 0, len(schema_text), 0, payload_offset, payload_len)
    start = offset + _layout.SLOT_HEADER_SIZE
    buf[start : start + len(schema_text)] = schema_text
    _layout.U64.pack_into(buf, offset, schema_id)


def _wait_step(spins: int) -> int:
    """One step of waiting for another process's turn: yield the CPU SPINS times, then nap POLL_S."""
    if spins < SPINS:
        os.sched_yield()
    else:
        time.sleep(POLL_S)
    return spins + 1


def _valid(s1: int, s2: int) -> bool:
    """Did the slot read under state ``s1`` stay untouched until state ``s2`` was loaded? (see _layout)

    The WRITING bit alone does not matter: with no publication in between, a writer can only be
    filling the *other* slot.
    """
    return s2 >> 2 == s1 >> 2 or (s2 >> 2 == (s1 >> 2) + 1 and not s2 & WRITING)


def _check_fetch_arguments(fn: FetchFn | None, out: np.ndarray[Any, Any] | None) -> None:
    """Refuse what fetch cannot honour, before reading anything (its kind is checked on reading)."""
    if fn is not None and out is not None:
        msg = "fetch takes fn or out=, not both (to copy fn's result into your array: np.copyto(out, obj.fetch(fn)))"
        raise InvalidArgumentError(msg)
    if fn is not None and not callable(fn):
        msg = f"fetch(fn): fn must be callable (it gets the value), not {fn!r}"
        raise InvalidArgumentError(msg)
    if isinstance(out, np.ndarray) and not out.flags.writeable:
        msg = "fetch(out=...): out is read-only; pass a writable array"
        raise InvalidArgumentError(msg)


def _copy_into(out: np.ndarray[Any, Any], node: _codecs.Node, buf: memoryview, base: int) -> np.ndarray[Any, Any]:
    if not isinstance(node, _codecs.ArrayNode):
        msg = f"fetch(out=...) needs an ndarray object; this one holds {node.describe()}"
        raise TypeMismatchError(msg)
    if not isinstance(out, np.ndarray) or out.dtype != node.dtype or out.shape != node.shape:
        msg = f"fetch(out=...): stored kind is {node.describe()}, out is {_codecs.describe(out)}"
        raise TypeMismatchError(msg)
    np.copyto(out, node.views(buf, base)[1])
    return out


def _check_init_size(init_size: int) -> int:
    if not isinstance(init_size, int) or isinstance(init_size, bool) or init_size < 0:
        msg = f"init_size must be a non-negative int (bytes), not {init_size!r}"
        raise InvalidArgumentError(msg)
    return init_size


def _attach_by_name(cls: type[SharedObject], name: str) -> SharedObject:
    return cls.attach(name)


#: Our calls inside which the writer mutex may be held while other Python code runs on top (a
#: signal handler, between two bytecodes): see _outer_section_holds. Every acquisition happens in one.
_LOCKED_SECTIONS: Final = frozenset(
    f.__code__
    for f in (
        SharedObject.assign, SharedObject.trigger, SharedObject.fetch, SharedObject._fetch_locked,
        SharedDynamicObject.assign, SharedDynamicObject._assign_locked, ZeroCopyView.__enter__,
    )
)


__all__ = ["SharedDynamicObject", "SharedObject", "ZeroCopyView"]
