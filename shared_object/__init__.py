"""shared_object: live data shared between processes and containers through shared memory.

``SharedObject`` holds one value (a frame, a pose, a command, a dict of arrays...) in a
/dev/shm segment that any process, in any container sharing the IPC namespace, can ``fetch``,
``assign``, ``trigger`` and ``wait`` on, without ever seeing torn data.

The classes are imported on first use (PEP 562): ``import shared_object`` alone loads neither
numpy nor the codecs, so a health probe (``shared-object health``) starts as fast as Python does.
"""

from __future__ import annotations

import importlib

from ._errors import (
    CapacityError,
    ClosedError,
    IncompleteValueError,
    IntegerOverflowError,
    InvalidArgumentError,
    InvalidNameError,
    LayoutError,
    LockReentryError,
    LockTimeoutError,
    MissingExtraError,
    OutOfSharedMemoryError,
    SegmentExistsError,
    SegmentNotFoundError,
    SegmentPermissionError,
    SharedObjectError,
    TooManyHandlesError,
    TypeMismatchError,
    UnsupportedPlatformError,
    UnsupportedTypeError,
)

# Not typing's TYPE_CHECKING: importing typing costs the health probe as much as its own work
# (mypy takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from ._dynamic import SharedDynamicObject, attach
    from ._flock import ReadersLock
    from ._object import SharedObject
    from ._reading import RawValue, ZeroCopyView
    from ._tuning import Tuning

__version__ = "0.1.0"

#: Public name -> the module that defines it, imported when the name is first used.
_LAZY = {
    "RawValue": "._reading",
    "ReadersLock": "._flock",
    "attach": "._dynamic",
    "SharedDynamicObject": "._dynamic",
    "SharedObject": "._object",
    "Tuning": "._tuning",
    "ZeroCopyView": "._reading",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        msg = f"module 'shared_object' has no attribute {name!r}"
        raise AttributeError(msg)
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value  # once: later lookups find it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


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
    "RawValue",
    "ReadersLock",
    "SegmentExistsError",
    "SegmentNotFoundError",
    "SegmentPermissionError",
    "SharedDynamicObject",
    "SharedObject",
    "SharedObjectError",
    "TooManyHandlesError",
    "Tuning",
    "TypeMismatchError",
    "UnsupportedPlatformError",
    "UnsupportedTypeError",
    "ZeroCopyView",
    "__version__",
    "attach",
]
