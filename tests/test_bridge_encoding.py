"""The bridge's wire encodings (``--encode``): every codec round-trips every kind it takes, refuses
the kinds it does not with a message that says why, and a malformed or hostile encoded payload is
a MessageError that decodes nothing."""

from __future__ import annotations

import re
import struct
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared_object import InvalidArgumentError
from shared_object.payload import Decoder, Layout, encode

pytest.importorskip(
    "simplejpeg", reason="the codecs come with the zenoh extra: pip install -e '.[zenoh]'"
)
from shared_object.bridge import encoding, wire  # noqa: E402


def smooth_image(height: int, width: int, channels: int | None, dtype: Any = np.uint8) -> Any:
    """A smooth, deterministic picture (gradients and waves): what JPEG is made for."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    planes = [
        0.5 + 0.5 * np.sin(x / 7.0 + k) * np.cos(y / 11.0 - k) * (0.6 + 0.4 * x / width)
        for k in range(channels or 1)
    ]
    image = np.stack(planes, axis=-1) if channels else planes[0]
    top = np.iinfo(dtype).max
    return (image * top).round().astype(dtype)


def psnr(a: Any, b: Any, top: float = 255.0) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(top**2 / mse)


def layout_of(value: Any) -> Layout:
    return Decoder().layout(encode(value)[0])


def round_trip(value: Any, spec: str) -> tuple[Any, int, int]:
    """``value`` through ``spec``'s codec and back: (decoded value, raw size, encoded size)."""
    schema_text, payload = encode(value)
    node = layout_of(value)
    codec = encoding.parse_rule(f"x={spec}").codec()
    assert codec is not None
    plan = encoding.plan(codec, node, "x")
    section = encoding.encode(plan, memoryview(payload))
    decoded = encoding.decode(memoryview(section), node)
    return Decoder().decode(schema_text, bytes(decoded)), len(payload), len(section)


def encoded(value: Any, spec: str) -> tuple[bytes, Any]:
    """(an encoded payload of ``value``, its schema's node)."""
    _, payload = encode(value)
    node = layout_of(value)
    codec = encoding.parse_rule(f"x={spec}").codec()
    assert codec is not None
    return encoding.encode(encoding.plan(codec, node, "x"), memoryview(payload)), node


# ---------------------------------------------------------------------------------------------
# Round trips
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("channels", [None, 1, 3, 4], ids=["HxW", "HxWx1", "HxWx3", "HxWx4"])
def test_jpeg_round_trips_every_uint8_image_kind_close_to_the_original(
    channels: int | None,
) -> None:
    image = smooth_image(120, 160, channels)
    back, raw, size = round_trip(image, "jpeg:90")
    assert back.dtype == np.uint8 and back.shape == image.shape
    assert size < raw / 4
    if channels == 4:
        assert (back[..., 3] == 255).all()  # only three channels cross; the fourth is opaque
        back, image = back[..., :3], image[..., :3]
    assert psnr(back, image) >= 35


def test_jpeg_quality_trades_size_for_fidelity() -> None:
    image = smooth_image(240, 320, 3)
    low, _, low_size = round_trip(image, "jpeg:30")
    high, _, high_size = round_trip(image, "jpeg:95")
    assert low_size < high_size
    assert psnr(low, image) < psnr(high, image)


@pytest.mark.parametrize(
    ("dtype", "channels"),
    [
        (np.uint8, None),
        (np.uint8, 1),
        (np.uint8, 3),
        (np.uint8, 4),
        (np.uint16, None),
        (np.uint16, 1),
    ],
    ids=["u8 HxW", "u8 HxWx1", "u8 HxWx3", "u8 HxWx4", "u16 HxW", "u16 HxWx1"],
)
def test_png_round_trips_every_image_kind_exactly(dtype: Any, channels: int | None) -> None:
    image = smooth_image(60, 80, channels, dtype)
    image[3, 5] = np.iinfo(dtype).max  # and a lone pixel, which a lossy codec would smear
    back, _, _ = round_trip(image, "png")
    assert back.dtype == image.dtype and back.shape == image.shape
    np.testing.assert_array_equal(back, image)


@pytest.mark.parametrize("spec", ["zstd", "zstd:19", "lz4", "lz4:9"])
@pytest.mark.parametrize(
    "value",
    [
        np.arange(1000, dtype=np.float64),
        {"name": "arm", "joints": np.linspace(0, 1, 7), "ok": True, "blob": b"\x00" * 300},
        (1, 2.5, "three", [np.zeros((4, 4), np.complex64)]),
        np.random.default_rng(7).integers(0, 256, 5000, dtype=np.uint8),  # incompressible
    ],
    ids=["floats", "dict", "nested", "noise"],
)
def test_the_lossless_codecs_round_trip_any_payload_exactly(value: Any, spec: str) -> None:
    from helpers import same

    back, _, _ = round_trip(value, spec)
    assert same(back, value)


def test_a_compound_value_encodes_its_image_leaves_and_sends_the_rest_raw() -> None:
    value = {
        "seq": 41,
        "stamp_ns": 1_700_000_000_123_456_789,
        "frame": smooth_image(96, 128, 3),
        "depth": smooth_image(96, 128, None, np.uint16),
        "pose": np.arange(7.0),
    }
    back, raw, size = round_trip(value, "jpeg:90")
    assert (back["seq"], back["stamp_ns"]) == (41, 1_700_000_000_123_456_789)
    np.testing.assert_array_equal(back["depth"], value["depth"])  # not a JPEG's: raw
    np.testing.assert_array_equal(back["pose"], value["pose"])
    assert psnr(back["frame"], value["frame"]) >= 35
    assert raw - size > value["frame"].nbytes / 2  # the frame shrank; the rest did not grow
    node = layout_of(value)
    codec = encoding.parse_rule("x=jpeg").codec()
    assert codec is not None
    described = encoding.plan(codec, node, "cam").describe()
    assert described == "['frame'] (ndarray[uint8, (96, 128, 3)]) as jpeg:90, the rest raw"
    png = encoding.parse_rule("x=png").codec()
    assert png is not None
    assert [r.path for r in encoding.plan(png, node, "cam").ranges] == ["['frame']", "['depth']"]


def test_the_encoded_payload_is_laid_out_as_the_module_docstring_says() -> None:
    value = {"a": b"xy" * 4, "img": smooth_image(16, 16, None)}
    schema_text, payload = encode(value)
    section, node = encoded(value, "png:0")
    (count,) = struct.unpack_from("<H", section, 0)
    assert count == 1 and section[2:8] == bytes(6)
    offset, length, codec, reserved, size = struct.unpack_from("<QQB3sI", section, 8)
    assert (offset, length, codec, reserved) == (64, 256, 2, bytes(3))
    form = section[32 : 32 + size]
    assert form[:8] == b"\x89PNG\r\n\x1a\n"
    rest = section[32 + size :]
    assert rest == payload[:64] + payload[64 + 256 :]  # the bytes outside the range, in order
    assert len(payload) == node.size
    assert schema_text  # the schema travels in the message, as for raw payloads


def test_an_empty_payload_has_nothing_to_encode() -> None:
    codec = encoding.parse_rule("x=zstd").codec()
    assert codec is not None
    assert encoding.plan(codec, layout_of(None), "estop").ranges == ()


# ---------------------------------------------------------------------------------------------
# Refusals: never applied where they do not fit
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("spec", "value", "says"),
    [
        ("jpeg", np.zeros((48, 64), np.uint16), "ndarray[uint16, (48, 64)]"),
        ("jpeg", np.zeros((48, 64, 3), np.float32), "ndarray[float32, (48, 64, 3)]"),
        ("jpeg", np.zeros((48, 64, 2), np.uint8), "ndarray[uint8, (48, 64, 2)]"),
        ("jpeg", np.zeros(100, np.uint8), "ndarray[uint8, (100,)]"),
        ("jpeg", {"seq": 1, "pose": np.zeros(7)}, "dict with keys"),
        ("png", np.zeros((48, 64, 3), np.uint16), "ndarray[uint16, (48, 64, 3)]"),
        ("png", np.zeros((48, 64), np.float64), "ndarray[float64, (48, 64)]"),
        ("png", 3.5, "float"),
    ],
    ids=[
        "jpeg depth",
        "jpeg float",
        "jpeg 2 channels",
        "jpeg 1-D",
        "jpeg no image",
        "png u16 rgb",
        "png float",
        "png scalar",
    ],
)
def test_an_image_codec_refuses_a_value_without_an_image_it_takes(
    spec: str, value: Any, says: str
) -> None:
    codec = encoding.parse_rule(f"x={spec}").codec()
    assert codec is not None
    with pytest.raises(InvalidArgumentError) as refused:
        encoding.plan(codec, layout_of(value), "lk-depth")
    message = str(refused.value)
    assert f"{spec} takes" in message and "'lk-depth' holds" in message and says in message
    assert "zstd or lz4" in message  # and what to do instead


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("cam", "write PATTERN=CODEC[:LEVEL]"),
        ("=jpeg", "write PATTERN=CODEC[:LEVEL]"),
        ("cam=", "write PATTERN=CODEC[:LEVEL]"),
        ("cam=webp", "unknown codec 'webp'"),
        ("cam=jpeg:high", "must be an integer"),
        ("cam=jpeg:0", "from 1 to 100, not 0"),
        ("cam=png:10", "from 0 to 9, not 10"),
        ("cam=raw:3", "raw takes no level"),
    ],
)
def test_a_bad_encode_rule_is_refused_naming_the_problem(text: str, says: str) -> None:
    with pytest.raises(InvalidArgumentError, match=f"--encode '{text}'") as refused:
        encoding.parse_rule(text)
    assert says in str(refused.value)


def test_rules_apply_in_order_first_match_wins() -> None:
    rules = [encoding.parse_rule(t) for t in ("cam-depth=png", "cam-*=jpeg:80", "*=raw")]
    assert str(encoding.rule_for("cam-depth", rules)) == "cam-depth=png"
    assert str(encoding.rule_for("cam-rgb", rules)) == "cam-*=jpeg:80"
    assert encoding.rule_for("pose", rules) == rules[2]
    assert encoding.rule_for("pose", rules[:2]) is None
    assert rules[2].codec() is None  # raw: no codec at all


# ---------------------------------------------------------------------------------------------
# Malformed and hostile encoded payloads
# ---------------------------------------------------------------------------------------------
IMAGE = {"seq": 3, "frame": smooth_image(48, 64, 3)}


def entry(section: bytes, **fields: int) -> bytes:
    """``section`` with its first table entry's fields replaced."""
    out = bytearray(section)
    offset, length, codec, size = struct.unpack_from("<QQB3xI", out, 8)
    values = {"offset": offset, "length": length, "codec": codec, "size": size, **fields}
    struct.pack_into(
        "<QQB3xI", out, 8, values["offset"], values["length"], values["codec"], values["size"]
    )
    return bytes(out)


def hostile_jpeg(height: int, width: int) -> bytes:
    import simplejpeg

    return bytes(simplejpeg.encode_jpeg(smooth_image(height, width, 3), quality=50))


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda s: s[:5], "shorter than its table's header"),
        (lambda s: b"\x00\x00" + s[2:], "claiming 0 ranges"),
        (lambda s: b"\xff\xff" + s[2:], "claiming 65535 ranges"),
        (lambda s: s[:3] + b"\x01" + s[4:], "reserved bytes"),
        (lambda s: s[:26] + b"\x01" + s[27:], "non-zero reserved bytes"),
        (lambda s: entry(s, codec=9), "unknown codec (9)"),
        (lambda s: entry(s, offset=8), "no image leaf jpeg takes"),
        (lambda s: entry(s, length=100), "no image leaf jpeg takes"),
        (lambda s: entry(s, offset=1 << 40), "outside the"),
        (lambda s: entry(s, codec=3), "zstd frame"),
        (lambda s: s + b"\x00", "accounts for"),
        (lambda s: s[:-1], "accounts for"),
        (lambda s: entry(s, size=10**6), "accounts for"),
    ],
    ids=[
        "short",
        "no ranges",
        "too many ranges",
        "header reserved",
        "entry reserved",
        "codec",
        "not a leaf",
        "not a leaf's length",
        "outside",
        "wrong codec",
        "longer",
        "shorter",
        "form size",
    ],
)
def test_a_malformed_encoded_payload_is_a_message_error_naming_the_fault(
    mutate: Any, says: str
) -> None:
    section, node = encoded(IMAGE, "jpeg")
    with pytest.raises(wire.MessageError, match=re.escape(says)):
        encoding.decode(memoryview(mutate(section)), node)


def splice_jpeg(form: bytes) -> tuple[bytes, Any]:
    """A valid encoded payload of IMAGE whose JPEG is replaced by ``form``."""
    section, node = encoded(IMAGE, "jpeg")
    _, _, _, size = struct.unpack_from("<QQB3xI", section, 8)
    spliced = entry(section[:32], size=len(form)) + form + section[32 + size :]
    return spliced, node


def test_a_jpeg_of_other_dimensions_is_refused_before_it_is_decoded() -> None:
    for height, width in ((16, 16), (64, 48), (4000, 6000)):  # the last one is 72 MB of pixels
        section, node = splice_jpeg(hostile_jpeg(height, width))
        with pytest.raises(wire.MessageError, match=f"a {height}x{width} JPEG for an image leaf"):
            encoding.decode(memoryview(section), node)


def test_a_truncated_or_garbled_jpeg_is_refused() -> None:
    good = hostile_jpeg(48, 64)
    for form in (good[: len(good) // 2], good[:200] + bytes(len(good) - 200), b"not a jpeg"):
        section, node = splice_jpeg(form)
        with pytest.raises(wire.MessageError, match="JPEG"):
            encoding.decode(memoryview(section), node)


def test_a_png_of_another_size_or_depth_is_refused() -> None:
    depth = {"depth": smooth_image(30, 40, None, np.uint16)}
    section, node = encoded(depth, "png")
    other, _ = encoded({"depth": smooth_image(30, 40, None, np.uint8)}, "png")  # 8-bit, same size
    _, _, _, size = struct.unpack_from("<QQB3xI", other, 8)
    spliced = entry(section[:32], size=size) + other[32 : 32 + size]
    with pytest.raises(wire.MessageError, match="PNG of mode L for an image leaf of uint16"):
        encoding.decode(memoryview(spliced), node)


def test_a_decompression_bomb_cannot_grow_past_its_range() -> None:
    import lz4.block
    import zstandard

    value = np.zeros(1000, np.uint8)
    for spec, bomb in (
        ("zstd", zstandard.ZstdCompressor().compress(bytes(50_000_000))),
        ("lz4", lz4.block.compress(bytes(50_000_000), store_size=False)),
    ):
        section, node = encoded(value, spec)
        _, _, _, size = struct.unpack_from("<QQB3xI", section, 8)
        spliced = entry(section[:32], size=len(bomb)) + bomb + section[32 + size :]
        with pytest.raises(wire.MessageError, match=spec):
            encoding.decode(memoryview(spliced), node)


SAMPLES = [
    (IMAGE, "jpeg"),
    ({"d": smooth_image(20, 24, None, np.uint16), "n": 5}, "png"),
    ({"s": "text", "a": np.arange(50.0)}, "zstd"),
    ((b"abc" * 20, np.ones(30, np.int32)), "lz4"),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sample=st.integers(0, len(SAMPLES) - 1),
    flips=st.lists(st.tuples(st.integers(0, 3000), st.integers(0, 255)), max_size=6),
    cut=st.one_of(st.none(), st.integers(0, 3000)),
)
def test_hostile_bytes_decode_to_a_whole_payload_or_a_message_error_never_else(
    sample: int, flips: list[tuple[int, int]], cut: int | None
) -> None:
    value, spec = SAMPLES[sample]
    section, node = encoded(value, spec)
    hostile = bytearray(section)
    for offset, byte in flips:
        if offset < len(hostile):
            hostile[offset] = byte
    if cut is not None:
        hostile = hostile[:cut]
    try:
        payload = encoding.decode(memoryview(bytes(hostile)), node)
    except wire.MessageError:
        return
    assert len(payload) == node.size  # whatever it decoded to, it is a whole payload


def test_decode_writes_into_the_buffer_it_is_given_when_it_has_the_payloads_size() -> None:
    section, node = encoded(IMAGE, "jpeg")
    mine = bytearray(node.size)
    assert encoding.decode(memoryview(section), node, mine) is mine
    other = encoding.decode(memoryview(section), node, bytearray(3))
    assert len(other) == node.size and other == mine


def test_an_encoded_message_carries_its_flag_through_the_wire() -> None:
    section, _ = encoded(IMAGE, "jpeg")
    schema_text, payload = encode(IMAGE)
    fields: dict[str, Any] = {
        "sequence": 1, "mtime_ns": 2, "change": 3, "source": b"s" * 16, "dynamic": False,
        "single_slot": False, "schema_text": schema_text,
    }  # fmt: skip
    message = wire.encode(**fields, payload=section, encoded=True)
    assert struct.unpack_from("<H", message, 6)[0] == wire.FLAG_ENCODED
    decoded = wire.decode(message)
    assert decoded.encoded and bytes(decoded.payload) == section
    assert not wire.decode(wire.encode(**fields, payload=payload)).encoded
