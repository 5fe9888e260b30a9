"""The bridge's message format: every type round-trips; malformed and hostile messages are refused."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest
from helpers import same
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_object import LayoutError, SharedObject
from shared_object._codecs import Decoder, encode
from shared_object.bridge import wire

VALUES: list[Any] = [
    None,
    True,
    -7,
    2.5,
    1 - 2j,
    "héllo",
    b"\x00\xff",
    bytearray(b"ab"),
    np.float32(1.5),
    np.int8(-3),
    np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
    np.zeros((2, 2), np.complex128),
    np.array([b"ab"], "S4"),
    np.zeros(3, np.dtype([("x", "f8"), ("n", "i4")])),
    (1, [2.0, {"k": np.ones(3)}], {3, 4}),
    {"frame": np.zeros((48, 64, 3), np.uint8), "pose": np.zeros(7), "seq": 12},
]
SOURCE = b"\x01" * 16


def message_for(value: Any, **overrides: Any) -> bytearray:
    schema_text, payload = encode(value, 10)
    fields: dict[str, Any] = {
        "sequence": 3,
        "mtime_ns": 123,
        "change": 9,
        "source": SOURCE,
        "dynamic": False,
        "single_slot": False,
        "schema_text": schema_text,
        "payload": payload,
    }
    fields.update(overrides)
    return wire.encode(**fields)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_type_round_trips_through_a_message(value: Any) -> None:
    message = wire.decode(message_for(value, dynamic=True))
    assert (message.sequence, message.mtime_ns, message.change, message.source) == (
        3,
        123,
        9,
        SOURCE,
    )
    assert message.dynamic and not message.single_slot
    assert same(Decoder().decode(message.schema_text, message.payload, "test"), value)
    assert (wire.HEADER_SIZE + len(message.schema_text) + 7) // 8 * 8 == len(
        message_for(value)
    ) - len(message.payload)


def test_the_header_is_as_the_module_docstring_says() -> None:
    raw = message_for(7)
    magic, version, reserved, flags, sequence, mtime, change, source, schema_len, reserved2 = (
        struct.unpack_from("<4sBBHQQQ16sII", raw, 0)
    )
    assert (magic, version, reserved, flags, reserved2) == (b"SOBM", 1, 0, 0, 0)
    assert (sequence, mtime, change, source) == (3, 123, 9, SOURCE)
    assert raw[56 : 56 + schema_len] == b'["int"]'
    assert len(raw) == (56 + schema_len + 7) // 8 * 8 + 8


@pytest.mark.parametrize(
    ("mutate", "error"),
    [
        (lambda m: m[:40], "shorter than the 56-byte header"),
        (lambda m: b"XXXX" + m[4:], "not a bridge message"),
        (lambda m: m[:4] + b"\x03" + m[5:], "version 3"),
        (lambda m: m[:4] + b"\x02" + m[5:], "version 2, history 0"),
        (lambda m: m[:5] + b"\x01" + m[6:], "corrupt header"),
        (lambda m: m[:6] + b"\x08\x00" + m[8:], "corrupt header"),
        (lambda m: m[:48] + struct.pack("<I", 10_000) + m[52:], "a schema of 10000 bytes"),
        (lambda m: m[:52] + b"\x01\x00\x00\x00" + m[56:], "corrupt header"),
    ],
    ids=[
        "short",
        "magic",
        "version",
        "history without one",
        "reserved",
        "flags",
        "schema length",
        "a history in version 1",
    ],  # fmt: skip
)
def test_a_malformed_header_is_a_message_error_naming_the_problem(mutate: Any, error: str) -> None:
    with pytest.raises(wire.MessageError, match=error):
        wire.decode(bytes(mutate(bytes(message_for(np.arange(3.0))))))


def test_an_object_with_a_history_goes_as_version_2_with_its_history() -> None:
    raw = message_for(np.arange(7.0), history=256)
    version, history = raw[4], struct.unpack_from("<I", raw, 52)[0]
    assert (version, history) == (2, 256)
    message = wire.decode(raw)
    assert message.history == 256 and not message.dynamic
    assert wire.decode(message_for(7)).history == 0
    for bad, error in (
        (message_for(7, history=256, dynamic=True), "history 256, flags 0x1"),
        (raw[:52] + struct.pack("<I", 1) + raw[56:], "history 1"),
        (raw[:52] + struct.pack("<I", 1 << 20) + raw[56:], f"history {1 << 20}"),
    ):
        with pytest.raises(wire.MessageError, match=error):
            wire.decode(bytes(bad))


def test_a_schema_or_payload_that_disagree_is_a_layout_error() -> None:
    decoder = Decoder()
    good = wire.decode(message_for(np.arange(3.0)))
    with pytest.raises(LayoutError, match="payload of 23 bytes"):
        decoder.decode(good.schema_text, good.payload[:-1], "a message")
    with pytest.raises(LayoutError, match="corrupt schema"):
        decoder.decode(b'["ndarray", "<f8"', good.payload, "a message")
    with pytest.raises(LayoutError, match="newer version"):
        decoder.decode(b'["quaternion"]', b"", "a message")
    bad_length = bytearray(message_for("abc"))
    body = wire.decode(bad_length)
    struct.pack_into(
        "<Q", bad_length, len(bad_length) - len(body.payload), 10_000
    )  # a str longer than its capacity
    body = wire.decode(bad_length)
    with pytest.raises(LayoutError):
        decoder.decode(body.schema_text, body.payload, "a message")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    base=st.sampled_from([0, 1, 2, 5, 14, 15]),
    flips=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 400)),
)
def test_hostile_bytes_are_refused_cleanly_never_with_another_error(
    base: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    message = bytearray(message_for(VALUES[base]))
    for offset, byte in flips:
        if offset < len(message):
            message[offset] = byte
    if cut is not None:
        message = message[:cut]
    try:
        decoded = wire.decode(message)
        Decoder().decode(decoded.schema_text, decoded.payload, "a message")
    except LayoutError:
        pass  # MessageError is one: both mean "refused, nothing applied"


def test_a_decoded_value_can_be_stored_as_a_local_object(shm_name: str) -> None:
    value = {"frame": np.full((4, 5, 3), 7, np.uint8), "seq": 1}
    decoded = wire.decode(message_for(value))
    with SharedObject.create(
        shm_name, Decoder().decode(decoded.schema_text, decoded.payload, "m")
    ) as obj:
        assert same(obj.fetch(), value)
        obj.unlink()
