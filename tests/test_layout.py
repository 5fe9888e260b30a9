"""The header layout: golden bytes, and every way a bad header is refused."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from shared_object import (
    LayoutError,
    SharedDynamicObject,
    SharedObject,
    TypeMismatchError,
    _layout,
    _segment,
)


def _path(name: str) -> str:
    return os.path.join(_segment.SHM_DIR, name)


def test_golden_header_of_an_int(shm_name: str) -> None:
    with SharedObject.create(shm_name, 7) as obj:
        raw = Path(_path(shm_name)).read_bytes()
        assert raw[:6] == b"\x93SHOBJ"
        assert struct.unpack_from("<HII", raw, 6) == (1, 256, 0)
        assert struct.unpack_from("<Q", raw, 16)[0] == 0  # state: change 0, slot 0, not writing
        assert raw[160:192].rstrip(b"\0").startswith(b"glibc-")
        (off0, cap0), (off1, cap1) = (struct.unpack_from("<QQ", raw, 128 + 16 * i) for i in (0, 1))
        assert off0 == 256 and off1 == 256 + cap0 and cap0 == cap1 and cap0 % 64 == 0
        schema_id, schema_len, _, payload_offset, payload_len = struct.unpack_from(
            "<QIIQQ", raw, off0
        )
        assert (schema_id, payload_len) == (1, 8)
        assert raw[off0 + 64 : off0 + 64 + schema_len] == b'["int"]'
        assert struct.unpack_from("<q", raw, off0 + payload_offset)[0] == 7
        obj.assign(9)  # goes to slot 1, then the state points there
        raw = Path(_path(shm_name)).read_bytes()
        assert struct.unpack_from("<Q", raw, 16)[0] == (1 << 2) | 1
        assert struct.unpack_from("<q", raw, off1 + payload_offset)[0] == 9


def test_golden_header_of_a_single_slot_object(shm_name: str) -> None:
    with SharedObject.create(shm_name, 7, slots=1) as obj:
        raw = Path(_path(shm_name)).read_bytes()
        assert struct.unpack_from("<HII", raw, 6) == (1, 256, 2)  # flags bit 1: single slot
        (off0, cap0), (off1, cap1) = (struct.unpack_from("<QQ", raw, 128 + 16 * i) for i in (0, 1))
        assert (off0, cap0) == (off1, cap1) == (256, len(raw) - 256)
        obj.assign(9)  # in place: the state's slot bit flips, the bytes are where they were
        raw = Path(_path(shm_name)).read_bytes()
        payload_offset = struct.unpack_from("<QIIQQ", raw, off0)[3]
        assert struct.unpack_from("<Q", raw, 16)[0] == (1 << 2) | 1
        assert struct.unpack_from("<q", raw, off0 + payload_offset)[0] == 9


def test_array_payload_is_64_byte_aligned(shm_name: str) -> None:
    import numpy as np

    with SharedObject.create(shm_name, (1, np.zeros(3, np.uint8), "x", np.ones((2, 2)))) as obj:
        arrays = [a for a in obj.fetch(lambda v: v) if isinstance(a, np.ndarray)]
        views = obj._slots[0].node.view(obj._buf, obj._slots[0].base)  # the in-segment views
        for view in (views[1], views[3]):
            offset = view.__array_interface__["data"][0] - obj._map_ranges[0][0]
            assert offset % 64 == 0
        assert len(arrays) == 2


@pytest.mark.parametrize("slots", [2, 1])
def test_a_big_payload_starts_half_a_page_past_a_page_boundary_in_every_slot(
    shm_name: str, slots: int
) -> None:
    # numpy's big arrays start 16 bytes past a page. memcpy into a payload at byte 384 of a page
    # ran 3-8% slower (4K aliasing), and page-aligned payloads cost a free-running consumer a
    # fifth of its frames; half a page past a boundary, both directions copy at the floor's speed.
    import numpy as np

    frame = np.zeros((480, 848, 3), np.uint8)
    with SharedObject.create(shm_name, frame, slots=slots) as obj:
        raw = Path(_path(shm_name)).read_bytes()
        for index in (0, 1):
            offset, capacity = struct.unpack_from("<QQ", raw, 128 + 16 * index)
            payload_offset = struct.unpack_from("<QIIQQ", raw, offset)[3]
            assert (
                offset % 4096 == 0
                and capacity % 4096 == 0
                and (offset + payload_offset) % 4096 == 2048
            )
        obj.assign(frame + 1)
        assert (obj.fetch() == 1).all()


def test_a_small_payload_is_not_padded_to_a_page(shm_name: str) -> None:
    import numpy as np

    with SharedObject.create(shm_name, np.zeros(1000, np.uint8)):
        assert os.path.getsize(_path(shm_name)) < 4096


def _corrupt(name: str, offset: int, data: bytes) -> None:
    with open(_path(name), "r+b") as f:
        f.seek(offset)
        f.write(data)


@pytest.mark.parametrize(
    ("offset", "data", "message"),
    [
        (0, b"NOTOBJ", "not a shared_object segment"),
        (6, struct.pack("<H", 99), "layout version 99"),
        (8, struct.pack("<I", 100), "corrupt header"),
        (12, struct.pack("<I", 0x80), "corrupt header"),
        (12, struct.pack("<I", 3), "corrupt header"),  # single slot and dynamic at once
        (
            12,
            struct.pack("<I", 2),
            "two slot entries differ",
        ),  # single slot, but two slots laid out
        (128, struct.pack("<Q", 10**12), "corrupt or truncated"),
    ],
)
def test_bad_header_is_refused(shm_name: str, offset: int, data: bytes, message: str) -> None:
    SharedObject.create(shm_name, 1).close()
    _corrupt(shm_name, offset, data)
    with pytest.raises(LayoutError, match=message):
        SharedObject.attach(shm_name)


def test_truncated_segment_is_refused(shm_name: str) -> None:
    SharedObject.create(shm_name, "hello").close()
    os.truncate(_path(shm_name), 100)
    with pytest.raises(LayoutError, match="truncated"):
        SharedObject.attach(shm_name)
    os.truncate(_path(shm_name), 300)
    with pytest.raises(LayoutError, match="corrupt or truncated"):
        SharedObject.attach(shm_name)


def test_foreign_file_is_refused(shm_name: str) -> None:
    with open(_path(shm_name), "wb") as f:
        f.write(os.urandom(4096))
    with pytest.raises(LayoutError):
        SharedObject.attach(shm_name)


def test_corrupt_schema_is_refused(shm_name: str) -> None:
    SharedObject.create(shm_name, 1).close()
    _corrupt(shm_name, 256 + 64, b"[{{")
    with pytest.raises(LayoutError, match="corrupt schema"):
        SharedObject.attach(shm_name)


def test_fixed_and_dynamic_do_not_mix(shm_name: str) -> None:
    SharedObject.create(shm_name, 1).close()
    with pytest.raises(TypeMismatchError, match="created as a SharedObject"):
        SharedDynamicObject.attach(shm_name)


def test_slot_size_rounds_to_alignment() -> None:
    payload_offset, size = _layout.slot_size(schema_len=7, payload_len=8)
    assert payload_offset == 128 and size == 192


def test_the_hot_paths_word_indices_are_the_layouts() -> None:
    """SharedObject.fetch and assign index the header words with literals (a global lookup is a
    measurable part of a scalar assign): they must stay the words _layout names."""
    assert (_layout.STATE_WORD, _layout.MTIME_WORD, _layout.WAITER_WORD, _layout.REQUEST_WORD) == (
        2,
        3,
        4,
        5,
    )
    assert _layout.STATE_OFFSET == 8 * _layout.STATE_WORD
    assert (_layout.CURRENT_SLOT, _layout.WRITING, _layout.CHANGE_SHIFT) == (1, 2, 2)
