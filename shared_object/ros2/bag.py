"""rosbag2's MCAP files: our values written as rosbag2 writes them (``record --ros2``), and the
messages of any rosbag2 MCAP file read back as values (``play``). Extra ``ros2``, with ``mcap``.

What rosbag2's MCAP storage plugin writes (rosbag2_storage_mcap/src/mcap_storage.cpp, Jazzy and
later), and so what ``BagWriter`` writes into the caller's ``mcap.writer.Writer``:

- the header's profile ``ros2`` (the caller starts the writer with ``PROFILE``);
- a schema per message type: name the type (``sensor_msgs/msg/Image``), encoding ``ros2msg``,
  data its ``.msg`` definition followed by its dependencies' (``=====...`` then
  ``MSG: pkg/Name`` before each), as rosbag2 and rosbags generate it;
- a channel per topic (and type: an object whose kind changed gets another): message encoding
  ``cdr``; metadata ``offered_qos_profiles`` (the publisher's QoS, rosbag2's version-9 form, in
  YAML's flow style: JSON), ``topic_type_hash`` (its RIHS01), and ours, ``shared_object.name``:
  the object a whole value came from, so that ``play`` gives it back its name;
- a message per change and topic: CDR; log time (rosbag2: when it was received) and publish
  time (when it was sent) both the object's change time; sequence the change counter mod 2**32
  (rosbag2 writes 0);
- before the summary, a metadata record ``rosbag2`` whose ``serialized_metadata`` is the bag's
  metadata.yaml (version 9): rosbag2 reads a lone ``.mcap`` file as a bag with it. mcap's
  writer then adds the Statistics record and the summary.

Reading (``BagTypes``): a file's own definitions decode its messages (it may hold types we do
not know, or other versions of ours); a channel whose definition does not parse, or whose
``topic_type_hash`` is not its definition's, is refused with the reason.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from .. import RawValue
from .._errors import InvalidArgumentError
from ..payload import Decoder
from . import messages

PROFILE = "ros2"
SCHEMA_ENCODINGS = ("ros2msg", "ros2idl")
MESSAGE_ENCODING = "cdr"
#: Channel metadata: the object a whole-value topic was recorded from.
NAME_KEY = "shared_object.name"
BAG_VERSION = 9

#: rmw's default QoS (rmw_qos_profile_default), the one the bridge's publishers offer, in
#: rosbag2's version-9 form: durations of 0 are "unspecified".
_UNSPECIFIED = {"sec": 0, "nsec": 0}
DEFAULT_QOS: list[dict[str, Any]] = [
    {
        "history": "keep_last",
        "depth": 10,
        "reliability": "reliable",
        "durability": "volatile",
        "deadline": _UNSPECIFIED,
        "lifespan": _UNSPECIFIED,
        "liveliness": "system_default",
        "liveliness_lease_duration": _UNSPECIFIED,
        "avoid_ros_namespace_conventions": False,
    }
]


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------
@dataclass
class _Channel:
    id: int
    topic: str
    ros_type: str
    messages: int = 0


@dataclass
class _Topics:
    """What one kind of value of one object becomes: (key path, maker, channel) per topic."""

    made: list[tuple[messages.Exported, _Channel]] = field(default_factory=list)


class BagWriter:
    """Our values as rosbag2 messages, into an ``mcap.writer.Writer`` started with ``PROFILE``.

    ``write`` makes each of a change's messages (an object's value, or each key of a dict value
    that maps: see ``messages.exported_leaves``) and writes it; a value that maps to no message
    raises InvalidArgumentError, saying what it holds, once per object and kind (then its
    changes are skipped without a word). ``finish`` writes the ``rosbag2`` metadata record:
    call it before the writer's ``finish``. One thread at a time.
    """

    def __init__(self, writer: Any, path: str, frame_id: str | None = None) -> None:
        self.writer = writer
        self.file_name = os.path.basename(path)
        self.frame_id = frame_id
        self.decoder = Decoder(cache_size=16)
        self.kinds: dict[tuple[str, bytes], _Topics | None] = {}  # (object, schema) ->
        self.channels: dict[tuple[str, str], _Channel] = {}  # (topic, type) ->
        self.schemas: dict[str, int] = {}  # type -> schema id
        self.first_ns: int | None = None
        self.last_ns = 0

    def write(self, name: str, raw: RawValue) -> int:
        """Write the messages of one change of ``name``; how many were written."""
        key = (name, raw.schema_text)
        if key not in self.kinds:
            self.kinds[key] = None  # refused once, skipped after
            self.kinds[key] = self._topics(name, raw.schema_text)
        topics = self.kinds[key]
        if topics is None:
            return 0
        value = self.decoder.decode(raw.schema_text, raw.payload, copy=False)
        for made, channel in topics.made:
            self.writer.add_message(
                channel_id=channel.id,
                log_time=raw.mtime_ns,
                data=bytes(made.cdr(value, raw.mtime_ns)),
                publish_time=raw.mtime_ns,
                sequence=raw.change & 0xFFFF_FFFF,
            )
            channel.messages += 1
        if self.first_ns is None:
            self.first_ns = raw.mtime_ns
        self.first_ns = min(self.first_ns, raw.mtime_ns)
        self.last_ns = max(self.last_ns, raw.mtime_ns)
        return len(topics.made)

    def _topics(self, name: str, schema_text: bytes) -> _Topics:
        layout = self.decoder.layout(schema_text, f"segment {name!r}")
        try:
            leaves = messages.exported_leaves(layout, (), None, self.frame_id or name)
        except InvalidArgumentError as exc:
            msg = f"not recorded: {exc}"
            raise InvalidArgumentError(msg, name=name) from None
        topics = _Topics()
        for subpath, made in leaves:
            topic = messages.topic_for(".".join((name, *subpath)))
            topics.made.append((made, self._channel(topic, made.ros_type, name, whole=not subpath)))
        return topics

    def _channel(self, topic: str, ros_type: str, name: str, *, whole: bool) -> _Channel:
        channel = self.channels.get((topic, ros_type))
        if channel is not None:
            return channel
        schema = self.schemas.get(ros_type)
        if schema is None:
            schema = self.schemas[ros_type] = self.writer.register_schema(
                name=ros_type, encoding="ros2msg", data=messages.msgdef(ros_type).encode()
            )
        metadata = {
            "offered_qos_profiles": json.dumps(DEFAULT_QOS),
            "topic_type_hash": messages.type_hash(ros_type),
        }
        if whole:
            metadata[NAME_KEY] = name
        channel_id = self.writer.register_channel(
            topic=topic, message_encoding=MESSAGE_ENCODING, schema_id=schema, metadata=metadata
        )
        channel = self.channels[(topic, ros_type)] = _Channel(channel_id, topic, ros_type)
        return channel

    def finish(self) -> None:
        """The ``rosbag2`` metadata record: the bag's metadata.yaml (see the module's docstring)."""
        start = self.first_ns or 0
        duration = self.last_ns - start if self.first_ns is not None else 0
        count = sum(c.messages for c in self.channels.values())
        metadata = {
            "version": BAG_VERSION,
            "storage_identifier": "mcap",
            "relative_file_paths": [self.file_name],
            "duration": {"nanoseconds": duration},
            "starting_time": {"nanoseconds_since_epoch": start},
            "message_count": count,
            "topics_with_message_count": [
                {
                    "topic_metadata": {
                        "name": c.topic,
                        "type": c.ros_type,
                        "serialization_format": MESSAGE_ENCODING,
                        "offered_qos_profiles": DEFAULT_QOS,
                        "type_description_hash": messages.type_hash(c.ros_type),
                    },
                    "message_count": c.messages,
                }
                for c in self.channels.values()
            ],
            "compression_format": "",
            "compression_mode": "",
            "files": [
                {
                    "path": self.file_name,
                    "starting_time": {"nanoseconds_since_epoch": start},
                    "duration": {"nanoseconds": duration},
                    "message_count": count,
                }
            ],
            "custom_data": {},
            "ros_distro": "jazzy",  # the definitions written are Jazzy's (messages.typestore)
        }
        self.writer.add_metadata("rosbag2", {"serialized_metadata": json.dumps(metadata)})


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------
def is_ros2(schema: Any, channel: Any) -> bool:
    """Whether an MCAP channel (and its schema) is rosbag2's: CDR of a ROS 2 definition."""
    return (
        schema is not None
        and schema.encoding in SCHEMA_ENCODINGS
        and channel.message_encoding == MESSAGE_ENCODING
    )


def object_name(channel: Any) -> str:
    """The object a rosbag2 channel plays into by default: the one it was recorded from, else
    one named after its topic (``/camera/image_raw`` -> ``camera-image_raw``)."""
    return str(channel.metadata.get(NAME_KEY) or messages.object_for(channel.topic))


class BagTypes:
    """The message types one rosbag2 file defines, from its schemas, in a type store of their
    own: a file may hold types we do not know, or other versions of ours."""

    def __init__(self) -> None:
        typesys = _typesys()
        self.store = typesys.get_typestore(typesys.Stores.EMPTY)

    def add(self, schema: Any, channel: Any) -> str | None:
        """Learn a channel's type from its schema; None, or why its messages cannot be read."""
        ros_type = str(schema.name)
        typesys = _typesys()
        try:
            text = bytes(schema.data).decode()
            if schema.encoding == "ros2msg":
                types = typesys.get_types_from_msg(text, ros_type)
            else:  # IDL: one definition, or several, each after a separator and "IDL: name"
                types = {}
                for section in _idl_sections(text):
                    types.update(typesys.get_types_from_idl(section))
            self.store.register(types)
            if ros_type not in self.store.types:
                return f"its schema does not define {ros_type}"
            have = self.store.hash_rihs01(ros_type)  # every type it uses must be defined
        except Exception as exc:  # noqa: BLE001 - whatever a hostile definition makes the parser meet
            return f"its definition of {ros_type} does not parse ({type(exc).__name__}: {exc})"
        expected = channel.metadata.get("topic_type_hash", "")
        if expected and expected != have:
            return f"its topic_type_hash {expected} is not its definition's ({have})"
        return None

    def decode(self, data: bytes | memoryview, ros_type: str) -> Any:
        """A message as a value (``messages.to_value``); MessageDecodeError if it does not
        decode."""
        return messages.decode(data, ros_type, self.store)


def _idl_sections(text: str) -> list[str]:
    separator = "=" * 80 + "\n"
    if not text.startswith(separator):
        return [text]
    return [section.split("\n", 1)[1] for section in text.split(separator)[1:]]


def _typesys() -> Any:
    from .._extras import require

    return require("rosbags.typesys", extra="ros2", feature="ROS 2 recordings")


__all__ = [
    "BAG_VERSION",
    "DEFAULT_QOS",
    "NAME_KEY",
    "PROFILE",
    "BagTypes",
    "BagWriter",
    "is_ros2",
    "object_name",
]
