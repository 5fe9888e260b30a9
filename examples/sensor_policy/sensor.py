"""The sensor: publishes a camera frame and a pose at a fixed rate, and reads the policy's actions.

Run ``python -m examples.sensor_policy.sensor --help``. In compose it is the ``sensor`` service.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import numpy as np

from shared_object import SegmentNotFoundError, SharedObject, TypeMismatchError

from .common import (
    ACTION,
    BYE,
    FRAME,
    STOP,
    Stats,
    initial_action_message,
    initial_frame_message,
    make_pose,
)


def create_fresh(name: str, value: object) -> SharedObject:
    """Create ``name``; a segment left by an earlier, crashed run is replaced."""
    try:
        return SharedObject(name, data=value, mode=0o666)
    except TypeMismatchError:
        SharedObject.attach(name).unlink()
        return SharedObject.create(name, value, mode=0o666)


def shut_down(frames: SharedObject, actions: SharedObject, stop: SharedObject) -> None:
    """Tell the policy to stop, wait for its goodbye (it no longer uses the objects), then remove
    them.
    """
    # Already leaving: a SIGTERM now (`compose up --abort-on-container-exit` stopping us once the
    # policy is done) must not cut the cleanup short.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stop.trigger()
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and actions.wait(max(0.0, deadline - time.monotonic())):
        if actions.fetch()["seq"] == BYE:
            break
    for obj in (frames, actions, stop):
        try:
            obj.unlink()
        except SegmentNotFoundError:
            pass
        obj.close()


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """docker stop sends SIGTERM: leave the loop the same way Ctrl-C does, so cleanup runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rate", type=float, default=30.0, help="frames per second (default 30)")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds to run, 0 for ever (default 10)"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    frame_msg = initial_frame_message()
    frames = create_fresh(FRAME, frame_msg)
    actions = create_fresh(ACTION, initial_action_message())
    stop = create_fresh(STOP, None)
    stats = Stats("sensor")
    period = 1.0 / args.rate
    started = time.monotonic()
    sent: dict[int, int] = {}  # seq -> stamp, for frames not answered yet
    seq = 0
    answered = 0
    before_policy = 0
    try:
        next_tick = time.monotonic()
        while not args.duration or time.monotonic() - started < args.duration:
            seq += 1
            frame_msg["seq"] = seq
            frame_msg["frame"][:] = seq % 256  # a real sensor would copy its camera buffer here
            frame_msg["pose"] = make_pose(seq * period)
            frame_msg["stamp_ns"] = time.time_ns()
            frames.assign(frame_msg)
            sent[seq] = frame_msg["stamp_ns"]
            next_tick += period
            # Until the next frame is due, collect the policy's answers.
            while (remaining := next_tick - time.monotonic()) > 0:
                if actions.wait(remaining):
                    action = actions.fetch()
                    if action["seq"] in sent:
                        stamp = sent.pop(action["seq"])
                        unanswered = [s for s in sent if s < action["seq"]]
                        for s in unanswered:
                            del sent[s]
                        if answered == 0:  # frames sent before the policy was up are not drops
                            before_policy, unanswered = len(unanswered), []
                        stats.record(time.time_ns() - stamp, len(unanswered))
                        answered += 1
            stats.maybe_print("round trips")
    except KeyboardInterrupt:
        pass
    finally:
        shut_down(frames, actions, stop)
    print(
        f"[sensor] done: {seq} frames sent, {answered} answered, {stats.total_dropped} dropped "
        f"({before_policy} sent before the policy was up)",
        flush=True,
    )
    return 0


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    sys.exit(main())
