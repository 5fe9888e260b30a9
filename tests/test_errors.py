"""The error hierarchy: one base, builtin leaves, messages and what they are about (the object's
name, a timeout) that survive pickling."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from helpers import same

import shared_object
from shared_object import SharedObject, _errors

LEAVES = {
    _errors.SegmentNotFoundError: FileNotFoundError,
    _errors.SegmentExistsError: FileExistsError,
    _errors.SegmentPermissionError: PermissionError,
    _errors.InvalidArgumentError: (ValueError, TypeError),
    _errors.InvalidNameError: ValueError,
    _errors.LayoutError: ValueError,
    _errors.TypeMismatchError: (TypeError, BufferError),  # BufferError: what the reference raises
    _errors.UnsupportedTypeError: TypeError,
    _errors.CapacityError: (ValueError, BufferError),
    _errors.IntegerOverflowError: OverflowError,
    _errors.OutOfSharedMemoryError: OSError,
    _errors.TooManyHandlesError: OSError,
    _errors.LockTimeoutError: TimeoutError,
    _errors.MissingExtraError: ImportError,
    _errors.LockReentryError: RuntimeError,
    _errors.ClosedError: ValueError,
    _errors.IncompleteValueError: RuntimeError,
    _errors.UnsupportedPlatformError: NotImplementedError,
}


def test_every_public_error_is_listed_here() -> None:
    public = {getattr(shared_object, n) for n in shared_object.__all__ if n.endswith("Error")}
    assert public == set(LEAVES) | {shared_object.SharedObjectError}


@pytest.mark.parametrize(("error", "builtin"), LEAVES.items())
def test_leaf_inherits_base_and_builtin(
    error: type[Exception], builtin: type[Exception] | tuple[type[Exception], ...]
) -> None:
    assert issubclass(error, shared_object.SharedObjectError)
    for each in builtin if isinstance(builtin, tuple) else (builtin,):
        assert issubclass(error, each)


@pytest.mark.parametrize("error", LEAVES)
def test_error_survives_pickling(error: type[Exception]) -> None:
    original = error("segment 'x': something precise went wrong")
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is error
    assert str(copy) == str(original)


@pytest.mark.parametrize("error", LEAVES)
def test_what_an_error_is_about_survives_pickling(error: type[Exception]) -> None:
    original = error("segment 'cam': went wrong", name="cam")
    copy = pickle.loads(pickle.dumps(original))
    assert copy.name == "cam"  # type: ignore[attr-defined]
    assert error("no object in particular").name is None  # type: ignore[attr-defined]


def test_errors_name_the_object_they_are_about(shm_name: str) -> None:
    with pytest.raises(_errors.SegmentNotFoundError) as missing:
        SharedObject.attach(shm_name)
    assert missing.value.name == shm_name
    with SharedObject.create(shm_name, 1) as obj:
        with pytest.raises(_errors.SegmentExistsError) as taken:
            SharedObject.create(shm_name, 1)
        assert taken.value.name == shm_name
        obj.close()
        with pytest.raises(_errors.ClosedError) as closed:
            obj.fetch()
        assert closed.value.name == shm_name
        obj.unlink()


def test_out_of_memory_error_keeps_errno() -> None:
    err = _errors.OutOfSharedMemoryError(28, "no room")
    copy = pickle.loads(pickle.dumps(err))
    assert copy.errno == 28
    assert "no room" in str(copy)


@pytest.mark.parametrize(
    ("stored", "offered"),
    [
        (1, "one"),
        (np.zeros(3), np.zeros(4)),
        (np.zeros(3), np.zeros(3, np.float32)),
        ("ab", "x" * 200),
    ],
)
def test_a_refused_assign_is_a_buffer_error_as_in_the_reference(
    shm_name: str, stored: object, offered: object
) -> None:
    with SharedObject.create(shm_name, stored) as obj:
        with pytest.raises(BufferError):
            obj.assign(offered)
        assert same(obj.fetch(), stored)
