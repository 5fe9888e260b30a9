"""What the public calls accept: each check raises InvalidArgumentError naming the argument.

Checked before anything is read, created or locked, so a bad argument never leaves a trace.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

from ._errors import InvalidArgumentError

DEFAULT_INIT_SIZE: Final = 100
DEFAULT_MODE: Final = 0o600


def timeout_seconds(timeout: object, what: str) -> float | None:
    """A caller's ``timeout`` as seconds to wait, or None for "forever".

    As in ``threading``, a negative timeout means "do not wait" (so ``deadline - now`` works
    as an argument after the deadline passed), and infinity means forever. NaN is refused: every
    comparison with it is false, so a deadline computed from it never passes and the wait would
    never end.
    """
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, numbers.Real):
        msg = f"{what} must be a number of seconds or None, not {timeout!r}"
        raise InvalidArgumentError(msg)
    seconds = float(timeout)
    if math.isnan(seconds):
        msg = f"{what} must be a number of seconds or None, not NaN"
        raise InvalidArgumentError(msg)
    if seconds == math.inf:
        return None
    return max(seconds, 0.0)


def init_size(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        msg = f"init_size must be a non-negative int (bytes), not {value!r}"
        raise InvalidArgumentError(msg)
    return value


def mode(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 0o777:
        msg = f"mode must be permission bits between 0 and 0o777, not {value!r}"
        raise InvalidArgumentError(msg)
    return value


def slot_count(value: object, *, dynamic: bool) -> int:
    if value not in (1, 2) or isinstance(value, bool):
        msg = f"slots must be 1 or 2, not {value!r}"
        raise InvalidArgumentError(msg)
    if value == 1 and dynamic:
        msg = (
            "a SharedDynamicObject needs two slots: it fills the other slot while readers read "
            "the current one"
        )
        raise InvalidArgumentError(msg)
    return int(value)  # 1 or 2, checked above


__all__ = [
    "DEFAULT_INIT_SIZE",
    "DEFAULT_MODE",
    "init_size",
    "mode",
    "slot_count",
    "timeout_seconds",
]
