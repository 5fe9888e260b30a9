"""Every supported type round-trips exactly; bad input is refused and never stored."""

from __future__ import annotations

import os
import re
from collections import OrderedDict, namedtuple
from decimal import Decimal
from typing import Any

import numpy as np
import pytest
from helpers import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from shared_object import (
    CapacityError,
    IntegerOverflowError,
    LayoutError,
    SharedDynamicObject,
    SharedObject,
    TypeMismatchError,
    UnsupportedTypeError,
    _codecs,
    _schema,
)

STRING_DTYPE = getattr(
    getattr(np, "dtypes", None), "StringDType", None
)  # numpy 2's variable-width strings
DTYPES = [
    np.bool_,
    np.int8,
    np.int16,
    np.int32,
    np.int64,
    np.uint8,
    np.uint16,
    np.uint32,
    np.uint64,
    np.float16,
    np.float32,
    np.float64,
    np.longdouble,
    np.complex64,
    np.complex128,
    np.clongdouble,
    "S5",
    "U3",
    "M8[ns]",
    "m8[s]",
    ">i4",
    [("x", "<f4"), ("y", "<i2")],
]

VALUES = [
    None,
    True,
    False,
    0,
    -1,
    2**63 - 1,
    -(2**63),
    1.5,
    float("inf"),
    float("nan"),
    -0.0,
    1 + 2j,
    "",
    "héllo wörld ✓",
    "lone surrogates \ud800 \udcff",
    b"",
    b"\x00\xff" * 10,
    bytearray(b"abc"),
    np.float32(1.25),
    np.int64(-3),
    np.bool_(True),
    np.uint8(255),
    np.complex128(1 - 1j),
    np.longdouble(1) / 3,
    np.datetime64("2026-11-25T08:45"),
    np.str_("lab\x00"),
    np.str_(""),
    np.bytes_(b"\x00"),
    np.bytes_(b"ab\x00"),
    np.zeros((480, 848, 3), np.uint8),
    np.arange(12.0).reshape(3, 4),
    np.array(5),
    np.zeros((0, 3)),
    (1, "a", None),
    [1.0, [2, [3, (4,)]]],
    {1, 2, "x"},
    frozenset({b"a", 3}),
    {"a": 1, 2: "b", (1, "k"): [np.ones(2)], None: {3.5: b"x"}, True: False, "\udc80": {"\ud83d"}},
    {
        "\ud800\udc00": 1,
        "\U00010000": 2,
    },  # two keys: a pair of lone surrogates is not the character it would make
    {
        "pos": np.zeros(3),
        "vel": np.ones(3),
        "img": np.zeros((4, 4, 3), np.uint8),
        "meta": {"id": 7},
    },
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: _schema.describe(v)[:40])
def test_round_trip(shm_name: str, value: Any) -> None:
    with SharedObject.create(shm_name, value) as obj, SharedObject.attach(shm_name) as other:
        assert same(other.fetch(), value)
        obj.assign(value)
        assert same(other.fetch(), value)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_every_fixed_size_dtype(shm_name: str, dtype: Any) -> None:
    array = np.zeros((3, 2), dtype)
    array.reshape(-1).view(np.uint8)[:] = np.arange(array.nbytes, dtype=np.uint8) % 7
    with SharedObject.create(shm_name, array) as obj:
        assert same(obj.fetch(), array)
        obj.assign(array[::-1].copy())
        assert same(obj.fetch(), array[::-1].copy())
    if (
        array.dtype.kind == "U"
    ):  # a numpy.str_ must be text (see test_numpy_strings_keep_their_nuls_and_type)
        array.reshape(-1).view(np.uint32)[:] %= 0x110000
    scalar = array.reshape(-1)[1]  # numpy scalars (always native byte order) round-trip too
    with SharedObject.create(shm_name + "s", scalar) as obj:
        assert same(obj.fetch(), scalar)
        obj.unlink()


def test_non_contiguous_arrays_are_stored_contiguous(shm_name: str) -> None:
    base = np.arange(60.0).reshape(6, 10)
    strided = base[::2, ::3]
    with SharedObject.create(shm_name, strided) as obj:
        out = obj.fetch()
        assert out.flags.c_contiguous and same(out, np.ascontiguousarray(strided))
        obj.assign(base[1::2, ::3])
        assert same(obj.fetch(), np.ascontiguousarray(base[1::2, ::3]))


def test_subclasses_are_stored_as_their_base(shm_name: str) -> None:
    point = namedtuple("point", "x y")(1, 2)
    with SharedObject.create(shm_name, [point, OrderedDict(a=1)]) as obj:
        assert obj.fetch() == [(1, 2), {"a": 1}]


def test_a_masked_array_is_refused_rather_than_stored_without_its_mask(shm_name: str) -> None:
    # Stored as its base type, a depth image's invalid pixels would read back as valid depths.
    depth = np.ma.masked_array([1.5, 0.0, 2.5], mask=[False, True, False])
    with pytest.raises(UnsupportedTypeError, match=r"MaskedArray.*mask would be lost.*filled"):
        SharedObject.create(shm_name, depth)
    with pytest.raises(UnsupportedTypeError, match="MaskedArray"):
        SharedObject.create(shm_name, {"depth": depth})
    with pytest.raises(UnsupportedTypeError, match="MaskedArray"):
        SharedObject.create(shm_name, np.ma.masked)  # the masked constant is one too
    stored = {"depth": depth.filled(np.nan), "t": 1}
    with SharedObject.create(shm_name, stored) as obj:
        with pytest.raises(UnsupportedTypeError, match=r"MaskedArray at \['depth'\]"):
            obj.assign({"depth": depth, "t": 2})
        assert same(obj.fetch(), stored)  # unchanged, still readable
        obj.unlink()
    with SharedDynamicObject(shm_name, data=stored) as obj:  # which takes any type, but not this
        for offered in (depth, {"depth": depth, "t": 2}):
            with pytest.raises(UnsupportedTypeError, match="MaskedArray"):
                obj.assign(offered)
            assert same(obj.fetch(), stored)
        obj.unlink()


def test_sapien_pose_round_trip(shm_name: str) -> None:
    sapien = pytest.importorskip("sapien")
    pose = sapien.Pose([1.0, 2.0, 3.5], [0.5, 0.5, 0.5, 0.5])
    with SharedObject.create(shm_name, {"pose": pose, "t": 1}) as obj:
        assert same(obj.fetch()["pose"], pose)
        obj.assign({"pose": sapien.Pose([0, 0, 1], [1, 0, 0, 0]), "t": 2})
        got = obj.fetch()["pose"]
        assert got.p.tolist() == [0, 0, 1] and got.q.tolist() == [1, 0, 0, 0]
        with pytest.raises(TypeMismatchError, match="sapien.Pose"):
            obj.assign({"pose": (0, 0, 1), "t": 3})


def test_strings_reassign_up_to_capacity(shm_name: str) -> None:
    with SharedObject.create(shm_name, "short", init_size=16) as obj:
        for text in ("", "a" * 16, "ünï", "x"):
            obj.assign(text)
            assert obj.fetch() == text
        with pytest.raises(CapacityError, match="17 bytes exceeds the capacity of 16"):
            obj.assign("a" * 17)
        assert obj.fetch() == "x"


def test_numpy_strings_keep_their_nuls_and_type_and_take_any_length(shm_name: str) -> None:
    # Stored as "U"/"S" dtype values, np.bytes_(b"\x00") read back as b"" and "lab\x00" as "lab",
    # and a label of another length did not fit the one stored ("numpy scalar <U3" vs "<U5").
    labels = {"label": np.str_("cat"), "raw": np.bytes_(b"\x01\x00")}
    with (
        SharedObject.create(shm_name, labels, init_size=8) as obj,
        SharedObject.attach(shm_name) as other,
    ):
        assert same(other.fetch(), labels)
        for label, raw in (
            ("horse", b""),
            ("", b"\x00"),
            ("k\x00", b"ab\x00\x00"),
            ("\udc80ü", b"\xff" * 8),
        ):
            obj.assign({"label": np.str_(label), "raw": np.bytes_(raw)})
            got = other.fetch()
            assert type(got["label"]) is np.str_ and got["label"] == label
            assert type(got["raw"]) is np.bytes_ and got["raw"] == raw
        with pytest.raises(
            TypeMismatchError,
            match=r"stored kind is numpy.str_ \(capacity 8 bytes\), offered bytes of 3",
        ):
            obj.assign({"label": b"cat", "raw": np.bytes_(b"")})
        with pytest.raises(
            CapacityError, match=r"numpy.bytes_ of 9 bytes at \['raw'\] exceeds the capacity of 8"
        ):
            obj.assign({"label": np.str_(""), "raw": np.bytes_(b"x" * 9)})
        assert same(other.fetch(), {"label": np.str_("\udc80ü"), "raw": np.bytes_(b"\xff" * 8)})
    with SharedObject.create(
        shm_name + "b", b"plain"
    ) as obj:  # a bytes leaf takes np.bytes_ as its base type
        obj.assign(np.bytes_(b"np\x00"))
        assert type(obj.fetch()) is bytes and obj.fetch() == b"np\x00"
        obj.unlink()


def test_a_numpy_str_that_is_not_text_is_refused(shm_name: str) -> None:
    # numpy makes a str_ of any 4-byte units: past U+10FFFF it encodes to bytes no reader decodes.
    units = np.zeros(1, "U2")
    units.view(np.uint32)[:] = [0x110000, 0x41]
    with pytest.raises(
        UnsupportedTypeError, match=r"numpy.str_ holding code points past U\+10FFFF"
    ):
        SharedObject.create(shm_name, units[0])
    with SharedObject.create(shm_name, [np.str_("ok")]) as obj:
        with pytest.raises(UnsupportedTypeError, match=r"numpy.str_ at \[0\] holding code points"):
            obj.assign([units[0]])
        assert same(obj.fetch(), [np.str_("ok")])
        obj.unlink()
    with SharedObject.create(
        shm_name + "a", units
    ) as obj:  # the array itself holds units, not str: stored as is
        assert same(obj.fetch(), units)
        obj.unlink()


def test_a_leaf_of_a_kind_takes_any_value_of_that_kind_and_reads_back_as_itself(
    shm_name: str,
) -> None:
    # A camera driver's buffer, a socket's recv_into: a memoryview used to be refused, and
    # bytes(view) cost a copy the user did not ask for. bytes and bytearray took only themselves.
    packet = bytearray(b"\x01\x02\x03\x04")
    stored = {
        "raw": b"",
        "buf": bytearray(8),
        "np": np.bytes_(b"n"),
        "text": "",
        "label": np.str_(""),
    }
    with SharedObject.create(shm_name, stored, init_size=8) as obj:
        obj.assign(
            {
                "raw": memoryview(packet),
                "buf": b"\x00b",
                "np": bytearray(b"\x00"),
                "text": np.str_("t\x00"),
                "label": "cat",
            }
        )
        assert same(
            obj.fetch(),
            {
                "raw": b"\x01\x02\x03\x04",
                "buf": bytearray(b"\x00b"),
                "np": np.bytes_(b"\x00"),
                "text": "t\x00",
                "label": np.str_("cat"),
            },
        )
        words = np.arange(2, dtype="<u4")  # any contiguous memoryview, as its bytes
        obj.assign(
            {
                "raw": memoryview(words),
                "buf": memoryview(words.reshape(1, 2)),
                "np": b"",
                "text": "",
                "label": "",
            }
        )
        assert obj.fetch()["raw"] == words.tobytes() and obj.fetch()["buf"] == bytearray(
            words.tobytes()
        )
        with pytest.raises(
            CapacityError, match=r"bytes of 9 bytes at \['raw'\] exceeds the capacity of 8"
        ):
            obj.assign({**stored, "raw": memoryview(bytes(9))})
        assert obj.fetch()["raw"] == words.tobytes()
    with pytest.raises(
        UnsupportedTypeError, match=r"memoryview.*create the object with bytes\(view\)"
    ):
        SharedObject.create(shm_name + "m", memoryview(b"ab"))
    with SharedDynamicObject.create(
        shm_name + "d", b"ab"
    ) as obj:  # a dynamic object reads back what it was given
        with pytest.raises(UnsupportedTypeError, match="memoryview"):
            obj.assign(memoryview(b"cd"))
        obj.assign(bytearray(b"cd"))
        assert same(obj.fetch(), bytearray(b"cd"))
        obj.unlink()


def test_every_str_round_trips_lone_surrogates_included(shm_name: str) -> None:
    # os.fsdecode turns a file name that is not UTF-8 into a str with lone surrogates ("\udcff"):
    # such a str used to fail in UnicodeEncodeError, as assign's error message did when it described one.
    text = os.fsdecode(b"frame-\xff.png")
    with SharedObject.create(shm_name, text, init_size=16) as obj:
        with SharedObject.attach(shm_name) as other:
            assert other.fetch() == text
        for later in ("\ud800", "a\udfffb" * 2, "x"):
            obj.assign(later)
            assert obj.fetch() == later
        with pytest.raises(CapacityError, match="18 bytes exceeds the capacity of 16"):
            obj.assign("\ud800" * 6)  # 3 bytes each
        assert obj.fetch() == "x"


RELEASED_VIEW = memoryview(b"ab")
RELEASED_VIEW.release()

BAD_ASSIGNMENTS = [
    (1, "1", TypeMismatchError, "stored kind is int, offered str"),
    (1, True, TypeMismatchError, "stored kind is int, offered bool"),
    (1, 2**63, IntegerOverflowError, "does not fit in 64 bits"),
    (1.0, "x", TypeMismatchError, "stored kind is float"),
    (True, 1, TypeMismatchError, "stored kind is bool, offered int"),
    (
        np.zeros(3),
        np.zeros(4),
        TypeMismatchError,
        r"ndarray\[float64, \(3,\)\], offered ndarray\[float64, \(4,\)\]",
    ),
    (np.zeros(3), np.zeros(3, np.float32), TypeMismatchError, "offered ndarray.float32"),
    ((1, 2), (1, 2, 3), TypeMismatchError, "tuple of 2, offered tuple of 3"),
    ((1, 2), [1, 2], TypeMismatchError, "offered list of 2"),
    ({"a": 1}, {"b": 1}, TypeMismatchError, "dict with keys"),
    ({"a": [1, "x"]}, {"a": [1, 2]}, TypeMismatchError, r"at \['a'\]\[1\]"),
    (b"ab", "ab", TypeMismatchError, "stored kind is bytes"),
    (bytearray(b"ab"), "ab", TypeMismatchError, "stored kind is bytearray"),
    (
        b"ab",
        np.frombuffer(b"ab", np.uint8),
        TypeMismatchError,
        r"stored kind is bytes .*, offered ndarray",
    ),
    (
        b"ab",
        memoryview(b"abcd")[::2],
        TypeMismatchError,
        "offered a non-contiguous memoryview: pass bytes",
    ),
    (b"ab", RELEASED_VIEW, TypeMismatchError, "offered a released memoryview"),
    ("ab", b"ab", TypeMismatchError, "stored kind is str .*, offered bytes of 2"),
    (np.float32(1), np.float64(1), TypeMismatchError, "numpy scalar float32"),
    (None, 1, TypeMismatchError, "stored kind is None"),
    (1, object(), TypeMismatchError, "offered object"),
    (1, "\udc80", TypeMismatchError, "stored kind is int, offered str of 3 bytes"),
]


@pytest.mark.parametrize(("stored", "offered", "error", "message"), BAD_ASSIGNMENTS)
def test_bad_assignment_names_both_kinds_and_keeps_value(
    shm_name: str, stored: Any, offered: Any, error: type[Exception], message: str
) -> None:
    with SharedObject.create(shm_name, stored) as obj:
        with pytest.raises(error, match=message):
            obj.assign(offered)
        assert same(obj.fetch(), stored)
        assert not obj.modified


def test_compound_failure_deep_inside_changes_nothing(shm_name: str) -> None:
    value = {"a": np.zeros(3), "b": [1, 2, "text"]}
    with SharedObject.create(shm_name, value) as obj:
        with pytest.raises(TypeMismatchError):
            obj.assign({"a": np.ones(3), "b": [5, 6, 7]})  # "a" is fine, "b"[2] is not
        assert same(obj.fetch(), value)


def test_lossless_numeric_conversions(shm_name: str) -> None:
    with SharedObject.create(shm_name, (1, 1.0, 1j)) as obj:
        obj.assign((np.int32(5), 3, np.float32(0.5)))
        assert same(obj.fetch(), (5, 3.0, 0.5 + 0j))


@pytest.mark.parametrize(
    ("offered", "reads_as"),
    [
        (2**53 + 1, "9007199254740992.0"),  # a nanosecond timestamp is past 2**53 too
        (
            np.int64(2**62 + 1),
            "4.611686018427388e",
        ),  # numpy's own == compares through float64: True
        (np.uint64(2**64 - 1), "1.8446744073709552e"),
        *([(np.longdouble(1) / 3, "0.333")] if np.finfo(np.longdouble).nmant > 52 else []),
    ],
    ids=repr,
)
def test_a_number_a_float_leaf_cannot_hold_exactly_is_refused(
    shm_name: str, offered: Any, reads_as: str
) -> None:
    # "Lossless conversions" took these and stored them rounded, without a word.
    with SharedObject.create(shm_name, {"t": 0.5, "z": 0j}) as obj:
        for value in ({"t": offered, "z": 0j}, {"t": 0.5, "z": offered}):
            with pytest.raises(
                TypeMismatchError,
                match=rf"offered .*at \['[tz]'\], which a (float|complex) cannot hold exactly: it would read back as \(?{reads_as}",
            ):
                obj.assign(value)
        assert same(obj.fetch(), {"t": 0.5, "z": 0j})
        obj.assign({"t": 2**53, "z": np.longdouble(1.5)})  # these a double holds exactly
        obj.assign({"t": float("nan"), "z": complex("nan+1j")})  # and NaN reads back as NaN
        t, z = obj.fetch().values()
        assert t != t and z.imag == 1.0
        obj.unlink()


@pytest.mark.parametrize("stored", [1, 1.0, 1j])
def test_a_timedelta64_is_no_number_for_a_scalar_leaf(shm_name: str, stored: Any) -> None:
    # numpy makes timedelta64 an "integer": the int/float leaves let it through to a bare TypeError.
    with SharedObject.create(shm_name, stored) as obj:
        with pytest.raises(TypeMismatchError, match=r"offered numpy scalar timedelta64\[s\]"):
            obj.assign(np.timedelta64(1, "s"))
        assert same(obj.fetch(), stored)
        obj.unlink()


def test_an_int_too_big_for_a_float_leaf_is_an_overflow_error_of_ours(shm_name: str) -> None:
    # float(10**400) raised a bare OverflowError ("int too large to convert to float")
    with SharedObject.create(shm_name, {"gain": 1.0, "z": 1j}) as obj:
        for offered, where in (
            ({"gain": 10**400, "z": 1j}, "'gain'\\] is too large for a float"),
            ({"gain": 2.0, "z": -(2**5000)}, "'z'\\] is too large for a complex"),
        ):
            with pytest.raises(IntegerOverflowError, match=rf"int of \d+ bits at \[{where}"):
                obj.assign(offered)
            assert obj.fetch() == {"gain": 1.0, "z": 1j}
        obj.unlink()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (object(), "type object"),
        (np.array([1, None], dtype=object), "Python objects"),
        ({"a": {1, 2}.__iter__()}, "set_iterator"),
        ({frozenset(): 1}, "dict key of type frozenset"),
        ({np.int64(3): 1}, r"dict key of type numpy.int64; .*\(key.item\(\) gives int\)"),
        (
            {float("nan"): 1, 0.5: 2},
            "dict key that is NaN",
        ),  # was: "stored kind is dict with keys [nan, 0.5], offered [nan, 0.5]"
        ({(1, np.float64("nan")): 1}, "dict key that is NaN"),
        (2**70, "does not fit in 64 bits"),
        (np.zeros(2, [("a", "<f4"), ("b", object)]), "Python objects"),
        *(
            [
                (
                    np.array(["a", "bc"], STRING_DTYPE()),
                    r"strings live outside the array.*astype\('U32'\)",
                )
            ]
            if STRING_DTYPE
            else []
        ),
    ],
)
def test_unsupported_values_are_refused_at_creation(
    shm_name: str, value: Any, message: str
) -> None:
    with pytest.raises((UnsupportedTypeError, IntegerOverflowError), match=message):
        SharedObject.create(shm_name, value)


def test_nesting_is_limited_with_a_clear_error_not_a_recursion_error(shm_name: str) -> None:
    deepest: Any = 1
    for _ in range(_schema.MAX_DEPTH):
        deepest = [deepest]
    with SharedObject.create(shm_name, deepest) as obj, SharedObject.attach(shm_name) as reader:
        assert reader.fetch() == deepest
        obj.unlink()
    with pytest.raises(UnsupportedTypeError, match="nested more than 100 levels deep"):
        _schema.schema_of([deepest])
    holds_itself: list[Any] = []
    holds_itself.append(holds_itself)  # used to end in RecursionError
    with pytest.raises(UnsupportedTypeError, match="does a container hold itself"):
        SharedObject.create(shm_name, {"a": holds_itself})
    key: Any = ()
    for _ in range(_schema.MAX_DEPTH + 1):
        key = (key,)
    with pytest.raises(UnsupportedTypeError, match="dict key of tuples nested more than 100"):
        _schema.schema_of({key: 1})


def test_a_kind_this_version_does_not_know_is_called_newer_not_corrupt(shm_name: str) -> None:
    # A sensor image built from a newer release than the policy's: say so, not "corrupt".
    from shared_object import _layout

    with SharedObject.create(shm_name, "ab") as obj:
        for index in (0, 1):
            offset, _ = _layout.SLOT_ENTRY.unpack_from(
                obj._buf, _layout.SLOT_TABLE_OFFSET + 16 * index
            )
            start = offset + _layout.SLOT_HEADER_SIZE
            assert bytes(obj._buf[start : start + 5]) == b'["str'
            obj._buf[start : start + 5] = (
                b'["stz'  # a kind of the same length: every offset stays right
            )
        with pytest.raises(
            LayoutError,
            match=r"kind 'stz', which this version of shared_object cannot read: .*newer",
        ):
            SharedObject.attach(shm_name)
        obj.unlink()


def test_a_schema_nested_deeper_than_any_value_can_be_is_corrupt() -> None:
    schema: Any = ["int"]
    for _ in range(_schema.MAX_DEPTH + 1):
        schema = ["list", [schema]]
    with pytest.raises(LayoutError, match="corrupt schema"):
        _codecs.build_checked(schema, "x")
    key: Any = ["int", 1]
    for _ in range(_schema.MAX_DEPTH + 1):
        key = ["tuple", [key]]
    with pytest.raises(LayoutError, match="dict key of tuples nested more than 100 levels deep"):
        _codecs.build_checked(["dict", [[key, ["int"]]]], "x")


@pytest.mark.parametrize(
    ("value", "where", "message"),
    [
        (
            {"q": np.zeros(7), "state": {"mode": "idle", "gain": Decimal("1.5")}},
            "['state']['gain']",
            "decimal.Decimal",
        ),
        ([1, (2, 3, 2**70)], "[1][2]", "does not fit in 64 bits"),
        ({"depth": np.ma.masked_array([1.0])}, "['depth']", "MaskedArray"),
        (
            {"tags": {1, "a", object()}},
            "['tags']",
            "type object",
        ),  # a set's members have no index of their own
        ({"k": {frozenset(): 1}}, "['k']", "dict key of type frozenset"),
    ],
)
def test_an_unsupported_part_of_a_new_value_is_named_by_its_path(
    shm_name: str, value: Any, where: str, message: str
) -> None:
    # SharedObject's assign names the path of a bad leaf; creating an object, or assigning a new
    # kind of value to a SharedDynamicObject, used to say only what was wrong, not where.
    expected = rf"^at {re.escape(where)}: .*{message}"
    with pytest.raises((UnsupportedTypeError, IntegerOverflowError), match=expected):
        SharedObject.create(shm_name, value)
    with SharedDynamicObject(shm_name, data=1) as obj:
        with pytest.raises((UnsupportedTypeError, IntegerOverflowError), match=expected):
            obj.assign(value)
        assert obj.fetch() == 1
        obj.unlink()


def test_unsupported_type_error_lists_what_is_supported() -> None:
    with pytest.raises(UnsupportedTypeError, match="supported: None, bool, int"):
        _schema.schema_of(object())


# ---------------------------------------------------------------------------------------------
# Property-based round trips over every type and nested compounds
# ---------------------------------------------------------------------------------------------
def texts(max_size: int) -> st.SearchStrategy[str]:
    """Any str, lone surrogates included (hypothesis leaves them out unless asked)."""
    return st.text(
        st.one_of(st.characters(), st.integers(0xD800, 0xDFFF).map(chr)), max_size=max_size
    )


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.floats(allow_nan=False),
    st.complex_numbers(allow_nan=False),
    texts(20),
    st.binary(max_size=20),
    st.binary(max_size=20).map(bytearray),
    texts(20).map(np.str_),
    st.binary(max_size=20).map(np.bytes_),
    hnp.from_dtype(np.dtype(np.float32), allow_nan=False),
    hnp.from_dtype(np.dtype(np.int16)),
)
arrays = hnp.arrays(
    dtype=st.sampled_from(
        [
            np.uint8,
            np.int32,
            np.float64,
            np.complex64,
            np.bool_,
            np.dtype([("t", "<f8"), ("n", "<i2", (2,))]),
        ]
    ),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, max_side=5),
)
keys = st.one_of(texts(5), st.integers(-5, 5), st.none(), st.tuples(st.integers(0, 3), texts(2)))
values = st.recursive(
    st.one_of(scalars, arrays),
    lambda inner: st.one_of(
        st.tuples(inner, inner),
        st.lists(inner, max_size=4),
        st.dictionaries(keys, inner, max_size=4),
        st.frozensets(st.integers(-(2**63), 2**63 - 1), max_size=4),
        st.sets(texts(4), max_size=3),
    ),
    max_leaves=12,
)


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=values)
def test_property_round_trip(value: Any) -> None:
    from shared_object.testing import unique_name

    name = unique_name("so-hyp")
    obj = SharedObject.create(name, value)
    try:
        with SharedObject.attach(name) as other:
            assert same(other.fetch(), value)
        obj.assign(value)
        assert same(obj.fetch(), value)
    finally:
        obj.unlink()
        obj.close()


@settings(max_examples=100, deadline=None)
@given(value=values)
def test_property_schema_survives_json(value: Any) -> None:
    schema = _schema.schema_of(value, 10)
    assert _schema.loads(_schema.dumps(schema), "x") == schema
    node = _codecs.build(schema)
    node.prepare(value, "", [])  # a value always fits the schema made from it


@pytest.mark.parametrize("kind", [set, frozenset])
def test_a_set_whose_payload_holds_equal_elements_is_corrupt(kind: type) -> None:
    """Only corruption can store two equal elements; reading them must not shrink the set silently."""
    value = kind({1, 2})
    node = _codecs.build(_schema.schema_of(value))
    node.place(0)
    writes: _codecs.Writes = []
    node.prepare(value, "", writes)
    buf = memoryview(bytearray(node.size))
    for leaf, item in writes:
        leaf.write(buf, 0, item)
    assert node.read(buf, 0) == value
    buf[8:16] = buf[0:8]  # the second int becomes a copy of the first
    with pytest.raises(LayoutError, match=f"{kind.__name__} of 2 holds equal elements"):
        node.read(buf, 0)
