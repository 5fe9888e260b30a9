"""What each value is shown as: the one place that decides which Rerun view a value's leaves get,
or why a leaf gets none.

A value is walked into leaves: a dict by its keys, a list or tuple by index, anything else (an
array, a scalar, a string, a ``sapien.Pose``) is a leaf. Each leaf gets an entity path (the object's
name, then the keys: ``robot/arm/joints``) and one kind:

==========  ===========================================================================
kind        what it is by default, and the Rerun archetype it is logged as
==========  ===========================================================================
``image``   HxW, HxWx1, HxWx3, HxWx4 arrays of uint8, or of floats within [0, 1]: Image
``pose``    a ``sapien.Pose``; a float array of shape (7,): x y z, then qw qx qy qz:
            Transform3D, with its axes drawn
``scalar``  a bool, int or float; a 1-D numeric array of at most 16: Scalars (a line each)
``tensor``  any other numeric array: Tensor
``text``    a string: TextDocument
``event``   None (a trigger-only object): a TextLog line at each change
==========  ===========================================================================

``--as NAME=KIND`` (the object's name, or a leaf's path) forces ``image``, ``tensor`` or ``scalar``
where the value allows it. Everything else (bytes, structured or object arrays, arrays of more
than 4 dimensions, an image forced on a non-image shape) is skipped, and the reason said once.
Nothing here imports Rerun: ``archetypes`` is given the module.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

KINDS = ("image", "pose", "scalar", "tensor", "text", "event")
#: The kinds ``--as`` may force.
FORCEABLE = ("image", "tensor", "scalar")
#: The length of a pose's drawn axes, in the pose's units (metres for sapien).
POSE_AXIS_LENGTH = 0.2
#: 1-D arrays up to this long are plotted, a line per element; longer ones are tensors.
MAX_PLOTTED = 16
_IMAGE_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}


class Leaf(NamedTuple):
    """One leaf of a value: its entity path, the kind it is shown as (None: skipped), and why."""

    path: str
    kind: str | None
    reason: str


def entity_path(name: str, keys: tuple[str, ...]) -> str:
    """``name/key/key``, each part escaped as Rerun's entity paths require."""
    return "/".join(_escape(part) for part in (name, *keys))


def _escape(part: str) -> str:
    # Rerun's own rule (rerun.escape_entity_path_part), without importing Rerun here: any
    # character other than letters, digits, '-', '_' and '.' is escaped with a backslash.
    return "".join(c if c.isalnum() or c in "-_." else "\\" + c for c in part)


def walk(value: Any, keys: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    """(keys, leaf) for each leaf of ``value``, in order."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from walk(item, (*keys, str(key)))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from walk(item, (*keys, str(index)))
    else:
        yield keys, value


def _is_pose(value: Any) -> bool:
    return type(value).__name__ == "Pose" and hasattr(value, "p") and hasattr(value, "q")


def _image_shape(array: np.ndarray[Any, Any]) -> bool:
    return array.ndim == 2 or (array.ndim == 3 and array.shape[2] in _IMAGE_CHANNELS)


def _image_values(array: np.ndarray[Any, Any]) -> bool:
    if array.dtype == np.uint8:
        return True
    if array.dtype.kind == "f" and array.size:
        low, high = float(np.nanmin(array)), float(np.nanmax(array))
        return low >= 0.0 and high <= 1.0
    return False


def classify(value: Any, forced: str | None = None) -> tuple[str | None, str]:
    """The kind ``value`` is shown as, and why (or None, and why not)."""
    if forced is not None and forced not in FORCEABLE:
        return None, f"--as {forced}: a kind that cannot be forced (use {', '.join(FORCEABLE)})"
    if value is None:
        return "event", "a trigger-only object: each change is logged"
    if _is_pose(value):
        return "pose", "a sapien.Pose"
    if isinstance(value, str):
        return "text", "a string"
    if isinstance(value, (bytes, bytearray)):
        return None, "bytes: no view shows raw bytes"
    if isinstance(value, (bool, int, float, np.bool_, np.integer, np.floating)):
        if forced in ("image", "tensor"):
            return None, f"--as {forced}: a single number is not an {forced}"
        return "scalar", "a number"
    if not isinstance(value, np.ndarray):
        return None, f"a {type(value).__name__}: no view for it"
    return _classify_array(value, forced)


def _classify_array(array: np.ndarray[Any, Any], forced: str | None) -> tuple[str | None, str]:
    if array.dtype.kind not in "biuf":
        return None, f"an array of dtype {array.dtype}: only numbers are shown"
    if array.ndim > 4 and forced != "scalar":
        return None, f"an array of {array.ndim} dimensions: at most 4 are shown"
    if forced == "image":
        if not _image_shape(array):
            return None, f"--as image: shape {array.shape} is not HxW, HxWx1, HxWx3 or HxWx4"
        return "image", "forced with --as image"
    if forced == "scalar":
        if array.size > MAX_PLOTTED:
            return None, f"--as scalar: {array.size} elements, at most {MAX_PLOTTED} are plotted"
        return "scalar", "forced with --as scalar"
    if forced == "tensor":
        return "tensor", "forced with --as tensor"
    if _image_shape(array) and min(array.shape[:2]) > 1 and _image_values(array):
        return "image", f"{array.dtype} of shape {array.shape}"
    if array.shape == (7,) and array.dtype.kind == "f":
        return "pose", "7 floats: x y z, then the quaternion qw qx qy qz"
    if array.ndim <= 1 and array.size <= MAX_PLOTTED:
        return "scalar", f"{array.size} numbers: a line each"
    return "tensor", f"{array.dtype} of shape {array.shape}"


def plan(name: str, value: Any, forced: Mapping[str, str] | None = None) -> list[Leaf]:
    """Every leaf of ``value`` (the object ``name``'s), with its kind or why it has none."""
    forced = forced or {}
    leaves = []
    for keys, leaf in walk(value):
        path = "/".join((name, *keys))
        kind, reason = classify(leaf, forced.get(path, forced.get(name) if not keys else None))
        leaves.append(Leaf(entity_path(name, keys), kind, reason))
    return leaves


def archetypes(rr: Any, kind: str, value: Any, jpeg_quality: int | None = None) -> list[Any]:
    """The Rerun archetypes that show ``value`` as ``kind`` (``rr`` is the rerun module)."""
    if kind == "image":
        array = np.asarray(value)
        if array.dtype == np.bool_:
            array = array.astype(np.uint8) * 255
        channels = 1 if array.ndim == 2 else array.shape[2]
        image = rr.Image(array, color_model=_IMAGE_CHANNELS[channels])
        if jpeg_quality is not None and array.dtype == np.uint8 and channels in (1, 3):
            return [image.compress(jpeg_quality=jpeg_quality)]
        return [image]
    if kind == "pose":
        if _is_pose(value):
            position, wxyz = np.asarray(value.p, float), np.asarray(value.q, float)
        else:
            position, wxyz = np.asarray(value[:3], float), np.asarray(value[3:], float)
        norm = math.sqrt(float(np.dot(wxyz, wxyz)))
        wxyz = wxyz / norm if norm > 0 else np.array([1.0, 0.0, 0.0, 0.0])
        transform = rr.Transform3D(
            translation=position, quaternion=rr.Quaternion(xyzw=[*wxyz[1:], wxyz[0]])
        )
        return [transform, rr.TransformAxes3D(axis_length=POSE_AXIS_LENGTH)]
    if kind == "scalar":
        return [rr.Scalars(np.atleast_1d(np.asarray(value, dtype=np.float64)))]
    if kind == "tensor":
        array = np.asarray(value)
        return [rr.Tensor(array.astype(np.uint8) if array.dtype == np.bool_ else array)]
    if kind == "text":
        return [rr.TextDocument(value)]
    if kind == "event":
        return [rr.TextLog("triggered")]
    msg = f"no archetype for kind {kind!r}"
    raise ValueError(msg)


__all__ = [
    "FORCEABLE",
    "KINDS",
    "MAX_PLOTTED",
    "Leaf",
    "archetypes",
    "classify",
    "entity_path",
    "plan",
    "walk",
]
