"""SharedDynamicObject: the value may change type, size, dtype, shape or structure."""

from __future__ import annotations

import numpy as np
import pytest

from shared_object import SharedDynamicObject, SharedObject, UnsupportedTypeError


def test_changes_kind_and_size_and_other_handles_follow(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, 1) as writer, SharedDynamicObject.attach(shm_name) as reader:
        sequence = [
            "text", np.zeros((2, 3)), np.ones((640, 480, 3), np.uint8), {"a": [1, 2], "b": np.arange(5)},
            "x" * 100_000, None, 3.5, np.ones((10,), np.float32), (1, (2, (3,))),
        ]
        for value in sequence:
            writer.assign(value)
            got = reader.fetch()
            if isinstance(value, np.ndarray):
                assert got.dtype == value.dtype and np.array_equal(got, value)
            elif isinstance(value, dict):
                assert got["a"] == [1, 2] and np.array_equal(got["b"], value["b"])
            else:
                assert got == value
            assert reader.kind == writer.kind


def test_growth_keeps_earlier_handles_valid(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as writer:
        reader = SharedDynamicObject.attach(shm_name)
        for size in (10, 1000, 100_000, 10, 2_000_000):
            writer.assign(np.full(size, float(size)))
            got = reader.fetch()
            assert got.shape == (size,) and got[0] == size
        reader.close()


def test_strings_grow_without_limit(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, "a", init_size=4) as obj:
        obj.assign("b" * 10_000)
        assert obj.fetch() == "b" * 10_000
        obj.assign("c")
        assert obj.fetch() == "c"


def test_unsupported_value_keeps_the_stored_one(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, {"k": 1}) as obj:
        with pytest.raises(UnsupportedTypeError):
            obj.assign({"k": object()})
        assert obj.fetch() == {"k": 1}


def test_fetch_fn_and_out_on_dynamic(shm_name: str) -> None:
    with SharedDynamicObject.create(shm_name, np.ones((3, 3))) as obj:
        assert obj.fetch(lambda x: x.sum()) == 9
        out = np.empty((3, 3))
        obj.fetch(out=out)
        assert out.sum() == 9


def test_dynamic_and_fixed_do_not_mix(shm_name: str) -> None:
    SharedDynamicObject.create(shm_name, 1).close()
    with pytest.raises(TypeError, match="SharedDynamicObject"):
        SharedObject.attach(shm_name)


def test_fn_and_out_after_another_handle_grew_the_segment(shm_name: str) -> None:
    """A reader whose mapping predates the growth must follow it in every read path."""
    with SharedDynamicObject.create(shm_name, np.zeros(10)) as writer, SharedDynamicObject.attach(shm_name) as reader:
        assert reader.fetch(lambda x: x.sum()) == 0
        writer.assign(np.ones(1_000_000))  # relocates the slot past the reader's mapping
        assert reader.fetch(lambda x: x.sum()) == 1_000_000
        writer.assign(np.full(3_000_000, 2.0))
        out = np.empty(3_000_000)
        assert reader.fetch(out=out) is out and out[0] == 2.0
        writer.assign(np.full(5_000_000, 3.0))
        with reader.view() as v:
            assert v.value[0] == 3.0
