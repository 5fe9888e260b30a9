"""What rmw_zenoh (ROS 2's Zenoh middleware) puts on the wire, so that ROS 2 nodes see our objects
as topics and we see theirs, with nothing of ROS 2 installed. This docstring is the specification
we follow; each part names the rmw_zenoh source it comes from (``rmw_zenoh_cpp/src/detail/``).

Data key expression (``liveliness_utils.cpp``, ``TopicInfo``)::

    <domain id>/<topic name without its leading and trailing '/'>/<DDS type name>/<type hash>
    0/camera/image_raw/sensor_msgs::msg::dds_::Image_/RIHS01_d31d41a9...7d47

The DDS type name of ``pkg/msg/Name`` is ``pkg::msg::dds_::Name_``; the type hash is ROS 2's
RIHS01 hash of the type description (computed by rosbags, as ``ros2 topic info -v`` prints it).
The payload is the message in CDR (little-endian, with its 4-byte encapsulation header).

Attachment of every published sample (``attachment_helpers.cpp``), zenoh-ext serialization
(little-endian integers, lengths as LEB128 varints)::

    compact (rmw_zenoh 0.2.4 and later in Jazzy, 0.6 and later in Kilted and Rolling):
        i64 sequence number, i64 source timestamp (ns), varint 16, 16 bytes source GID
    keyed (Jazzy's rmw_zenoh 0.2.0 to 0.2.3):
        str "sequence_number", i64, str "source_timestamp", i64, str "source_gid",
        varint 16, 16 bytes                      (a str: varint length, then UTF-8)

Liveliness tokens, one per entity, declared while it lives (``liveliness_utils.cpp``,
``Entity``)::

    @ros2_lv/<domain>/<session zid>/<node id>/<entity id>/<kind>/<enclave>/<namespace>/<node>
        [/<topic>/<DDS type name>/<type hash>/<QoS>]          (the bracket: not for nodes)

``kind`` is NN (node), MP (publisher) or MS (subscription); a node's entity id is its node id.
Each name is mangled: every '/' becomes '%' (the root namespace and enclave "/" are "%"). The QoS
(``qos_to_keyexpr``) is ``reliability:durability:history,depth:deadline s,ns:lifespan s,ns:
liveliness,lease s,ns``, each value left empty where it equals rmw_zenoh's default (reliable,
volatile, keep last 42, infinite durations, automatic liveliness: ``qos.cpp``): a publisher that
is reliable, volatile, keep last 10 is ``::,10:,:,:,,``.

An entity's GID is the 128-bit XXH3 hash of its liveliness token, its low 64 bits first, each
little-endian (``Entity::Entity``, ``simplified_xxhash3``); it is the attachment's source GID.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from .._errors import InvalidArgumentError
from .._extras import require

ADMIN_SPACE: Final = "@ros2_lv"
NODE, PUBLISHER, SUBSCRIPTION = "NN", "MP", "MS"
GID_SIZE: Final = 16
ATTACHMENT_FORMATS: Final = ("compact", "keyed")
_I64 = struct.Struct("<q")
_KEYS: Final = (b"sequence_number", b"source_timestamp", b"source_gid")

# rmw QoS enum values (rmw/types.h)
RELIABLE, BEST_EFFORT = 1, 2
TRANSIENT_LOCAL, VOLATILE = 1, 2
KEEP_LAST, KEEP_ALL = 1, 2


def dds_type_name(ros_type: str) -> str:
    """``sensor_msgs/msg/Image`` -> ``sensor_msgs::msg::dds_::Image_``."""
    package, kind, name = _split_type(ros_type)
    return f"{package}::{kind}::dds_::{name}_"


def ros_type_name(dds_name: str) -> str:
    """``sensor_msgs::msg::dds_::Image_`` -> ``sensor_msgs/msg/Image``; ValueError if it is not
    one."""
    parts = dds_name.split("::")
    if len(parts) != 4 or parts[2] != "dds_" or not parts[3].endswith("_"):
        msg = f"not a DDS type name of ROS 2's: {dds_name!r}"
        raise ValueError(msg)
    return f"{parts[0]}/{parts[1]}/{parts[3][:-1]}"


def _split_type(ros_type: str) -> tuple[str, str, str]:
    parts = ros_type.split("/")
    if len(parts) != 3 or not all(parts):
        msg = f"a ROS 2 type is package/msg/Name, not {ros_type!r}"
        raise InvalidArgumentError(msg)
    return parts[0], parts[1], parts[2]


def topic_key(domain: int, topic: str, ros_type: str, type_hash: str) -> str:
    """The key expression a topic's samples are put on."""
    return f"{domain}/{topic.strip('/')}/{dds_type_name(ros_type)}/{type_hash}"


def mangle(name: str) -> str:
    """A name as a liveliness token carries it: '/' becomes '%' (so "/" is "%")."""
    return name.replace("/", "%")


@dataclass(frozen=True)
class QoS:
    """The QoS a publisher or subscription announces (what rmw_zenoh's token says of it)."""

    reliability: int = RELIABLE
    durability: int = VOLATILE
    history: int = KEEP_LAST
    depth: int = 10

    def keyexpr(self) -> str:
        """As ``qos_to_keyexpr`` writes it: values equal to rmw_zenoh's defaults left empty."""
        reliability = "" if self.reliability == RELIABLE else str(self.reliability)
        durability = "" if self.durability == VOLATILE else str(self.durability)
        history = "" if self.history == KEEP_LAST else str(self.history)
        depth = "" if self.depth == 42 else str(self.depth)
        return f"{reliability}:{durability}:{history},{depth}:,:,:,,"


@dataclass(frozen=True)
class Node:
    """A ROS 2 node as rmw_zenoh announces it."""

    domain: int
    zid: str  # the Zenoh session's id, as zenoh prints it
    node_id: int
    name: str
    namespace: str = "/"
    enclave: str = "/"

    def token(self) -> str:
        return "/".join(
            [
                ADMIN_SPACE, str(self.domain), self.zid, str(self.node_id), str(self.node_id),
                NODE, mangle(self.enclave), mangle(self.namespace), mangle(self.name),
            ]
        )  # fmt: skip


def endpoint_token(
    node: Node, entity_id: int, kind: str, topic: str, ros_type: str, type_hash: str, qos: QoS
) -> str:
    """The liveliness token of a publisher (MP) or subscription (MS) of ``node``."""
    return "/".join(
        [
            ADMIN_SPACE, str(node.domain), node.zid, str(node.node_id), str(entity_id), kind,
            mangle(node.enclave), mangle(node.namespace), mangle(node.name), mangle(topic),
            dds_type_name(ros_type), type_hash, qos.keyexpr(),
        ]
    )  # fmt: skip


def gid(token: str) -> bytes:
    """The GID rmw_zenoh derives from an entity's liveliness token (XXH3-128)."""
    xxhash = require("xxhash", extra="ros2", feature="ROS 2 topics")
    return int(xxhash.xxh3_128_intdigest(token.encode())).to_bytes(GID_SIZE, "little")


# ---------------------------------------------------------------------------------------------
# Attachments
# ---------------------------------------------------------------------------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def encode_attachment(
    sequence: int, timestamp_ns: int, source_gid: bytes, fmt: str = "compact"
) -> bytes:
    """A sample's attachment in ``fmt`` (see the module's docstring)."""
    if len(source_gid) != GID_SIZE:
        msg = f"a GID is {GID_SIZE} bytes, not {len(source_gid)}"
        raise InvalidArgumentError(msg)
    gid_field = _varint(GID_SIZE) + source_gid
    if fmt == "compact":
        return _I64.pack(sequence) + _I64.pack(timestamp_ns) + gid_field
    if fmt == "keyed":
        key = [_varint(len(k)) + k for k in _KEYS]
        return key[0] + _I64.pack(sequence) + key[1] + _I64.pack(timestamp_ns) + key[2] + gid_field
    msg = f"the attachment format is one of {ATTACHMENT_FORMATS}, not {fmt!r}"
    raise InvalidArgumentError(msg)


@dataclass(frozen=True)
class Attachment:
    sequence: int
    timestamp_ns: int
    source_gid: bytes


def decode_attachment(data: bytes) -> Attachment:
    """A sample's attachment, either format; ValueError naming the fault if it is neither."""
    keyed = data[:1] == _varint(len(_KEYS[0])) and data[1 : 1 + len(_KEYS[0])] == _KEYS[0]
    at = 0
    values: list[int] = []
    for key in _KEYS[:2]:
        if keyed:
            at = _expect_key(data, at, key)
        if len(data) < at + 8:
            msg = f"an attachment of {len(data)} bytes, cut short in its {key.decode()}"
            raise ValueError(msg)
        values.append(_I64.unpack_from(data, at)[0])
        at += 8
    if keyed:
        at = _expect_key(data, at, _KEYS[2])
    if data[at : at + 1] != _varint(GID_SIZE) or len(data) != at + 1 + GID_SIZE:
        msg = f"an attachment whose source GID is not {GID_SIZE} bytes at its end"
        raise ValueError(msg)
    return Attachment(values[0], values[1], bytes(data[at + 1 :]))


def _expect_key(data: bytes, at: int, key: bytes) -> int:
    field = _varint(len(key)) + key
    if data[at : at + len(field)] != field:
        msg = f"a keyed attachment without its {key.decode()!r} key"
        raise ValueError(msg)
    return at + len(field)


__all__ = [
    "ATTACHMENT_FORMATS",
    "Attachment",
    "Node",
    "QoS",
    "decode_attachment",
    "dds_type_name",
    "encode_attachment",
    "endpoint_token",
    "gid",
    "mangle",
    "ros_type_name",
    "topic_key",
]
