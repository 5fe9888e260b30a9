"""The error hierarchy: one base, builtin leaves, messages that survive pickling."""

from __future__ import annotations

import pickle

import pytest

import shared_object
from shared_object import _errors

LEAVES = {
    _errors.SegmentNotFoundError: FileNotFoundError,
    _errors.SegmentExistsError: FileExistsError,
    _errors.SegmentPermissionError: PermissionError,
    _errors.InvalidArgumentError: (ValueError, TypeError),
    _errors.InvalidNameError: ValueError,
    _errors.LayoutError: ValueError,
    _errors.TypeMismatchError: TypeError,
    _errors.UnsupportedTypeError: TypeError,
    _errors.CapacityError: ValueError,
    _errors.IntegerOverflowError: OverflowError,
    _errors.OutOfSharedMemoryError: OSError,
    _errors.TooManyHandlesError: OSError,
    _errors.LockTimeoutError: TimeoutError,
    _errors.LockReentryError: RuntimeError,
    _errors.ClosedError: ValueError,
    _errors.IncompleteValueError: RuntimeError,
    _errors.UnsupportedPlatformError: NotImplementedError,
}


def test_every_public_error_is_listed_here() -> None:
    public = {getattr(shared_object, n) for n in shared_object.__all__ if n.endswith("Error")}
    assert public == set(LEAVES) | {shared_object.SharedObjectError}


@pytest.mark.parametrize(("error", "builtin"), LEAVES.items())
def test_leaf_inherits_base_and_builtin(error: type[Exception], builtin: type[Exception] | tuple[type[Exception], ...]) -> None:
    assert issubclass(error, shared_object.SharedObjectError)
    for each in builtin if isinstance(builtin, tuple) else (builtin,):
        assert issubclass(error, each)


@pytest.mark.parametrize("error", LEAVES)
def test_error_survives_pickling(error: type[Exception]) -> None:
    original = error("segment 'x': something precise went wrong")
    copy = pickle.loads(pickle.dumps(original))
    assert type(copy) is error
    assert str(copy) == str(original)


def test_out_of_memory_error_keeps_errno() -> None:
    err = _errors.OutOfSharedMemoryError(28, "no room")
    copy = pickle.loads(pickle.dumps(err))
    assert copy.errno == 28
    assert "no room" in str(copy)
