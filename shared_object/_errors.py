"""One error hierarchy for shared_object.

Every error derives from :class:`SharedObjectError`, and each leaf also inherits the builtin
exception a caller would naturally catch (``FileNotFoundError`` for a missing segment,
``TypeError`` for a value of the wrong kind, ...), so ``except FileNotFoundError`` keeps working.

Errors carry their message in ``args``, and what they are about as attributes: ``name``, the
object's name, on every error where there is one (None otherwise), and ``timeout`` on a
LockTimeoutError, as filelock's ``Timeout`` carries its lock file. Both pickle with the error,
so it crosses process boundaries as it is.
"""

from __future__ import annotations


class SharedObjectError(Exception):
    """Base class of every error raised by shared_object.

    ``name``: the name of the object the error is about, or None.
    """

    def __init__(self, *args: object, name: str | None = None) -> None:
        super().__init__(*args)
        self.name = name


class SegmentNotFoundError(SharedObjectError, FileNotFoundError):
    """No segment exists under the name (in this process's /dev/shm)."""


class SegmentExistsError(SharedObjectError, FileExistsError):
    """A segment already exists under the name (raised by ``create``)."""


class SegmentPermissionError(SharedObjectError, PermissionError):
    """The segment exists but this process may not open it (see the ``mode`` argument)."""


class InvalidArgumentError(SharedObjectError, ValueError, TypeError):
    """An argument has a value or type the call cannot use (a NaN timeout, a read-only ``out``,
    ...).

    It inherits both ValueError and TypeError, as numpy's AxisError inherits two builtins: a
    caller who guards a call with either keeps working, whichever of the two the problem is.
    """


class InvalidNameError(SharedObjectError, ValueError):
    """The segment name is empty, too long, or has characters that cannot name a file."""


class LayoutError(SharedObjectError, ValueError):
    """The segment is not a shared_object segment, has another layout version, or is corrupt."""


class TypeMismatchError(SharedObjectError, TypeError, BufferError):
    """The offered value's kind (type, dtype, shape, structure) differs from the stored one.

    Also a BufferError: the reference library raises BufferError for every assign it refuses,
    and code written for it catches that.
    """


class UnsupportedTypeError(SharedObjectError, TypeError):
    """The value's type cannot be stored in shared memory."""


class CapacityError(SharedObjectError, ValueError, BufferError):
    """The value is larger than the capacity fixed when the object was created.

    Also a BufferError, as :class:`TypeMismatchError` is, for code written for the reference.
    """


class IntegerOverflowError(SharedObjectError, OverflowError):
    """A Python int does not fit in the 64-bit signed integer that stores it."""


class OutOfSharedMemoryError(SharedObjectError, OSError):
    """The shared-memory filesystem (/dev/shm) has no room for the segment."""


class TooManyHandlesError(SharedObjectError, OSError):
    """The process may open no more files (EMFILE/ENFILE): every open handle keeps one."""


class LockTimeoutError(SharedObjectError, TimeoutError):
    """The writer lock could not be taken within the timeout.

    ``name``: the object's (None for a ReadersLock); ``timeout``: the seconds it waited.
    """

    def __init__(
        self, *args: object, name: str | None = None, timeout: float | None = None
    ) -> None:
        super().__init__(*args, name=name)
        self.timeout = timeout


class LockReentryError(SharedObjectError, RuntimeError):
    """This thread asked to write an object while it holds the object's writer lock as a reader.

    That happens when assigning to or triggering an object inside a ``view()`` block or a
    ``fetch(fn)`` on it where reads hold the lock (single-slot objects, CPUs other than x86):
    the call would wait for its own thread. Reading the object again there works.
    """


class ClosedError(SharedObjectError, ValueError):
    """The handle was closed; it can no longer read or write."""


class IncompleteValueError(SharedObjectError, RuntimeError):
    """A writer died mid-assign to a single-slot object; the next assign repairs it."""


class UnsupportedPlatformError(SharedObjectError, NotImplementedError):
    """This platform lacks what shared_object needs (Linux with glibc)."""


class MissingExtraError(SharedObjectError, ImportError):
    """A feature's optional dependency is not installed; the message names the extra."""


__all__ = [
    "CapacityError",
    "ClosedError",
    "IncompleteValueError",
    "IntegerOverflowError",
    "InvalidArgumentError",
    "InvalidNameError",
    "LayoutError",
    "LockReentryError",
    "LockTimeoutError",
    "MissingExtraError",
    "OutOfSharedMemoryError",
    "SegmentExistsError",
    "SegmentNotFoundError",
    "SegmentPermissionError",
    "SharedObjectError",
    "TooManyHandlesError",
    "TypeMismatchError",
    "UnsupportedPlatformError",
    "UnsupportedTypeError",
]
