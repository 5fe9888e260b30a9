"""History objects: catching up on every value since the last read (``fetch_new``), and
counting exactly the values lost.

A history object keeps its last N values in a ring of N slots, change k in slot k mod N
(``_layout``, "The ring"); its hot paths (assign, fetch, trigger) are in ``_ring``.
Here: reading every value from the one a handle wants next (``History.next``) to the newest,
lock-free where reads are (read them all, load the state again, keep those the writer cannot
have reached meanwhile), and the count of the values a writer overwrote before they were read:
the handle's own (``lost``) and the segment's (every reader's, for ``inspect`` and ``top``).
"""

from __future__ import annotations

from typing import Any

from . import _layout
from ._handle import DECODE_ERRORS, Handle
from ._reading import LAPPED, RawValue, fetch_raw, fetch_slow, read_lock_free

_STATE = _layout.STATE_WORD


def fetch_new(h: Handle, limit: int | None, *, raw: bool = False) -> list[Any]:
    """Every value from change ``h._history.next`` on (at most ``limit``, the oldest), as values
    or as RawValues; what the writer overwrote before it was read is counted as lost.

    A ring holds changes ``c - N + 1`` to ``c`` under state ``c`` (one fewer while a write is
    under way: it takes the oldest's slot). Lock-free: read them all, load the state again,
    and keep those the writer cannot have reached meanwhile (``_layout``, "The ring"): the
    oldest ones it did reach are lost, counted, never returned torn. Under the lock where
    reads take it. Without a ring: the newest value, if this handle has not seen it.
    """
    h._check_open()
    try:
        if not h._ring:
            return _fetch_newest(h, raw)
        if h._lock_free:
            values = _ring_lock_free(h, limit, raw)
        else:
            values = h._lock.read(h._tuning, lambda: _ring_read(h, h._words[_STATE], limit, raw))
    except Exception as exc:  # noqa: BLE001 - closed by another thread meanwhile?
        raise h._closed_during("fetch", exc, started_open=True)  # noqa: B904 - sets the cause
    if h._history.unpublished:
        _publish_lost(h)
    return values


def _fetch_newest(h: Handle, raw: bool) -> list[Any]:
    words = h._words
    change = words[_STATE] >> _layout.CHANGE_SHIFT
    if change == h._seen:
        return []
    before = h._seen
    value = fetch_raw(h) if raw else fetch_slow(h, None, None)
    skipped = max(0, h._seen - before - 1)  # changes that came and went unseen
    h._history.lost += skipped
    return [value]


def _ring_lock_free(h: Handle, limit: int | None, raw: bool) -> list[Any]:
    words = h._words
    values = read_lock_free(h, lambda state: _ring_read(h, state, limit, raw, words))
    if values is LAPPED:  # overtaken mid-value at every try: under the lock
        values = h._lock.read(h._tuning, lambda: _ring_read(h, words[_STATE], limit, raw))
    return values  # type: ignore[no-any-return]


def _ring_read(
    h: Handle, state: int, limit: int | None, raw: bool, words: memoryview | None = None
) -> list[Any]:
    """The values from ``history.next`` on, read under ``state``; ``words``: lock-free, so check
    with them after reading which values stayed whole (under the lock, all did), and LAPPED if
    a value the writer was overwriting failed to decode."""
    ring, slots = h._ring, h._slots
    newest = state >> _layout.CHANGE_SHIFT
    history = h._history
    start = history.next
    if start > newest:
        return []
    oldest = newest - ring + 1 + (1 if state & _layout.WRITING else 0)
    first = max(start, oldest, 0)
    last = newest if limit is None else min(newest, first + limit - 1)
    try:
        if raw:
            values = [_raw_entry(h, change) for change in range(first, last + 1)]
        else:
            values = [slots[change % ring].read() for change in range(first, last + 1)]  # type: ignore[union-attr]  # fixed: loaded
    except DECODE_ERRORS as exc:
        if words is None:  # under the lock: nothing moved
            raise h._as_layout_error(exc) from exc
        # Torn if a writer started meanwhile (it may have reached the value that raised): read
        # again; else the value was whole, and corrupt. (Not read_lock_free's test, whether the
        # newest value stayed whole: any write may overwrite the oldest value read.)
        if words[_STATE] != state:
            return LAPPED  # type: ignore[no-any-return]
        raise h._as_layout_error(exc) from exc
    if words is not None:
        # The oldest value still whole under the state now (see _layout.read_was_whole)
        after = words[_STATE]
        writing = 1 if after & _layout.WRITING else 0
        whole_from = (after >> _layout.CHANGE_SHIFT) - ring + 1 + writing
        if whole_from > first:  # the writer overtook the oldest we read: lost, not returned
            overtaken = min(whole_from, last + 1) - first
            values = values[overtaken:]
            first += overtaken
    history.lost += first - start
    history.unpublished += first - start
    history.next = last + 1
    h._seen = max(h._seen, last) if values else h._seen
    return values


def _raw_entry(h: Handle, change: int) -> RawValue:
    """Change ``change``'s value as it lies in its ring slot (the caller checks it stayed)."""
    slot = h._slots[change % h._ring]
    buf = h._buf
    word = h._history.mtime_word_of(change % h._ring)
    schema_len = _layout.SLOT_HEADER.unpack_from(buf, slot.offset)[1]  # type: ignore[union-attr]
    start = slot.offset + _layout.SLOT_HEADER_SIZE  # type: ignore[union-attr]
    text = bytes(buf[start : start + schema_len])
    payload = bytes(buf[slot.base : slot.base + slot.node.size])  # type: ignore[union-attr]
    return RawValue(text, payload, change, h._words[word])


def _publish_lost(h: Handle) -> None:
    """Add this handle's newly lost values to the segment's count (``inspect``, ``top``), under
    the writer mutex: rare (a reader fell behind), and exact with any number of readers."""
    history = h._history
    count, history.unpublished = history.unpublished, 0
    words = h._words

    def add() -> None:
        words[_layout.LOST_WORD] += count

    try:
        h._lock.write(h._tuning, add)
    except Exception:  # noqa: BLE001 - a lock this thread holds (a read block), closed: later
        history.unpublished += count


__all__ = ["fetch_new"]
