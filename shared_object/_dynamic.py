"""SharedDynamicObject: a SharedObject whose kind may change at every assign.

Each slot carries its value's schema (JSON text under a numeric id; see ``_layout``), so a
writer may store another type, size, dtype, shape or structure in the slot readers are not
reading, and readers follow on their next fetch. A slot that a value outgrows moves to a bigger
place (``_move_slot``); the file grows and never shrinks, so every earlier mapping stays valid.
"""

from __future__ import annotations

import time
from typing import Any, TypeVar

from . import _arguments, _codecs, _layout, _probe, _schema
from ._errors import LayoutError, OutOfSharedMemoryError, SegmentNotFoundError
from ._handle import Slot
from ._object import SharedObject
from ._tuning import Tuning, tuning_or_default

DynamicSelf = TypeVar("DynamicSelf", bound="SharedDynamicObject")
_STATE, _MTIME = _layout.STATE_WORD, _layout.MTIME_WORD


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
        offered = _schema.schema_of(
            data, self._init_size
        )  # refuses unsupported types before any lock
        lock = self._lock
        try:
            lock.write(self._tuning, lambda: self._assign_locked(data, offered))
        except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
            raise self._closed_during("assign", exc)  # noqa: B904 - sets the cause; re-raises exc if open
        lock.after_publish(self._tuning)
        return self

    def _assign_locked(self, data: Any, offered: _schema.Schema) -> None:
        words = self._words
        state = words[_STATE]
        current_index = state & _layout.CURRENT_SLOT
        current = self._keep(
            current_index, self._load_slot(current_index)
        )  # under the mutex: whole
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
            schema_text = _schema.dumps(offered)
            known = self._schema_ids.get(
                schema_text
            )  # a kind this object held before: its id again
            node = (self._nodes.get(known) if known else None) or _codecs.build(offered)
            node.prepare(data, "", writes)
            schema_id = known or words[_layout.SCHEMA_COUNTER_WORD] + 1
        target = current_index ^ 1
        words[_STATE] = state | _layout.WRITING  # from here on the target slot is ours
        try:
            target_slot = self._prepare_target(target, node, schema_id, schema_text)
        except BaseException:
            words[_STATE] = state  # nothing was touched: undo the mark
            raise
        buf = self._buf
        for leaf, value in writes:
            leaf.write(buf, target_slot.base, value)
        change = (state >> _layout.CHANGE_SHIFT) + 1
        words[_MTIME] = time.time_ns()
        words[_STATE] = change << _layout.CHANGE_SHIFT | target
        self._seen = change

    def _prepare_target(
        self, target: int, node: _codecs.Node, schema_id: int, schema_text: bytes
    ) -> Slot:
        """Make slot ``target`` hold ``node``'s schema, moving it to a larger place if needed."""
        offset, capacity, remapped = self._place_of(target)
        if (
            remapped
        ):  # another writer moved this slot past our mapping, while the current slot stayed in it
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
        _layout.write_slot_header(buf, offset, schema_id, schema_text, payload_offset, node.size)
        counter = _layout.SCHEMA_COUNTER_WORD
        self._words[counter] = max(self._words[counter], schema_id)
        self._remember_schema(schema_text, schema_id)
        return self._keep(
            target, Slot(node, buf, offset, payload_offset, schema_id, self._spares, self._tuning)
        )

    def _move_slot(self, target: int, needed: int, capacity: int) -> int:
        """Give slot ``target`` a new place of at least ``needed`` bytes; its offset.

        The place may be anywhere but on the current slot (readers read it): the lowest offset
        that fits, before the current slot or right after it, growing the file if it runs past
        the end. Old places are reused, not left behind, and they keep their memory: a lapped
        reader or a view may still read an old place, and a hole punched there would be
        allocated on that read, which is SIGBUS when /dev/shm is full. Overwriting it is what
        every assign does to the slot readers are not reading.
        """
        page = _layout.PAGE
        other_offset, other_capacity = _layout.SLOT_ENTRY.unpack_from(
            self._buf, _layout.slot_entry_offset(target ^ 1)
        )
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
        # No schema until the caller writes the header: the place holds old bytes, which a writer
        # dying in between would leave for the next one to take for a header.
        _layout.U64.pack_into(self._buf, offset, _layout.NO_SCHEMA_ID)
        _layout.SLOT_ENTRY.pack_into(
            self._buf, _layout.slot_entry_offset(target), offset, new_capacity
        )
        return offset

    def _schema_text_of(self, schema_id: int) -> bytes:
        """The schema text of the current slot (whose id is ``schema_id``)."""
        for index in (0, 1):
            offset, _ = _layout.SLOT_ENTRY.unpack_from(self._buf, _layout.slot_entry_offset(index))
            sid, length = _layout.SLOT_HEADER.unpack_from(self._buf, offset)[:2]
            if sid == schema_id:
                start = offset + _layout.SLOT_HEADER_SIZE
                return bytes(self._buf[start : start + length])
        msg = f"segment {self.name!r}: schema {schema_id} is in neither slot"
        raise LayoutError(msg)


def open_any(name: str, tuning: Tuning | None = None) -> SharedObject:
    """Attach to ``name`` with the class it was created as (SharedObject or SharedDynamicObject)."""
    cls = SharedDynamicObject if _probe.read_state(name).dynamic else SharedObject
    return cls.attach(name, tuning=tuning)


def attach(name: str, *, timeout: float | None = 0, tuning: Tuning | None = None) -> SharedObject:
    """Attach to object ``name`` as whatever it was created as: a SharedDynamicObject if it is
    one, else a SharedObject. For tools that follow objects they did not create (a recorder, a
    bridge, a viewer). ``timeout`` as for ``SharedObject.attach``: seconds to wait for the object
    to appear (None: forever)."""
    seconds = _arguments.timeout_seconds(timeout, "attach(timeout=...)")
    chosen = tuning_or_default(tuning)
    deadline = None if seconds is None else time.monotonic() + seconds
    pause = chosen.attach_poll_s
    while True:
        try:
            return open_any(name, tuning)
        except SegmentNotFoundError:
            if deadline is not None and time.monotonic() >= deadline:
                # Its message, which says what to check when containers do not see each other.
                return SharedObject.attach(name, timeout=0, tuning=tuning)
            time.sleep(
                pause if deadline is None else max(0.0, min(pause, deadline - time.monotonic()))
            )
            pause = min(pause * 2, chosen.attach_poll_max_s)


__all__ = ["SharedDynamicObject", "attach", "open_any"]
