"""The live view's loop: one thread per followed object, each logging its newest values.

One thread per object that matches a pattern (new ones are picked up at each ``scan``) waits for
its changes and logs the newest value, at most ``max_rate`` times a second: a faster producer is
sampled, never queued behind. Each value is fetched (a private copy: Rerun may keep the array
after ``log`` returns, and the shared one changes under it) and logged on two timelines, ``time``
(the object's change time) and ``change`` (its change counter), so the viewer can scrub back.
What a leaf is shown as is ``mapping``'s decision; what it cannot show is said once and skipped.
"""

from __future__ import annotations

import fnmatch
import threading
import time
from collections.abc import Callable
from typing import Any

from .._dynamic import open_any
from .._errors import SharedObjectError
from .._probe import segment_names
from . import mapping


class Viewer:
    """Logs the objects matching ``patterns`` to ``recording`` until :meth:`stop`."""

    def __init__(
        self,
        rr: Any,
        recording: Any,
        patterns: list[str],
        *,
        max_rate: float = 30.0,
        jpeg_quality: int | None = None,
        forced: dict[str, str] | None = None,
        say: Callable[[str], object] = print,
    ) -> None:
        self.rr, self.recording, self.patterns = rr, recording, patterns
        self.min_interval = 1.0 / max_rate
        self.jpeg_quality = jpeg_quality
        self.forced = forced or {}
        self.say = say
        self.stop_event = threading.Event()
        self.threads: dict[str, threading.Thread] = {}
        self.logged = 0  # values logged, all objects
        self.followed: set[str] = set()  # every object followed, now or before
        self._said: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def scan(self) -> None:
        for name in segment_names():
            if name in self.threads or not any(fnmatch.fnmatchcase(name, p) for p in self.patterns):
                continue
            thread = threading.Thread(target=self._follow, args=(name,), name=f"view {name}")
            thread.daemon = True
            self.threads[name] = thread
            self.followed.add(name)
            thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        for thread in list(self.threads.values()):
            thread.join(5)

    def _follow(self, name: str) -> None:
        try:
            obj = open_any(name)
        except (SharedObjectError, OSError) as exc:
            self._say_once(name, f"view: cannot open {name}: {exc}")
            return
        try:
            self._log(name, obj)  # its current value first, then each change
            last = time.monotonic()
            while not self.stop_event.is_set():
                if not obj.wait(0.5):
                    if obj.orphaned:  # removed or re-created: the next scan follows the new one
                        break
                    continue
                # At most max_rate a second: a change sooner than that waits for the rest of
                # the interval and then logs the newest value, which may be a later one.
                self.stop_event.wait(max(0.0, last + self.min_interval - time.monotonic()))
                self._log(name, obj)
                last = time.monotonic()
        except (SharedObjectError, OSError) as exc:
            self._say_once(name, f"view: stopped following {name}: {exc}")
        finally:
            obj.close()
            with self._lock:
                self.threads.pop(name, None)

    def _log(self, name: str, obj: Any) -> None:
        value = obj.fetch()
        # Times are per thread in Rerun: each object's thread sets its own. ``_seen`` is the
        # change counter of the value just fetched.
        self.recording.set_time("time", timestamp=obj.mtime / 1e9)
        self.recording.set_time("change", sequence=obj._seen)
        leaves = [leaf for _, leaf in mapping.walk(value)]
        for leaf, planned in zip(leaves, mapping.plan(name, value, self.forced), strict=True):
            if planned.kind is None:
                self._say_once(planned.path, f"view: not shown: {planned.path}: {planned.reason}")
                continue
            parts = mapping.archetypes(self.rr, planned.kind, leaf, self.jpeg_quality)
            self.recording.log(planned.path, *parts)
        with self._lock:
            self.logged += 1

    def _say_once(self, key: str, text: str) -> None:
        with self._lock:
            if (key, text) in self._said:
                return
            self._said.add((key, text))
        self.say(text)


__all__ = ["Viewer"]
