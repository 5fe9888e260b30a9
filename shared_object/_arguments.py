"""What the public calls accept: each check raises InvalidArgumentError naming the argument.

Checked before anything is read, created or locked, so a bad argument never leaves a trace.
"""

from __future__ import annotations

import math
import numbers
from typing import Final

from ._errors import InvalidArgumentError
from ._layout import MAX_HISTORY

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


def history(value: object, *, slots: int, dynamic: bool) -> int:
    """``history=``: None (no ring: 0), or a ring of 2 to MAX_HISTORY values."""
    if value is None:
        return 0
    if dynamic:
        msg = (
            "a SharedDynamicObject keeps no history: its value may change size on any assign, and "
            "a ring of slots of one size cannot hold that (docs/types.md, History)"
        )
        raise InvalidArgumentError(msg)
    if not isinstance(value, int) or isinstance(value, bool) or not 2 <= value <= MAX_HISTORY:
        msg = f"history must be a number of values from 2 to {MAX_HISTORY}, or None, not {value!r}"
        raise InvalidArgumentError(msg)
    if slots != 2:
        msg = "history= keeps a ring of slots: it cannot be combined with slots=1"
        raise InvalidArgumentError(msg)
    return value


def limit(value: object) -> int | None:
    """``fetch_new(limit=...)``: None (everything), or a positive number of values."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        msg = f"limit must be a positive number of values, or None, not {value!r}"
        raise InvalidArgumentError(msg)
    return value


__all__ = [
    "DEFAULT_INIT_SIZE",
    "DEFAULT_MODE",
    "history",
    "init_size",
    "limit",
    "mode",
    "slot_count",
    "timeout_seconds",
]
