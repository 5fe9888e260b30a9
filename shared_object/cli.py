"""The ``shared-object`` command (also ``python -m shared_object``).

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

Each command's code is imported only when it runs: ``health`` is a container's healthcheck, run
every few seconds for the container's life, and imports neither numpy nor the codecs.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys
from collections.abc import Callable, Sequence

from ._errors import SharedObjectError

#: command -> "module:function" that runs it, with the parsed arguments.
_COMMANDS = {
    "ls": "._cmd_segments:cmd_ls",
    "inspect": "._cmd_segments:cmd_inspect",
    "rm": "._cmd_segments:cmd_rm",
    "gc": "._cmd_segments:cmd_gc",
    "doctor": "._cmd_doctor:cmd_doctor",
    "health": ".cli:cmd_health",
    "top": "._cmd_top:cmd_top",
    "record": ".recording:cmd_record",
    "play": ".recording:cmd_play",
    "bridge": ".bridge.command:cmd_bridge",
    "view": ".view.command:cmd_view",
}


def cmd_health(args: argparse.Namespace) -> int:
    from ._probe import health

    healthy, message = health(args.name, args.max_age)
    print(message)
    return 0 if healthy else 1


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="shared-object",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("ls", help="list the shared_object segments and whether they are held")
    ls.add_argument("--json", action="store_true")
    inspect = sub.add_parser("inspect", help="decode one segment and preview its value")
    inspect.add_argument("name")
    inspect.add_argument("--json", action="store_true")
    rm = sub.add_parser("rm", help="remove segments by name")
    rm.add_argument("names", nargs="+", metavar="NAME")
    gc = sub.add_parser("gc", help="remove the segments no live handle holds")
    gc.add_argument("--dry-run", action="store_true", help="only list what would be removed")
    gc.add_argument("--prefix", default="", help="only segments whose names start with this")
    gc.add_argument("--json", action="store_true")
    doctor = sub.add_parser("doctor", help="check this environment for shared-memory problems")
    doctor.add_argument("--json", action="store_true")
    health = sub.add_parser("health", help="exit 0 if NAME exists and changed within --max-age s")
    health.add_argument("name")
    health.add_argument(
        "--max-age", type=seconds, default=5.0, help="seconds (default 5; inf: only that it exists)"
    )
    top = sub.add_parser("top", help="updates/s, MB/s, age and open handles of each object, live")
    top.add_argument("patterns", nargs="*", metavar="PATTERN", help="glob patterns (default: all)")
    top.add_argument(
        "--sort", choices=["name", "rate", "bandwidth", "age", "handles", "size"], default="name"
    )
    top.add_argument("--interval", type=positive, default=1.0, help="seconds between refreshes")
    top.add_argument(
        "--once", action="store_true", help="one measurement over --interval, then exit"
    )
    top.add_argument(
        "--json", action="store_true", help="JSON lines (one per refresh); implies no ANSI"
    )
    record = sub.add_parser("record", help="record every change of objects into an MCAP file")
    record.add_argument("patterns", nargs="+", metavar="NAME|PATTERN")
    record.add_argument(
        "-o",
        "--output",
        required=True,
        help="the .mcap file to write; strftime fields (%%Y%%m%%d-%%H%%M%%S) are expanded",
    )
    record.add_argument("--overwrite", action="store_true", help="replace an existing file")
    record.add_argument("--max-rate", type=positive, help="at most this many messages/s per object")
    record.add_argument("--compression", choices=["none", "zstd", "lz4"], default="none")
    record.add_argument(
        "--buffer-mb",
        type=positive,
        help="MB of changes held while the file system stalls (default 64); beyond, changes drop",
    )
    record.add_argument("--duration", type=seconds, help="stop after this many seconds")
    record.add_argument("--json", action="store_true", help="progress as JSON lines")
    play = sub.add_parser("play", help="play an MCAP recording back into shared memory")
    play.add_argument("file")
    play.add_argument(
        "--rate", type=positive, default=1.0, help="speed factor (default 1: as recorded)"
    )
    play.add_argument("--loop", action="store_true", help="start again at the end, until stopped")
    play.add_argument(
        "--rename", action="append", default=[], metavar="FROM=TO", help="object names"
    )
    play.add_argument("--start", type=seconds, default=0.0, help="seconds into the recording")
    play.add_argument("--end", type=seconds, help="seconds into the recording to stop at")
    bridge = sub.add_parser("bridge", help="the same objects on several hosts, through Zenoh")
    view = sub.add_parser("view", help="a live view of objects in the browser, through Rerun")
    # argparse only: neither imports numpy nor its extra until it runs
    from .bridge.command import add_arguments as bridge_arguments
    from .view.command import add_arguments as view_arguments

    bridge_arguments(bridge)
    view_arguments(view)
    return parser


def _runner(command: str) -> Callable[[argparse.Namespace], int]:
    module, function = _COMMANDS[command].split(":")
    run: Callable[[argparse.Namespace], int] = getattr(
        importlib.import_module(module, __package__), function
    )
    return run


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = int(_runner(args.command)(args))
        sys.stdout.flush()  # here, so that a reader gone away is handled below, not at exit
    except SharedObjectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # `shared-object ls | head`: the reader has what it wanted. Point stdout at /dev/null
        # so the interpreter's own flush at exit does not fail again (the Python docs' recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return code


__all__ = ["build_parser", "main"]
