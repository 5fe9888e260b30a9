"""``shared-object play F.mcap``: a recording (``record``'s, or any rosbag2 MCAP file) back into
shared memory, with its timing (the player itself: ``shared_object.recording``)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .._errors import InvalidArgumentError
from ._common import FAILED, SEVERAL, positive, seconds


def play_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file")
    parser.add_argument(
        "--rate", type=positive, default=1.0, help="speed factor (default 1: as recorded)"
    )
    parser.add_argument("--loop", action="store_true", help="start again at the end, until stopped")
    parser.add_argument(
        "--rename",
        metavar="FROM=TO",
        help="play into another object: FROM an object's name or a topic (/camera/image_raw)",
        **SEVERAL,
    )
    parser.add_argument("--start", type=seconds, default=0.0, help="seconds into the recording")
    parser.add_argument("--end", type=seconds, help="seconds into the recording to stop at")


def _raise_interrupt() -> None:
    raise KeyboardInterrupt


def _renames(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        old, sep, new = pair.partition("=")
        if not sep or not old or not new:
            msg = f"--rename takes FROM=TO, not {pair!r}"
            raise InvalidArgumentError(msg)
        out[old] = new
    return out


def run_play(args: argparse.Namespace) -> int:
    from ..recording import Player, Recording

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    try:
        recording = Recording(args.file)
    except FileNotFoundError:
        say(f"error: no such file: {args.file}")
        return FAILED
    for skipped in recording.skipped:
        say(f"warning: {skipped}")
    if recording.truncated:
        say(
            f"warning: {args.file} ends without its index (was its recorder killed?): playing the "
            f"{recording.count} messages before the cut"
        )
    if not recording.count:
        say(f"error: {args.file} holds no messages to play (of shared_object's or rosbag2's)")
        return FAILED
    player = Player(recording, _renames(args.rename), say)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda signum, frame: _raise_interrupt())
    try:
        while True:
            player.play(args.start, args.end, args.rate, stop)
            if not args.loop:
                break
    except KeyboardInterrupt:
        stop.set()
    finally:
        player.close()
    print(
        f"played {player.played} messages of {len(recording.topics())} objects"
        + (f"; skipped {player.corrupt}" if player.corrupt else "")
    )
    return 0


__all__ = ["play_arguments", "run_play"]
