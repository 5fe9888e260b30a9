"""``shared-object view NAME|PATTERN...``: a live view of shared objects in the browser (Rerun).

Its arguments are defined with nothing else loaded (``shared-object --help`` builds every
command's parser); the viewer (``shared_object.view``), numpy and Rerun are imported when it
runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

from .._errors import InvalidArgumentError
from .._extras import require
from ._common import SEVERAL

DEFAULT_PORT = 9090
SCAN_S = 1.0
#: The kinds ``--as`` may force (``FORCEABLE``, which a test keeps equal).
FORCEABLE = ("image", "tensor", "scalar")


def view_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="+", metavar="NAME|PATTERN")
    parser.add_argument(
        "--port",
        type=int,
        default=DEFAULT_PORT,
        help=f"the page's port (default {DEFAULT_PORT}); the data port is the next one",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: this machine only; 0.0.0.0: every one)",
    )
    parser.add_argument(
        "--max-rate",
        type=float,
        default=30.0,
        help="at most this many values per second per object (default 30)",
    )
    parser.add_argument(
        "--jpeg",
        type=int,
        metavar="QUALITY",
        help="send uint8 grey and RGB images as JPEG of this quality (1-100): a tenth of the bytes",
    )
    parser.add_argument(
        "--as",
        dest="forced",
        metavar="NAME=KIND",
        help=f"show an object, or a leaf (name/key), as one of {', '.join(FORCEABLE)}",
        **SEVERAL,
    )
    parser.add_argument(
        "--server-memory-limit",
        default="512MiB",
        help="what the server keeps for viewers that join later, oldest dropped (default 512MiB)",
    )
    parser.add_argument(
        "--memory-limit",
        default="1GiB",
        help="the native viewer's memory (--spawn), oldest dropped (default 1GiB)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--save", metavar="FILE.rrd", help="write a Rerun recording instead")
    where.add_argument(
        "--spawn", action="store_true", help="open Rerun's native viewer instead (needs a display)"
    )
    parser.add_argument("--duration", type=float, help="stop after this many seconds")


def _forced(entries: list[str]) -> dict[str, str]:
    forced = {}
    for entry in entries:
        name, sep, kind = entry.partition("=")
        if not sep or not name or kind not in FORCEABLE:
            msg = f"--as {entry!r}: expected NAME=KIND with KIND one of {', '.join(FORCEABLE)}"
            raise InvalidArgumentError(msg)
        forced[name] = kind
    return forced


def _rerun() -> Any:
    return require("rerun", extra="view", feature="the live view")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def run_view(args: argparse.Namespace) -> int:
    forced = _forced(args.forced)
    if args.max_rate <= 0:
        raise InvalidArgumentError("--max-rate must be positive")
    if args.jpeg is not None and not 1 <= args.jpeg <= 100:
        raise InvalidArgumentError("--jpeg takes a quality from 1 to 100")
    rr = _rerun()
    from ..view.server import RerunServer
    from ..view.viewer import Viewer

    server: Any = None
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        if not args.save and not args.spawn:  # before the recording's threads: see start()
            server = RerunServer(args.host, args.port, args.port + 1, args.server_memory_limit)
            server.start()
        recording = rr.RecordingStream("shared_object")
        if args.save:
            recording.save(args.save)
            print(f"view: recording into {args.save}", flush=True)
        elif args.spawn:
            recording.spawn(memory_limit=args.memory_limit)
        else:
            recording.connect_grpc(server.data_url)
            print(f"view: open {server.page_url()}", flush=True)
        viewer = Viewer(
            rr, recording, args.patterns, max_rate=args.max_rate, jpeg_quality=args.jpeg,
            forced=forced,
        )  # fmt: skip
        viewer.start()
        started = time.monotonic()
        try:
            while args.duration is None or time.monotonic() - started < args.duration:
                left = (
                    None if args.duration is None else args.duration - (time.monotonic() - started)
                )
                time.sleep(SCAN_S if left is None else max(0.0, min(SCAN_S, left)))
        except KeyboardInterrupt:
            pass
        finally:
            viewer.stop()
            recording.flush()
        print(f"view: logged {viewer.logged} values of {len(viewer.followed)} objects", flush=True)
    finally:
        if server is not None:
            server.stop()
        sys.stdout.flush()
    return 0


__all__ = ["FORCEABLE", "run_view", "view_arguments"]
