"""Codecs: how each supported value is described (its *schema*) and laid out in a slot's payload.

A schema is JSON text stored in the slot (see ``_layout``); it fixes the type identity of the
value: kinds, dtypes, shapes, string capacities, compound structure and dict keys. It is data,
never code: nothing from shared memory is unpickled or evaluated.

Schema grammar (JSON arrays)::

    ["none"] | ["bool"] | ["int"] | ["float"] | ["complex"] | ["pose"]
    ["str", capacity] | ["bytes", capacity] | ["bytearray", capacity]     capacity in bytes
    ["npstr", capacity] | ["npbytes", capacity]    numpy.str_ / numpy.bytes_, laid out as str / bytes
    ["npscalar", dtype]            dtype: numpy ``dtype.str`` ("<f4") or, if structured, ``dtype.descr``
    ["ndarray", dtype, [d0, d1, ...]]
    ["tuple", [schema, ...]] | ["list", [schema, ...]] | ["set", [schema, ...]] | ["frozenset", [...]]
    ["dict", [[key, schema], ...]]  key: ["str", s] | ["int", i] | ["float", float.hex()] |
                                         ["bytes", hex] | ["bool", b] | ["none"] | ["tuple", [key, ...]] |
                                         ["str8", hex of the UTF-8]   a str key with lone surrogates

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

Rules a caller relies on:

* A str/bytes/bytearray leaf has a capacity fixed when its schema is made:
  ``max(init_size, len(encoded value))`` bytes. Later values of any length up to it fit.
* numpy.str_ and numpy.bytes_ scalars are strings, not fixed-width "U"/"S" dtype values: a
  numpy array of those drops trailing NULs, so ``np.bytes_(b"\\x00")`` read back as ``b""``.
  Their length is stored, as for str and bytes, and so is their type.
* Leaves of one kind take each other's values: a str or numpy.str_ leaf takes any str; a bytes,
  bytearray or numpy.bytes_ leaf takes bytes, bytearray, numpy.bytes_ or a C-contiguous
  memoryview (as its bytes, without a copy). The leaf's type is what reads back. A memoryview
  cannot *make* a leaf: it has no type of its own to read back as.
* A str is stored as UTF-8, with lone surrogates ("\\udc80", as ``os.fsdecode`` makes of a file
  name that is not UTF-8) in their 3-byte form ("surrogatepass"), so every str round-trips.
* Python ints are 64-bit signed; anything outside raises IntegerOverflowError.
* Subclasses are stored as their base type (a namedtuple comes back a tuple, an IntEnum an int),
  except ``numpy.ma.MaskedArray``, which is refused: stored as an ndarray it would lose its mask,
  and its masked elements would read back as valid data.
* Containers nest up to ``MAX_DEPTH`` (100) levels. Every walk over a value is recursive, and
  Python's stack holds about 1000 frames: a fixed limit far below that lets any process read an
  object, however deep in its own stack it calls fetch. Deeper values (or a container that holds
  itself) raise UnsupportedTypeError.
* Scalar leaves accept lossless numeric conversions: an int leaf takes numpy integers, a float
  leaf takes ints and numpy reals, a complex leaf any real or complex number, each only if the
  leaf holds it exactly (not 2**53 + 1 in a float, nor most long doubles). bool never passes for
  a number, nor a number for a bool, nor a timedelta64 (a numpy "integer") for either.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable
from typing import Any, ClassVar, Final

import numpy as np
import numpy.typing as npt

from ._errors import CapacityError, IntegerOverflowError, LayoutError, TypeMismatchError, UnsupportedTypeError

Schema = list[Any]
#: (leaf node, prepared value) pairs, produced by ``Node.prepare`` after every check has passed.
Writes = list[tuple["Node", Any]]

SUPPORTED: Final = (
    "None, bool, int (64-bit), float, complex, str, bytes, bytearray, numpy scalars, "
    "numpy.ndarray of any fixed-size dtype, sapien.Pose, and tuple/list/set/frozenset/dict of these"
)
MAX_DEPTH: Final = 100  # container levels; see "Rules" above
INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1

_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_C128 = struct.Struct("<dd")
_U64 = struct.Struct("<Q")
_POSE = struct.Struct("<7f")
_BOOL = struct.Struct("<?")


def utf8(text: str) -> bytes:
    """``text`` as stored: UTF-8, with lone surrogates passed through (see "Rules" above)."""
    try:
        return text.encode("utf-8")  # the common case, on CPython's fast path for "strict"
    except UnicodeEncodeError:
        return text.encode("utf-8", "surrogatepass")


# --------------------------------------------------------------------------------------------
# Schema from a value
# --------------------------------------------------------------------------------------------
def schema_of(value: object, init_size: int = 0) -> Schema:
    """The schema that stores ``value``; str/bytes capacities are ``max(init_size, length)``.

    A part of ``value`` that cannot be stored is named by its path in the error, as assign names
    a leaf of the wrong kind: "at ['state']['gain']: cannot store a value of type ...".
    """
    try:
        return _schema_of(value, init_size, 0)
    except (UnsupportedTypeError, IntegerOverflowError) as exc:
        where = _where_refused(value, init_size, 0)
        if not where:
            raise
        if len(where) > 80:  # a container holding itself: "[0][0][0]..." a hundred times says no more than its start
            where = where[:80] + "..."
        raise type(exc)(f"at {where}: {exc}") from None


def _where_refused(value: object, init_size: int, depth: int) -> str:
    """The path of the part of ``value`` that _schema_of refuses ("" for ``value`` itself).

    Walked only once an error is certain, so that _schema_of, which runs on every assign of a
    SharedDynamicObject, builds no path strings. A set's members have no index of their own, and
    a dict's bad key is the dict's own fault: both stop at the container.
    """
    if depth >= MAX_DEPTH:
        return ""
    if isinstance(value, dict):
        try:
            for key in value:
                _key_to_json(key)
        except UnsupportedTypeError:
            return ""
        children = [(f"[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, (tuple, list)):
        children = [(f"[{i}]", v) for i, v in enumerate(value)]
    else:
        return ""
    for label, child in children:
        try:
            _schema_of(child, init_size, depth + 1)
        except (UnsupportedTypeError, IntegerOverflowError):
            return label + _where_refused(child, init_size, depth + 1)
    return ""


def _schema_of(value: object, init_size: int, depth: int) -> Schema:  # noqa: PLR0912 - one branch per supported type
    """schema_of's walk; ``depth`` counts the containers around ``value`` (for the MAX_DEPTH check)."""
    if value is None:
        return ["none"]
    if isinstance(value, np.ndarray):
        _check_keeps_its_meaning(value, "")
        return ["ndarray", _dtype_to_json(value.dtype), list(value.shape)]
    if isinstance(value, np.str_):  # before np.generic and str: see "Rules" above
        return ["npstr", max(init_size, len(_np_str_utf8(value, "")))]
    if isinstance(value, np.bytes_):
        return ["npbytes", max(init_size, len(value))]
    if isinstance(value, np.generic):
        return ["npscalar", _dtype_to_json(np.asarray(value).dtype)]
    if isinstance(value, bool):
        return ["bool"]
    if isinstance(value, int):
        _check_int(value, "")
        return ["int"]
    if isinstance(value, float):
        return ["float"]
    if isinstance(value, complex):
        return ["complex"]
    if isinstance(value, str):
        return ["str", max(init_size, len(utf8(value)))]
    if isinstance(value, bytearray):
        return ["bytearray", max(init_size, len(value))]
    if isinstance(value, bytes):
        return ["bytes", max(init_size, len(value))]
    if _is_pose(value):
        return ["pose"]
    if isinstance(value, (tuple, list, set, frozenset, dict)) and depth >= MAX_DEPTH:
        msg = (
            f"cannot store containers nested more than {MAX_DEPTH} levels deep (does a container hold "
            f"itself?); the innermost here is a {_type_name(value)}"
        )
        raise UnsupportedTypeError(msg)
    depth += 1
    if isinstance(value, tuple):
        return ["tuple", [_schema_of(v, init_size, depth) for v in value]]
    if isinstance(value, list):
        return ["list", [_schema_of(v, init_size, depth) for v in value]]
    if isinstance(value, (set, frozenset)):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return [kind, [_schema_of(v, init_size, depth) for v in _set_order(value)]]
    if isinstance(value, dict):
        return ["dict", [[_key_to_json(k), _schema_of(v, init_size, depth)] for k, v in value.items()]]
    msg = f"cannot store a value of type {_type_name(value)} in shared memory; supported: {SUPPORTED}"
    if isinstance(value, memoryview):
        msg += (
            " (a memoryview has no type of its own to read back as: create the object with bytes(view); "
            "a SharedObject's bytes or bytearray leaf then takes a memoryview as it is, without that copy)"
        )
    raise UnsupportedTypeError(msg)


def _np_str_utf8(value: np.str_, path: str) -> bytes:
    """A numpy.str_ as stored, refusing one that is not text.

    numpy makes a str_ of whatever 4-byte units a "U" array holds, even past U+10FFFF, the last
    code point: such a string encodes to bytes that no reader could decode.
    """
    data = utf8(value)
    try:
        str(data, "utf-8", "surrogatepass")
    except UnicodeDecodeError:
        where = f" at {path}" if path else ""
        msg = (
            f"cannot store a numpy.str_{where} holding code points past U+10FFFF (made from raw bytes?): it is "
            "not text; store its array's bytes, e.g. np.asarray(s).view(np.uint32)"
        )
        raise UnsupportedTypeError(msg) from None
    return data


def _memoryview_bytes(view: memoryview, leaf: Node, path: str) -> memoryview:
    """``view``'s bytes as a flat byte view (no copy), for a byte-string leaf."""
    where = f" at {path}" if path else ""
    if _is_released(view):
        msg = f"stored kind is {leaf.describe()}, offered a released memoryview{where}: it has no bytes any more"
        raise TypeMismatchError(msg)
    if not view.c_contiguous:
        msg = f"stored kind is {leaf.describe()}, offered a non-contiguous memoryview{where}: pass bytes(view)"
        raise TypeMismatchError(msg)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _check_keeps_its_meaning(array: npt.NDArray[Any], path: str) -> None:
    """Refuse an ndarray subclass whose extra state is part of its value (see "Rules" above)."""
    if type(array) is not np.ndarray and isinstance(array, np.ma.MaskedArray):
        where = f" at {path}" if path else ""
        msg = (
            f"cannot store a numpy.ma.MaskedArray{where}: its mask would be lost and its masked elements "
            "read back as valid data; store arr.filled(fill_value), or the data and the mask as two arrays, "
            "e.g. {'data': arr.data, 'mask': np.ma.getmaskarray(arr)}"
        )
        raise UnsupportedTypeError(msg)


def _is_released(view: memoryview) -> bool:
    try:
        view.nbytes  # noqa: B018 - raises ValueError once released
    except ValueError:
        return True
    return False


def _type_name(value: object) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def _is_pose(value: object) -> bool:
    t = type(value)
    return t.__name__ == "Pose" and t.__module__.split(".")[0] == "sapien"


def _check_int(value: int, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        where = f" at {path}" if path else ""
        msg = f"int {value}{where} does not fit in 64 bits (range {INT64_MIN} to {INT64_MAX})"
        raise IntegerOverflowError(msg)
    return value


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
        msg = f"int of {value.bit_length()} bits{where} is too large for a {kind.__name__} (at most about 2**1024)"
        raise IntegerOverflowError(msg) from None
    if converted != value and converted == converted:  # noqa: PLR0124 - NaN reads back as NaN: fine
        where = f" at {path}" if path else ""
        msg = (
            f"stored kind is {kind.__name__}, offered {describe(offered)}{where}, which a {kind.__name__} cannot "
            f"hold exactly: it would read back as {converted!r} (store it in a leaf of its own kind)"
        )
        raise TypeMismatchError(msg)
    return converted


def _is_number(value: object) -> bool:
    """A number a float or complex leaf may take: no bool, and no timedelta64 (a numpy "integer")."""
    return not isinstance(value, (bool, np.bool_, np.timedelta64))


def _set_order(values: set[Any] | frozenset[Any]) -> list[Any]:
    """A deterministic order for set elements: by kind, then longest str/bytes first.

    Elements of one kind are interchangeable, so pairing offered elements with stored slots in
    this order always fits when it can (largest string into largest capacity).
    """

    def key(v: object) -> tuple[str, int]:
        size = len(utf8(v)) if isinstance(v, str) else len(v) if isinstance(v, (bytes, bytearray)) else 0
        return (type(v).__name__, -size)

    return sorted(values, key=key)


def _dtype_to_json(dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "T":  # numpy 2's StringDType (it also reports hasobject)
        msg = (
            f"cannot store an array or scalar of dtype {dtype}: its strings live outside the array, in "
            "this process's memory; use a fixed-width dtype, e.g. arr.astype('U32') (32 characters each)"
        )
        raise UnsupportedTypeError(msg)
    if dtype.hasobject:
        msg = (
            f"cannot store an array or scalar of dtype {dtype} (Python objects): "
            "only fixed-size dtypes live in shared memory"
        )
        raise UnsupportedTypeError(msg)
    if dtype.fields is None and dtype.subdtype is None:
        if dtype.itemsize == 0 and dtype.kind in "SUV":
            msg = f"cannot store dtype {dtype!s}: a flexible dtype needs a size (e.g. 'S8', 'U8')"
            raise UnsupportedTypeError(msg)
        return dtype.str
    descr = json.loads(json.dumps(dtype.descr))  # as a schema read back has it: lists, not tuples
    if _dtype_from_json(descr) != dtype:
        msg = f"cannot store structured dtype {dtype}: it does not round-trip through its description"
        raise UnsupportedTypeError(msg)
    return descr


def _dtype_from_json(raw: Any) -> np.dtype[Any]:
    if isinstance(raw, str):
        return np.dtype(raw)

    def fields(items: list[Any]) -> list[tuple[Any, ...]]:
        out = []
        for item in items:
            name, fmt, *rest = item
            out.append((name, fields(fmt) if isinstance(fmt, list) else fmt, *(tuple(r) for r in rest)))
        return out

    return np.dtype(fields(raw))


def _key_to_json(key: object, depth: int = 0) -> Any:
    if key is None:
        return ["none"]
    if isinstance(key, bool):
        return ["bool", key]
    if isinstance(key, int):
        return ["int", key]
    if isinstance(key, float):
        if math.isnan(key):
            msg = (
                "cannot store a dict key that is NaN: NaN equals nothing, not even another NaN, so neither "
                "an assign nor a reader could ever find that key again; use a str key such as 'nan'"
            )
            raise UnsupportedTypeError(msg)
        return ["float", key.hex()]
    if isinstance(key, str):
        try:
            key.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: JSON would merge a pair of them into one character
            return ["str8", utf8(key).hex()]
        return ["str", key]
    if isinstance(key, bytes):
        return ["bytes", key.hex()]
    if isinstance(key, tuple):
        if depth >= MAX_DEPTH:
            msg = f"cannot store a dict key of tuples nested more than {MAX_DEPTH} levels deep"
            raise UnsupportedTypeError(msg)
        return ["tuple", [_key_to_json(k, depth + 1) for k in key]]
    msg = (
        f"cannot store a dict key of type {_type_name(key)}; "
        "keys may be str, int, float, bool, bytes, None or tuples of these"
    )
    if isinstance(key, np.generic):  # np.unique's values, say: the Python value is one call away
        msg += f" (key.item() gives {type(key.item()).__name__})"
    raise UnsupportedTypeError(msg)


def _key_from_json(raw: Any, depth: int = 0) -> Any:
    kind = raw[0]
    if kind == "none":
        return None
    if kind in ("bool", "int", "str"):
        return raw[1]
    if kind == "float":
        return float.fromhex(raw[1])
    if kind == "bytes":
        return bytes.fromhex(raw[1])
    if kind == "str8":
        return bytes.fromhex(raw[1]).decode("utf-8", "surrogatepass")
    if kind == "tuple":
        if depth >= MAX_DEPTH:  # _key_to_json never makes one: corrupt
            msg = f"dict key of tuples nested more than {MAX_DEPTH} levels deep"
            raise ValueError(msg)
        return tuple(_key_from_json(k, depth + 1) for k in raw[1])
    msg = f"unknown dict key kind {kind!r}"
    raise ValueError(msg)


def dumps(schema: Schema) -> bytes:
    return json.dumps(schema, separators=(",", ":")).encode("utf-8")


def loads(raw: bytes, name: str) -> Schema:
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = f"segment {name!r} has a corrupt schema ({exc})"
        raise LayoutError(msg) from exc
    if not isinstance(schema, list) or not schema:
        msg = f"segment {name!r} has a corrupt schema (not a JSON array)"
        raise LayoutError(msg)
    return schema


# --------------------------------------------------------------------------------------------
# Nodes: one per schema element, with its payload offset
# --------------------------------------------------------------------------------------------
def describe(value: object) -> str:
    """A short human description of a value's kind, for error messages."""
    if isinstance(value, np.ndarray):
        return f"ndarray[{value.dtype}, {tuple(value.shape)}]"
    if isinstance(value, np.str_):
        return f"numpy.str_ of {len(utf8(value))} bytes"
    if isinstance(value, np.bytes_):
        return f"numpy.bytes_ of {len(value)} bytes"
    if isinstance(value, np.generic):
        return f"numpy scalar {np.asarray(value).dtype}"
    if isinstance(value, str):
        return f"str of {len(utf8(value))} bytes"
    if isinstance(value, (bytes, bytearray)):
        return f"{type(value).__name__} of {len(value)} bytes"
    if isinstance(value, memoryview) and not _is_released(value):
        return f"memoryview of {value.nbytes} bytes"
    if isinstance(value, (tuple, list, set, frozenset)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"dict with keys {list(value)[:8]!r}"
    return _type_name(value)


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
        its root alive, so a root's reference count tells whether anything still points into ``buf``.
        """
        return self.read(buf, base)

    def describe(self) -> str:
        raise NotImplementedError

    def mismatch(self, value: object, path: str) -> TypeMismatchError:
        where = f" at {path}" if path else ""
        return TypeMismatchError(f"stored kind is {self.describe()}, offered {describe(value)}{where}")

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
            return _check_int(int(value), path)
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
        if not _is_pose(value):
            raise self.mismatch(value, path)
        out.append((self, (*np.asarray(value.p, np.float32).tolist(), *np.asarray(value.q, np.float32).tolist())))

    def write(self, buf: memoryview, base: int, prepared: Any) -> None:
        _POSE.pack_into(buf, base + self.offset, *prepared)

    def read(self, buf: memoryview, base: int) -> Any:
        values = _POSE.unpack_from(buf, base + self.offset)
        try:
            import sapien
        except ImportError as exc:
            msg = "this object holds a sapien.Pose; install the extra: pip install 'shared_object[sapien]'"
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
            data = _np_str_utf8(value, path) if isinstance(value, np.str_) else utf8(value)
        elif isinstance(value, (bytes, bytearray)):
            data = value
        elif isinstance(value, memoryview):
            data = _memoryview_bytes(value, self, path)
        else:
            raise self.mismatch(value, path)
        if len(data) > self.capacity:
            where = f" at {path}" if path else ""
            msg = (
                f"{self.type_name} of {len(data)} bytes{where} exceeds the capacity of {self.capacity} bytes fixed "
                "at creation (create with a larger init_size, or use SharedDynamicObject)"
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
        if not isinstance(value, np.ndarray) or value.dtype != self.dtype or value.shape != self.shape:
            raise self.mismatch(value, path)
        _check_keeps_its_meaning(value, path)
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
        return root.reshape(self.shape)  # numpy makes every later view's base this root, not the reshape

    def describe(self) -> str:
        return f"ndarray[{self.dtype}, {self.shape}]"


class SequenceNode(Node):
    """tuple / list / set / frozenset: a fixed number of children."""

    align = 1

    def __init__(self, kind: str, children: list[Node]) -> None:
        self.kind = kind
        self.children = children
        self.pytype: Callable[[Any], Any] = {"tuple": tuple, "list": list, "set": set, "frozenset": frozenset}[kind]

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
        items = _set_order(value) if isinstance(value, (set, frozenset)) else value
        for i, (child, item) in enumerate(zip(self.children, items, strict=True)):
            child.prepare(item, f"{path}[{i}]", out)

    def read(self, buf: memoryview, base: int) -> Any:
        value = self.pytype([c.read(buf, base) for c in self.children])
        if len(value) != len(self.children):  # a set whose stored elements are not distinct
            msg = f"the payload of a {self.describe()} holds equal elements (it reads as {len(value)}): it is corrupt"
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
    "none": NoneNode, "bool": BoolNode, "int": IntNode, "float": FloatNode, "complex": ComplexNode, "pose": PoseNode,
}


def build(schema: Schema) -> Node:
    """The node tree for a schema, with payload offsets assigned. Raises ValueError if malformed."""
    node = _build(schema, 0)
    node.place(0)
    node.schema = schema
    return node


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
            k1 == k2 and fits_as_is(s1, s2) for (k1, s1), (k2, s2) in zip(offered[1], stored[1], strict=True)
        )
    return offered == stored


_KINDS: Final = frozenset(
    [*_SCALARS, *BufferNode.KINDS, "npscalar", "ndarray", "tuple", "list", "set", "frozenset", "dict"]
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
        return NpScalarNode(_dtype_from_json(schema[1]))
    if kind == "ndarray" and len(schema) == 3 and isinstance(schema[2], list):
        return ArrayNode(_dtype_from_json(schema[1]), tuple(schema[2]))
    if kind in ("tuple", "list", "set", "frozenset") and len(schema) == 2 and isinstance(schema[1], list):
        return SequenceNode(kind, [_build(s, depth + 1) for s in schema[1]])
    if kind == "dict" and len(schema) == 2 and isinstance(schema[1], list):
        pairs = schema[1]
        return DictNode([_key_from_json(k) for k, _ in pairs], [_build(s, depth + 1) for _, s in pairs])
    msg = f"malformed schema element {schema!r}"
    raise ValueError(msg)


class _UnknownKindError(ValueError):
    """A schema kind this version does not know: most likely a newer version wrote it."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


def build_checked(schema: Schema, name: str) -> Node:
    """``build`` for a schema read from a segment: any malformation is a LayoutError."""
    try:
        return build(schema)
    except _UnknownKindError as exc:
        msg = (
            f"segment {name!r} holds a value of kind {exc.kind!r}, which this version of shared_object cannot "
            "read: was it written by a newer version? Install the same version in every process and container"
        )
        raise LayoutError(msg) from exc
    except (ValueError, TypeError, KeyError, IndexError, RecursionError) as exc:
        msg = f"segment {name!r} has a corrupt schema ({exc})"
        raise LayoutError(msg) from exc


__all__ = ["INT64_MAX", "INT64_MIN", "MAX_DEPTH", "SUPPORTED", "ArrayNode", "Node", "Schema", "Writes", "build",
           "build_checked", "describe", "dumps", "fits_as_is", "loads", "schema_of"]
