"""Following objects by name: every object whose name matches some glob patterns, from the moment
it appears, through each of its changes, and through its producer's restarts.

A recorder, a bridge's exporter and a live view each follow objects this way; they differ only
in what they do with a value, which is a :class:`Watch` of theirs. A :class:`Follower`:

- scans the shared-memory directory for matching names every ``scan_s`` (and on ``scan()``),
  and gives each new name a thread of its own;
- in that thread, attaches to the object as whatever it was created as (``shared_object.attach``:
  a SharedDynamicObject if it is one), makes the watch, and calls ``watch.changed()`` for the
  value it finds, then after each change: ``wait()`` between them, so an idle object costs no
  CPU. With ``max_rate``, a change sooner than ``1 / max_rate`` after the last call waits out
  the rest of the interval, then the watch reads the newest value: a faster producer is sampled,
  never queued;
- notices when the name no longer leads to the object it follows (``orphaned``: the object was
  removed, or a restarted producer created it again, perhaps with another kind), closes the
  watch and the handle, and attaches to the new object at once if there is one (a removed
  object is picked up by a later scan if it comes back);
- stops within a bounded time (:meth:`stop` returns the names whose threads did not end in it).

A watch reads the value itself (``fetch``, ``fetch_raw``, ``view``): whatever it reads marks the
change seen. A watch that reads nothing is called again only at the next change. Errors a
watch raises (SharedObjectError, OSError) end its object's thread and are reported through
``on_error``; the next scan follows the object again.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from ._dynamic import open_any
from ._errors import SegmentNotFoundError, SharedObjectError
from ._object import SharedObject
from ._probe import segment_names

log = logging.getLogger("shared_object.follow")

#: How often a follower looks for new objects, and how long a thread waits for a change before
#: it looks whether its object was removed or re-created.
SCAN_S = 1.0
WAIT_S = 0.25


def matching_names(patterns: Sequence[str]) -> list[str]:
    """The names of the objects there are now (in this process's /dev/shm) that match one of
    ``patterns``."""
    return [n for n in segment_names() if any(fnmatch.fnmatchcase(n, p) for p in patterns)]


class Watch(Protocol):
    """What a tool does with one followed object (the handle it was made with)."""

    def changed(self) -> None:
        """Read the value (the one there is when following starts, then after each change)."""

    def close(self) -> None:
        """Following ended: the object was removed or re-created, or the follower stopped."""


class Follower:
    """Follows the objects whose names match ``patterns``, one thread each, until :meth:`stop`.

    ``watch(obj)`` makes the Watch of a followed object; ``max_rate`` caps the calls of a watch
    a second (a number for every object, or a function of the object's name; None: no cap).
    ``on_error(name, error)`` hears what went wrong with an object (by default, logged).
    """

    def __init__(
        self,
        patterns: Sequence[str],
        watch: Callable[[SharedObject], Watch],
        *,
        max_rate: float | Callable[[str], float | None] | None = None,
        on_error: Callable[[str, Exception], None] | None = None,
        scan_s: float = SCAN_S,
        wait_s: float = WAIT_S,
        name: str = "follow",
    ) -> None:
        self.patterns = list(patterns)
        self._watch = watch
        self._max_rate = max_rate
        self._on_error = on_error or _log_error
        self._scan_s, self._wait_s, self._name = scan_s, wait_s, name
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._threads: dict[str, threading.Thread] = {}
        self._scanner: threading.Thread | None = None
        #: Every name followed, now or before.
        self.followed: set[str] = set()

    def __enter__(self) -> Follower:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def following(self) -> list[str]:
        """The names followed now."""
        with self._lock:
            return sorted(self._threads)

    def start(self) -> None:
        """Scan now, then every ``scan_s`` in a thread of the follower's own."""
        self.scan()
        self._scanner = threading.Thread(target=self._scan_loop, name=f"{self._name} scan")
        self._scanner.daemon = True
        self._scanner.start()

    def scan(self) -> None:
        """Start following each matching object not followed yet."""
        for name in matching_names(self.patterns):
            if self.stop_event.is_set():
                break
            with self._lock:
                if name in self._threads:
                    continue
                thread = threading.Thread(target=self._follow, args=(name,))
                thread.name, thread.daemon = f"{self._name} {name}", True
                self._threads[name] = thread
                self.followed.add(name)
            thread.start()

    def stop(self, timeout: float = 5.0) -> list[str]:
        """Stop following; the names whose threads did not end within ``timeout`` seconds (each
        is logged). A thread ends once its watch returns, and waits at most ``wait_s`` between
        calls."""
        self.stop_event.set()
        deadline = time.monotonic() + timeout
        if self._scanner is not None:
            self._scanner.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            threads = dict(self._threads)
        stuck = []
        for name, thread in threads.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                stuck.append(name)
        if stuck:
            log.warning("%s: still busy after %.1f s, left behind: %s", self._name, timeout, stuck)
        return stuck

    def _scan_loop(self) -> None:
        while not self.stop_event.wait(self._scan_s):
            try:
                self.scan()
            except OSError as exc:  # the directory itself went away: say so, try again later
                self._on_error("", exc)

    def _interval(self, name: str) -> float:
        rate = self._max_rate(name) if callable(self._max_rate) else self._max_rate
        return 1.0 / rate if rate else 0.0

    def _follow(self, name: str) -> None:
        """The thread of one name: follow each object that bears it, until it is gone."""
        try:
            while not self.stop_event.is_set():
                try:
                    obj = open_any(name)
                except SegmentNotFoundError:
                    return  # removed: a later scan follows it if it comes back
                if not self._follow_object(name, obj):
                    return
        except (SharedObjectError, OSError) as exc:
            self._on_error(name, exc)
        finally:
            with self._lock:
                self._threads.pop(name, None)

    def _follow_object(self, name: str, obj: SharedObject) -> bool:
        """Follow ``obj`` until it is orphaned (True: look for its successor) or we stop."""
        interval = self._interval(name)
        stop = self.stop_event
        try:
            watch = self._watch(obj)
        except BaseException:
            obj.close()
            raise
        try:
            watch.changed()
            last = time.monotonic()
            while not stop.is_set():
                if not obj.wait(self._wait_s):
                    if obj.orphaned:
                        return True
                    continue
                if interval and stop.wait(max(0.0, last + interval - time.monotonic())):
                    break
                watch.changed()
                last = time.monotonic()
            return False
        finally:
            try:
                watch.close()
            finally:
                obj.close()


def _log_error(name: str, error: Exception) -> None:
    log.warning("following %s: %s", name or "objects", error)


__all__ = ["SCAN_S", "WAIT_S", "Follower", "Watch", "matching_names"]
