"""Wire encodings: how an object's payload crosses the network, chosen per object with
``--encode PATTERN=CODEC[:LEVEL]``. This docstring specifies the encoded payload.

Codecs (the default is ``raw``: the payload exactly as a slot holds it)::

    jpeg[:QUALITY]  lossy, quality 1-100 (default 90), 4:2:0 chroma as cameras and ROS 2's
                    compressed_image_transport send it: uint8 images HxW, HxWx1, HxWx3, HxWx4
                    (of four channels only the first three cross: the fourth arrives as 255)
    png[:LEVEL]     lossless, zlib level 0-9 (default 1: 1.6x faster than ROS 2's 3 for 4% more
                    bytes): uint8 images HxW, HxWx1, HxWx3, HxWx4, and uint16 HxW, HxWx1 (depth)
    zstd[:LEVEL]    lossless, level 1-22 (default 3): the whole payload, whatever it holds
    lz4[:LEVEL]     lossless, 0 (default, fastest) or 1-12 (LZ4HC): the whole payload

An image codec encodes each leaf it takes (a bare image, or the image leaves of a compound value
such as the demo's ``{"seq", "stamp_ns", "frame"}``); the other leaves travel raw. An object in
which it takes no leaf is refused with a message that says what the codec takes and what the
object holds (``plan`` raises InvalidArgumentError): a codec is never applied where it does not
fit, nor silently skipped. The receiver decodes into the same kind, so consumers do not change.

The libraries (the ``zenoh`` extra): libjpeg-turbo through ``simplejpeg``, libpng through
Pillow, ``zstandard`` and ``lz4``; each is imported the first time a codec needs it.

The encoded payload, byte by byte. A message whose flag ``FLAG_ENCODED`` is set (see ``wire``)
carries this where a raw message carries the payload; integers are little-endian::

    0   2  count      u16: encoded ranges, 1 to MAX_RANGES
    2   6  reserved   zero
    8   -  count entries of 24 bytes, their ranges ascending and not overlapping:
           0   8  offset    u64: where the range starts in the payload
           8   8  length    u64: its bytes in the payload
           16  1  codec     u8: 1 jpeg, 2 png, 3 zstd, 4 lz4
           17  3  reserved  zero
           20  4  size      u32: bytes of its encoded form
    8 + 24 * count:
           the encoded forms, in the order of the entries, back to back;
           then the payload's other bytes (those outside every range), in payload order

The receiver knows the payload's size from the schema. Every size must add up exactly, each range
must lie inside the payload, an image range must be exactly one ndarray leaf that its codec takes
(a JPEG's or PNG's dimensions are read from its header and checked against the leaf's before
anything is decoded, so a hostile one cannot make the receiver allocate more), and each range
must decode to exactly its length. Anything else is a MessageError naming the fault, and nothing
is applied.
"""

from __future__ import annotations

import fnmatch
import io
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple

import numpy as np

from .. import InvalidArgumentError
from .._extras import require
from ..payload import ArrayLeaf, Layout
from .wire import MessageError

TABLE_HEADER: Final = struct.Struct("<H6x")
ENTRY: Final = struct.Struct("<QQB3xI")
MAX_RANGES: Final = 1024


def _library(name: str, codec: str) -> Any:
    return require(name, extra="zenoh", feature=f"the bridge's {codec} encoding")


# ---------------------------------------------------------------------------------------------
# Codecs
# ---------------------------------------------------------------------------------------------
class Codec:
    """One codec at one level. Subclasses say what they take and how they encode and decode."""

    name: ClassVar[str]
    wire_id: ClassVar[int]
    levels: ClassVar[tuple[int, int]]
    default_level: ClassVar[int]
    #: An image codec encodes the image leaves it takes; the others encode the whole payload.
    image: ClassVar[bool] = False
    #: What it takes, for error messages.
    takes_text: ClassVar[str] = "any payload"

    def __init__(self, level: int | None = None) -> None:
        low, high = self.levels
        self.level = self.default_level if level is None else level
        if not low <= self.level <= high:
            msg = f"{self.name} takes a level from {low} to {high}, not {self.level}"
            raise InvalidArgumentError(msg)

    def __str__(self) -> str:
        return f"{self.name}:{self.level}"

    def takes(self, leaf: ArrayLeaf) -> bool:
        return not self.image

    def encode(self, data: Any) -> bytes:
        """``data``: the leaf as an ndarray (image codecs) or the range as a memoryview."""
        raise NotImplementedError

    def decode_into(self, data: memoryview, target: Any) -> None:
        """Decode ``data`` into ``target`` (the leaf's writable ndarray for image codecs, a
        writable memoryview of the range otherwise); MessageError if it is not exactly that."""
        raise NotImplementedError


def _image_shape(leaf: ArrayLeaf, dtypes: Iterable[np.dtype[Any]], channels: Iterable[int]) -> bool:
    shape = leaf.shape
    return (
        leaf.dtype in dtypes
        and (len(shape) == 2 or (len(shape) == 3 and shape[2] in channels))
        and 0 < shape[0] <= 65500
        and 0 < shape[1] <= 65500
    )


class Jpeg(Codec):
    name = "jpeg"
    wire_id = 1
    levels = (1, 100)
    default_level = 90
    image = True
    takes_text = "uint8 images (HxW, HxWx1, HxWx3, HxWx4)"
    #: libjpeg-turbo's colour spaces by channel count (2-D: grey).
    _SPACES: ClassVar[dict[int, str]] = {1: "GRAY", 3: "RGB", 4: "RGBX"}

    def takes(self, leaf: ArrayLeaf) -> bool:
        return _image_shape(leaf, [np.dtype(np.uint8)], (1, 3, 4))

    def encode(self, data: Any) -> bytes:
        simplejpeg = _library("simplejpeg", "JPEG")
        channels = 1 if data.ndim == 2 else data.shape[2]
        image = data.reshape(*data.shape[:2], channels)
        return bytes(
            simplejpeg.encode_jpeg(
                image,
                quality=self.level,
                colorspace=self._SPACES[channels],
                colorsubsampling="420",
            )
        )

    def decode_into(self, data: memoryview, target: Any) -> None:
        simplejpeg = _library("simplejpeg", "JPEG")
        try:
            height, width, _, _ = simplejpeg.decode_jpeg_header(data)
        except ValueError as exc:
            msg = f"a JPEG whose header does not decode ({exc})"
            raise MessageError(msg) from exc
        if (height, width) != target.shape[:2]:
            msg = f"a {height}x{width} JPEG for an image leaf of {target.shape}"
            raise MessageError(msg)
        channels = 1 if target.ndim == 2 else target.shape[2]
        try:
            simplejpeg.decode_jpeg(data, colorspace=self._SPACES[channels], buffer=target)
        except ValueError as exc:
            msg = f"a JPEG that does not decode ({exc})"
            raise MessageError(msg) from exc


class Png(Codec):
    name = "png"
    wire_id = 2
    levels = (0, 9)
    default_level = 1
    image = True
    takes_text = "uint8 images (HxW, HxWx1, HxWx3, HxWx4) and uint16 HxW, HxWx1 ones (depth)"
    #: Pillow's image modes: (dtype, channels) -> mode.
    _MODES: ClassVar[dict[tuple[str, int], str]] = {
        ("uint8", 1): "L",
        ("uint8", 3): "RGB",
        ("uint8", 4): "RGBA",
        ("uint16", 1): "I;16",
    }

    def takes(self, leaf: ArrayLeaf) -> bool:
        if leaf.dtype == np.dtype(np.uint16):
            return _image_shape(leaf, [leaf.dtype], (1,))
        return _image_shape(leaf, [np.dtype(np.uint8)], (1, 3, 4))

    def _mode(self, array: Any) -> str:
        return self._MODES[array.dtype.name, 1 if array.ndim == 2 else array.shape[2]]

    def encode(self, data: Any) -> bytes:
        image_module = _library("PIL.Image", "PNG")
        out = io.BytesIO()
        image = image_module.frombuffer(
            self._mode(data), (data.shape[1], data.shape[0]), data, "raw", self._mode(data), 0, 1
        )
        image.save(out, format="PNG", compress_level=self.level)
        return out.getvalue()

    def decode_into(self, data: memoryview, target: Any) -> None:
        image_module = _library("PIL.Image", "PNG")
        corrupt = (OSError, ValueError, SyntaxError)  # Pillow's ways of saying so
        try:  # the header only: it says the image's size before anything is decoded
            image = image_module.open(io.BytesIO(data), formats=["PNG"])
        except corrupt as exc:
            msg = f"a PNG whose header does not decode ({type(exc).__name__}: {exc})"
            raise MessageError(msg) from exc
        if image.size != (target.shape[1], target.shape[0]) or image.mode != self._mode(target):
            msg = (
                f"a {image.size[1]}x{image.size[0]} PNG of mode {image.mode} for an image leaf "
                f"of {target.dtype}{target.shape} (mode {self._mode(target)})"
            )
            raise MessageError(msg)
        try:
            decoded = np.asarray(image)
        except corrupt as exc:
            msg = f"a PNG that does not decode ({type(exc).__name__}: {exc})"
            raise MessageError(msg) from exc
        np.copyto(target, decoded.reshape(target.shape), casting="no")


class Zstd(Codec):
    name = "zstd"
    wire_id = 3
    levels = (1, 22)
    default_level = 3

    def __init__(self, level: int | None = None) -> None:
        super().__init__(level)
        self._compressor: Any = None  # made on first use: one per exporter (not thread-safe)

    def encode(self, data: Any) -> bytes:
        if self._compressor is None:
            self._compressor = _library("zstandard", "zstd").ZstdCompressor(level=self.level)
        return bytes(self._compressor.compress(data))

    def decode_into(self, data: memoryview, target: Any) -> None:
        zstandard = _library("zstandard", "zstd")
        try:
            decoded = zstandard.ZstdDecompressor().decompress(data, max_output_size=len(target))
        except zstandard.ZstdError as exc:
            msg = f"a zstd frame that does not decompress ({exc})"
            raise MessageError(msg) from exc
        if len(decoded) != len(target):
            msg = f"a zstd frame of {len(decoded)} bytes for a range of {len(target)}"
            raise MessageError(msg)
        target[:] = decoded


class Lz4(Codec):
    name = "lz4"
    wire_id = 4
    levels = (0, 12)
    default_level = 0

    def encode(self, data: Any) -> bytes:
        block = _library("lz4.block", "lz4")
        if self.level == 0:
            return bytes(block.compress(data, store_size=False))
        return bytes(
            block.compress(data, mode="high_compression", compression=self.level, store_size=False)
        )

    def decode_into(self, data: memoryview, target: Any) -> None:
        block = _library("lz4.block", "lz4")
        try:  # the size is given: a hostile block cannot make it allocate more
            decoded = block.decompress(data, uncompressed_size=len(target))
        except block.LZ4BlockError as exc:
            msg = f"an lz4 block that does not decompress ({exc})"
            raise MessageError(msg) from exc
        if len(decoded) != len(target):
            msg = f"an lz4 block of {len(decoded)} bytes for a range of {len(target)}"
            raise MessageError(msg)
        target[:] = decoded


CODECS: Final[dict[str, type[Codec]]] = {c.name: c for c in (Jpeg, Png, Zstd, Lz4)}
_BY_WIRE_ID: Final[dict[int, type[Codec]]] = {c.wire_id: c for c in CODECS.values()}


# ---------------------------------------------------------------------------------------------
# --encode PATTERN=CODEC[:LEVEL]
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EncodeRule:
    """One ``--encode`` entry: objects matching ``pattern`` travel as ``codec`` (None: raw)."""

    pattern: str
    codec_name: str
    level: int | None

    def __str__(self) -> str:
        level = "" if self.level is None else f":{self.level}"
        return f"{self.pattern}={self.codec_name}{level}"

    def codec(self) -> Codec | None:
        """A new codec instance (each exporter has its own), or None for raw."""
        return None if self.codec_name == "raw" else CODECS[self.codec_name](self.level)


def parse_rule(text: str) -> EncodeRule:
    """``PATTERN=CODEC[:LEVEL]``; InvalidArgumentError naming what is wrong."""
    pattern, sep, spec = text.partition("=")
    name, _, level_text = spec.partition(":")
    choices = ", ".join(["raw", *CODECS])
    if not sep or not pattern or not name:
        msg = f"--encode {text!r}: write PATTERN=CODEC[:LEVEL], CODEC one of {choices}"
        raise InvalidArgumentError(msg)
    if name != "raw" and name not in CODECS:
        msg = f"--encode {text!r}: unknown codec {name!r}; the codecs are {choices}"
        raise InvalidArgumentError(msg)
    level: int | None = None
    if level_text:
        if name == "raw":
            msg = f"--encode {text!r}: raw takes no level"
            raise InvalidArgumentError(msg)
        try:
            level = int(level_text)
        except ValueError:
            msg = f"--encode {text!r}: the level must be an integer, not {level_text!r}"
            raise InvalidArgumentError(msg) from None
    rule = EncodeRule(pattern, name, level)
    try:
        rule.codec()  # checks the level's range
    except InvalidArgumentError as exc:
        msg = f"--encode {text!r}: {exc}"
        raise InvalidArgumentError(msg) from None
    return rule


def rule_for(name: str, rules: Iterable[EncodeRule]) -> EncodeRule | None:
    """The first rule whose pattern matches ``name``."""
    return next((r for r in rules if fnmatch.fnmatchcase(name, r.pattern)), None)


# ---------------------------------------------------------------------------------------------
# Plans: which ranges of a schema's payload a codec encodes
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Range:
    offset: int
    length: int
    leaf: ArrayLeaf | None  # the image leaf, for image codecs
    path: str


@dataclass(frozen=True)
class Plan:
    codec: Codec
    ranges: tuple[Range, ...]
    size: int  # the payload's

    def describe(self) -> str:
        """What travels how: "['frame'] (ndarray[uint8, (480, 848)]) as jpeg:90, the rest raw"."""
        if not self.codec.image:
            return f"the whole payload as {self.codec}"
        leaves = ", ".join(
            f"{r.path or 'the image'} ({r.leaf.describe() if r.leaf else '?'})" for r in self.ranges
        )
        covered = sum(r.length for r in self.ranges)
        rest = ", the rest raw" if covered < self.size else ""
        return f"{leaves} as {self.codec}{rest}"


def plan(codec: Codec, layout: Layout, name: str) -> Plan:
    """The ranges ``codec`` encodes in payloads of this ``layout``; InvalidArgumentError, saying
    what the codec takes and what ``name`` holds, if it takes nothing there."""
    if not codec.image:
        return Plan(codec, (Range(0, layout.size, None, ""),) if layout.size else (), layout.size)
    ranges = tuple(
        Range(leaf.offset, leaf.nbytes, leaf, leaf.path)
        for leaf in layout.arrays
        if codec.takes(leaf)
    )
    if not ranges:
        msg = (
            f"{codec.name} takes {codec.takes_text}; {name!r} holds {layout.kind}, with no "
            "such image in it: choose another codec for it (zstd or lz4 take any payload)"
        )
        raise InvalidArgumentError(msg)
    return Plan(codec, ranges, layout.size)


# ---------------------------------------------------------------------------------------------
# Encoding and decoding payloads
# ---------------------------------------------------------------------------------------------
def encode(plan_: Plan, payload: memoryview) -> bytes:
    """The encoded payload (see the module's docstring) of ``payload``, laid out as ``plan_``'s
    schema lays it out."""
    codec = plan_.codec
    forms = []
    for r in plan_.ranges:
        data: Any = payload[r.offset : r.offset + r.length]
        if r.leaf is not None:
            data = np.frombuffer(data, r.leaf.dtype).reshape(r.leaf.shape)
        forms.append(codec.encode(data))
    table = bytearray(TABLE_HEADER.size + ENTRY.size * len(plan_.ranges))
    TABLE_HEADER.pack_into(table, 0, len(plan_.ranges))
    for i, (r, form) in enumerate(zip(plan_.ranges, forms, strict=True)):
        ENTRY.pack_into(table, TABLE_HEADER.size + i * ENTRY.size, r.offset, r.length,
                        codec.wire_id, len(form))  # fmt: skip
    rest, at = [], 0
    for r in plan_.ranges:
        rest.append(payload[at : r.offset])
        at = r.offset + r.length
    rest.append(payload[at:])
    return b"".join([table, *forms, *rest])


class _Entry(NamedTuple):
    offset: int
    length: int
    codec: Codec
    form_size: int
    leaf: ArrayLeaf | None


def decode(section: memoryview, layout: Layout, out: bytearray | None = None) -> bytearray:
    """The payload that ``section`` (an encoded payload) encodes, laid out as ``layout``: written
    into ``out`` if it has the payload's size (a buffer used again and again), else into a new
    bytearray. MessageError naming the fault if ``section`` is not exactly that."""
    entries, forms_at = _read_table(section, layout)
    payload = out if out is not None and len(out) == layout.size else bytearray(layout.size)
    with memoryview(payload) as target:
        at = forms_at
        for e in entries:
            form = section[at : at + e.form_size]
            at += e.form_size
            if e.leaf is not None:
                leaf = e.leaf
                image = np.frombuffer(
                    payload, leaf.dtype, leaf.nbytes // leaf.dtype.itemsize, e.offset
                )
                e.codec.decode_into(form, image.reshape(leaf.shape))
            else:
                e.codec.decode_into(form, target[e.offset : e.offset + e.length])
        done = 0
        for e in entries:  # the bytes between the ranges
            target[done : e.offset] = section[at : at + e.offset - done]
            at += e.offset - done
            done = e.offset + e.length
        target[done:] = section[at:]
    return payload


def _read_table(section: memoryview, layout: Layout) -> tuple[list[_Entry], int]:
    """The encoded payload's entries, every one checked against the ``layout``, and where its
    encoded forms begin; MessageError if the table is not exactly what the module's docstring
    says."""
    if len(section) < TABLE_HEADER.size:
        msg = f"an encoded payload of {len(section)} bytes: shorter than its table's header"
        raise MessageError(msg)
    (count,) = TABLE_HEADER.unpack_from(section, 0)
    forms_at = TABLE_HEADER.size + ENTRY.size * count
    if any(section[2 : TABLE_HEADER.size]):
        msg = "an encoded payload whose table header has non-zero reserved bytes"
        raise MessageError(msg)
    if not 1 <= count <= MAX_RANGES or forms_at > len(section):
        msg = f"an encoded payload of {len(section)} bytes claiming {count} ranges"
        raise MessageError(msg)
    leaves = {leaf.offset: leaf for leaf in layout.arrays}
    entries: list[_Entry] = []
    for i in range(count):
        at = TABLE_HEADER.size + i * ENTRY.size
        offset, length, codec_id, form_size = ENTRY.unpack_from(section, at)
        where = f"range {i} of an encoded payload ({offset}+{length})"
        if any(section[at + 17 : at + 20]):
            msg = f"{where} has non-zero reserved bytes"
            raise MessageError(msg)
        end = entries[-1].offset + entries[-1].length if entries else 0
        if offset < end or length == 0 or offset + length > layout.size:
            msg = f"{where} overlaps another or lies outside the {layout.size}-byte payload"
            raise MessageError(msg)
        codec_type = _BY_WIRE_ID.get(codec_id)
        if codec_type is None:
            msg = f"{where} names an unknown codec ({codec_id})"
            raise MessageError(msg)
        codec = codec_type()
        leaf = leaves.get(offset) if codec.image else None
        if codec.image and (leaf is None or leaf.nbytes != length or not codec.takes(leaf)):
            msg = f"{where} is {codec.name}, where the schema has no image leaf {codec.name} takes"
            raise MessageError(msg)
        entries.append(_Entry(offset, length, codec, form_size, leaf))
    accounted = forms_at + sum(e.form_size - e.length for e in entries) + layout.size
    if accounted != len(section):
        msg = f"an encoded payload of {len(section)} bytes whose table accounts for {accounted}"
        raise MessageError(msg)
    return entries, forms_at


__all__ = [
    "CODECS",
    "Codec",
    "EncodeRule",
    "Plan",
    "decode",
    "encode",
    "parse_rule",
    "plan",
    "rule_for",
]
