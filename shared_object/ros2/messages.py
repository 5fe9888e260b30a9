"""Our objects as ROS 2 messages, and ROS 2 messages as our objects: the mapping, in one table.

An object's value (or one leaf of a dict value) becomes a message of the type its kind maps to,
unless a type is asked for::

    kind                                   message                                 asked for as
    uint8 HxWx3 ndarray                    sensor_msgs/msg/Image, rgb8             bgr8
    uint8 HxWx4                            Image, rgba8                            bgra8
    uint8 HxW, HxWx1                       Image, mono8
    uint16 HxW, HxWx1                      Image, 16UC1                            mono16
    float32 HxW, HxWx1                     Image, 32FC1
    an image sent with --encode jpeg/png   sensor_msgs/msg/CompressedImage
    sapien.Pose                            geometry_msgs/msg/PoseStamped
    float64 / float32 1-D ndarray          std_msgs/msg/Float64MultiArray / Float32MultiArray
    bool, int, float, str                  std_msgs/msg/Bool, Int64, Float64, String
    None (a trigger object)                std_msgs/msg/Empty
    a dict                                 a topic per key whose value maps: /name/key

Messages that have a header get the change time as their stamp, and the frame id given.

A message received becomes a value: an Image an HxWxC (HxW for one channel) array of its
encoding's dtype; geometry_msgs' Vector3 and Point float64 arrays of 3, Quaternion of 4 (so a
Twist is ``{"linear": (3,), "angular": (3,)}``); std_msgs' Bool, Int64, Float64, String (and the
other one-value wrappers) their value, Empty None, a MultiArray its data (shaped as its layout
says); any other message a dict of its fields, its arrays numpy arrays, its nested messages
dicts.

Types, their ``.msg`` definitions and RIHS01 hashes, and CDR come from rosbags' type store of
Jazzy (the types mapped here have the same hashes in Kilted and Rolling). A message that does not
decode is a MessageDecodeError; the caller counts it and leaves its object alone.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from .._errors import InvalidArgumentError, LayoutError
from .._extras import require
from ..payload import ArrayLeaf, Layout

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED_IMAGE = "sensor_msgs/msg/CompressedImage"
POSE_STAMPED = "geometry_msgs/msg/PoseStamped"

#: Image encodings: (dtype, channels) -> encoding, and the encodings one may ask for instead.
IMAGE_ENCODINGS: dict[tuple[str, int], str] = {
    ("uint8", 3): "rgb8",
    ("uint8", 4): "rgba8",
    ("uint8", 1): "mono8",
    ("uint16", 1): "16UC1",
    ("float32", 1): "32FC1",
}
ASKED_ENCODINGS: dict[str, str] = {"bgr8": "rgb8", "bgra8": "rgba8", "mono16": "16UC1"}
#: What a received Image's encoding reads as: encoding -> (dtype, channels).
ENCODING_DTYPES: dict[str, tuple[str, int]] = {
    "rgb8": ("uint8", 3), "bgr8": ("uint8", 3), "rgba8": ("uint8", 4), "bgra8": ("uint8", 4),
    "mono8": ("uint8", 1), "8UC1": ("uint8", 1), "8UC3": ("uint8", 3), "8UC4": ("uint8", 4),
    "mono16": ("uint16", 1), "16UC1": ("uint16", 1), "16SC1": ("int16", 1),
    "32FC1": ("float32", 1), "32SC1": ("int32", 1), "64FC1": ("float64", 1),
}  # fmt: skip
SCALARS: dict[str, str] = {
    "bool": "std_msgs/msg/Bool",
    "int": "std_msgs/msg/Int64",
    "float": "std_msgs/msg/Float64",
    "str": "std_msgs/msg/String",
    "none": "std_msgs/msg/Empty",
}
ARRAYS: dict[str, str] = {
    "float64": "std_msgs/msg/Float64MultiArray",
    "float32": "std_msgs/msg/Float32MultiArray",
}
#: geometry_msgs types received as arrays: type -> their fields, in order.
AS_ARRAYS: dict[str, tuple[str, ...]] = {
    "geometry_msgs/msg/Vector3": ("x", "y", "z"),
    "geometry_msgs/msg/Point": ("x", "y", "z"),
    "geometry_msgs/msg/Quaternion": ("x", "y", "z", "w"),
}


class MessageDecodeError(LayoutError):
    """A received message that does not decode as its type: nothing of it was applied."""


@cache
def typestore() -> Any:
    """rosbags' type store of ROS 2 Jazzy (MissingExtraError without the ros2 extra)."""
    typesys = require("rosbags.typesys", extra="ros2", feature="ROS 2")
    return typesys.get_typestore(typesys.Stores.ROS2_JAZZY)


@cache
def type_hash(ros_type: str) -> str:
    """The RIHS01 hash ROS 2 computes for ``ros_type``."""
    return str(typestore().hash_rihs01(ros_type))


@cache
def msgdef(ros_type: str) -> str:
    """``ros_type``'s ``.msg`` definition with its dependencies, as rosbag2 stores it."""
    text, _ = typestore().generate_msgdef(ros_type, ros_version=2)
    return str(text)


def known(ros_type: str) -> bool:
    return ros_type in typestore().types


def serialize(message: Any, ros_type: str) -> memoryview:
    return memoryview(typestore().serialize_cdr(message, ros_type))


# ---------------------------------------------------------------------------------------------
# Export: a value as a message
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Exported:
    """How one object (or leaf) becomes messages: their type, and the function that makes one
    from the value (the whole value: the leaf is taken here) and its change time."""

    ros_type: str
    describe: str
    make: Callable[[Any, int], Any]

    @property
    def type_hash(self) -> str:
        return type_hash(self.ros_type)

    def cdr(self, value: Any, stamp_ns: int) -> memoryview:
        return serialize(self.make(value, stamp_ns), self.ros_type)


def leaf_of(value: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        value = value[key]
    return value


def _header(stamp_ns: int, frame_id: str) -> Any:
    ts = typestore()
    time = ts.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9)
    return ts.types["std_msgs/msg/Header"](stamp=time, frame_id=frame_id)


def _image_encoding(leaf: ArrayLeaf) -> str | None:
    shape = leaf.shape
    channels = 1 if len(shape) == 2 else shape[2] if len(shape) == 3 else 0
    return IMAGE_ENCODINGS.get((leaf.dtype.name, channels)) if channels else None


def exported(
    layout: Layout,
    path: tuple[str, ...],
    asked: str | None,
    frame_id: str,
    compress: Callable[[Any], tuple[str, bytes]] | None = None,
) -> Exported:
    """How the leaf at ``path`` of values laid out as ``layout`` (the whole value: ``()``)
    becomes a message; ``asked``: a type or an image encoding asked for; ``compress``: an image
    codec's (format, bytes) of an image, for a CompressedImage. InvalidArgumentError, saying what
    the leaf holds, if it maps to nothing."""
    where = ".".join(path) if path else "the value"
    kind = _leaf_kind(layout, path)
    arrays = {leaf.path: leaf for leaf in layout.arrays}
    leaf = arrays.get("".join(f"[{k!r}]" for k in path))
    if leaf is not None:
        made = _exported_array(leaf, asked, frame_id, path, compress)
        if made is not None:
            return made
    elif kind == "pose" and asked in (None, POSE_STAMPED):
        return Exported(POSE_STAMPED, f"{where} as {POSE_STAMPED}", _pose(path, frame_id))
    elif kind in SCALARS and asked in (None, SCALARS[kind]):
        ros_type = SCALARS[kind]
        return Exported(ros_type, f"{where} as {ros_type}", _scalar(path, ros_type))
    holds = leaf.describe() if leaf is not None else kind
    msg = (
        f"{where} holds {holds}, which maps to no ROS 2 message"
        + (f" of type {asked}" if asked else "")
        + " (see docs/ros2.md for the kinds that map)"
    )
    raise InvalidArgumentError(msg)


def exported_leaves(
    layout: Layout,
    path: tuple[str, ...],
    asked: str | None,
    frame_id: str,
    compress: Callable[[Any], tuple[str, bytes]] | None = None,
) -> list[tuple[tuple[str, ...], Exported]]:
    """What ``exported`` makes of the leaf at ``path``, with ``()``; for a dict that maps to
    nothing whole (and no type asked for), each of its keys whose leaf maps, with its key: a
    dict value becomes a topic per key (``demo-frame``: ``/demo_frame/seq``, ``/demo_frame/frame``,
    ...). InvalidArgumentError, as ``exported``'s, if nothing maps."""
    try:
        return [((), exported(layout, path, asked, frame_id, compress))]
    except InvalidArgumentError:
        if asked is not None or _leaf_kind(layout, path) != "dict":
            raise
        found: list[tuple[tuple[str, ...], Exported]] = []
        for key in _dict_keys(layout, path):
            try:
                found.append(((key,), exported(layout, (*path, key), None, frame_id, compress)))
            except InvalidArgumentError:
                continue
        if not found:
            raise
        return found


def _dict_keys(layout: Layout, path: tuple[str, ...]) -> list[str]:
    schema: Any = layout.schema
    for key in path:
        schema = next(s for k, s in schema[1] if k == ["str", key])
    return [k[1] for k, _ in schema[1] if k[0] == "str"]


def _leaf_kind(layout: Layout, path: tuple[str, ...]) -> str:
    """The schema kind of the leaf at ``path`` ("ndarray", "pose", "int", "dict", ...)."""
    schema: Any = layout.schema
    for key in path:
        if schema[0] != "dict":
            msg = f"{'.'.join(path)}: the value is not a dict with a key {key!r} ({layout.kind})"
            raise InvalidArgumentError(msg)
        found = [s for k, s in schema[1] if k == ["str", key]]
        if not found:
            msg = f"{'.'.join(path)}: no key {key!r} in the value ({layout.kind})"
            raise InvalidArgumentError(msg)
        schema = found[0]
    return str(schema[0])


def _exported_array(
    leaf: ArrayLeaf,
    asked: str | None,
    frame_id: str,
    path: tuple[str, ...],
    compress: Callable[[Any], tuple[str, bytes]] | None,
) -> Exported | None:
    where = ".".join(path) if path else "the value"
    encoding = _image_encoding(leaf)
    if asked in ASKED_ENCODINGS:
        if encoding != ASKED_ENCODINGS[asked]:
            return None
        encoding = asked
    elif asked not in (None, IMAGE, COMPRESSED_IMAGE) and not (
        len(leaf.shape) == 1 and asked == ARRAYS.get(leaf.dtype.name)
    ):
        return None
    if encoding is not None and asked != IMAGE and compress is not None:
        return Exported(
            COMPRESSED_IMAGE,
            f"{where} ({leaf.describe()}) as {COMPRESSED_IMAGE}",
            _compressed(path, frame_id, encoding, compress),
        )
    if encoding is not None and asked != COMPRESSED_IMAGE:
        return Exported(
            IMAGE,
            f"{where} ({leaf.describe()}) as {IMAGE} {encoding}",
            _image(path, frame_id, encoding),
        )
    if (
        len(leaf.shape) == 1
        and leaf.dtype.name in ARRAYS
        and asked in (None, ARRAYS[leaf.dtype.name])
    ):
        ros_type = ARRAYS[leaf.dtype.name]
        return Exported(
            ros_type, f"{where} ({leaf.describe()}) as {ros_type}", _multiarray(path, ros_type)
        )
    return None


def _image(path: tuple[str, ...], frame_id: str, encoding: str) -> Callable[[Any, int], Any]:
    image_type = typestore().types[IMAGE]
    swap = encoding in ("bgr8", "bgra8")

    def make(value: Any, stamp_ns: int) -> Any:
        image = np.ascontiguousarray(leaf_of(value, path))  # a view of a slot is: no copy
        if swap:
            image = image[..., [2, 1, 0, *range(3, image.shape[2])]]
        height, width = image.shape[:2]
        return image_type(
            header=_header(stamp_ns, frame_id), height=height, width=width, encoding=encoding,
            is_bigendian=0, step=image.nbytes // height if height else 0,
            data=image.reshape(-1).view(np.uint8),
        )  # fmt: skip

    return make


def _compressed(
    path: tuple[str, ...],
    frame_id: str,
    encoding: str,
    compress: Callable[[Any], tuple[str, bytes]],
) -> Callable[[Any, int], Any]:
    compressed_type = typestore().types[COMPRESSED_IMAGE]

    def make(value: Any, stamp_ns: int) -> Any:
        fmt, data = compress(leaf_of(value, path))
        return compressed_type(
            header=_header(stamp_ns, frame_id),
            format=f"{encoding}; {fmt} compressed {'mono8' if encoding == 'mono8' else 'bgr8'}",
            data=np.frombuffer(data, np.uint8),
        )

    return make


def _multiarray(path: tuple[str, ...], ros_type: str) -> Callable[[Any, int], Any]:
    ts = typestore()
    array_type, layout_type = ts.types[ros_type], ts.types["std_msgs/msg/MultiArrayLayout"]
    dimension = ts.types["std_msgs/msg/MultiArrayDimension"]

    def make(value: Any, stamp_ns: int) -> Any:
        data = np.ascontiguousarray(leaf_of(value, path))
        dim = dimension(label="", size=len(data), stride=len(data))
        return array_type(layout=layout_type(dim=[dim], data_offset=0), data=data)

    return make


def _pose(path: tuple[str, ...], frame_id: str) -> Callable[[Any, int], Any]:
    ts = typestore()
    stamped, pose_type = ts.types[POSE_STAMPED], ts.types["geometry_msgs/msg/Pose"]
    point, quaternion = (
        ts.types["geometry_msgs/msg/Point"],
        ts.types["geometry_msgs/msg/Quaternion"],
    )

    def make(value: Any, stamp_ns: int) -> Any:
        pose = leaf_of(value, path)
        (x, y, z), (qw, qx, qy, qz) = pose.p, pose.q  # sapien.Pose: p, and q as w x y z
        return stamped(
            header=_header(stamp_ns, frame_id),
            pose=pose_type(
                position=point(x=float(x), y=float(y), z=float(z)),
                orientation=quaternion(x=float(qx), y=float(qy), z=float(qz), w=float(qw)),
            ),
        )

    return make


def _scalar(path: tuple[str, ...], ros_type: str) -> Callable[[Any, int], Any]:
    message_type = typestore().types[ros_type]
    if ros_type == SCALARS["none"]:
        return lambda value, stamp_ns: message_type()

    def make(value: Any, stamp_ns: int) -> Any:
        return message_type(data=leaf_of(value, path))

    return make


# ---------------------------------------------------------------------------------------------
# Import: a message as a value
# ---------------------------------------------------------------------------------------------
def decode(data: bytes | memoryview, ros_type: str, store: Any = None) -> Any:
    """The message ``data`` (CDR) holds, as a value (see the module's docstring);
    MessageDecodeError if it does not decode as ``ros_type``. ``store``: the rosbags type store
    that defines ``ros_type`` (default: ours, Jazzy's; a recording brings its own)."""
    try:
        message = (store or typestore()).deserialize_cdr(bytes(data), ros_type)
        return to_value(message)
    except MessageDecodeError:
        raise
    except Exception as exc:  # rosbags raises whatever a hostile buffer makes it meet
        msg = f"a {ros_type} that does not decode ({type(exc).__name__}: {exc})"
        raise MessageDecodeError(msg) from exc


#: std_msgs' arrays (Float64MultiArray, Int32MultiArray, ...): received as their data, shaped.
MULTI_ARRAY = re.compile(r"std_msgs/msg/(Float|Int|UInt|Byte|Char)\w*MultiArray")
#: std_msgs' wrappers of one value: received as the value itself (Empty: None).
UNWRAPPED = frozenset(
    f"std_msgs/msg/{t}"
    for t in (
        "Bool", "Byte", "Char", "String", "Float32", "Float64", "Int8", "Int16", "Int32", "Int64",
        "UInt8", "UInt16", "UInt32", "UInt64",
    )
)  # fmt: skip


def to_value(message: Any) -> Any:
    ros_type = getattr(message, "__msgtype__", None)
    if ros_type == IMAGE:
        return _image_value(message)
    if ros_type in UNWRAPPED:
        return to_value(message.data)
    if ros_type == SCALARS["none"]:
        return None
    if ros_type in AS_ARRAYS:
        return np.array([getattr(message, f) for f in AS_ARRAYS[ros_type]], np.float64)
    if ros_type is not None and MULTI_ARRAY.fullmatch(ros_type):
        return _multiarray_value(message)
    if ros_type is not None:
        return {
            name: to_value(getattr(message, name))
            for name in message.__dataclass_fields__
            if name != "__msgtype__"
        }
    if isinstance(message, np.ndarray):
        return message.copy()
    if isinstance(message, list):
        return [to_value(item) for item in message]
    return message


def _multiarray_value(message: Any) -> Any:
    """A std_msgs MultiArray's data: shaped as its layout's dimensions if they describe it
    (row-major, their sizes' product the data's length after ``data_offset``), else flat."""
    data = np.asarray(message.data)[message.layout.data_offset :].copy()
    sizes = tuple(int(d.size) for d in message.layout.dim)
    if sizes and int(np.prod(sizes)) == data.size:
        return data.reshape(sizes)
    return data


def _image_value(image: Any) -> Any:
    known_encoding = ENCODING_DTYPES.get(image.encoding)
    if known_encoding is None:
        msg = f"an Image of encoding {image.encoding!r}, which has no array kind here"
        raise MessageDecodeError(msg)
    dtype, channels = np.dtype(known_encoding[0]), known_encoding[1]
    if image.is_bigendian:
        dtype = dtype.newbyteorder(">")
    row = image.width * channels * dtype.itemsize
    if image.step < row or len(image.data) < image.step * image.height:
        size = f"{image.width}x{image.height} {image.encoding}"
        msg = f"an Image of {size} with {len(image.data)} bytes, step {image.step}"
        raise MessageDecodeError(msg)
    rows = np.asarray(image.data[: image.step * image.height]).reshape(image.height, image.step)
    pixels = rows[:, :row].copy().view(dtype).astype(dtype.newbyteorder("="), copy=False)
    shape = (image.height, image.width) if channels == 1 else (image.height, image.width, channels)
    return pixels.reshape(shape)


# ---------------------------------------------------------------------------------------------
# Names
# ---------------------------------------------------------------------------------------------
_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_topic(topic: str) -> str:
    """``topic`` if it is a valid absolute ROS 2 topic name; InvalidArgumentError saying why not."""
    tokens = topic[1:].split("/") if topic.startswith("/") else None
    if not tokens or not all(_TOKEN.fullmatch(t) for t in tokens):
        msg = (
            f"{topic!r} is not a ROS 2 topic name: write /name or /name/space/name, each part of "
            "letters, digits and '_', not starting with a digit"
        )
        raise InvalidArgumentError(msg)
    return topic


def topic_for(name: str) -> str:
    """The topic an object (or ``object.key`` leaf) is published on by default: ``demo-frame``
    -> ``/demo_frame``, ``demo-frame.frame`` -> ``/demo_frame/frame``."""
    parts = [re.sub(r"[^A-Za-z0-9_]", "_", p) or "_" for p in name.split(".")]
    return "/" + "/".join(f"_{p}" if p[0].isdigit() else p for p in parts)


def object_for(topic: str) -> str:
    """The object a topic is played into by default: ``/camera/image_raw`` ->
    ``camera-image_raw``."""
    return topic.strip("/").replace("/", "-")


__all__ = [
    "COMPRESSED_IMAGE",
    "IMAGE",
    "Exported",
    "MessageDecodeError",
    "check_topic",
    "decode",
    "exported",
    "exported_leaves",
    "known",
    "msgdef",
    "object_for",
    "serialize",
    "to_value",
    "topic_for",
    "type_hash",
    "typestore",
]
