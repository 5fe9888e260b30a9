"""An emergency stop: a trigger object, checked by a 1 kHz control loop at no cost.

``SharedObject(name)`` with no data makes a *trigger object*: it holds nothing, and
``trigger()`` marks a change that every other handle sees. ``triggered`` is true once per
change and makes no system call, so a control loop can check it every cycle; ``wait()`` sleeps
until the next change for a process with nothing else to do. Run: ``python -m examples.estop``.
"""

from __future__ import annotations

import multiprocessing
import os
import time

from shared_object import SharedObject

NAME = f"estop-{os.getpid()}"


def operator(name: str) -> None:
    """Another process (a button, a safety monitor) presses the stop after a while."""
    with SharedObject.attach(name, timeout=10) as estop:
        time.sleep(0.3)
        estop.trigger()


def main() -> None:
    estop = SharedObject(NAME)  # no data and no such segment: a trigger object
    button = multiprocessing.get_context("spawn").Process(target=operator, args=(NAME,))
    button.start()
    cycles = 0
    try:
        assert not estop.wait(timeout=0.01)  # nothing pressed yet: wait() times out with False
        started = time.monotonic()
        while not estop.triggered:  # one memory read per cycle
            cycles += 1
            time.sleep(0.001)  # the control loop's work
            if time.monotonic() - started > 30:
                raise SystemExit("the stop never came")
        button.join(10)
        again = estop.triggered  # reading it reset it: one stop, seen once
    finally:
        estop.unlink()
        estop.close()
    print(f"stopped after {cycles} control cycles; triggered on the next read: {again}")


if __name__ == "__main__":
    main()
