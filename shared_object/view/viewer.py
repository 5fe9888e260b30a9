"""The live view's loop: one thread per followed object, each logging its newest values.

A Follower (``shared_object.follow``) gives each object that matches a pattern a thread that
waits for its changes and logs the newest value, at most ``max_rate`` times a second: a faster
producer is sampled, never queued behind; a restarted one is followed into its new object.
Each value is fetched (a private copy: Rerun may keep the array after ``log`` returns, and the
shared one changes under it) and logged on two timelines, ``time`` (the object's change time)
and ``change`` (its change counter), so the viewer can scrub back.
What a leaf is shown as is ``mapping``'s decision; what it cannot show is said once and skipped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from .. import SharedObject
from ..follow import Follower
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
        self.jpeg_quality = jpeg_quality
        self.forced = forced or {}
        self.say = say
        self.logged = 0  # values logged, all objects
        self._said: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self.follower = Follower(
            patterns,
            lambda obj: _Logger(self, obj),
            max_rate=max_rate,
            on_error=lambda name, exc: self._say_once(name, f"view: {name}: {exc}"),
            name="view",
        )

    @property
    def followed(self) -> set[str]:
        """Every object followed, now or before."""
        return self.follower.followed

    def __enter__(self) -> Viewer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Follow the matching objects, now and as they appear (every second)."""
        self.follower.start()

    def scan(self) -> None:
        """Follow each matching object not followed yet (``start`` does it every second)."""
        self.follower.scan()

    def stop(self) -> None:
        self.follower.stop()

    def log(self, name: str, obj: SharedObject) -> None:
        """Log ``obj``'s value now."""
        value = obj.fetch()
        # Times are per thread in Rerun: each object's thread sets its own.
        self.recording.set_time("time", timestamp=obj.mtime / 1e9)
        self.recording.set_time("change", sequence=obj.seen_change)
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


class _Logger:
    """The Watch of one viewed object: its newest value, logged at each change."""

    def __init__(self, viewer: Viewer, obj: SharedObject) -> None:
        self.viewer, self.obj = viewer, obj

    def changed(self) -> None:
        self.viewer.log(self.obj.name, self.obj)

    def close(self) -> None:
        pass


__all__ = ["Viewer"]
