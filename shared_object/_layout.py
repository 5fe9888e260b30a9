"""The binary layout of a segment, byte by byte. This docstring is the specification.

A segment is one file in /dev/shm, mapped whole. All integers are little-endian. It holds a
256-byte header followed by two *slots*; each slot holds one complete value. A writer always
writes the slot that readers are *not* reading, then publishes it with one 8-byte store, so a
reader never sees a half-written value, and a writer killed mid-write leaves the last complete
value in place (the next write simply overwrites the abandoned slot).

A *history* object (layout version 2, flag bit 2, ``SharedObject(..., history=N)``) has a ring
of N slots instead (below, "The ring"): the last N values, each with its change number.

A *single-slot* object (flag bit 1, ``SharedObject(..., slots=1)``) has one slot that both
table entries point to: half the memory, and a writer's working set no bigger than its value.
Its readers and writers take turns under the writer mutex. A writer killed mid-write leaves the
WRITING bit set, which tells the next reader that the value is incomplete (an error, not torn
data) until the next write.

Header (offset, size, field)::

    0    6  magic             b"\\x93SHOBJ"
    6    2  layout version    u16: 1, or 2 for a history object; attaching checks both
    8    4  header size       u32, 256
    12   4  flags             u32; bit 0: dynamic, bit 1: single slot, bit 2: history (version 2
                              only, never with bits 0 or 1); others zero
    16   8  state             u64, the publication word (below); bytes 16..19 are the futex word
    24   8  mtime_ns          u64, time.time_ns() of the last assign/trigger
    32   8  waiter_deadline   u64, CLOCK_MONOTONIC ns until which a wait()er may sleep; 0: none
    40   8  reader_request    u64, CLOCK_MONOTONIC ns of a starving reader's newest request
    48   8  schema_counter    u64, the last schema id handed out (dynamic objects)
    56   8  writer_request    u64, CLOCK_MONOTONIC ns of a waiting writer's newest request; 0: none
    64  64  writer mutex      process-shared robust pthread_mutex_t (see _sync), zero padded
    128 16  slot 0            u64 offset from the segment start, u64 capacity in bytes
    144 16  slot 1            same for slot 1 (single slot: equal to slot 0)
    160 32  lock ABI          ASCII, NUL padded: the C library that wrote the mutex
    192  8  ring              u64, history objects: N, the slots in the ring (2 or more); else 0
    200  8  ring stride       u64, history objects: bytes from one slot to the next; else 0
    208  8  lost              u64, history objects: values that readers lost, all readers
                              together (each adds its own under the writer mutex); else 0
    216 40  reserved          zero

The state word::

    bit 0      index of the current slot (the one readers read)
    bit 1      writing: a writer is filling the other slot
    bits 2-63  change counter, +1 on every assign and trigger

Writer (holding the writer mutex): store ``state | WRITING``; write the other slot; store
mtime; store ``(change + 1) << 2 | other_slot``, the publication. A trigger stores mtime and
``(change + 1) << 2 | current_slot``, and touches no slot.

Reader (no lock, on x86): load state ``s1``; read slot ``s1 & 1``; load state ``s2``. The read is
whole if no change was published since (``s2 >> 2 == s1 >> 2``; a WRITING mark alone means a
writer is filling the *other* slot), or if exactly one change was published and no write started
after it (``s2 >> 2 == (s1 >> 2) + 1`` and not ``s2 & WRITING``): the slot read can only be
rewritten after a later publication *and* a new WRITING mark. x86 keeps stores in order and
loads in order, which is all this needs; see ``_sync.LOCK_FREE_READS`` for other CPUs.

Reader of a single-slot object: take the writer mutex, read, release. WRITING set while the
reader holds the mutex means the last writer died mid-write: the value is incomplete.

Turns at the mutex (readers take it for single-slot objects, on CPUs other than x86, and when
lapped again and again). The mutex is not fair: a reader that releases it and takes it again at
once wins over a writer asleep in the kernel. So whoever is kept waiting asks the other side to
pause, with a CLOCK_MONOTONIC stamp that it refreshes while it waits and clears once it has the
mutex: a starving reader in ``reader_request`` (writers pause after publishing, for at most a
few milliseconds), a waiting writer in ``writer_request`` (readers let it go first, for at most
a few milliseconds, before taking the mutex). A stamp older than a few milliseconds is ignored:
its owner died, or stopped waiting. (``writer_request`` was a reserved zero word in earlier
releases of layout version 1: a process running one ignores the request and only loses the
fairness.)

Slot (64-byte aligned; 4096-byte aligned when its payload is 64 KiB or more)::

    0   8  schema_id        u64; fixed objects: 1. Dynamic objects: a new id per new schema
    8   4  schema_len       u32, bytes of schema text
    12  4  reserved         zero
    16  8  payload_offset   u64, from the slot start, a multiple of 64 (2048 mod 4096 if big)
    24  8  payload_len      u64
    32 32  reserved         zero
    64  -  schema           UTF-8 JSON text describing the value's type (see _codecs)
    payload_offset  -  payload, laid out by the schema (see _codecs); arrays 64-byte aligned

The ring (history objects). Slot ``i`` lies at slot 0's offset + ``i`` * stride, all of slot
0's capacity (the table's two entries are slots 0 and 1). The value of change ``k`` lies in slot
``k mod N``: every change writes a slot, a trigger too (it copies the current value on), so the
state word's bit 0 is not used (0), and under state ``c`` the ring holds changes ``c - N + 1``
to ``c`` (those of them that happened: from 0). A slot header uses one of its reserved words::

    32  8  mtime_ns         u64, the change time of the value in the slot

Writer (holding the mutex), change ``k``: store ``state | WRITING``; write slot ``k mod N``
(the value, then its mtime); store the header's mtime; store ``k << 2``. Reader of change ``j``
(the newest, or an older one still held): read slot ``j mod N``; the read is whole if the
state, loaded after, shows at most ``j + N - 2`` changes, or ``j + N - 1`` and no write started
(the next write, of change ``j + N``, is the one that takes the slot): ``read_was_whole`` with
``ring=N``, which for N = 2 is the two-slot rule. A writer killed mid-write leaves WRITING set
and the slot of change ``k - N`` partly overwritten: the N - 1 newest values stay whole.

A payload of PAGE_ALIGN_MIN bytes or more starts half a page past a 4096-byte boundary (its slot
starts on one, and its payload_offset is 2048 modulo 4096). Why: copy speed depends on where
source and destination sit within their pages. numpy's big arrays start 16 bytes past a page
(glibc's mmap chunk header), and memcpy stalls when its stores trail its loads by a few hundred
bytes modulo 4096 (the CPU takes a load for a store to the same address: "4K aliasing"); a
page-aligned payload avoids that for the writer but slows a consumer copying out while a
producer copies in. Half a page serves both (docs/design.md has the measurements). Readers do
not rely on any of this: they take whatever offsets the table and the slot header say.

Slots of dynamic objects move when a value outgrows them, to a place of at least 1.5x their old
capacity (exactly the value's size when /dev/shm has no room for more): the lowest offset that
leaves the current slot alone, before it or right after it, growing the file where the place
runs past its end. Old places are so reused rather than left behind. The file never shrinks, so
a mapping made earlier stays valid, and a reader (or writer) that finds a slot past its mapping
maps the file again. No place ever gives its memory back (no hole is punched): a lapped reader or
a view may still read an old place, and the kernel would allocate a page for that read, which is
SIGBUS in the reader when /dev/shm is full.
"""

from __future__ import annotations

import struct

from ._errors import LayoutError

# Neither typing nor re is imported at run time: the health probe loads this module, and their
# import costs as much as the rest of the probe (mypy takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

MAGIC: Final = b"\x93SHOBJ"
VERSION: Final = 1
#: A history object's layout version: what a release that predates rings refuses to attach.
VERSION_HISTORY: Final = 2
#: The most slots a ring may have: a minute of a kHz stream. (A handle loads every slot once.)
MAX_HISTORY: Final = 1 << 16
HEADER_SIZE: Final = 256
ALIGN: Final = 64
PAGE: Final = 4096
#: Payloads this big start PAGE_HALF past a page boundary (see above); smaller ones are not worth
#: the padding (up to 6 KiB per slot).
PAGE_ALIGN_MIN: Final = 64 * 1024
PAGE_HALF: Final = PAGE // 2
FLAG_DYNAMIC: Final = 1
FLAG_SINGLE_SLOT: Final = 2
FLAG_HISTORY: Final = 4

STATE_OFFSET: Final = 16
MUTEX_OFFSET: Final = 64
SLOT_TABLE_OFFSET: Final = 128
ABI_OFFSET: Final = 160
RING_OFFSET: Final = 192

#: The state word (see above): bit 0 the current slot, bit 1 WRITING, the change counter above.
CURRENT_SLOT: Final = 1
WRITING: Final = 2
CHANGE_SHIFT: Final = 2
#: futex(2) waits on 32 bits: the low half of the state word (bytes 16..19), which every change
#: moves.
FUTEX_MASK: Final = 0xFFFF_FFFF
SLOT_HEADER_SIZE: Final = 64
FIXED_SCHEMA_ID: Final = 1
#: A slot header's schema id while its place is being (re)written: it matches no schema.
NO_SCHEMA_ID: Final = 0

#: The header fields that one process writes while others read them (state, mtime, waiter,
#: request, schema counter) are accessed only as whole 8-byte words, through a memoryview cast to
#: "Q" (see header_words): its item get and set are one 8-byte memcpy, a single load or store.
#: ``struct.pack_into`` is not: CPython zeroes the field first and then writes it byte by byte, so a
#: concurrent reader could see 0 or a mix of two values. Word indices (byte offset / 8):
STATE_WORD: Final = 2
MTIME_WORD: Final = 3
WAITER_WORD: Final = 4
REQUEST_WORD: Final = 5
SCHEMA_COUNTER_WORD: Final = 6
WRITER_REQUEST_WORD: Final = 7
RING_WORD: Final = 24
RING_STRIDE_WORD: Final = 25
LOST_WORD: Final = 26
#: A ring slot's mtime word, as a word offset from its slot's first word.
SLOT_MTIME_WORD: Final = 4

#: magic, version, header size, flags (the first 16 bytes).
IDENTITY: Final = struct.Struct("<6sHII")
U64: Final = struct.Struct("<Q")
SLOT_ENTRY: Final = struct.Struct("<QQ")
ABI: Final = struct.Struct("<32s")
#: schema_id, schema_len, reserved, payload_offset, payload_len.
SLOT_HEADER: Final = struct.Struct("<QIIQQ")


def slot_entry_offset(index: int) -> int:
    """Where slot ``index``'s (offset, capacity) entry lies in the slot table."""
    return SLOT_TABLE_OFFSET + SLOT_ENTRY.size * index


def read_was_whole(s1: int, s2: int, ring: int = 2) -> bool:
    """Did the slot read under state ``s1`` stay untouched until state ``s2`` was loaded?

    Two slots: true if no change was published since, or exactly one and no write started after
    it (see "Reader" above). The WRITING bit alone does not matter: with no publication in
    between, a writer can only be filling the *other* slot. A ring of ``ring`` slots: at most
    ``ring - 2`` changes since, or ``ring - 1`` and no write started (see "The ring"); ``s1``
    there may be the state of an older change, ``change << 2``.
    """
    since = (s2 >> 2) - (s1 >> 2)
    return 0 <= since <= ring - 2 or (since == ring - 1 and not s2 & WRITING)


def current_slot(state: int, ring: int) -> int:
    """The slot readers read under ``state``: bit 0, or for a ring the change number mod N."""
    return (state >> CHANGE_SHIFT) % ring if ring else state & CURRENT_SLOT


def write_slot_header(
    buf: memoryview,
    offset: int,
    schema_id: int,
    schema_text: bytes,
    payload_offset: int,
    payload_len: int,
) -> None:
    """Write a slot's header and schema text; the schema id last.

    A writer killed before the id is written leaves a header that matches no schema
    (NO_SCHEMA_ID, or the id of what the place held before, whose text and sizes no longer
    match), never one whose id promises a schema text or sizes it did not finish writing.
    """
    SLOT_HEADER.pack_into(
        buf, offset, NO_SCHEMA_ID, len(schema_text), 0, payload_offset, payload_len
    )
    start = offset + SLOT_HEADER_SIZE
    buf[start : start + len(schema_text)] = schema_text
    U64.pack_into(buf, offset, schema_id)


def header_words(buf: memoryview) -> memoryview:
    """The header as 32 native 8-byte words (little-endian: checked by _sync at start-up)."""
    return buf[:HEADER_SIZE].cast("Q")


def align(n: int, to: int = ALIGN) -> int:
    """Round ``n`` up to a multiple of ``to``."""
    return (n + to - 1) // to * to


def slot_alignment(payload_len: int) -> int:
    """The alignment of a slot, its payload_offset and its size, for a payload of this length."""
    return PAGE if payload_len >= PAGE_ALIGN_MIN else ALIGN


def slot_size(schema_len: int, payload_len: int) -> tuple[int, int]:
    """(payload_offset, total slot bytes) for a schema and payload of these lengths."""
    to = slot_alignment(payload_len)
    if to == ALIGN:
        payload_offset = align(SLOT_HEADER_SIZE + schema_len)
    else:  # the first offset past the schema that is PAGE_HALF past a page boundary
        payload_offset = align(max(SLOT_HEADER_SIZE + schema_len - PAGE_HALF, 0), PAGE) + PAGE_HALF
    return payload_offset, align(payload_offset + max(payload_len, 1), to)


class Header:
    """The static part of a header, as read and checked at attach time."""

    __slots__ = ("dynamic", "lock_abi", "ring", "single_slot", "slots", "stride")

    def __init__(
        self,
        dynamic: bool,
        single_slot: bool,
        lock_abi: str,
        slots: tuple[tuple[int, int], ...],
        ring: int = 0,
        stride: int = 0,
    ) -> None:
        self.dynamic = dynamic
        self.single_slot = single_slot
        self.lock_abi = lock_abi
        self.slots = slots
        #: History objects: the slots in the ring, and the bytes from one to the next; else 0.
        self.ring = ring
        self.stride = stride


def write_identity(
    buf: memoryview, *, dynamic: bool, single_slot: bool, lock_abi: str, ring: int = 0
) -> None:
    """Write the static header fields of a fresh segment (all other bytes are zero); a history
    object's ring size too (its stride is the caller's)."""
    flags = (FLAG_DYNAMIC if dynamic else 0) | (FLAG_SINGLE_SLOT if single_slot else 0)
    version = VERSION
    if ring:
        flags, version = FLAG_HISTORY, VERSION_HISTORY
        U64.pack_into(buf, RING_OFFSET, ring)
    IDENTITY.pack_into(buf, 0, MAGIC, version, HEADER_SIZE, flags)
    ABI.pack_into(buf, ABI_OFFSET, lock_abi.encode("ascii"))


def check_identity(buf: memoryview | bytes, file_size: int, name: str) -> tuple[bool, bool]:
    """Check the first 16 bytes: magic, layout version, header size, flags; (dynamic, single slot).
    A history object (version 2) is neither; ``read_header`` reads its ring.

    Any inconsistency raises LayoutError naming the segment.
    """
    if file_size < HEADER_SIZE:
        msg = (
            f"segment {name!r} is truncated: {file_size} bytes, a header alone needs {HEADER_SIZE}"
        )
        raise LayoutError(msg)
    magic, version, header_size, flags = IDENTITY.unpack_from(buf, 0)
    if magic != MAGIC:
        msg = (
            f"segment {name!r} is not a shared_object segment (magic {magic!r}, expected {MAGIC!r})"
        )
        raise LayoutError(msg)
    if version not in (VERSION, VERSION_HISTORY):
        msg = (
            f"segment {name!r} has layout version {version}; this shared_object reads versions "
            f"{VERSION} and {VERSION_HISTORY}"
        )
        raise LayoutError(msg)
    single = bool(flags & FLAG_SINGLE_SLOT)
    if (
        header_size != HEADER_SIZE
        or flags & ~(FLAG_DYNAMIC | FLAG_SINGLE_SLOT | FLAG_HISTORY)
        or (single and flags & FLAG_DYNAMIC)
        or (version == VERSION_HISTORY) != (flags == FLAG_HISTORY)
    ):
        msg = f"segment {name!r} has a corrupt header (header size {header_size}, flags {flags:#x})"
        raise LayoutError(msg)
    return bool(flags & FLAG_DYNAMIC), single


def read_header(buf: memoryview, file_size: int, name: str) -> Header:
    """Read and check the header; any inconsistency raises LayoutError naming the segment."""
    dynamic, single = check_identity(buf, file_size, name)
    (abi_raw,) = ABI.unpack_from(buf, ABI_OFFSET)
    abi = abi_raw.rstrip(b"\0").decode("ascii", "replace")
    slots = tuple(SLOT_ENTRY.unpack_from(buf, slot_entry_offset(i)) for i in (0, 1))
    for i, (offset, capacity) in enumerate(slots):
        check_slot(name, i, offset, capacity, file_size)
    if single and slots[0] != slots[1]:
        msg = f"segment {name!r} is corrupt: a single-slot object whose two slot entries differ"
        raise LayoutError(msg)
    ring = stride = 0
    if IDENTITY.unpack_from(buf, 0)[1] == VERSION_HISTORY:
        ring = U64.unpack_from(buf, RING_OFFSET)[0]
        stride = U64.unpack_from(buf, RING_OFFSET + 8)[0]
        (first, capacity), (second, capacity_1) = slots
        if (
            not 2 <= ring <= MAX_HISTORY
            or stride < capacity
            or stride % ALIGN
            or second != first + stride
            or capacity_1 != capacity
            or first + (ring - 1) * stride + capacity > file_size
        ):
            msg = (
                f"segment {name!r} is corrupt or truncated: a ring of {ring} slots of "
                f"{capacity} bytes, {stride} apart from byte {first}, in a {file_size}-byte file"
            )
            raise LayoutError(msg)
    return Header(dynamic, single, abi, (slots[0], slots[1]), ring, stride)


def check_slot(name: str, index: int, offset: int, capacity: int, file_size: int) -> None:
    """Raise LayoutError unless the slot lies inside the file, aligned and big enough."""
    if (
        offset % ALIGN
        or offset < HEADER_SIZE
        or capacity < SLOT_HEADER_SIZE
        or offset + capacity > file_size
    ):
        msg = (
            f"segment {name!r} is corrupt or truncated: slot {index} spans bytes [{offset}, "
            f"{offset + capacity}) of a {file_size}-byte file"
        )
        raise LayoutError(msg)


__all__ = [
    "ABI_OFFSET",
    "ALIGN",
    "CHANGE_SHIFT",
    "CURRENT_SLOT",
    "FIXED_SCHEMA_ID",
    "FLAG_HISTORY",
    "FLAG_SINGLE_SLOT",
    "LOST_WORD",
    "MAX_HISTORY",
    "RING_OFFSET",
    "RING_STRIDE_WORD",
    "RING_WORD",
    "SLOT_MTIME_WORD",
    "VERSION_HISTORY",
    "current_slot",
    "FUTEX_MASK",
    "HEADER_SIZE",
    "MAGIC",
    "MUTEX_OFFSET",
    "NO_SCHEMA_ID",
    "PAGE",
    "PAGE_ALIGN_MIN",
    "PAGE_HALF",
    "SLOT_ENTRY",
    "SLOT_HEADER",
    "SLOT_HEADER_SIZE",
    "SLOT_TABLE_OFFSET",
    "STATE_OFFSET",
    "U64",
    "VERSION",
    "WRITING",
    "MTIME_WORD",
    "REQUEST_WORD",
    "SCHEMA_COUNTER_WORD",
    "STATE_WORD",
    "WAITER_WORD",
    "WRITER_REQUEST_WORD",
    "Header",
    "align",
    "check_identity",
    "check_slot",
    "header_words",
    "read_header",
    "read_was_whole",
    "slot_alignment",
    "slot_entry_offset",
    "slot_size",
    "write_identity",
    "write_slot_header",
]
