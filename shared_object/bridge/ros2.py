"""The bridge's ROS 2 side: our objects as ROS 2 topics, ROS 2 topics as our objects, spoken as
ROS 2's Zenoh middleware (rmw_zenoh) speaks, so that ``ros2 node list``, ``ros2 topic list -t``,
``echo`` and ``hz`` on a ROS 2 machine see them (extra ``ros2``).

What goes on the wire is ``shared_object.ros2.rmw_zenoh``'s; how a value becomes a message and a
message a value is ``shared_object.ros2.messages``'. The side is one ROS 2 node (``--ros2-node``,
default ``shared_object_bridge``) with a liveliness token, and:

- per ``--ros2-export NAME[=/TOPIC[:TYPE]]``: a Follower (``shared_object.follow``) of the object
  (``NAME`` may name a leaf of a dict value, ``demo-frame.frame``; a dict value that maps to no
  message whole is a topic per key: ``/demo_frame/seq``, ...); at each change its value is
  copied out whole (``fetch_raw``), made a message and put on the topic's key with rmw_zenoh's
  attachment, under a publisher's liveliness token. Big messages go at priority DATA, small ones
  at REAL_TIME, all with congestion control BLOCK, as the native exporter's do;
- per ``--ros2-import /TOPIC[:TYPE]=NAME``: a subscriber on the topic's key (any type when none
  is given), under a subscription's token. Each sample is checked (its type known here and its
  type hash ours, its CDR decoding, its attachment) and assigned to the local object (created as
  the first message says, re-created as a SharedDynamicObject if a later one does not fit); a
  sample older than one already applied from the same publisher (its sequence number) is
  dropped. What does not pass is counted and logged, and the object is left alone.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from .. import InvalidArgumentError, RawValue, SharedObject
from .._errors import LayoutError
from .._names import validate_name
from ..follow import Follower
from ..payload import Decoder
from ..ros2 import messages, rmw_zenoh
from . import encoding
from .core import Bridge, _direct
from .session import _zenoh

log = logging.getLogger("shared_object.bridge.ros2")

DEFAULT_NODE = "shared_object_bridge"


@dataclass(frozen=True)
class Ros2Export:
    """``--ros2-export NAME[=/TOPIC[:TYPE]]``: an object (or ``name.key`` leaf) as a topic."""

    source: str
    topic: str
    asked: str | None  # a message type, or an image encoding (bgr8, ...)


@dataclass(frozen=True)
class Ros2Import:
    """``--ros2-import /TOPIC[:TYPE]=NAME``: a topic into an object."""

    topic: str
    ros_type: str | None
    name: str


def _check_asked(asked: str, text: str) -> str:
    if "/" in asked:
        if not messages.known(asked):
            msg = f"{text!r}: {asked} is not a message type known here (package/msg/Name)"
            raise InvalidArgumentError(msg)
    elif asked not in messages.ASKED_ENCODINGS:
        choices = ", ".join(messages.ASKED_ENCODINGS)
        msg = f"{text!r}: TYPE is a message type (sensor_msgs/msg/Image) or one of {choices}"
        raise InvalidArgumentError(msg)
    return asked


def parse_export(text: str) -> Ros2Export:
    source, sep, rest = text.partition("=")
    if not source:
        msg = f"--ros2-export {text!r}: write NAME[=/TOPIC[:TYPE]]"
        raise InvalidArgumentError(msg)
    validate_name(source)
    topic, _, asked = rest.partition(":")
    topic = messages.check_topic(topic) if sep else messages.topic_for(source)
    return Ros2Export(source, topic, _check_asked(asked, text) if asked else None)


def parse_import(text: str) -> Ros2Import:
    left, sep, name = text.rpartition("=")
    if not sep or not name:
        msg = f"--ros2-import {text!r}: write /TOPIC[:TYPE]=NAME"
        raise InvalidArgumentError(msg)
    topic, _, ros_type = left.partition(":")
    if ros_type and not messages.known(ros_type):
        msg = f"--ros2-import {text!r}: {ros_type} is not a message type known here"
        raise InvalidArgumentError(msg)
    return Ros2Import(messages.check_topic(topic), ros_type or None, validate_name(name))


def domain_id(given: int | None) -> int:
    """``--ros2-domain``, else ROS_DOMAIN_ID, else 0; InvalidArgumentError outside 0-232."""
    if given is None:
        text = os.environ.get("ROS_DOMAIN_ID", "").strip() or "0"
        try:
            given = int(text)
        except ValueError:
            msg = f"ROS_DOMAIN_ID={text!r} is not a domain id (0 to 232)"
            raise InvalidArgumentError(msg) from None
    if not 0 <= given <= 232:
        msg = f"a ROS 2 domain id is 0 to 232, not {given}"
        raise InvalidArgumentError(msg)
    return given


class Ros2Side:
    """One ROS 2 node of a bridge: its exports as publishers, its imports as subscriptions."""

    def __init__(
        self,
        bridge: Bridge,
        *,
        exports: list[Ros2Export],
        imports: list[Ros2Import],
        domain: int = 0,
        frame_id: str | None = None,
        attachment: str = "compact",
        node_name: str = DEFAULT_NODE,
    ) -> None:
        if attachment not in rmw_zenoh.ATTACHMENT_FORMATS:
            msg = f"--ros2-attachment is one of {rmw_zenoh.ATTACHMENT_FORMATS}, not {attachment!r}"
            raise InvalidArgumentError(msg)
        self.bridge = bridge
        self.exports, self.imports = exports, imports
        self.domain, self.frame_id, self.attachment = domain, frame_id, attachment
        zid = str(bridge.session.info.zid())
        self.node = rmw_zenoh.Node(domain, zid, 0, node_name)
        self._lock = threading.Lock()
        self._entity_ids = iter(range(1, 1 << 31))
        self._tokens: list[Any] = []
        self._subscribers: list[Any] = []
        self._own_gids: set[bytes] = set()  # our publishers': a topic both ways is not echoed
        self._last: dict[tuple[str, bytes], int] = {}  # (object, publisher GID) -> sequence
        self._subscribed: set[tuple[Ros2Import, str]] = set()  # the tokens declared
        self._follower: Follower | None = None

    def start(self) -> None:
        zenoh = _zenoh()
        self._tokens.append(self.bridge.session.liveliness().declare_token(self.node.token()))
        for rule in self.imports:
            topic_part = rule.topic.strip("/")
            if rule.ros_type:
                ros_type = rule.ros_type
                key = f"{self.domain}/{topic_part}/{rmw_zenoh.dds_type_name(ros_type)}/*"
                self._declare_subscription_token(rule, ros_type)
            else:
                key = f"{self.domain}/{topic_part}/*/*"
            callback = _direct(zenoh, functools.partial(self._on_sample, rule))
            self._subscribers.append(self.bridge.session.declare_subscriber(key, callback))
        if self.exports:
            sources = {r.source for r in self.exports}
            candidates = {s[:i] for s in sources for i, c in enumerate(s) if c == "."} | sources
            self._follower = Follower(
                sorted(candidates),
                self._watch,
                on_error=lambda name, exc: self._error(f"cannot export {name!r} to ROS 2", exc),
                name="ros2 export",
            )
            self._follower.start()

    def stop(self) -> None:
        if self._follower is not None:
            self._follower.stop()
        for entity in [*self._subscribers, *self._tokens]:
            with contextlib.suppress(Exception):  # the session may be gone already
                entity.undeclare()

    def _error(self, what: str, exc: Exception) -> None:
        log.warning("%s: %s", what, exc)
        self.bridge.stats.count("errors")

    def _entity_id(self) -> int:
        with self._lock:
            return next(self._entity_ids)

    def _declare(self, kind: str, topic: str, ros_type: str) -> tuple[Any, bytes]:
        """A publisher's or subscription's liveliness token, declared; the entity's GID."""
        token = rmw_zenoh.endpoint_token(
            self.node, self._entity_id(), kind, topic, ros_type, messages.type_hash(ros_type),
            rmw_zenoh.QoS(),
        )  # fmt: skip
        return self.bridge.session.liveliness().declare_token(token), rmw_zenoh.gid(token)

    # -----------------------------------------------------------------------------------------
    # Exporting
    # -----------------------------------------------------------------------------------------
    def _watch(self, obj: SharedObject) -> _Publishers:
        rules: list[tuple[Ros2Export, tuple[str, ...]]] = []
        for rule in self.exports:
            if rule.source == obj.name:
                rules.append((rule, ()))
            elif rule.source.startswith(obj.name + "."):
                path = tuple(rule.source[len(obj.name) + 1 :].split("."))
                rules.append((rule, path))
        return _Publishers(self, obj, rules)

    # -----------------------------------------------------------------------------------------
    # Importing
    # -----------------------------------------------------------------------------------------
    def _declare_subscription_token(self, rule: Ros2Import, ros_type: str) -> None:
        with self._lock:
            if (rule, ros_type) in self._subscribed:
                return
            self._subscribed.add((rule, ros_type))
        self._tokens.append(self._declare(rmw_zenoh.SUBSCRIPTION, rule.topic, ros_type)[0])

    def _on_sample(self, rule: Ros2Import, sample: Any) -> None:
        """Zenoh's callback: nothing it raises may reach Zenoh."""
        if self.bridge.stop_event.is_set():
            return
        try:
            self._apply(rule, str(sample.key_expr), sample.payload.to_bytes(), sample.attachment)
        except Exception:  # one message must never stop the bridge
            log.exception("importing %s failed", rule.topic)
            self.bridge.stats.count("errors")

    def _apply(self, rule: Ros2Import, key: str, data: bytes, attachment: Any) -> None:
        received_ns = time.time_ns()
        stats = self.bridge.stats
        *_, dds_type, their_hash = key.split("/")
        try:
            ros_type = rmw_zenoh.ros_type_name(dds_type)
        except ValueError as exc:
            self._malformed(rule, key, exc)
            return
        if not messages.known(ros_type):
            self._error(
                f"{rule.topic}: {ros_type} is not a message type known here", LayoutError(key)
            )
            return
        if their_hash != messages.type_hash(ros_type):
            msg = f"its type hash {their_hash} is not ours ({messages.type_hash(ros_type)})"
            self._error(f"{rule.topic}: {ros_type} of another definition", LayoutError(msg))
            return
        try:
            meta = rmw_zenoh.decode_attachment(attachment.to_bytes()) if attachment else None
            value = messages.decode(data, ros_type)
        except (ValueError, LayoutError) as exc:
            self._malformed(rule, key, exc)
            return
        if meta is not None and meta.source_gid in self._own_gids:
            return  # our own publication, on a topic we also export
        self._declare_subscription_token(rule, ros_type)
        with self.bridge.lock_for(rule.name):
            if meta is not None:
                last = self._last.get((rule.name, meta.source_gid))
                if last is not None and meta.sequence <= last:
                    stats.count("stale")
                    return
                self._last[(rule.name, meta.source_gid)] = meta.sequence
            if not self.bridge.store(rule.name, value):
                return
        age = (received_ns - meta.timestamp_ns) / 1e6 if meta is not None else 0.0
        stats.received(rule.name, len(data), age, ros_type)

    def _malformed(self, rule: Ros2Import, key: str, exc: Exception) -> None:
        self.bridge.stats.count("malformed")
        log.warning("dropped a malformed ROS 2 message on %s (%s): %s", rule.topic, key, exc)


def _topic(rule: Ros2Export, subpath: tuple[str, ...]) -> str:
    """The topic of one key of a dict leaf exported a topic per key (``()``: the rule's own)."""
    return rule.topic + (messages.topic_for(".".join(subpath)) if subpath else "")


class _Publishers:
    """The Watch of one exported object: each change as a message on each of its topics."""

    def __init__(
        self, side: Ros2Side, obj: SharedObject, rules: list[tuple[Ros2Export, tuple[str, ...]]]
    ) -> None:
        self.side, self.obj, self.rules = side, obj, rules
        self.decoder = Decoder(cache_size=4)
        self.payload = bytearray()  # reused: see fetch_raw
        # (schema, rule index) -> what each change makes: (key within the rule's leaf, or ()
        # for the leaf itself; the message's type and maker)
        self.made: dict[tuple[bytes, int], list[tuple[tuple[str, ...], messages.Exported]]] = {}
        # (rule index, key) -> (publisher, GID)
        self.publishers: dict[tuple[int, tuple[str, ...]], tuple[Any, bytes]] = {}
        self.tokens: list[Any] = []
        self.sequence = 0
        rule = encoding.rule_for(obj.name, side.bridge.encodings)
        self.codec = rule.codec() if rule is not None else None

    def _compress(self, image: Any) -> tuple[str, bytes]:
        assert self.codec is not None
        return self.codec.name, self.codec.encode(image)

    def _exported(
        self, schema_text: bytes, index: int
    ) -> list[tuple[tuple[str, ...], messages.Exported]]:
        key = (schema_text, index)
        if key not in self.made:
            rule, path = self.rules[index]
            layout = self.decoder.layout(schema_text, f"segment {self.obj.name!r}")
            compress = self._compress if self.codec is not None and self.codec.image else None
            made: list[tuple[tuple[str, ...], messages.Exported]] = []
            try:
                made = messages.exported_leaves(
                    layout, path, rule.asked, self.side.frame_id or self.obj.name, compress
                )
                for subpath, exported in made:
                    log.info("%s -> %s: %s", rule.source, _topic(rule, subpath), exported.describe)
            except InvalidArgumentError as exc:
                self.side._error(f"{rule.source} -> {rule.topic}", exc)
            self.made[key] = made
        return self.made[key]

    def changed(self) -> None:
        if self.obj.history:  # every value since the last, in order
            for raw in self.obj.fetch_new_raw():
                self._publish(raw)
        else:
            self._publish(self.obj.fetch_raw(into=self.payload))

    def _publish(self, raw: RawValue) -> None:
        value = None
        for index, (rule, _) in enumerate(self.rules):
            for subpath, made in self._exported(raw.schema_text, index):
                if value is None:  # views into our copy: the message copies what it needs
                    value = self.decoder.decode(raw.schema_text, raw.payload, copy=False)
                cdr = made.cdr(value, raw.mtime_ns)
                topic = _topic(rule, subpath)
                publisher, gid = self._publisher((index, subpath), topic, made.ros_type, len(cdr))
                self.sequence += 1
                attachment = rmw_zenoh.encode_attachment(
                    self.sequence, time.time_ns(), gid, self.side.attachment
                )
                body = cdr.obj if isinstance(cdr.obj, bytearray) else bytes(cdr)
                publisher.put(body, attachment=attachment)
                self.side.bridge.stats.sent(topic, len(cdr), len(raw.payload), made.ros_type)

    def _publisher(
        self, which: tuple[int, tuple[str, ...]], topic: str, ros_type: str, size: int
    ) -> tuple[Any, bytes]:
        found = self.publishers.get(which)
        if found is not None:
            return found
        zenoh = _zenoh()
        side = self.side
        key = rmw_zenoh.topic_key(side.domain, topic, ros_type, messages.type_hash(ros_type))
        big = size >= side.bridge.big_payload  # as the native exporter decides it
        publisher = side.bridge.session.declare_publisher(
            key,
            priority=zenoh.Priority.DATA if big else zenoh.Priority.REAL_TIME,
            congestion_control=zenoh.CongestionControl.BLOCK,
            express=True,
        )
        token, gid = side._declare(rmw_zenoh.PUBLISHER, topic, ros_type)
        self.tokens.append(token)
        side._own_gids.add(gid)
        self.publishers[which] = (publisher, gid)
        return publisher, gid

    def close(self) -> None:
        """The object is gone (or the bridge stops): so are its publishers, for ROS 2 too."""
        for entity in [*(p for p, _ in self.publishers.values()), *self.tokens]:
            with contextlib.suppress(Exception):  # the session may be gone already
                entity.undeclare()


__all__ = [
    "DEFAULT_NODE",
    "Ros2Export",
    "Ros2Import",
    "Ros2Side",
    "domain_id",
    "parse_export",
    "parse_import",
]
