"""The policy: waits for each new frame, computes an action from it, and sends the action back.

Run ``python -m examples.sensor_policy.policy --help``. In compose it is the ``policy`` service,
which joins the IPC namespace of the ``shm`` service, as the sensor does (``ipc: "service:shm"``).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from typing import Any

import numpy as np

from shared_object import SharedObject

from .common import ACTION, BYE, FRAME, STOP, Stats


def decide(frame: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A stand-in for a neural policy: an action from the frame's mean colour (subsampled)."""
    return np.resize(frame[::16, ::16].mean(axis=(0, 1)).astype(np.float32) / 255.0, 7)


def attach_all(timeout: float) -> tuple[SharedObject, SharedObject, SharedObject]:
    """The sensor's three objects, waiting up to ``timeout`` seconds for each to appear."""
    return (
        SharedObject.attach(FRAME, timeout=timeout),
        SharedObject.attach(ACTION, timeout=timeout),
        SharedObject.attach(STOP, timeout=timeout),
    )


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """docker stop sends SIGTERM: leave the loop the same way Ctrl-C does, so cleanup runs."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--attach-timeout", type=float, default=30.0, help="seconds to wait for the sensor"
    )
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    frames, actions, stop = attach_all(args.attach_timeout)
    stats = Stats("policy")
    last_seq = None
    received = 0
    try:
        while not stop.triggered:
            if not frames.wait(0.1):
                if frames.orphaned:  # the sensor re-created its objects (a restart): follow it
                    for obj in (frames, actions, stop):
                        obj.close()
                    frames, actions, stop = attach_all(args.attach_timeout)
                    last_seq = None
                stats.maybe_print("frames")
                continue
            # The action is computed on the shared frame in place: no 1.2 MB copy is made.
            seq, stamp, action = frames.fetch(
                lambda m: (m["seq"], m["stamp_ns"], decide(m["frame"]))
            )
            stats.record(
                time.time_ns() - stamp, 0 if last_seq is None else max(0, seq - last_seq - 1)
            )
            last_seq = seq
            received += 1
            actions.assign({"seq": seq, "stamp_ns": time.time_ns(), "action": action})
            stats.maybe_print("frames")
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(
            signal.SIGTERM, signal.SIG_IGN
        )  # already leaving: let the goodbye and cleanup finish
        actions.assign({"seq": BYE, "stamp_ns": time.time_ns(), "action": np.zeros(7, np.float32)})
        for obj in (frames, actions, stop):
            obj.close()
    print(f"[policy] done: {received} frames received, {stats.total_dropped} dropped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
