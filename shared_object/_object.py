"""SharedObject: the public verbs, and the two hot paths (``fetch`` and ``assign``) inlined.

Where the rest lives: the segment file and its mapping in ``_segment``; the bytes and the
publication protocol in ``_layout``; values in ``_codecs``; the handle's state, lifetime and slot
cache in ``_handle``; reads beyond the fast path, fetch(fn) and view() in ``_reading``; taking
the writer mutex in turn and knowing who holds it in ``_writer_lock``; the mutex and futex
themselves in ``_sync``; SharedDynamicObject in ``_dynamic``.

The hot paths repeat, inline, what a call would cost too much to reach: ``fetch`` reads the
current slot lock-free as ``_reading._read_once`` does, and takes everything else to
``_reading.fetch_slow``; ``assign`` follows ``WriterLock``'s inline protocol (see
``WriterLock.take_after_trylock``). Header words are indexed with literals there: a global
lookup costs about 20 ns on a call of about 700.
"""

from __future__ import annotations

import errno
import struct
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any, TypeVar

import numpy as np

from . import _arguments, _history, _layout, _reading, _ring, _segment
from ._arguments import DEFAULT_INIT_SIZE, DEFAULT_MODE
from ._errors import SegmentExistsError, SegmentNotFoundError, TypeMismatchError
from ._handle import CLOSED_WORDS, DECODE_ERRORS, Handle
from ._reading import FetchFn, RawValue, ZeroCopyView
from ._sync import futex_wait
from ._tuning import Tuning, tuning_or_default

Self = TypeVar("Self", bound="SharedObject")

_monotonic_ns = time.monotonic_ns
_time_ns = time.time_ns
_copyto = np.copyto
_read_was_whole = _layout.read_was_whole
_STATE, _MTIME, _WAITER = _layout.STATE_WORD, _layout.MTIME_WORD, _layout.WAITER_WORD
_WRITER_REQUEST = _layout.WRITER_REQUEST_WORD
#: How often a stream() without a timeout looks whether its object was removed meanwhile.
_ORPHAN_CHECK_S = 1.0


class SharedObject(Handle):
    """A value in shared memory that any process (or container) can fetch, assign and trigger.

    ``SharedObject(name, data=...)`` creates the object, or attaches to the existing one and
    assigns ``data``; ``SharedObject(name)`` attaches, or creates a trigger object (holding
    None) when none exists. ``create`` and ``attach`` say exactly which one you want.

    The type identity of the value (type, dtype, shape, structure, dict keys) is fixed at creation;
    assigning a value of another kind raises TypeMismatchError (a BufferError too) and leaves the
    stored value as it was. str/bytes/bytearray values may be re-assigned with any length up to
    their capacity, ``max(init_size, len(first value))`` bytes (UTF-8 for str), fixed at creation
    (use SharedDynamicObject to change any of this).

    Changes, as ``modified``, ``triggered`` and ``wait`` count them: another handle's assign, and
    any handle's trigger, this one's included (the reference's rule).

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
    :param history: for an object this call creates: keep the last ``history`` values (2 or
        more), each with its change number, in a ring of that many slots, so that a reader that
        falls behind catches up on every value it missed (:meth:`fetch_new`, :meth:`stream`)
        and counts exactly those it lost (:attr:`lost`). None (default): the newest value only.
        ``fetch``, ``modified``, ``wait`` and ``view`` keep their meaning: the newest value.
    :param tuning: timeouts, budgets and spins of this handle (:class:`Tuning`); None: defaults.

    .. code-block:: python

        frame = SharedObject("frame", data=np.zeros((480, 848, 3), np.uint8))   # producer
        frame = SharedObject.attach("frame", timeout=10)                        # consumer
        if frame.wait(timeout=1.0):
            image = frame.fetch()
    """

    def __new__(
        cls: type[Self], name: str = "", *args: Any, history: int | None = None, **kwargs: Any
    ) -> Self:
        """An instance of ``cls``, or of ``cls`` with a ring's hot paths (``_with_ring``) if it
        will have a history: made so from the start, since CPython shares the attribute keys of
        a class's instances, and an object whose class changes later loses that (its attribute
        loads took 2.3x as long)."""
        ring = not cls._dynamic and (history is not None or _ring.is_ring(name))
        return object.__new__(_class_for(cls, ring))

    def __init__(
        self,
        name: str,
        *,
        data: Any = None,
        init_size: int = DEFAULT_INIT_SIZE,
        mode: int = DEFAULT_MODE,
        slots: int = 2,
        history: int | None = None,
        tuning: Tuning | None = None,
    ) -> None:
        _segment.validate_name(name)
        self._init_size = _arguments.init_size(init_size)
        self._tuning = tuning_or_default(tuning)
        if data is None:
            try:
                self._open(_segment.Segment.open(name))
            except SegmentNotFoundError:
                try:
                    self._create_checked(name, None, mode, slots, history)
                except SegmentExistsError:  # another process created it in between: attach to that
                    self._open(_segment.Segment.open(name))
            return
        try:
            self._create_checked(name, data, mode, slots, history)
        except SegmentExistsError:
            self._open(_segment.Segment.open(name))
            try:
                self.assign(data)
            except TypeMismatchError as exc:
                self.close()
                # A producer restarted with a new frame size meets the segment of its last run:
                # say where the stored kind comes from, not only that it differs.
                msg = (
                    f"{exc}. {type(self).__name__}({name!r}, data=...) attaches to the segment of "
                    "that name if one exists, and assigns to it; if an earlier run left it, "
                    f"remove it first (`shared-object rm {name}`), or use SharedDynamicObject, "
                    "whose kind can change"
                )
                raise TypeMismatchError(msg) from exc
            except BaseException:
                self.close()
                raise

    @classmethod
    def create(
        cls: type[Self],
        name: str,
        data: Any = None,
        *,
        init_size: int = DEFAULT_INIT_SIZE,
        mode: int = DEFAULT_MODE,
        slots: int = 2,
        history: int | None = None,
        tuning: Tuning | None = None,
    ) -> Self:
        """Create a new object holding ``data``; SegmentExistsError if the name is taken."""
        self = object.__new__(_class_for(cls, history is not None))
        self._init_size = _arguments.init_size(init_size)
        self._tuning = tuning_or_default(tuning)
        self._create_checked(name, data, mode, slots, history)
        return self

    @classmethod
    def attach(
        cls: type[Self], name: str, *, timeout: float | None = 0.0, tuning: Tuning | None = None
    ) -> Self:
        """Attach to an existing object, waiting up to ``timeout`` seconds (None: forever) for it to
        appear.

        On timeout raises SegmentNotFoundError, whose message explains that processes in
        different containers must share an IPC namespace or /dev/shm. ``timeout=0`` (or less)
        looks once; ``math.inf`` is the same as None.
        """
        _segment.validate_name(name)
        chosen = tuning_or_default(tuning)
        seconds = _arguments.timeout_seconds(timeout, "attach(timeout=...)")
        deadline = None if seconds is None else time.monotonic() + seconds
        pause = chosen.attach_poll_s
        while True:
            try:
                segment = _segment.Segment.open(name)
                break
            except SegmentNotFoundError as exc:
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f" after waiting {seconds:g} s" if seconds else ""
                    msg = (
                        f"no shared object named {name!r} in {_segment.SHM_DIR}{waited}. "
                        f"{_segment.IPC_HINT}"
                    )
                    raise SegmentNotFoundError(msg, name=name) from exc
                time.sleep(
                    pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
                )
                pause = min(pause * 2, chosen.attach_poll_max_s)
        self = object.__new__(_class_for(cls, _ring.is_history_header(segment.buf)))
        self._init_size = DEFAULT_INIT_SIZE
        self._tuning = chosen
        self._open(segment)
        return self

    def _create_checked(
        self, name: str, data: Any, mode: int, slots: int, history: int | None = None
    ) -> None:
        _segment.validate_name(name)
        single = _arguments.slot_count(slots, dynamic=self._dynamic) == 1
        ring = _arguments.history(history, slots=slots, dynamic=self._dynamic)
        self._create(name, data, _arguments.mode(mode), single, ring)

    # -----------------------------------------------------------------------------------------
    # Reading
    # -----------------------------------------------------------------------------------------
    def fetch(self, fn: FetchFn | None = None, *, out: np.ndarray[Any, Any] | None = None) -> Any:  # noqa: PLR0912 - two hot paths, inlined
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
            # Lock-free, both slots loaded: _reading._read_once, inlined.
            words = self._words
            try:
                s1 = words[2]  # STATE
                value = self._slots[s1 & 1].read()  # type: ignore[union-attr]  # fixed objects: both slots loaded
                s2 = words[2]
                if s2 == s1 or _read_was_whole(
                    s1, s2
                ):  # the first test is the common case, without a call
                    self._seen = s1 >> 2
                    return value
                # Free the lapped copy before reading again. Holding two big copies at once and
                # then freeing both lets glibc's malloc trim the heap, so every later copy would
                # page-fault its memory in again (docs/design.md, "Big arrays").
                del value
            except (
                DECODE_ERRORS
            ):  # closed (ClosedError below), torn or corrupt: the slow path decides
                self._check_open()
            except Exception as exc:  # noqa: BLE001 - closed by another thread during the read?
                raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        elif (
            fn is None
            and out is None
            and self._single_slot
            and (words := self._words) is not CLOSED_WORDS
            and not words[_WRITER_REQUEST]  # a writer waiting for its turn goes first: slow path
        ):
            # One slot (never dynamic: both slots loaded): read under the mutex when it is free, by
            # the inline protocol (WriterLock.take_after_trylock). Anything else (busy, a dead
            # holder, an incomplete value, a closed handle) takes the slow path, which says what
            # or waits its turn.
            lock = self._lock
            rc = -1
            try:
                lock.inline += 1
                rc = lock.trylock(lock.ref)
                if not rc:
                    try:
                        s = words[_STATE]
                        if not s & _layout.WRITING:  # left by a dead writer: the slow path raises
                            value = self._slots[0].read()  # type: ignore[union-attr]  # fixed objects: loaded
                            self._seen = s >> 2
                            return value
                    except (
                        DECODE_ERRORS
                    ) as exc:  # nobody writes while we hold the mutex: corruption
                        raise self._as_layout_error(exc) from exc
                elif (
                    rc == errno.EOWNERDEAD
                ):  # we now hold a dead writer's mutex: recover it, then go slow
                    rc = -1
                    rc = lock.take_after_trylock(errno.EOWNERDEAD, self._tuning)
            except Exception as exc:  # noqa: BLE001 - closed by another thread during the read?
                raise self._closed_during("fetch", exc)  # noqa: B904 - sets the cause; re-raises exc if open
            finally:
                lock.inline -= 1
                if not rc:
                    lock.unlock(lock.ref)
                elif rc == -1:
                    lock.release_if_abandoned()
        return _reading.fetch_slow(self, fn, out)

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

    @property
    def modified(self) -> bool:
        """True if the object changed since this handle last fetched (no reset, no system call).

        A change is another handle's assign, or any handle's trigger, this one's included.
        """
        try:
            return bool(self._words[2] >> 2 != self._seen)  # STATE
        except IndexError:  # closed
            self._check_open()
            raise

    @property
    def triggered(self) -> bool:
        """True once for each change since this handle last looked: reading it resets it (no system
        call).

        Changes are counted as for :attr:`modified`: another handle's assign, any handle's trigger.
        """
        try:
            change = self._words[2] >> 2  # STATE
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
        return int(self._words[_MTIME])

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
        """Block until the object changes (another handle's assign, any handle's trigger); False on
        timeout.

        Returns at once when :attr:`modified` would be true: the object changed since this handle
        last fetched (or read ``triggered``), so no change is ever missed between a fetch and the
        next wait, and a trigger of this very handle counts. Sleeps in the kernel (a futex on the
        shared mapping): an idle waiter uses no CPU. Works across processes and across containers
        that share the segment. ``timeout=0`` (or less) only checks; ``math.inf`` is the same as
        None.
        """
        self._check_open()
        seconds = _arguments.timeout_seconds(timeout, "wait(timeout=...)")
        deadline = None if seconds is None else _monotonic_ns() + int(seconds * 1e9)
        words = self._words
        tuning = self._tuning
        try:
            while True:
                state = words[_STATE]
                if state >> _layout.CHANGE_SHIFT != self._seen:
                    return True
                now = _monotonic_ns()
                if deadline is not None and now >= deadline:
                    return False
                self._check_open()  # closed by another thread, which woke us?
                nap = (
                    tuning.wait_slice_s
                    if deadline is None
                    else min(tuning.wait_slice_s, (deadline - now) / 1e9)
                )
                announce = now + int(nap * 1e9) + tuning.wait_grace_ns
                if words[_WAITER] < announce:  # noqa: PLR1730 - store only when it moves: writers poll this line
                    words[_WAITER] = announce
                # The kernel re-checks the word after our announcement is stored: a writer either
                # sees
                # the announcement and wakes us, or changed the word first and we return at once.
                futex_wait(self._futex_address, state & _layout.FUTEX_MASK, nap)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("wait", exc)  # noqa: B904 - sets the cause; re-raises exc if open

    def fetch_raw(self, *, into: bytearray | None = None) -> RawValue:
        """The value as it lies in its slot, copied whole and never torn, without decoding it:
        its schema text, payload bytes, change counter and change time (a ``RawValue``). For
        tools that pass values on (a recorder, a bridge): ``shared_object.payload`` reads them
        back. Like ``fetch``, it marks the change seen.

        :param into: a bytearray of yours (the previous payload), resized to the payload's size
            if it must be, written over, and returned as the payload: a follower of a camera
            frame copies into the same memory every time, where a fresh megabyte costs the
            kernel a page fault per 4 KiB page. InvalidArgumentError if it must grow while
            something holds a view of it.
        """
        return _reading.fetch_raw(self, into)

    @property
    def seen_change(self) -> int:
        """The object's change counter as this handle last saw it: the value it last read
        (``fetch``, ``fetch_raw``, ``view``, ``triggered``) or wrote (``assign``). ``modified``
        is whether the object's counter has moved on from it."""
        self._check_open()
        return self._seen

    @property
    def slots(self) -> int:
        """How many slots the object keeps: 2 (readers never wait for a writer), 1 (half the
        memory; readers and writers take turns), or its history's (one per value kept)."""
        return self._ring or (1 if self._single_slot else 2)

    @property
    def history(self) -> int | None:
        """How many values the object keeps (``history=`` at creation), or None: the newest only."""
        return self._ring or None

    @property
    def lost(self) -> int:
        """How many values this handle will never see: the writer overwrote them before
        :meth:`fetch_new` (or :meth:`stream`) could read them. Counted exactly, from the change
        numbers of what it read; values skipped by ``fetch()`` (the newest only, by choice)
        are not lost. Without a history, every change ``fetch_new`` skipped is lost."""
        self._check_open()
        return self._history.lost

    def fetch_new(self, limit: int | None = None) -> list[Any]:
        """Every value published since this handle last called ``fetch_new`` or ``fetch``, oldest
        first, as private copies; the first call after attaching returns the values still held.

        With a history (``history=N``) a reader that falls behind by fewer than N values loses
        none; values the writer overwrote before they were read are counted in :attr:`lost`.
        Without one, the newest value if it changed since (the changes in between are lost).
        ``limit``: at most this many, the oldest; the rest wait for the next call.
        """
        return _history.fetch_new(self, _arguments.limit(limit))

    def fetch_new_raw(self, limit: int | None = None) -> list[RawValue]:
        """:meth:`fetch_new`, as :meth:`fetch_raw` gives values: each value's schema text,
        payload bytes, change number and change time. For tools that pass every value on."""
        return _history.fetch_new(self, _arguments.limit(limit), raw=True)

    def stream(self, timeout: float | None = None) -> Iterator[Any]:
        """Every value, in order, as it comes: :meth:`fetch_new` in a loop, asleep in
        :meth:`wait` between values::

            for pose in poses.stream(timeout=1.0):
                log(pose)

        Ends when no value came for ``timeout`` seconds (None: never) and when the object is
        orphaned (removed, or replaced by a restarted producer: attach again to follow it).
        """
        seconds = _arguments.timeout_seconds(timeout, "stream(timeout=...)")
        while True:
            values = self.fetch_new()
            if values:
                yield from values
                continue
            # Without a timeout, look every second whether the object is still there
            if self.wait(_ORPHAN_CHECK_S if seconds is None else seconds):
                continue
            if seconds is not None or self.orphaned:
                return

    @property
    def kind(self) -> str:
        """A description of the stored value's type identity, e.g. ``ndarray[uint8, (480, 848,
        3)]``.
        """
        self._check_open()
        try:
            return _reading.current_node(self).describe()
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("kind", exc)  # noqa: B904 - sets the cause; re-raises exc if open

    # -----------------------------------------------------------------------------------------
    # Writing
    # -----------------------------------------------------------------------------------------
    def assign(self: Self, data: Any) -> Self:  # noqa: PLR0912, PLR0915 - the hottest path, inlined
        """Store ``data``, visible to every handle as a whole or not at all; returns self.

        Other handles see the change (``modified``, ``triggered``, ``wait``); this one does not,
        and counts every earlier change as seen, as the reference does.

        Raises (leaving the stored value unchanged) TypeMismatchError for a value of another kind,
        CapacityError for a str/bytes longer than its capacity (both also BufferError, as in the
        reference), IntegerOverflowError for an int beyond 64 bits, UnsupportedTypeError for a
        type that cannot be stored.
        """
        # Word indices as literals (see the module docstring): 2 STATE, 3 MTIME, 4 WAITER, 5
        # REQUEST; bit 1 of the state is WRITING.
        fast = self._fast
        if type(data) is fast[0]:
            # A bool/int/float going into a top-level leaf of exactly its type: the protocol
            # below once more, without its dispatch (tests/test_object.py pins the two to each
            # other). An int beyond 64 bits makes pack_into raise struct.error before it writes.
            words = self._words
            lock = self._lock
            rc = -1  # the inline protocol: see WriterLock.take_after_trylock
            try:
                lock.inline += 1
                rc = lock.trylock(lock.ref)
                if rc:
                    busy, rc = rc, -1
                    rc = lock.take_after_trylock(busy, self._tuning)
                state = words[2]
                change = (state >> 2) + 1
                target = (state & 1) ^ 1
                words[2] = state | 2  # WRITING: the other slot is being filled
                fast[1](self._buf, fast[2 + target], data)
                words[3] = _time_ns()
                words[2] = change << 2 | target  # the publication: one 8-byte store
            except struct.error:  # an int beyond 64 bits: nothing was written
                words[2] = state  # we still hold the mutex: unmark, then say why as _prepare does
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
        if (
            (array := self._fast_array) is not None
            and type(data) is np.ndarray
            and data.shape == array[1]
            and (
                data.dtype is array[0] or data.dtype == array[0]
            )  # builtin dtypes are singletons: skip the slow ==
        ):
            writes = None  # an ndarray of exactly the stored dtype and shape
        else:
            array = None
            writes = self._prepare(data)
            slots = self._slots  # this list: close() in another thread replaces it, and we finish
        buf = self._buf
        words = self._words
        lock = self._lock
        rc = -1  # the inline protocol: see WriterLock.take_after_trylock
        try:
            lock.inline += 1
            rc = lock.trylock(lock.ref)
            if rc:
                busy, rc = rc, -1
                rc = lock.take_after_trylock(busy, self._tuning)
            state = words[2]
            change = (state >> 2) + 1
            target = (state & 1) ^ 1
            words[2] = state | 2  # WRITING: the other slot is being filled
            if array is not None:
                _copyto(array[2 + target], data)
            else:
                base = slots[target].base  # type: ignore[union-attr]
                for leaf, value in writes:  # type: ignore[union-attr]  # array is None => writes
                    leaf.write(buf, base, value)
            words[3] = _time_ns()
            words[2] = change << 2 | target  # the publication: one 8-byte store
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
        """Mark the object changed without changing its value (wakes waiters); returns self.

        Every handle sees a trigger, this one included: after ``obj.trigger()``, ``obj.modified``
        and ``obj.triggered`` are true and ``obj.wait()`` returns at once, as in the reference
        (``so = SharedObject("trigger"); so.trigger(); so.triggered`` is True). An ``assign``
        is seen by every handle but its own.
        """
        self._check_open()
        words = self._words
        lock = self._lock

        def publish() -> None:
            state = words[_STATE]
            change = (state >> _layout.CHANGE_SHIFT) + 1
            words[_MTIME] = _time_ns()
            words[_STATE] = change << _layout.CHANGE_SHIFT | (state & _layout.CURRENT_SLOT)

        try:
            lock.write(self._tuning, publish)
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("trigger", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        # Not ``self._seen = change``: a trigger is seen by every handle, this one included.
        lock.after_publish(self._tuning)
        return self

    # -----------------------------------------------------------------------------------------
    # Lifetime
    # -----------------------------------------------------------------------------------------
    def _bind(self, segment: _segment.Segment, **layout: Any) -> None:
        """Bind to a segment; a history object's hot paths are its class's: see ``_ring``.
        Its class was chosen when it was made (``__new__``); should the segment under the name
        have been replaced meanwhile by one of the other kind, it changes now, and its
        attributes move into a dict of their own (see ``__new__``)."""
        super()._bind(segment, **layout)
        if bool(self._ring) != isinstance(self, _ring.RingPaths):
            self.__class__ = _class_for(type(self), bool(self._ring))
            self.__dict__ = dict(self.__dict__)

    def close(self) -> None:
        """Drop this handle's mapping; the shared object stays for every other handle."""
        self._close(explicit=True)

    def unlink(self) -> None:
        """Remove the object's name from /dev/shm; existing handles keep working until they close.

        Raises SegmentNotFoundError (a FileNotFoundError) if the name is gone, or if it now names
        another segment, created under the same name after this handle attached: that one is
        left alone. (Works on a closed handle too.)
        """
        _segment.unlink(self.name, self._segment_key)

    def __enter__(self: Self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __reduce__(self) -> tuple[Callable[..., SharedObject], tuple[type[SharedObject], str]]:
        """Pickle as "attach by name": the receiving process opens the same object."""
        return _attach_by_name, (_class_for(type(self), ring=False), self.name)

    def __repr__(self) -> str:
        if self.closed:
            return f"{type(self).__name__}({self.name!r}, closed)"
        try:
            node = _reading.current_node(self)
            kind, size = node.describe(), node.size
        except Exception:  # noqa: BLE001 - a repr never raises (closed meanwhile, corrupt, a lock we hold)
            kind, size = "unreadable", 0
        slots = ", slots=1" if self._single_slot else ""
        if self._ring:
            slots = f", history={self._ring}"
        return f"{type(self).__name__}({self.name!r}, type={kind}, size={size} bytes{slots})"


# The ring's hot paths are SharedObject's, documented as such (help() on a history object's)
for _verb in ("fetch", "assign", "trigger"):
    getattr(_ring.RingPaths, _verb).__doc__ = getattr(SharedObject, _verb).__doc__

#: class -> the same with a ring's hot paths (see _with_ring).
_RING_CLASSES: dict[type[Any], type[Any]] = {}


def _class_for(cls: type[Self], ring: bool) -> type[Self]:
    """The class of an object of ``cls`` (or of what ``cls`` was made from), with a ring's hot
    paths if it has a history (never a dynamic one), without them if not."""
    plain: type[Self] = cls._made_from if issubclass(cls, _ring.RingPaths) else cls
    return _with_ring(plain) if ring and not plain._dynamic else plain


def _with_ring(cls: type[Self]) -> type[Self]:
    """``cls`` with a ring's hot paths: a subclass of ``_ring.RingPaths`` and of ``cls``, of its
    name."""
    made: type[Self] | None = _RING_CLASSES.get(cls)
    if made is not None:
        return made
    namespace = {
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
        "_made_from": cls,
    }
    made = type(cls.__name__, (_ring.RingPaths, cls), namespace)
    return _RING_CLASSES.setdefault(cls, made)


def _attach_by_name(cls: type[SharedObject], name: str) -> SharedObject:
    return cls.attach(name)


__all__ = ["SharedObject"]
