"""What the commands share: argument types, and the keywords of options that take several values."""

from __future__ import annotations

import argparse
import math
from typing import Any, Final

#: The exit codes of every command (docs/operations.md): done, or the check passed; the check
#: failed, or the work did (an unhealthy object, a missing segment or file); usage (options or
#: values the command cannot use, a missing extra).
OK, FAILED, USAGE = 0, 1, 2

#: An option that takes several values takes them both ways, and they add up:
#: ``--x a b`` is ``--x a --x b`` (as ``docker run -e``, ``ssh -L``, ``curl -H`` are written).
SEVERAL: Final[dict[str, Any]] = {"nargs": "+", "action": "extend", "default": []}


def seconds(text: str) -> float:
    """argparse type: a number of seconds >= 0 (inf allowed)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:  # also false for NaN, with which `age > max_age` would always pass
        msg = f"expected a number of seconds >= 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def positive(text: str) -> float:
    """argparse type: a number > 0."""
    value = seconds(text)
    if value == 0:
        msg = f"expected a number > 0, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


__all__ = ["FAILED", "OK", "SEVERAL", "USAGE", "positive", "seconds"]
