"""A bridge: local shared objects published through Zenoh, remote ones mirrored into local objects.

Exporting. One thread per local object that matches an export pattern waits for its changes
(``wait()``: no CPU while nothing changes), copies the new value's payload whole (``fetch_raw``)
into one message (``wire``), and puts it on the key ``<prefix><name>``. It always sends the newest
value: a change that came while the last one was still being sent is skipped, never queued. Big
payloads are sent with congestion control DROP (a slow link drops frames rather than stalling the
exporter), small ones with BLOCK (a command is not lost to a full queue). Each key's publisher
keeps its last message for late joiners (Zenoh's advanced publisher cache).

Importing. One subscriber on ``<prefix>**``, whose callback Zenoh's network thread calls
directly (``indirect=False``), not through zenoh-python's default queue and thread, behind which
frames pile up when the handler is slower than the link: hundreds of MB of them, seconds old.
The callback applies the message at once, tens of microseconds for a frame. While it runs Zenoh
reads nothing more, so an importer that falls behind leaves the backlog in the socket's buffers
(a few MB) and pushes back to the sender, whose Zenoh then drops big frames (congestion control
DROP) rather than queue them. It validates each message (``wire.decode``, then
``_codecs.Decoder``); the local object is created as the message says (a SharedDynamicObject
for a dynamic source, or when the source's kind changed) or attached, and assigned. A message
older than the last applied for its key (an older change time, or an old sequence number of the
same source) is dropped: a consumer never sees an older value after a newer one.

No echo. A value this bridge imported is never exported again: the importer notes the change it
made, and the exporter skips that change (under one lock per name, so neither runs between the
other's assign and its note). Two bridges can so mirror one name both ways (the demo's action
flows back while its frame flows out). A name received from two sources at once is reported.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from .. import _reading
from .._codecs import Decoder
from .._dynamic import SharedDynamicObject, open_any
from .._errors import (
    LayoutError,
    SegmentExistsError,
    SegmentNotFoundError,
    SharedObjectError,
    TypeMismatchError,
)
from .._object import SharedObject
from .._probe import segment_names
from . import wire
from .defaults import BIG_PAYLOAD, DEFAULT_PREFIX
from .session import _zenoh

log = logging.getLogger("shared_object.bridge")

#: A second source of one name within this long is reported (two exporters of one name).
SOURCE_WINDOW_S = 10.0


class Stats:
    """What flowed since the last report; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.totals = {
            "sent": 0,
            "received": 0,
            "dropped": 0,
            "malformed": 0,
            "stale": 0,
            "errors": 0,
        }
        self._reset()

    def _reset(self) -> None:
        self.sent = self.sent_bytes = self.received = self.received_bytes = 0
        self.dropped = self.malformed = self.stale = self.errors = 0
        self.ages_ms: list[float] = []

    def count(self, what: str, n: int = 1, size: int = 0, age_ms: float | None = None) -> None:
        with self._lock:
            setattr(self, what, getattr(self, what) + n)
            self.totals[what] += n
            if what == "sent":
                self.sent_bytes += size
            elif what == "received":
                self.received_bytes += size
                if age_ms is not None:
                    self.ages_ms.append(age_ms)

    def report(self, seconds: float) -> dict[str, Any]:
        """This period's rates, ages and counts (then a new period begins)."""
        with self._lock:
            ages = sorted(self.ages_ms)
            line = {
                "sent_per_s": round(self.sent / seconds, 1),
                "sent_mb_per_s": round(self.sent_bytes / 1e6 / seconds, 2),
                "received_per_s": round(self.received / seconds, 1),
                "received_mb_per_s": round(self.received_bytes / 1e6 / seconds, 2),
                "dropped": self.dropped,
                "stale": self.stale,
                "malformed": self.malformed,
                "errors": self.errors,
                "age_p50_ms": round(statistics.median(ages), 2) if ages else None,
                "age_p99_ms": round(ages[min(len(ages) - 1, int(len(ages) * 0.99))], 2)
                if ages
                else None,
                "totals": dict(self.totals),
            }
            self._reset()
        return line


class _Last:
    """The last message applied for a key."""

    __slots__ = ("mtime_ns", "sequence", "source")

    def __init__(self, message: wire.Message) -> None:
        self.source, self.sequence, self.mtime_ns = (
            message.source,
            message.sequence,
            message.mtime_ns,
        )


def _direct(zenoh: Any, callback: Callable[[Any], None]) -> Any:
    """``callback`` as a handler Zenoh calls on its own network thread (``indirect=False``).

    Marked unstable in zenoh-python 1.x; where it is refused, zenoh-python's default (its own
    queue and thread) is used: correct, with one more thread hop per message.
    """
    try:
        return zenoh.handlers.Callback(callback, indirect=False)
    except TypeError:
        log.info("this zenoh-python calls callbacks through a thread of its own")
        return callback


def _parse_imports(entries: Iterable[str]) -> tuple[list[str], dict[str, str]]:
    """``--import`` entries: patterns, and the ``remote=local`` renames among them."""
    patterns, renames = [], {}
    for entry in entries:
        remote, sep, local = entry.partition("=")
        if sep:
            renames[remote] = local
        patterns.append(remote)
    return patterns, renames


class Bridge:
    """Exports and imports shared objects through an open Zenoh session, until :meth:`stop`."""

    def __init__(
        self,
        session: Any,
        *,
        exports: Iterable[str] = (),
        imports: Iterable[str] = (),
        prefix: str = DEFAULT_PREFIX,
        congestion: str = "auto",
        big_payload: int = BIG_PAYLOAD,
        mode: int = 0o600,
    ) -> None:
        if congestion not in ("auto", "drop", "block"):
            msg = f"congestion must be auto, drop or block, not {congestion!r}"
            raise ValueError(msg)
        self.session = session
        self.exports = list(exports)
        self.imports, self.renames = _parse_imports(imports)
        self.prefix = prefix
        self.congestion = congestion
        self.big_payload = big_payload
        self.mode = mode
        #: Names this process's messages by: a receiver drops its own, and tells sources apart.
        self.source = os.urandom(wire.SOURCE_SIZE)
        self.stats = Stats()
        self.stop_event = threading.Event()
        self._name_locks: dict[str, threading.Lock] = {}
        self._imported: dict[str, int] = {}  # local name -> the change our last import made
        self._exporting: dict[str, threading.Thread] = {}
        self._objects: dict[str, SharedObject] = {}  # local name -> the importer's handle
        self._created: set[str] = set()
        self._last: dict[str, _Last] = {}
        self._sources: dict[str, dict[bytes, float]] = {}
        self._reported_twice: set[str] = set()
        self._decoder = Decoder()
        self._subscriber: Any = None
        self._threads: list[threading.Thread] = []

    # -----------------------------------------------------------------------------------------
    def start(self) -> None:
        zenoh = _zenoh()
        if self.imports:
            # Each publisher's cache already holds only its newest sample. A max_samples
            # here would cap the whole late-joiner query, not each key: with 1, a
            # bridge that joins after three publishers receives only some of them.
            history = zenoh.ext.HistoryConfig(detect_late_publishers=True)
            self._subscriber = zenoh.ext.declare_advanced_subscriber(
                self.session, f"{self.prefix}**", _direct(zenoh, self._on_sample), history=history
            )

        if self.exports:
            self._spawn(self._scan_loop, "bridge export scan")

    def stop(self) -> None:
        self.stop_event.set()
        for thread in [*self._threads, *self._exporting.values()]:
            thread.join(5)
        if self._subscriber is not None:
            with contextlib.suppress(Exception):  # the session may be gone already
                self._subscriber.undeclare()
        for name, obj in list(self._objects.items()):
            with self._lock_for(name):  # not under a callback's assign still running
                obj.close()

    def _spawn(self, target: Callable[[], None], name: str) -> None:
        thread = threading.Thread(target=target, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _lock_for(self, name: str) -> threading.Lock:
        lock = self._name_locks.get(name)
        if lock is None:
            lock = self._name_locks.setdefault(name, threading.Lock())
        return lock

    # -----------------------------------------------------------------------------------------
    # Exporting
    # -----------------------------------------------------------------------------------------
    def _scan_loop(self) -> None:
        while not self.stop_event.is_set():
            for name in segment_names():
                if name not in self._exporting and any(
                    fnmatch.fnmatchcase(name, p) for p in self.exports
                ):
                    thread = threading.Thread(
                        target=self._export, args=(name,), name=f"export {name}", daemon=True
                    )
                    self._exporting[name] = thread
                    thread.start()
            self.stop_event.wait(1.0)

    def _export(self, name: str) -> None:
        zenoh = _zenoh()
        try:
            obj = open_any(name)
        except (SharedObjectError, OSError) as exc:
            log.warning("cannot export %r: %s", name, exc)
            self.stats.count("errors")
            return
        publisher = None
        message: bytearray | None = None  # reused: see wire.encode
        payload = bytearray()  # reused: see fetch_raw
        sequence = 0
        first = True
        dynamic = isinstance(obj, SharedDynamicObject)
        try:
            while not self.stop_event.is_set():
                if not first and not obj.wait(0.5):
                    if obj.orphaned:  # removed or re-created: a new thread follows the new one
                        break
                    continue
                first = False
                with self._lock_for(name):
                    raw = _reading.fetch_raw(obj, reuse=payload)
                    if self._imported.get(name) == raw.change:
                        continue  # the value we imported: never sent back
                if not isinstance(raw.payload, bytearray):  # its size changed
                    payload = bytearray(len(raw.payload))
                sequence += 1
                message = wire.encode(
                    sequence=sequence,
                    mtime_ns=raw.mtime_ns,
                    change=raw.change,
                    source=self.source,
                    dynamic=dynamic,
                    single_slot=obj._single_slot,
                    schema_text=raw.schema_text,
                    payload=raw.payload,
                    reuse=message,
                )
                if publisher is None:
                    publisher = zenoh.ext.declare_advanced_publisher(
                        self.session,
                        self.prefix + name,
                        congestion_control=self._congestion_for(len(raw.payload)),
                        express=True,
                        cache=zenoh.ext.CacheConfig(max_samples=1),
                        publisher_detection=True,
                    )
                publisher.put(message)  # Zenoh copies it: the buffer is ours again
                self.stats.count("sent", size=len(message))
        except (SharedObjectError, OSError) as exc:
            log.warning("stopped exporting %r: %s", name, exc)
            self.stats.count("errors")
        finally:
            if publisher is not None:
                with contextlib.suppress(Exception):
                    publisher.undeclare()
            obj.close()
            self._exporting.pop(name, None)  # the next scan follows it again, if it is there

    def _congestion_for(self, size: int) -> Any:
        zenoh = _zenoh()
        drop = self.congestion == "drop" or (self.congestion == "auto" and size >= self.big_payload)
        return zenoh.CongestionControl.DROP if drop else zenoh.CongestionControl.BLOCK

    # -----------------------------------------------------------------------------------------
    # Importing
    # -----------------------------------------------------------------------------------------
    def _on_sample(self, sample: Any) -> None:
        """Zenoh's callback, on its network thread: apply the message now (see the module's
        docstring). Nothing it raises may reach Zenoh: logged and counted instead."""
        if self.stop_event.is_set():
            return
        key = str(sample.key_expr)
        try:
            self._apply(key, sample.payload.to_bytes())
        except Exception:  # one message must never stop the bridge
            log.exception("importing %s failed", key)
            self.stats.count("errors")

    def _apply(self, key: str, data: bytes) -> None:
        received_ns = time.time_ns()
        if not key.startswith(self.prefix):
            return
        name = key[len(self.prefix) :]
        if not any(fnmatch.fnmatchcase(name, p) for p in self.imports):
            return
        try:
            message = wire.decode(data)
            value = self._decoder.decode(  # views into ``data``: assign copies them once
                message.schema_text, message.payload, f"a message for {name!r}", copy=False
            )
        except LayoutError as exc:
            self.stats.count("malformed")
            log.warning("dropped a malformed message on %s (%d bytes): %s", key, len(data), exc)
            return
        if message.source == self.source:
            return  # our own, come back
        self._note_source(name, message.source)
        last = self._last.get(name)
        if last is not None:
            if message.mtime_ns < last.mtime_ns or (
                message.source == last.source and message.sequence <= last.sequence
            ):
                self.stats.count("stale")
                return
            if message.source == last.source:
                self.stats.count("dropped", message.sequence - last.sequence - 1)
        local = self.renames.get(name, name)
        if not self._store(local, message, value):
            return
        self._last[name] = _Last(message)
        self.stats.count("received", size=len(data), age_ms=(received_ns - message.mtime_ns) / 1e6)

    def _note_source(self, name: str, source: bytes) -> None:
        now = time.monotonic()
        sources = self._sources.setdefault(name, {})
        sources[source] = now
        active = [s for s, seen in sources.items() if now - seen < SOURCE_WINDOW_S]
        if len(active) > 1 and name not in self._reported_twice:
            self._reported_twice.add(name)
            log.warning(
                "%r is exported by %d bridges at once (%s): the newest change wins",
                name,
                len(active),
                ", ".join(s.hex()[:8] for s in active),
            )
            self.stats.count("errors")

    def _store(self, local: str, message: wire.Message, value: Any) -> bool:
        """Assign ``value`` to the local object, creating it if needed; False if it cannot be
        stored.
        """
        with self._lock_for(local):
            if self.stop_event.is_set():
                return False
            obj = self._objects.get(local)
            try:
                if obj is None:
                    obj = self._objects[local] = self._open_or_create(local, message, value)
                else:
                    obj.assign(value)
            except TypeMismatchError as exc:
                if local not in self._created:
                    log.warning("cannot import into %r: %s", local, exc)
                    self.stats.count("errors")
                    return False
                # Ours, and the source's kind changed: re-create it as a dynamic object. Its
                # consumers see ``orphaned`` and attach again.
                log.warning(
                    "the kind of %r changed at its source: re-creating it as a SharedDynamicObject",
                    local,
                )
                obj = self._objects.pop(local)
                with contextlib.suppress(SegmentNotFoundError):
                    obj.unlink()
                obj.close()
                obj = self._objects[local] = SharedDynamicObject(local, data=value)
            except SharedObjectError as exc:
                log.warning("cannot import into %r: %s", local, exc)
                self.stats.count("errors")
                return False
            self._imported[local] = obj._seen  # the change this assign made: never exported
        return True

    def _open_or_create(self, local: str, message: wire.Message, value: Any) -> SharedObject:
        try:
            obj = open_any(local)
        except SegmentNotFoundError:
            cls = SharedDynamicObject if message.dynamic else SharedObject
            slots = 1 if message.single_slot and not message.dynamic else 2
            try:
                obj = cls.create(local, value, mode=self.mode, slots=slots)
            except SegmentExistsError:  # created meanwhile by someone else: attach to theirs
                obj = open_any(local)
                obj.assign(value)
                return obj
            self._created.add(local)
            return obj
        obj.assign(value)
        return obj


__all__ = ["BIG_PAYLOAD", "DEFAULT_PREFIX", "Bridge", "Stats"]
