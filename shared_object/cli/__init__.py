"""The ``shared-object`` command (also ``python -m shared_object``): one module here per command.

    shared-object ls [--json]                 the segments this library made, and who holds them
    shared-object inspect NAME [--json]       one segment's header, decoded, and a value preview
    shared-object rm NAME...                  remove segments by name (open handles keep working)
    shared-object gc [--dry-run] [--prefix P] remove what no live handle holds
    shared-object doctor [--json]             what here will break shared memory, and the fix
    shared-object health NAME [--max-age S]   exit 0 if NAME changed in the last S seconds
    shared-object top [PATTERN...]            updates/s, MB/s, age and handles, live
    shared-object record PATTERN... -o F      every change, into an MCAP file (extra: mcap)
    shared-object play F                      a recording, back into shared memory (extra: mcap)
    shared-object bridge --export P --import P  objects across hosts, through Zenoh (extra: zenoh)
    shared-object view PATTERN...             live, in the browser, through Rerun (extra: view)
    shared-object --version

Exit codes, for every command: 0 done (the check passed); 1 the check failed, or the work did
(an unhealthy object, a missing segment or file); 2 usage (options or values the command cannot
use, a missing extra). An option's several values add up: --x a b is --x a --x b.
"""

# Only the command that runs is imported, with its parser alone: `health` is a container's
# healthcheck, run every few seconds for the container's life, and reads its two arguments by
# hand (health.quick) before anything else loads. The libraries the commands drive (the core,
# recording, bridge, view) sit below this package and never import it (lint-imports checks).

from __future__ import annotations

import sys

# Neither argparse nor importlib is imported here at module level: the healthcheck's path through
# this module must cost no more than reading its two arguments (see health.quick).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse
    from collections.abc import Sequence

#: Every command: the module of this package that runs it (``<command>_arguments(parser)`` and
#: ``run_<command>(args) -> int`` in it) and its line in ``shared-object --help``.
COMMANDS: dict[str, tuple[str, str]] = {
    "ls": ("segments", "list the shared_object segments and whether they are held"),
    "inspect": ("segments", "decode one segment and preview its value"),
    "rm": ("segments", "remove segments by name"),
    "gc": ("segments", "remove the segments no live handle holds"),
    "doctor": ("doctor", "check this environment for shared-memory problems"),
    "health": ("health", "exit 0 if NAME exists and changed within --max-age s"),
    "top": ("top", "updates/s, MB/s, age and open handles of each object, live"),
    "record": ("record", "record every change of objects into an MCAP file"),
    "play": ("play", "play an MCAP recording back into shared memory"),
    "bridge": ("bridge", "the same objects on several hosts, through Zenoh"),
    "view": ("view", "a live view of objects in the browser, through Rerun"),
}


def _module(command: str) -> object:
    import importlib

    return importlib.import_module(f".{COMMANDS[command][0]}", __name__)


def command_parser(command: str) -> argparse.ArgumentParser:
    """The parser of one command, alone (``shared-object COMMAND ...``)."""
    import argparse

    description = COMMANDS[command][1]
    parser = argparse.ArgumentParser(prog=f"shared-object {command}", description=description)
    getattr(_module(command), f"{command}_arguments")(parser)
    return parser


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``shared-object`` itself: ``--help`` lists the commands, ``--version``. Each
    command's own options are its parser's (``command_parser``), built only when it runs."""
    import argparse

    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="shared-object",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"shared-object {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command, (_, description) in COMMANDS.items():
        sub.add_parser(command, help=description, add_help=False)
    return parser


def parse(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed by its command's parser alone. Positional lists may be split by options
    (``record a -o f.mcap b`` records a and b), as every option's several values may be
    (``--export a --export b``)."""
    if not argv or argv[0] not in COMMANDS:  # --help, --version, or no command: argparse says
        return build_parser().parse_args(argv)  # so, and exits
    args = command_parser(argv[0]).parse_intermixed_args(argv[1:])
    args.command = argv[0]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["health"]:
        from .health import quick

        code = quick(argv[1:])
        if code is not None:
            return code
    args = parse(argv)
    import os

    from .._errors import InvalidArgumentError, MissingExtraError, SharedObjectError
    from ._common import FAILED, USAGE

    try:
        code = int(getattr(_module(args.command), f"run_{args.command}")(args))
        sys.stdout.flush()  # here, so that a reader gone away is handled below, not at exit
    except (InvalidArgumentError, MissingExtraError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USAGE
    except SharedObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return FAILED
    except BrokenPipeError:
        # `shared-object ls | head`: the reader has what it wanted. Point stdout at /dev/null
        # so the interpreter's own flush at exit does not fail again (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    return code


__all__ = ["COMMANDS", "build_parser", "command_parser", "main", "parse"]
