"""Codecs: the node tree that lays a schema's values out in a slot's payload, reads and writes them.

``_schema`` makes schemas from values and owns their JSON form; here each schema element
becomes a node with its payload offset (``build``), which checks an offered value against the
stored kind (``prepare``), writes it, and reads it back as a private copy or as views.

Payload layout: the leaves in schema order (depth first), each at the next offset aligned as
below, offsets counted from the payload start (itself 64-byte aligned in the segment)::

    none              0 bytes
    bool              1 byte, 0 or 1
    int               8 bytes, i64                                        (8-aligned)
    float             8 bytes, f64                                        (8-aligned)
    complex           16 bytes, f64 real then f64 imaginary               (8-aligned)
    pose              28 bytes, f32 x y z then f32 qw qx qy qz            (8-aligned)
    str/bytes/...     u64 length, then ``capacity`` bytes (UTF-8 for str) (8-aligned)
                      (npstr and npbytes too: "str/bytes/..." below means all five)
    npscalar          itemsize bytes                                      (16-aligned)
    ndarray           the C-contiguous data, ``nbytes`` bytes             (64-aligned)

The conversions a leaf accepts, the capacities of strings and the other rules are those of
``_schema``'s docstring.
"""

from __future__ import annotations

import math
import struct
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from ._errors import (
    CapacityError,
    IntegerOverflowError,
    LayoutError,
    TypeMismatchError,
    UnsupportedTypeError,
)
from ._schema import (
    MAX_DEPTH,
    Schema,
    check_int,
    check_keeps_its_meaning,
    describe,
    dtype_from_json,
    dumps,
    is_pose,
    is_released,
    key_from_json,
    loads,
    np_str_utf8,
    schema_of,
    set_order,
    utf8,
)

#: (leaf node, prepared value) pairs, produced by ``Node.prepare`` after every check has passed.
Writes = list[tuple["Node", Any]]


_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")
_U64 = struct.Struct("<Q")
_POSE = struct.Struct("<7f")
_BOOL = struct.Struct("<?")


def _memoryview_bytes(view: memoryview, leaf: Node, path: str) -> memoryview:
    """``view``'s bytes as a flat byte view (no copy), for a byte-string leaf."""
    where = f" at {path}" if path else ""
    if is_released(view):
        msg = (
            f"stored kind is {leaf.describe()}, offered a released memoryview{where}: it has no "
            "bytes any more"
        )
        raise TypeMismatchError(msg)
    if not view.c_contiguous:
        msg = (
            f"stored kind is {leaf.describe()}, offered a non-contiguous memoryview{where}: pass "
            "bytes(view)"
        )
        raise TypeMismatchError(msg)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _as_number(kind: Callable[[Any], Any], value: Any, path: str) -> Any:
    """``kind(value)`` (float or complex) if it holds ``value`` exactly; errors of ours otherwise.

    Not every int, nor every long double, fits a double: 2**53 + 1 would read back as 2**53.
    """
    offered = value
    if isinstance(value, np.integer):
        value = int(value)  # compared below as a Python int: exactly (numpy compares via float64)
    try:
        converted = kind(value)
    except OverflowError:
        where = f" at {path}" if path else ""
        # bit_length, not the digits: str() of an int past 4300 digits raises ValueError
        msg = (
            f"int of {value.bit_length()} bits{where} is too large for a {kind.__name__} (at most "
            "about 2**1024)"
        )
        raise IntegerOverflowError(msg) from None
    if converted != value and converted == converted:  # noqa: PLR0124 - NaN reads back as NaN: fine
        where = f" at {path}" if path else ""
        msg = (
            f"stored kind is {kind.__name__}, offered {describe(offered)}{where}, which a "
            f"{kind.__name__} cannot hold exactly: it would read back as {converted!r} (store it "
            "in a leaf of its own kind)"
        )
        raise TypeMismatchError(msg)
    return converted


def _is_number(value: object) -> bool:
    """A number a float or complex leaf may take: no bool, no timedelta64 (a numpy "integer")."""
    return not isinstance(value, (bool, np.bool_, np.timedelta64))


class Node:
    """A schema element placed at ``offset`` bytes into the payload."""

    align: ClassVar[int] = 8
    #: The schema this node was built from, on the root of a tree that ``build`` made.
    schema: Schema | None = None
    #: Values of exactly this type need no conversion (the assign fast path); None: always convert.
    fast_type: ClassVar[type | None] = None
    size: int = 0
    offset: int = 0

    def place(self, offset: int) -> int:
        """Give this node (and its children) their offsets; return the end offset."""
        self.offset = (offset + self.align - 1) // self.align * self.align
        return self.offset + self.size

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        """Check ``value`` against this node and append what to write; raise on any mismatch."""
        raise NotImplementedError

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        raise NotImplementedError

    def read(self, buf: memoryview, base: int) -> Any:
        """The value as a private copy."""
        raise NotImplementedError

    def view(self, buf: memoryview, base: int, roots: list[object] | None = None) -> Any:
        """The value with array leaves as read-only views into ``buf`` (zero copy).

        Each call makes new views. With ``roots``, the array each view was made from is appended
        to it: every array derived from a view (a slice, a transpose, ``torch.from_numpy``'s) keeps
        its root alive, so a root's reference count tells whether anything still points into
        ``buf``.
        """
        return self.read(buf, base)

    def describe(self) -> str:
        raise NotImplementedError

    def mismatch(self, value: object, path: str) -> TypeMismatchError:
        where = f" at {path}" if path else ""
        return TypeMismatchError(
            f"stored kind is {self.describe()}, offered {describe(value)}{where}"
        )

    def clear_cache(self) -> None:
        """Forget cached views into a mapping (before it is replaced)."""


class NoneNode(Node):
    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if value is not None:
            raise self.mismatch(value, path)

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        pass

    def read(self, buf: memoryview, base: int) -> Any:
        return None

    def describe(self) -> str:
        return "None"


class StructNode(Node):
    """A fixed-size scalar packed with one struct format."""

    fmt: ClassVar[struct.Struct]
    label: ClassVar[str]

    def __init__(self) -> None:
        self.size = self.fmt.size

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        self.fmt.pack_into(buf, base + self.offset, prepared)

    def read(self, buf: memoryview, base: int) -> Any:
        return self.fmt.unpack_from(buf, base + self.offset)[0]

    def describe(self) -> str:
        return self.label

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        out.append((self, self.convert(value, path)))

    def convert(self, value: Any, path: str) -> Any:
        raise NotImplementedError


class BoolNode(StructNode):
    fmt = _BOOL
    label = "bool"
    align = 1
    fast_type = bool

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, (bool, np.bool_)):
            return bool(value)
        raise self.mismatch(value, path)


class IntNode(StructNode):
    fmt = _I64
    label = "int"
    fast_type = int

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, (int, np.integer)) and _is_number(value):
            return check_int(int(value), path)
        raise self.mismatch(value, path)


class FloatNode(StructNode):
    fmt = _F64
    label = "float"
    fast_type = float

    def convert(self, value: Any, path: str) -> Any:
        if isinstance(value, (float, int, np.floating, np.integer)) and _is_number(value):
            return _as_number(float, value, path)
        raise self.mismatch(value, path)


class ComplexNode(Node):
    size = 16

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if isinstance(value, (complex, float, int, np.number)) and _is_number(value):
            out.append((self, _as_number(complex, value, path)))
            return
        raise self.mismatch(value, path)

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        _C128.pack_into(buf, base + self.offset, prepared.real, prepared.imag)

    def read(self, buf: memoryview, base: int) -> Any:
        return complex(*_C128.unpack_from(buf, base + self.offset))

    def describe(self) -> str:
        return "complex"


class PoseNode(Node):
    size = _POSE.size

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if not is_pose(value):
            raise self.mismatch(value, path)
        out.append(
            (
                self,
                (
                    *np.asarray(value.p, np.float32).tolist(),
                    *np.asarray(value.q, np.float32).tolist(),
                ),
            )
        )

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        _POSE.pack_into(buf, base + self.offset, *prepared)

    def read(self, buf: memoryview, base: int) -> Any:
        values = _POSE.unpack_from(buf, base + self.offset)
        try:
            import sapien
        except ImportError as exc:
            msg = (
                "this object holds a sapien.Pose; install the extra: pip install "
                "'shared_object[sapien]'"
            )
            raise UnsupportedTypeError(msg) from exc
        return sapien.Pose(values[:3], values[3:])

    def describe(self) -> str:
        return "sapien.Pose"


class BufferNode(Node):
    """str / bytes / bytearray / numpy.str_ / numpy.bytes_: a u64 length then ``capacity`` bytes."""

    #: kind: (the type a value must be an instance of, its name in messages, whether it is text)
    KINDS: ClassVar[dict[str, tuple[type, str, bool]]] = {
        "str": (str, "str", True),
        "bytes": (bytes, "bytes", False),
        "bytearray": (bytearray, "bytearray", False),
        "npstr": (np.str_, "numpy.str_", True),
        "npbytes": (np.bytes_, "numpy.bytes_", False),
    }

    def __init__(self, kind: str, capacity: int) -> None:
        if not isinstance(capacity, int) or capacity < 0:
            msg = f"bad {kind} capacity {capacity!r}"
            raise ValueError(msg)
        self.kind = kind
        self.capacity = capacity
        self.size = 8 + capacity
        self.pytype, self.type_name, self.text = self.KINDS[kind]

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        # The leaves of a kind take each other's values (see "Rules" above): a text leaf any str,
        # a byte-string leaf anything bytes-like, a memoryview without the copy bytes(mv) makes.
        data: Any
        if self.text:
            if not isinstance(value, str):
                raise self.mismatch(value, path)
            data = np_str_utf8(value, path) if isinstance(value, np.str_) else utf8(value)
        elif isinstance(value, (bytes, bytearray)):
            data = value
        elif isinstance(value, memoryview):
            data = _memoryview_bytes(value, self, path)
        else:
            raise self.mismatch(value, path)
        if len(data) > self.capacity:
            where = f" at {path}" if path else ""
            msg = (
                f"{self.type_name} of {len(data)} bytes{where} exceeds the capacity of "
                f"{self.capacity} bytes fixed at creation (create with a larger init_size, or use "
                "SharedDynamicObject)"
            )
            raise CapacityError(msg)
        out.append((self, data))

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        start = base + self.offset
        n = len(prepared)
        buf[start + 8 : start + 8 + n] = prepared
        _U64.pack_into(buf, start, n)

    def _span(self, buf: memoryview, base: int) -> memoryview:
        start = base + self.offset
        (n,) = _U64.unpack_from(buf, start)
        if n > self.capacity:
            msg = f"{self.type_name} length {n} exceeds its capacity {self.capacity}"
            raise LayoutError(msg)
        return buf[start + 8 : start + 8 + n]

    def read(self, buf: memoryview, base: int) -> Any:
        span = self._span(buf, base)
        if self.pytype is str:
            return str(span, "utf-8", "surrogatepass")
        if self.text:
            return self.pytype(str(span, "utf-8", "surrogatepass"))
        return self.pytype(span)

    def describe(self) -> str:
        return f"{self.type_name} (capacity {self.capacity} bytes)"


class NpScalarNode(Node):
    align = 16

    def __init__(self, dtype: np.dtype[Any]) -> None:
        self.dtype = dtype
        self.size = dtype.itemsize

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if not isinstance(value, np.generic) or np.asarray(value).dtype != self.dtype:
            raise self.mismatch(value, path)
        out.append((self, value))

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        start = base + self.offset
        np.frombuffer(buf, self.dtype, 1, start)  # bounds check before writing
        buf[start : start + self.size] = np.asarray(prepared).tobytes()

    def read(self, buf: memoryview, base: int) -> Any:
        return np.frombuffer(buf, self.dtype, 1, base + self.offset).copy()[0]

    def describe(self) -> str:
        return f"numpy scalar {self.dtype}"


class ArrayNode(Node):
    align = 64

    def __init__(self, dtype: np.dtype[Any], shape: tuple[int, ...]) -> None:
        if any(not isinstance(d, int) or d < 0 for d in shape):
            msg = f"bad array shape {shape!r}"
            raise ValueError(msg)
        self.dtype = dtype
        self.shape = shape
        self.count = math.prod(shape)
        self.size = self.count * dtype.itemsize
        # (id of buffer, base) -> (writable view, read-only view); each view keeps its buffer alive.
        self._views: dict[tuple[int, int], tuple[npt.NDArray[Any], npt.NDArray[Any]]] = {}

    def views(self, buf: memoryview, base: int) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        key = (id(buf), base)
        pair = self._views.get(key)
        if pair is None:
            rw = np.frombuffer(buf, self.dtype, self.count, base + self.offset).reshape(self.shape)
            ro = rw.view()
            ro.flags.writeable = False
            pair = self._views[key] = (rw, ro)
        return pair

    def clear_cache(self) -> None:
        self._views.clear()

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if (
            not isinstance(value, np.ndarray)
            or value.dtype != self.dtype
            or value.shape != self.shape
        ):
            raise self.mismatch(value, path)
        check_keeps_its_meaning(value, path)
        out.append((self, value))

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        np.copyto(self.views(buf, base)[0], prepared, casting="no")

    def read(self, buf: memoryview, base: int) -> Any:
        return self.views(buf, base)[1].copy()

    def view(self, buf: memoryview, base: int, roots: list[object] | None = None) -> Any:
        root = np.frombuffer(buf, self.dtype, self.count, base + self.offset)
        root.flags.writeable = False
        if roots is not None:
            roots.append(root)
        return root.reshape(
            self.shape
        )  # numpy makes every later view's base this root, not the reshape

    def describe(self) -> str:
        return f"ndarray[{self.dtype}, {self.shape}]"


class SequenceNode(Node):
    """tuple / list / set / frozenset: a fixed number of children."""

    align = 1

    def __init__(self, kind: str, children: list[Node]) -> None:
        self.kind = kind
        self.children = children
        self.pytype: Callable[[Any], Any] = {
            "tuple": tuple,
            "list": list,
            "set": set,
            "frozenset": frozenset,
        }[kind]

    def place(self, offset: int) -> int:
        self.offset = offset
        for child in self.children:
            offset = child.place(offset)
        self.size = offset - self.offset
        return offset

    def _accepts(self, value: Any) -> bool:
        if self.kind in ("set", "frozenset"):
            return isinstance(value, (set, frozenset))
        return isinstance(value, tuple if self.kind == "tuple" else list)

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if not self._accepts(value) or len(value) != len(self.children):
            raise self.mismatch(value, path)
        items = set_order(value) if isinstance(value, (set, frozenset)) else value
        for i, (child, item) in enumerate(zip(self.children, items, strict=True)):
            child.prepare(item, f"{path}[{i}]", out)

    def read(self, buf: memoryview, base: int) -> Any:
        value = self.pytype([c.read(buf, base) for c in self.children])
        if len(value) != len(self.children):  # a set whose stored elements are not distinct
            msg = (
                f"the payload of a {self.describe()} holds equal elements (it reads as "
                f"{len(value)}): it is corrupt"
            )
            raise LayoutError(msg)
        return value

    def view(self, buf: memoryview, base: int, roots: list[object] | None = None) -> Any:
        if self.kind in ("set", "frozenset"):  # set elements are hashable scalars: no arrays inside
            return self.read(buf, base)
        return self.pytype([c.view(buf, base, roots) for c in self.children])

    def describe(self) -> str:
        return f"{self.kind} of {len(self.children)}"

    def clear_cache(self) -> None:
        for child in self.children:
            child.clear_cache()


class DictNode(Node):
    align = 1

    def __init__(self, keys: list[Any], children: list[Node]) -> None:
        self.keys = keys
        self.children = children

    def place(self, offset: int) -> int:
        self.offset = offset
        for child in self.children:
            offset = child.place(offset)
        self.size = offset - self.offset
        return offset

    def prepare(self, value: Any, path: str, out: Writes) -> None:
        if not isinstance(value, dict) or len(value) != len(self.keys):
            raise self.mismatch(value, path)
        for key, child in zip(self.keys, self.children, strict=True):
            try:
                item = value[key]
            except (KeyError, TypeError):
                raise self.mismatch(value, path) from None
            child.prepare(item, f"{path}[{key!r}]", out)

    def read(self, buf: memoryview, base: int) -> Any:
        return {k: c.read(buf, base) for k, c in zip(self.keys, self.children, strict=True)}

    def view(self, buf: memoryview, base: int, roots: list[object] | None = None) -> Any:
        return {k: c.view(buf, base, roots) for k, c in zip(self.keys, self.children, strict=True)}

    def describe(self) -> str:
        return f"dict with keys {self.keys[:8]!r}"

    def clear_cache(self) -> None:
        for child in self.children:
            child.clear_cache()


_SCALARS: Final[dict[str, type[Node]]] = {
    "none": NoneNode,
    "bool": BoolNode,
    "int": IntNode,
    "float": FloatNode,
    "complex": ComplexNode,
    "pose": PoseNode,
}


def build(schema: Schema) -> Node:
    """The node tree for a schema, with payload offsets assigned. Raises ValueError if malformed."""
    node = _build(schema, 0)
    node.place(0)
    node.schema = schema
    return node


def array_leaves(node: Node, path: str = "") -> list[tuple[str, ArrayNode]]:
    """The ndarray leaves under ``node``, depth first (payload order), each with its path as
    errors name it (``"['frame']"``; ``""`` for the root itself)."""
    if isinstance(node, ArrayNode):
        return [(path, node)]
    if isinstance(node, SequenceNode) and node.kind in ("tuple", "list"):
        return [
            leaf
            for i, child in enumerate(node.children)
            for leaf in array_leaves(child, f"{path}[{i}]")
        ]
    if isinstance(node, DictNode):
        return [
            leaf
            for key, child in zip(node.keys, node.children, strict=True)
            for leaf in array_leaves(child, f"{path}[{key!r}]")
        ]
    return []  # scalars, strings, and sets (whose members are hashable scalars)


def fits_as_is(offered: Schema, stored: Schema | None) -> bool:
    """Whether a value of schema ``offered`` would read back as itself if written under ``stored``.

    True when the two are equal but for str/bytes capacities (the write checks the value's length
    against the capacity). A SharedDynamicObject asks this before keeping its schema: the lossless
    conversions a fixed schema makes (an int into a float leaf) would change the type it returns.
    """
    if stored is None or offered[0] != stored[0] or len(offered) != len(stored):
        return False
    kind = offered[0]
    if kind in BufferNode.KINDS:
        return True
    if kind in ("tuple", "list", "set", "frozenset"):
        return len(offered[1]) == len(stored[1]) and all(map(fits_as_is, offered[1], stored[1]))
    if kind == "dict":
        return len(offered[1]) == len(stored[1]) and all(
            k1 == k2 and fits_as_is(s1, s2)
            for (k1, s1), (k2, s2) in zip(offered[1], stored[1], strict=True)
        )
    return offered == stored


_KINDS: Final = frozenset(
    [
        *_SCALARS,
        *BufferNode.KINDS,
        "npscalar",
        "ndarray",
        "tuple",
        "list",
        "set",
        "frozenset",
        "dict",
    ]
)


def _build(schema: Any, depth: int) -> Node:
    if not isinstance(schema, list) or not schema or not isinstance(schema[0], str):
        msg = f"malformed schema element {schema!r}"
        raise ValueError(msg)
    if depth > MAX_DEPTH:  # schema_of never makes one: a schema this deep is corrupt
        msg = f"schema nested more than {MAX_DEPTH} containers deep"
        raise ValueError(msg)
    kind = schema[0]
    if kind not in _KINDS:
        raise _UnknownKindError(kind)
    if kind in _SCALARS and len(schema) == 1:
        return _SCALARS[kind]()
    if kind in BufferNode.KINDS and len(schema) == 2:
        return BufferNode(kind, schema[1])
    if kind == "npscalar" and len(schema) == 2:
        return NpScalarNode(dtype_from_json(schema[1]))
    if kind == "ndarray" and len(schema) == 3 and isinstance(schema[2], list):
        return ArrayNode(dtype_from_json(schema[1]), tuple(schema[2]))
    if (
        kind in ("tuple", "list", "set", "frozenset")
        and len(schema) == 2
        and isinstance(schema[1], list)
    ):
        return SequenceNode(kind, [_build(s, depth + 1) for s in schema[1]])
    if kind == "dict" and len(schema) == 2 and isinstance(schema[1], list):
        pairs = schema[1]
        return DictNode(
            [key_from_json(k) for k, _ in pairs], [_build(s, depth + 1) for _, s in pairs]
        )
    msg = f"malformed schema element {schema!r}"
    raise ValueError(msg)


class _UnknownKindError(ValueError):
    """A schema kind this version does not know: most likely a newer version wrote it."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def build_checked(schema: Schema, source: str) -> Node:
    """``build`` for a schema read from outside (``source``: "segment 'x'", say): any
    malformation is a LayoutError naming the source."""
    try:
        return build(schema)
    except _UnknownKindError as exc:
        msg = (
            f"{source} holds a value of kind {exc.kind!r}, which this version of "
            "shared_object cannot read: was it written by a newer version? Install the same "
            "version in every process and container"
        )
        raise LayoutError(msg) from exc
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        msg = f"{source} has a corrupt schema ({exc})"
        raise LayoutError(msg) from exc


# --------------------------------------------------------------------------------------------
# A value as (schema text, payload) outside a segment: recordings, bridge messages
# --------------------------------------------------------------------------------------------
def encode(value: object, init_size: int = 0) -> tuple[bytes, bytes]:
    """``value`` as (schema text, payload), the payload laid out as in a slot."""
    schema = schema_of(value, init_size)
    node = build(schema)
    writes: Writes = []
    node.prepare(value, "", writes)
    payload = bytearray(node.size)
    view = memoryview(payload)
    for leaf, prepared in writes:
        leaf.write(view, 0, prepared)
    node.clear_cache()  # its views hold this buffer
    view.release()
    return dumps(schema), bytes(payload)


class Decoder:
    """Reads (schema text, payload) pairs back into values, building each schema's nodes once.

    Every check that ``attach`` makes of a segment's schema and payload is made here: a
    malformed or hostile pair raises LayoutError naming ``source``, never anything else.
    Threads may share one: its cache changes under a lock, and ``decode(copy=False)`` leaves
    nothing of a payload behind in the nodes.
    """

    def __init__(self, cache_size: int = 32) -> None:
        self._nodes: dict[bytes, Node] = {}
        self._cache_size = cache_size
        self._lock = threading.Lock()

    def node(self, schema_text: bytes, source: str) -> Node:
        node = self._nodes.get(schema_text)
        if node is None:
            node = build_checked(loads(schema_text, source), source)
            with self._lock:
                if len(self._nodes) >= self._cache_size:
                    del self._nodes[next(iter(self._nodes))]
                self._nodes[schema_text] = node
        return node

    def decode(
        self,
        schema_text: bytes,
        payload: bytes | bytearray | memoryview,
        source: str,
        *,
        copy: bool = True,
    ) -> Any:
        """The value; with ``copy=False`` its arrays are read-only views into ``payload``, valid
        while the caller keeps ``payload`` unchanged (the bridge assigns them, then drops both).
        """
        node = self.node(schema_text, source)
        if len(payload) != node.size:
            msg = (
                f"{source}: a payload of {len(payload)} bytes, where its schema "
                f"({node.describe()}) lays out {node.size}"
            )
            raise LayoutError(msg)
        try:
            buf = memoryview(payload).cast("B")
            return node.read(buf, 0) if copy else node.view(buf, 0)
        except LayoutError:
            raise
        except (ValueError, TypeError, IndexError, KeyError, OverflowError, struct.error) as exc:
            msg = f"{source}: a corrupt payload for {node.describe()} ({type(exc).__name__}: {exc})"
            raise LayoutError(msg) from exc
        finally:
            node.clear_cache()  # views of this payload: it is not ours to keep


__all__ = [
    "ArrayNode",
    "Decoder",
    "Node",
    "StructNode",
    "Writes",
    "array_leaves",
    "build",
    "build_checked",
    "encode",
    "fits_as_is",
]
