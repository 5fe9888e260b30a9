"""``shared-object health NAME [--max-age S]``: exit 0 if NAME changed in the last S seconds.

A container's healthcheck runs it every few seconds for the container's whole life, so it must
cost little more than starting Python: ``quick`` reads its arguments by hand and imports only
the header reader (``_probe``: no numpy, no argparse, no codecs). Anything else it is given
(``--help``, an unknown option) goes through argparse like every other command.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing it costs the probe as much as its own work
if TYPE_CHECKING:
    import argparse

DEFAULT_MAX_AGE_S = 5.0


def health_arguments(parser: argparse.ArgumentParser) -> None:
    from ._common import seconds

    parser.add_argument("name")
    parser.add_argument(
        "--max-age",
        type=seconds,
        default=DEFAULT_MAX_AGE_S,
        help=f"seconds (default {DEFAULT_MAX_AGE_S:g}; inf: only that it exists)",
    )


def run_health(args: argparse.Namespace) -> int:
    return _check(args.name, args.max_age)


def _check(name: str, max_age: float) -> int:
    from .._probe import health

    healthy, message = health(name, max_age)
    print(message)
    return 0 if healthy else 1


def quick(argv: list[str]) -> int | None:
    """``NAME``, ``NAME --max-age S`` or ``NAME --max-age=S``, checked without argparse; None for
    anything else (argparse then parses it, and says what is wrong)."""
    if len(argv) == 3 and argv[1] == "--max-age":
        name, age_text = argv[0], argv[2]
    elif len(argv) == 2 and argv[1].startswith("--max-age="):
        name, age_text = argv[0], argv[1].partition("=")[2]
    elif len(argv) == 1:
        name, age_text = argv[0], str(DEFAULT_MAX_AGE_S)
    else:
        return None
    if name.startswith("-"):
        return None
    try:
        max_age = float(age_text)
    except ValueError:
        return None
    if not max_age >= 0:  # NaN and negatives: argparse's message
        return None
    return _check(name, max_age)


__all__ = ["health_arguments", "quick", "run_health"]
