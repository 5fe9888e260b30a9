"""shared_object: live data shared between processes and containers through shared memory.

``SharedObject`` holds one value (a frame, a pose, a command, a dict of arrays...) in a
/dev/shm segment that any process, in any container sharing the IPC namespace, can ``fetch``,
``assign``, ``trigger`` and ``wait`` on, without ever seeing torn data.
"""

from __future__ import annotations

from ._dynamic import SharedDynamicObject
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
from ._flock import ReadersLock
from ._object import SharedObject
from ._reading import ZeroCopyView
from ._tuning import Tuning

__version__ = "0.1.0"

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
    "OutOfSharedMemoryError",
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
]
