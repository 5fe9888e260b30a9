"""``shared-object record PATTERN... -o F.mcap``: every change of the matching objects into an MCAP
file, until Ctrl-C, SIGTERM or ``--duration`` (the recorder itself: ``shared_object.recording``);
with ``--ros2``, a rosbag2 file ROS 2's tools read."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from typing import Any

from ._common import FAILED, USAGE, positive, seconds


def record_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("patterns", nargs="+", metavar="NAME|PATTERN")
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        help="the .mcap file to write; strftime fields (%%Y%%m%%d-%%H%%M%%S) are expanded",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing file")
    parser.add_argument("--max-rate", type=positive, help="at most this many messages/s per object")
    parser.add_argument("--compression", choices=["none", "zstd", "lz4"], default="none")
    parser.add_argument(
        "--buffer-mb",
        type=positive,
        help="MB of changes held while the file system stalls (default 64); beyond, changes drop",
    )
    parser.add_argument(
        "--ros2",
        action="store_true",
        help="write a rosbag2 file (ROS 2 messages, CDR: ros2 bag, Foxglove and rosbags read "
        "it; extra ros2) instead of shared_object's own",
    )
    parser.add_argument(
        "--ros2-frame-id", metavar="ID", help="with --ros2: headers' frame id (default: the name)"
    )
    parser.add_argument("--duration", type=seconds, help="stop after this many seconds")
    parser.add_argument("--json", action="store_true", help="progress as JSON lines")


def run_record(args: argparse.Namespace) -> int:
    # strftime fields (%Y%m%d-%H%M%S) give each run a file of its own: a recorder restarted by
    # its supervisor must not write over the recording it made before.
    path = time.strftime(args.output)
    if os.path.exists(path) and not os.path.isfile(path):
        print(f"error: {path} exists and is not a file", file=sys.stderr)
        return USAGE
    if os.path.exists(path) and not args.overwrite:
        print(
            f"error: {path} exists: give --overwrite to replace it, or put strftime fields in "
            "the name (-o 'run-%Y%m%d-%H%M%S.mcap')",
            file=sys.stderr,
        )
        return USAGE
    from ..recording import DEFAULT_BUFFER_BYTES, TICK_S, Recorder

    # SIGTERM (docker stop) ends a recording as Ctrl-C does: the file gets its index and footer.
    signal.signal(signal.SIGTERM, lambda signum, frame: _raise_interrupt())
    with open(path, "wb") as output:
        recorder = Recorder(
            output,
            args.patterns,
            max_rate=args.max_rate,
            compression=args.compression,
            buffer_bytes=(
                int(min(args.buffer_mb * 1e6, sys.maxsize))
                if args.buffer_mb is not None
                else DEFAULT_BUFFER_BYTES
            ),
            ros2=args.ros2,
            frame_id=args.ros2_frame_id,
        )
        recorder.start()
        started = time.monotonic()
        last_bytes, last_t = 0, started
        try:
            while args.duration is None or time.monotonic() - started < args.duration:
                left = (
                    TICK_S
                    if args.duration is None
                    else min(TICK_S, args.duration - (time.monotonic() - started))
                )
                time.sleep(max(0.0, left))
                now = time.monotonic()
                line = recorder.progress()
                line["mb_per_s"] = round(
                    (line["bytes"] - last_bytes) / 1e6 / max(now - last_t, 1e-9), 2
                )
                last_bytes, last_t = line["bytes"], now
                _report(line, args.json)
                for error in recorder.take_errors():
                    print(f"warning: {error}", file=sys.stderr)
        except KeyboardInterrupt:
            pass
        finally:
            recorder.finish()
        for error in recorder.take_errors():
            print(f"warning: {error}", file=sys.stderr)
    summary = recorder.progress()
    if not args.json:
        print(
            f"recorded {summary['messages']} messages ({summary['bytes'] / 1e6:.1f} MB) of "
            f"{summary['objects']} objects into {path}; dropped {summary['dropped']}"
            + (f"; {summary['write_errors']} failed to write" if summary["write_errors"] else "")
            + (f"; {summary['skipped']} skipped (no ROS 2 message)" if summary["skipped"] else "")
        )
    return FAILED if summary["write_errors"] else 0


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


def _report(line: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(line), flush=True)
    else:
        print(
            f"recording: {line['objects']} objects, {line['messages']} messages, "
            f"{line['bytes'] / 1e6:.1f} MB, {line['mb_per_s']:.1f} MB/s, dropped {line['dropped']}"
            f", {line['queued_bytes'] / 1e6:.1f} MB queued, {line['write_errors']} failed to write",
            flush=True,
        )


__all__ = ["record_arguments", "run_record"]
