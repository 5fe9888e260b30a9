"""Values as they lie in a slot, outside any segment: (schema text, payload) pairs.

``SharedObject.fetch_raw`` copies a value out whole as such a pair (a ``RawValue``), without
decoding it; a recorder writes the pair to a file and a bridge sends it, and here it is read
back into a value, or its layout inspected (where its arrays lie, for a codec that encodes
images). The payload is laid out exactly as in a slot: ``encode`` makes the pair of a value,
and a value decoded from it and ``assign``-ed lays it out the same way again.

Nothing is ever unpickled or evaluated: every schema and payload is checked as ``attach``
checks a segment's, and a malformed or hostile one is a LayoutError naming its source.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from . import _codecs


@dataclass(frozen=True)
class ArrayLeaf:
    """An ndarray in a payload: where it lies, and what it is."""

    #: Where it is in the value, as errors name it: ``['frame']``, ``[0]``; ``""`` for the value.
    path: str
    #: Bytes from the payload's start (64-byte aligned).
    offset: int
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def count(self) -> int:
        """Its elements."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.count * self.dtype.itemsize

    def describe(self) -> str:
        return f"ndarray[{self.dtype}, {self.shape}]"


class Layout:
    """How a schema lays its values out in a payload."""

    def __init__(self, node: _codecs.Node) -> None:
        self._node = node
        #: The schema (its JSON form parsed: see ``shared_object._schema``).
        self.schema: list[Any] = list(node.schema or [])
        #: The payload's size in bytes.
        self.size: int = node.size
        #: The kind it describes, as ``SharedObject.kind`` says it: ``ndarray[uint8, (480, 3)]``.
        self.kind: str = node.describe()
        #: Its ndarray leaves, in payload order.
        self.arrays: tuple[ArrayLeaf, ...] = tuple(
            ArrayLeaf(path, leaf.offset, leaf.dtype, leaf.shape)
            for path, leaf in _codecs.array_leaves(node)
        )


class Decoder:
    """Reads (schema text, payload) pairs back into values, each schema's layout built once.

    Threads may share one. ``source`` names where a pair came from ("a message for 'cam'") in
    the LayoutError a malformed one raises.
    """

    def __init__(self, cache_size: int = 32) -> None:
        self._decoder = _codecs.Decoder(cache_size)
        self._layouts: dict[int, Layout] = {}

    def layout(self, schema_text: bytes, source: str = "a payload") -> Layout:
        """The layout of ``schema_text``'s values; LayoutError if it is malformed."""
        node = self._decoder.node(schema_text, source)
        layout = self._layouts.get(id(node))
        if layout is None or layout._node is not node:
            if len(self._layouts) > 2 * self._decoder._cache_size:
                self._layouts.clear()
            layout = self._layouts[id(node)] = Layout(node)
        return layout

    def decode(
        self,
        schema_text: bytes,
        payload: bytes | bytearray | memoryview,
        source: str = "a payload",
        *,
        copy: bool = True,
    ) -> Any:
        """The value; LayoutError if the pair is malformed. With ``copy=False`` its arrays are
        read-only views into ``payload``, valid while the caller keeps ``payload`` unchanged (to
        ``assign`` the value at once, say: the assign copies it)."""
        return self._decoder.decode(schema_text, payload, source, copy=copy)


def encode(value: object, init_size: int = 0) -> tuple[bytes, bytes]:
    """``value`` as (schema text, payload), laid out as in a slot; str and bytes leaves get a
    capacity of ``max(init_size, their length)``."""
    return _codecs.encode(value, init_size)


__all__ = ["ArrayLeaf", "Decoder", "Layout", "encode"]
