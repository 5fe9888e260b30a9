"""Schemas: the JSON description of a value's type identity, made from a value and read back.

A schema is JSON text stored in a slot (see ``_layout``); it fixes the type identity of the
value: kinds, dtypes, shapes, string capacities, compound structure and dict keys. It is data,
never code: nothing from shared memory is unpickled or evaluated. ``_codecs`` builds the nodes
that lay a schema's values out in a payload.

Schema grammar (JSON arrays)::

    ["none"] | ["bool"] | ["int"] | ["float"] | ["complex"] | ["pose"]
    ["str", capacity] | ["bytes", capacity] | ["bytearray", capacity]     capacity in bytes
    ["npstr", capacity] | ["npbytes", capacity]      numpy.str_ / numpy.bytes_, as str / bytes
    ["npscalar", dtype]       dtype: numpy ``dtype.str`` ("<f4"), or ``dtype.descr`` if structured
    ["ndarray", dtype, [d0, d1, ...]]
    ["tuple", [schema, ...]] | ["list", [...]] | ["set", [...]] | ["frozenset", [...]]
    ["dict", [[key, schema], ...]]
        key: ["str", s] | ["int", i] | ["float", float.hex()] | ["bytes", hex] | ["bool", b]
           | ["none"] | ["tuple", [key, ...]] | ["str8", hex of the UTF-8] (lone surrogates)

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
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from ._errors import IntegerOverflowError, LayoutError, UnsupportedTypeError

Schema = list[Any]


SUPPORTED: Final = (
    "None, bool, int (64-bit), float, complex, str, bytes, bytearray, numpy scalars, "
    "numpy.ndarray of any fixed-size dtype, sapien.Pose, and tuple/list/set/frozenset/dict of "
    "these"
)


MAX_DEPTH: Final = 100  # container levels; see "Rules" above


INT64_MIN: Final = -(2**63)


INT64_MAX: Final = 2**63 - 1


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
        if (
            len(where) > 80
        ):  # a container holding itself: "[0][0][0]..." a hundred times says no more than its start
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
    """schema_of's walk; ``depth`` counts the containers around ``value`` (for MAX_DEPTH)."""
    if value is None:
        return ["none"]
    if isinstance(value, np.ndarray):
        check_keeps_its_meaning(value, "")
        return ["ndarray", _dtype_to_json(value.dtype), list(value.shape)]
    if isinstance(value, np.str_):  # before np.generic and str: see "Rules" above
        return ["npstr", max(init_size, len(np_str_utf8(value, "")))]
    if isinstance(value, np.bytes_):
        return ["npbytes", max(init_size, len(value))]
    if isinstance(value, np.generic):
        return ["npscalar", _dtype_to_json(np.asarray(value).dtype)]
    if isinstance(value, bool):
        return ["bool"]
    if isinstance(value, int):
        check_int(value, "")
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
    if is_pose(value):
        return ["pose"]
    if isinstance(value, (tuple, list, set, frozenset, dict)) and depth >= MAX_DEPTH:
        msg = (
            f"cannot store containers nested more than {MAX_DEPTH} levels deep (does a container "
            f"hold itself?); the innermost here is a {type_name(value)}"
        )
        raise UnsupportedTypeError(msg)
    depth += 1
    if isinstance(value, tuple):
        return ["tuple", [_schema_of(v, init_size, depth) for v in value]]
    if isinstance(value, list):
        return ["list", [_schema_of(v, init_size, depth) for v in value]]
    if isinstance(value, (set, frozenset)):
        kind = "frozenset" if isinstance(value, frozenset) else "set"
        return [kind, [_schema_of(v, init_size, depth) for v in set_order(value)]]
    if isinstance(value, dict):
        return [
            "dict",
            [[_key_to_json(k), _schema_of(v, init_size, depth)] for k, v in value.items()],
        ]
    msg = (
        f"cannot store a value of type {type_name(value)} in shared memory; supported: {SUPPORTED}"
    )
    if isinstance(value, memoryview):
        msg += (
            " (a memoryview has no type of its own to read back as: create the object with "
            "bytes(view); a SharedObject's bytes or bytearray leaf then takes a memoryview as it "
            "is, without that copy)"
        )
    raise UnsupportedTypeError(msg)


def np_str_utf8(value: np.str_, path: str) -> bytes:
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
            f"cannot store a numpy.str_{where} holding code points past U+10FFFF (made from raw "
            "bytes?): it is not text; store its array's bytes, e.g. np.asarray(s).view(np.uint32)"
        )
        raise UnsupportedTypeError(msg) from None
    return data


def check_keeps_its_meaning(array: npt.NDArray[Any], path: str) -> None:
    """Refuse an ndarray subclass whose extra state is part of its value (see "Rules" above)."""
    if type(array) is not np.ndarray and isinstance(array, np.ma.MaskedArray):
        where = f" at {path}" if path else ""
        msg = (
            f"cannot store a numpy.ma.MaskedArray{where}: its mask would be lost and its masked "
            "elements "
            "read back as valid data; store arr.filled(fill_value), or the data and the mask as "
            "two arrays, "
            "e.g. {'data': arr.data, 'mask': np.ma.getmaskarray(arr)}"
        )
        raise UnsupportedTypeError(msg)


def is_released(view: memoryview) -> bool:
    try:
        view.nbytes  # noqa: B018 - raises ValueError once released
    except ValueError:
        return True
    return False


def type_name(value: object) -> str:
    t = type(value)
    return t.__name__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"


def is_pose(value: object) -> bool:
    t = type(value)
    return t.__name__ == "Pose" and t.__module__.split(".")[0] == "sapien"


def check_int(value: int, path: str) -> int:
    if not INT64_MIN <= value <= INT64_MAX:
        where = f" at {path}" if path else ""
        msg = f"int {value}{where} does not fit in 64 bits (range {INT64_MIN} to {INT64_MAX})"
        raise IntegerOverflowError(msg)
    return value


def set_order(values: set[Any] | frozenset[Any]) -> list[Any]:
    """A deterministic order for set elements: by kind, then longest str/bytes first.

    Elements of one kind are interchangeable, so pairing offered elements with stored slots in
    this order always fits when it can (largest string into largest capacity).
    """

    def key(v: object) -> tuple[str, int]:
        size = (
            len(utf8(v))
            if isinstance(v, str)
            else len(v)
            if isinstance(v, (bytes, bytearray))
            else 0
        )
        return (type(v).__name__, -size)

    return sorted(values, key=key)


def _dtype_to_json(dtype: np.dtype[Any]) -> Any:
    if dtype.kind == "T":  # numpy 2's StringDType (it also reports hasobject)
        msg = (
            f"cannot store an array or scalar of dtype {dtype}: its strings live outside the "
            "array, in this process's memory; use a fixed-width dtype, e.g. arr.astype('U32') (32 "
            "characters each)"
        )
        raise UnsupportedTypeError(msg)
    if dtype.hasobject:
        msg = (
            f"cannot store an array or scalar of dtype {dtype} (Python objects): only fixed-size "
            "dtypes live in shared memory"
        )
        raise UnsupportedTypeError(msg)
    if dtype.fields is None and dtype.subdtype is None:
        if dtype.itemsize == 0 and dtype.kind in "SUV":
            msg = f"cannot store dtype {dtype!s}: a flexible dtype needs a size (e.g. 'S8', 'U8')"
            raise UnsupportedTypeError(msg)
        return dtype.str
    descr = json.loads(json.dumps(dtype.descr))  # as a schema read back has it: lists, not tuples
    if dtype_from_json(descr) != dtype:
        msg = (
            f"cannot store structured dtype {dtype}: it does not round-trip through its description"
        )
        raise UnsupportedTypeError(msg)
    return descr


def dtype_from_json(raw: Any) -> np.dtype[Any]:
    if isinstance(raw, str):
        return np.dtype(raw)

    def fields(items: list[Any]) -> list[tuple[Any, ...]]:
        out = []
        for item in items:
            name, fmt, *rest = item
            out.append(
                (name, fields(fmt) if isinstance(fmt, list) else fmt, *(tuple(r) for r in rest))
            )
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
                "cannot store a dict key that is NaN: NaN equals nothing, not even another NaN, "
                "so neither an assign nor a reader could ever find that key again; use a str key "
                "such as 'nan'"
            )
            raise UnsupportedTypeError(msg)
        return ["float", key.hex()]
    if isinstance(key, str):
        try:
            key.encode("utf-8")
        except (
            UnicodeEncodeError
        ):  # lone surrogates: JSON would merge a pair of them into one character
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
        f"cannot store a dict key of type {type_name(key)}; keys may be str, int, float, bool, "
        "bytes, None or tuples of these"
    )
    if isinstance(key, np.generic):  # np.unique's values, say: the Python value is one call away
        msg += f" (key.item() gives {type(key.item()).__name__})"
    raise UnsupportedTypeError(msg)


def key_from_json(raw: Any, depth: int = 0) -> Any:
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
        return tuple(key_from_json(k, depth + 1) for k in raw[1])
    msg = f"unknown dict key kind {kind!r}"
    raise ValueError(msg)


def dumps(schema: Schema) -> bytes:
    return json.dumps(schema, separators=(",", ":")).encode("utf-8")


def loads(raw: bytes, source: str) -> Schema:
    """The schema in ``raw``; LayoutError naming ``source`` ("segment 'x'", say) if malformed."""
    try:
        schema = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        msg = f"{source} has a corrupt schema ({exc})"
        raise LayoutError(msg) from exc
    if not isinstance(schema, list) or not schema:
        msg = f"{source} has a corrupt schema (not a JSON array)"
        raise LayoutError(msg)
    return schema


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
    if isinstance(value, memoryview) and not is_released(value):
        return f"memoryview of {value.nbytes} bytes"
    if isinstance(value, (tuple, list, set, frozenset)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"dict with keys {list(value)[:8]!r}"
    return type_name(value)


__all__ = [
    "INT64_MAX",
    "INT64_MIN",
    "MAX_DEPTH",
    "SUPPORTED",
    "Schema",
    "check_int",
    "check_keeps_its_meaning",
    "describe",
    "dtype_from_json",
    "dumps",
    "is_pose",
    "is_released",
    "key_from_json",
    "loads",
    "np_str_utf8",
    "schema_of",
    "set_order",
    "type_name",
    "utf8",
]
