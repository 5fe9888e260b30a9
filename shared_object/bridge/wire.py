"""The bridge's message: one shared object's value, as it crosses the network. This docstring is the
specification.

A message carries one change of one object. All integers are little-endian. It is a 56-byte
header, the value's schema, padding, and the value's payload, laid out as in a slot (see
``shared_object._layout`` and ``_codecs``): the receiver can copy it into its own slot as it is.

Header (offset, size, field)::

    0    4  magic          b"SOBM"
    4    1  version        1, or 2 for an object with a history; a receiver refuses others (a
                           newer bridge's), and a bridge that predates histories refuses 2
    5    1  reserved       zero
    6    2  flags          bit 0: the source is a SharedDynamicObject; bit 1: it has one slot;
                           bit 2: the payload is encoded (``encoding``'s docstring says how);
                           others zero
    8    8  sequence       u64: 1 for the first message a source sends under a key, +1 for each
                           next one; a gap is a change the network or a slow link skipped
    16   8  mtime_ns       u64: the source object's change time, time.time_ns() on its host
    24   8  change         u64: the source object's change counter (see _layout's state word)
    32  16  source         16 random bytes naming the sending bridge process
    48   4  schema_len     u32: bytes of schema text
    52   4  history        u32, version 2: the source object's history (2 or more), which the
                           receiver creates its object with; version 1: zero
    56   -  schema         UTF-8 JSON text (see shared_object._schema)
    payload_offset  -  payload: the rest, exactly the schema's payload size; or, with flag bit
                       2, the encoded payload, whose sizes add up to the rest exactly

``payload_offset`` is 56 + schema_len rounded up to a multiple of 8; the padding is zero.

Never pickle: a receiver validates a message as strictly as ``attach`` validates a segment
(magic, version, reserved bytes and padding zero, lengths, the schema parsed and built by
``_codecs.Decoder``, the payload's size exact) and raises MessageError naming what is wrong; the
bridge counts it, logs it, and leaves the local object untouched.
"""

from __future__ import annotations

import struct
from typing import Final, NamedTuple

from .._errors import LayoutError

MAGIC: Final = b"SOBM"
VERSION: Final = 1
VERSION_HISTORY: Final = 2
#: The most values a history may keep (``_layout.MAX_HISTORY``; not imported: the wire stands
#: alone).
MAX_HISTORY: Final = 1 << 16
FLAG_DYNAMIC: Final = 1
FLAG_SINGLE_SLOT: Final = 2
FLAG_ENCODED: Final = 4
_FLAGS: Final = FLAG_DYNAMIC | FLAG_SINGLE_SLOT | FLAG_ENCODED
HEADER: Final = struct.Struct("<4sBBHQQQ16sII")
HEADER_SIZE: Final = HEADER.size  # 56
SOURCE_SIZE: Final = 16


class MessageError(LayoutError):
    """A message that is not a valid bridge message: what is wrong, and nothing was applied."""


class Message(NamedTuple):
    sequence: int
    mtime_ns: int
    change: int
    source: bytes
    dynamic: bool
    single_slot: bool
    schema_text: bytes
    #: The payload, or with ``encoded`` its encoded form (``encoding.decode`` restores it).
    payload: memoryview
    encoded: bool = False
    #: The source object's history (0: none).
    history: int = 0


def payload_offset(schema_len: int) -> int:
    return (HEADER_SIZE + schema_len + 7) // 8 * 8


def encode(
    *,
    sequence: int,
    mtime_ns: int,
    change: int,
    source: bytes,
    dynamic: bool,
    single_slot: bool,
    schema_text: bytes,
    payload: bytes | bytearray | memoryview,
    encoded: bool = False,
    reuse: bytearray | None = None,
    history: int = 0,
) -> bytearray:
    """One message, in one buffer (the payload copied once, into its place).

    ``reuse``: the previous message's buffer, written over if the new message has its size (an
    exporter's frames always do). A fresh megabyte buffer costs the kernel a page fault per
    4 KiB page on first write, 40 times the copy itself.
    """
    start = payload_offset(len(schema_text))
    size = start + len(payload)
    message = reuse if reuse is not None and len(reuse) == size else bytearray(size)
    flags = (
        (FLAG_DYNAMIC if dynamic else 0)
        | (FLAG_SINGLE_SLOT if single_slot else 0)
        | (FLAG_ENCODED if encoded else 0)
    )
    HEADER.pack_into(
        message,
        0,
        MAGIC,
        VERSION_HISTORY if history else VERSION,
        0,
        flags,
        sequence,
        mtime_ns,
        change,
        source,
        len(schema_text),
        history,
    )
    message[HEADER_SIZE : HEADER_SIZE + len(schema_text)] = schema_text
    message[HEADER_SIZE + len(schema_text) : start] = bytes(start - HEADER_SIZE - len(schema_text))
    message[start:] = payload
    return message


def decode(message: bytes | bytearray | memoryview) -> Message:
    """The header's fields, the schema text and a view of the payload; MessageError if malformed.

    The schema and the payload's size are checked against each other by whoever decodes the
    value (``_codecs.Decoder``), which raises LayoutError naming the message.
    """
    view = memoryview(message).cast("B")
    if len(view) < HEADER_SIZE:
        msg = f"a message of {len(view)} bytes: shorter than the {HEADER_SIZE}-byte header"
        raise MessageError(msg)
    magic, version, reserved, flags, sequence, mtime, change, source, schema_len, history = (
        HEADER.unpack_from(view, 0)
    )
    if magic != MAGIC:
        msg = f"not a bridge message (magic {magic!r}, expected {MAGIC!r})"
        raise MessageError(msg)
    if version not in (VERSION, VERSION_HISTORY):
        msg = (
            f"a bridge message of version {version}; this bridge reads versions {VERSION} and "
            f"{VERSION_HISTORY}"
        )
        raise MessageError(msg)
    if reserved or flags & ~_FLAGS:
        msg = f"a corrupt header (reserved byte {reserved}, flags {flags:#x})"
        raise MessageError(msg)
    if (version == VERSION and history) or (
        version == VERSION_HISTORY
        and (not 2 <= history <= MAX_HISTORY or flags & (FLAG_DYNAMIC | FLAG_SINGLE_SLOT))
    ):
        msg = f"a corrupt header (version {version}, history {history}, flags {flags:#x})"
        raise MessageError(msg)
    start = payload_offset(schema_len)
    if start > len(view):
        msg = f"a schema of {schema_len} bytes in a message of {len(view)}"
        raise MessageError(msg)
    if any(view[HEADER_SIZE + schema_len : start]):
        msg = "non-zero padding between the schema and the payload"
        raise MessageError(msg)
    return Message(
        sequence,
        mtime,
        change,
        bytes(source),
        bool(flags & FLAG_DYNAMIC),
        bool(flags & FLAG_SINGLE_SLOT),
        bytes(view[HEADER_SIZE : HEADER_SIZE + schema_len]),
        view[start:],
        bool(flags & FLAG_ENCODED),
        history,
    )


__all__ = [
    "FLAG_ENCODED",
    "HEADER_SIZE",
    "MAGIC",
    "SOURCE_SIZE",
    "VERSION",
    "VERSION_HISTORY",
    "Message",
    "MessageError",
    "decode",
    "encode",
]
