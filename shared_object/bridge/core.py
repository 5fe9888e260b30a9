"""A bridge: local shared objects published through Zenoh, remote ones mirrored into local objects.

Exporting. One thread per local object that matches an export pattern waits for its changes
(``wait()``: no CPU while nothing changes), copies the new value's payload whole (``fetch_raw``),
encodes it if an ``--encode`` rule names the object (``encoding``), and puts one message
(``wire``) on the key ``<prefix><name>``. It always sends the newest value: a change that came
while the last one was still being sent is skipped, never queued. Puts use congestion control
BLOCK: a put returns once Zenoh has queued the whole message, so on a slow link the next value
is taken when the link can carry it, and no more than one message per object waits to go out (a
newer value replaces a waiting one). With DROP, Zenoh drops a fragmented message whose fragments
cannot all be queued within 50 ms: below about 100 Mbit/s no frame would ever arrive.
``--max-rate`` caps an object's messages a second. Payloads under ``BIG_PAYLOAD`` (commands,
poses, triggers) go at priority REAL_TIME, frames at DATA: Zenoh queues the two apart, and
``session`` gives them a TCP connection each. Each key's publisher keeps its last message for
late joiners (Zenoh's advanced publisher cache) and numbers its messages (sample-miss
detection): the advanced subscriber then keeps order per publisher. Without the numbers it
orders every message of a session by timestamp, across keys, and silently drops a frame that a
command of higher priority overtook.

Importing. One subscriber on ``<prefix>**``, whose callback Zenoh's network threads call
directly (``indirect=False``), not through zenoh-python's default queue and thread, behind which
frames pile up when the handler is slower than the link: hundreds of MB of them, seconds old.
The callback applies the message at once, tens of microseconds for a frame (a few milliseconds
to decode a JPEG). While it runs Zenoh reads nothing more from that link, so an importer that
falls behind leaves the backlog in the socket's buffers and pushes back to the sender. It
validates each message (``wire.decode``, ``encoding.decode``, then ``_codecs.Decoder``); the local
object is created as the message says (a SharedDynamicObject for a dynamic source, or when the
source's kind changed) or attached, and assigned. A message older than the last applied for its
key (an older change time, or an old sequence number of the same source) is dropped: a consumer
never sees an older value after a newer one. The check and the assign are one step under the
local name's lock: the two links' threads, and the late joiners' query, may deliver messages of
one key at once.

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
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from .. import (
    CapacityError,
    InvalidArgumentError,
    LayoutError,
    RawValue,
    SegmentExistsError,
    SegmentNotFoundError,
    SharedDynamicObject,
    SharedObject,
    SharedObjectError,
    TypeMismatchError,
    attach,
)
from ..follow import Follower, matching_names
from ..payload import Decoder
from . import encoding, wire
from .defaults import BIG_PAYLOAD, DEFAULT_PREFIX
from .session import _zenoh
from .stats import Stats

log = logging.getLogger("shared_object.bridge")

#: A second source of one name within this long is reported (two exporters of one name).
SOURCE_WINDOW_S = 10.0


class _Last:
    """The last message applied for a key."""

    __slots__ = ("mtime_ns", "sequence", "source")

    def __init__(self, message: wire.Message) -> None:
        self.source, self.sequence, self.mtime_ns = (
            message.source,
            message.sequence,
            message.mtime_ns,
        )


@dataclass(frozen=True)
class RateRule:
    """One ``--max-rate`` entry: at most ``hz`` messages a second for objects matching
    ``pattern``."""

    pattern: str
    hz: float


def parse_rate_rule(text: str) -> RateRule:
    """``PATTERN=HZ``; InvalidArgumentError naming what is wrong."""
    pattern, sep, hz_text = text.partition("=")
    try:
        hz = float(hz_text)
    except ValueError:
        hz = float("nan")
    if not sep or not pattern or not hz > 0 or hz == float("inf"):
        msg = f"--max-rate {text!r}: write PATTERN=HZ, HZ a positive number of messages a second"
        raise InvalidArgumentError(msg)
    return RateRule(pattern, hz)


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
    """Exports and imports shared objects through an open Zenoh session, until :meth:`stop`.

    ``encodings`` (``--encode``) and ``max_rates`` (``--max-rate``): the first rule whose pattern
    matches an exported object's name applies to it.
    """

    def __init__(
        self,
        session: Any,
        *,
        exports: Iterable[str] = (),
        imports: Iterable[str] = (),
        prefix: str = DEFAULT_PREFIX,
        congestion: str = "block",
        big_payload: int = BIG_PAYLOAD,
        mode: int = 0o600,
        encodings: Sequence[encoding.EncodeRule] = (),
        max_rates: Sequence[RateRule] = (),
    ) -> None:
        if congestion not in ("block", "drop"):
            msg = f"congestion must be block or drop, not {congestion!r}"
            raise InvalidArgumentError(msg)
        self.session = session
        self.exports = list(exports)
        self.imports, self.renames = _parse_imports(imports)
        self.prefix = prefix
        self.congestion = congestion
        self.big_payload = big_payload
        self.mode = mode
        self.encodings = list(encodings)
        self.max_rates = list(max_rates)
        #: Names this process's messages by: a receiver drops its own, and tells sources apart.
        self.source = os.urandom(wire.SOURCE_SIZE)
        self.stats = Stats()
        self.stop_event = threading.Event()
        self._name_locks: dict[str, threading.Lock] = {}
        # local name -> the changes our imports made (as keys of a dict: an ordered set), the
        # last few: an object with a history exports several at once, and skips each of ours
        self._imported: dict[str, dict[int, None]] = {}
        self._follower = Follower(
            self.exports,
            lambda obj: _Exporter(self, obj),
            max_rate=self._max_rate_for,
            on_error=self._export_failed,
            name="bridge export",
        )
        self._objects: dict[str, SharedObject] = {}  # local name -> the importer's handle
        self._created: set[str] = set()
        self._last: dict[str, _Last] = {}
        self._decoded: dict[str, bytearray] = {}  # local name -> its decoded payload's buffer
        self._sources: dict[str, dict[bytes, float]] = {}
        self._reported_twice: set[str] = set()
        self._decoder = Decoder()
        self._subscriber: Any = None

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
            self._follower.start()

    def stop(self) -> None:
        self.stop_event.set()
        self._follower.stop()
        if self._subscriber is not None:
            with contextlib.suppress(Exception):  # the session may be gone already
                self._subscriber.undeclare()
        for name, obj in list(self._objects.items()):
            with self.lock_for(name):  # not under a callback's assign still running
                obj.close()

    def __enter__(self) -> Bridge:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def check_encodings(self) -> list[str]:
        """What each ``--encode`` rule does to the exported objects there are now, a line each;
        InvalidArgumentError naming every object a rule's codec does not fit."""
        done, refused = [], []
        for name in matching_names(self.exports):
            rule = encoding.rule_for(name, self.encodings)
            if rule is None or rule.codec_name == "raw":
                continue
            try:
                with attach(name) as obj:
                    raw = obj.fetch_raw()
                layout = self._decoder.layout(raw.schema_text, f"segment {name!r}")
                codec = rule.codec()
                assert codec is not None
                done.append(f"{name}: {encoding.plan(codec, layout, name).describe()}")
            except InvalidArgumentError as exc:
                refused.append(f"--encode {rule}: {exc}")
            except (SharedObjectError, OSError):
                continue  # gone, or not readable: its exporter will say so
        if refused:
            raise InvalidArgumentError("\n".join(refused))
        return done

    def lock_for(self, name: str) -> threading.Lock:
        lock = self._name_locks.get(name)
        if lock is None:
            lock = self._name_locks.setdefault(name, threading.Lock())
        return lock

    # -----------------------------------------------------------------------------------------
    # Exporting: the Follower's threads, an _Exporter each
    # -----------------------------------------------------------------------------------------
    def _max_rate_for(self, name: str) -> float | None:
        rule = next((r for r in self.max_rates if fnmatch.fnmatchcase(name, r.pattern)), None)
        return rule.hz if rule is not None else None

    def _export_failed(self, name: str, error: Exception) -> None:
        log.warning("cannot export %r: %s", name, error)
        self.stats.count("errors")

    # -----------------------------------------------------------------------------------------
    # Importing
    # -----------------------------------------------------------------------------------------
    def _on_sample(self, sample: Any) -> None:
        """Zenoh's callback, on a network thread: apply the message now (see the module's
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
        except LayoutError as exc:
            self._malformed(key, data, exc)
            return
        if message.source == self.source:
            return  # our own, come back
        local = self.renames.get(name, name)
        with self.lock_for(local):  # the checks, the bookkeeping and the assign: one step
            if self.stop_event.is_set():
                return
            try:
                value = self._decode(local, name, message)
            except LayoutError as exc:
                self._malformed(key, data, exc)
                return
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
            slots = 1 if message.single_slot else 2
            if not self.store(
                local, value, dynamic=message.dynamic, slots=slots, history=message.history
            ):
                return
            self._last[name] = _Last(message)
        self.stats.received(
            local,
            len(data),
            (received_ns - message.mtime_ns) / 1e6,
            "encoded" if message.encoded else "raw",
        )

    def _decode(self, local: str, name: str, message: wire.Message) -> Any:
        """The message's value, as views into its payload (or into ``local``'s decoded-payload
        buffer, for an encoded message); LayoutError if malformed. Under ``local``'s lock."""
        source = f"a message for {name!r}"
        layout = self._decoder.layout(message.schema_text, source)
        payload: Any = message.payload
        if message.encoded:
            payload = self._decoded[local] = encoding.decode(
                message.payload, layout, self._decoded.get(local)
            )
        # Views into the payload: the assign copies them once.
        return self._decoder.decode(message.schema_text, payload, source, copy=False)

    def _malformed(self, key: str, data: bytes, exc: Exception) -> None:
        self.stats.count("malformed")
        log.warning("dropped a malformed message on %s (%d bytes): %s", key, len(data), exc)

    def _note_source(self, name: str, source: bytes) -> None:
        now = time.monotonic()
        sources = self._sources.setdefault(name, {})
        sources[source] = now
        for stale in [s for s, seen in sources.items() if now - seen >= SOURCE_WINDOW_S]:
            del sources[stale]  # a restarted exporter's old source: forgotten
        if len(sources) > 1 and name not in self._reported_twice:
            self._reported_twice.add(name)
            log.warning(
                "%r is exported by %d bridges at once (%s): the newest change wins",
                name,
                len(sources),
                ", ".join(s.hex()[:8] for s in sources),
            )
            self.stats.count("errors")

    def store(
        self, local: str, value: Any, *, dynamic: bool = False, slots: int = 2, history: int = 0
    ) -> bool:
        """Assign ``value`` to the local object, creating it if needed (a SharedDynamicObject if
        ``dynamic``, else a SharedObject of ``slots``, or with ``history``); False if it cannot
        be stored. Call it under ``lock_for(local)``."""
        obj = self._objects.get(local)
        try:
            if obj is None:
                obj = self._objects[local] = self._open_or_create(
                    local, value, dynamic, slots, history
                )
            else:
                obj.assign(value)
        except (TypeMismatchError, CapacityError) as exc:
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
        # The change this assign made: never exported back
        marks = self._imported.setdefault(local, {})
        marks[obj.seen_change] = None
        while len(marks) > max(1, obj.history or 0):
            del marks[next(iter(marks))]
        return True

    def imported(self, local: str, change: int) -> bool:
        """Whether change ``change`` of ``local`` is one an import of ours made."""
        return change in self._imported.get(local, ())

    def _open_or_create(
        self, local: str, value: Any, dynamic: bool, slots: int, history: int
    ) -> SharedObject:
        try:
            obj = attach(local)
        except SegmentNotFoundError:
            cls = SharedDynamicObject if dynamic else SharedObject
            slots = 2 if dynamic else slots
            try:
                obj = cls.create(local, value, mode=self.mode, slots=slots, history=history or None)
            except SegmentExistsError:  # created meanwhile by someone else: attach to theirs
                obj = attach(local)
                obj.assign(value)
                return obj
            self._created.add(local)
            return obj
        obj.assign(value)
        return obj


class _Exporter:
    """The Watch of one exported object: at each change, the newest value encoded and put.

    See the module's docstring. The publisher is declared with the first message, and again when
    a dynamic object's payload crosses ``BIG_PAYLOAD``: its priority follows the size.
    """

    def __init__(self, bridge: Bridge, obj: SharedObject) -> None:
        self.bridge = bridge
        self.name = obj.name
        self.obj = obj
        rule = encoding.rule_for(self.name, bridge.encodings)
        self.codec = rule.codec() if rule is not None else None
        self.dynamic = isinstance(obj, SharedDynamicObject)
        self.history = obj.history or 0
        self.plans: dict[bytes, encoding.Plan | None] = {}  # schema text -> plan; None: raw
        self.refused: set[bytes] = set()  # schema texts the codec does not fit
        self.decoder = Decoder(cache_size=4)
        self.publisher: Any = None
        self.publisher_big: bool | None = None
        self.message: bytearray | None = None  # reused: see wire.encode
        self.payload = bytearray()  # reused: see fetch_raw
        self.sequence = 0

    def changed(self) -> None:
        bridge, obj = self.bridge, self.obj
        if self.history:  # every value since the last, in order (BLOCK: none is dropped)
            with bridge.lock_for(self.name):
                raws = obj.fetch_new_raw()
            for raw in raws:
                if not bridge.imported(self.name, raw.change):  # ours, imported: never sent back
                    self._send(raw)
            return
        with bridge.lock_for(self.name):
            raw = obj.fetch_raw(into=self.payload)
            if bridge.imported(self.name, raw.change):
                return  # the value we imported: never sent back
        self._send(raw)

    def _send(self, raw: RawValue) -> None:
        bridge, obj = self.bridge, self.obj
        plan = self._plan(raw.schema_text)
        if raw.schema_text in self.refused:
            return  # its codec does not fit it (logged once): nothing of it is sent
        body = raw.payload if plan is None else encoding.encode(plan, memoryview(raw.payload))
        self.sequence += 1
        self.message = wire.encode(
            sequence=self.sequence,
            mtime_ns=raw.mtime_ns,
            change=raw.change,
            source=bridge.source,
            dynamic=self.dynamic,
            single_slot=obj.slots == 1,
            schema_text=raw.schema_text,
            payload=body,
            encoded=plan is not None,
            reuse=self.message,
            history=self.history,
        )
        # BLOCK: returns once Zenoh queued it all; it copied the buffer, which is ours again.
        self._publisher(len(raw.payload)).put(self.message)
        bridge.stats.sent(
            self.name, len(self.message), len(raw.payload), str(plan.codec) if plan else "raw"
        )

    def close(self) -> None:
        if self.publisher is not None:
            with contextlib.suppress(Exception):  # the session may be gone already
                self.publisher.undeclare()
            self.publisher = None

    def _plan(self, schema_text: bytes) -> encoding.Plan | None:
        """The encoding plan for values of this schema (None: raw), made once per schema. A
        codec that does not fit a fixed object's kind refuses it (``refused``); a dynamic
        object's value of a kind it does not fit is sent raw. Either is logged once."""
        if schema_text in self.plans:
            return self.plans[schema_text]
        plan = None
        if self.codec is not None:
            layout = self.decoder.layout(schema_text, f"segment {self.name!r}")
            try:
                plan = encoding.plan(self.codec, layout, self.name)
            except InvalidArgumentError as exc:
                if not self.dynamic:
                    self.refused.add(schema_text)
                what = "sent raw" if self.dynamic else "not exported"
                log.error("--encode: %s: %s is %s", exc, self.name, what)  # noqa: TRY400
                self.bridge.stats.count("errors")
            else:
                log.info("%s: %s", self.name, plan.describe())
                if not plan.ranges:
                    plan = None  # nothing to encode: an empty payload (a trigger object's)
        self.plans[schema_text] = plan
        return plan

    def _publisher(self, payload_size: int) -> Any:
        big = payload_size >= self.bridge.big_payload
        if self.publisher is not None and big == self.publisher_big:
            return self.publisher
        if self.publisher is not None:
            with contextlib.suppress(Exception):
                self.publisher.undeclare()
        zenoh = _zenoh()
        congestion = zenoh.CongestionControl.BLOCK
        if big and self.bridge.congestion == "drop":
            congestion = zenoh.CongestionControl.DROP
        self.publisher = zenoh.ext.declare_advanced_publisher(
            self.bridge.session,
            self.bridge.prefix + self.name,
            priority=zenoh.Priority.DATA if big else zenoh.Priority.REAL_TIME,
            congestion_control=congestion,
            express=True,
            cache=zenoh.ext.CacheConfig(max_samples=1),
            publisher_detection=True,
            sample_miss_detection=zenoh.ext.MissDetectionConfig(
                heartbeat=None, sporadic_heartbeat=None
            ),
        )
        self.publisher_big = big
        return self.publisher


__all__ = ["BIG_PAYLOAD", "DEFAULT_PREFIX", "Bridge", "RateRule", "Stats", "parse_rate_rule"]
