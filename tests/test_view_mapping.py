"""shared_object.view.mapping: which view each leaf of a value gets, or why none."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from shared_object.cli import view as command
from shared_object.view import mapping


class Pose:
    """Stands in for sapien.Pose (p: position, q: quaternion w x y z), as the mapping sees it."""

    def __init__(self, p: list[float], q: list[float]) -> None:
        self.p, self.q = np.array(p), np.array(q)


FRAME = np.zeros((480, 848, 3), np.uint8)

CASES: list[tuple[str, Any, str | None, str | None]] = [
    # (id, value, --as, expected kind; None: skipped)
    ("rgb uint8", FRAME, None, "image"),
    ("grey uint8", np.zeros((48, 64), np.uint8), None, "image"),
    ("grey HxWx1", np.zeros((48, 64, 1), np.uint8), None, "image"),
    ("rgba", np.zeros((48, 64, 4), np.uint8), None, "image"),
    ("float in [0,1]", np.full((48, 64, 3), 0.5), None, "image"),
    ("float beyond 1", np.full((48, 64, 3), 2.0), None, "tensor"),
    ("uint16 depth", np.zeros((48, 64), np.uint16), None, "tensor"),
    ("HxWx2", np.zeros((48, 64, 2), np.uint8), None, "tensor"),
    ("sapien pose", Pose([0, 0, 1], [1, 0, 0, 0]), None, "pose"),
    ("7 floats", np.array([0, 0, 1, 1, 0, 0, 0.0]), None, "pose"),
    ("7 ints", np.arange(7), None, "scalar"),
    ("int", 3, None, "scalar"),
    ("float", 2.5, None, "scalar"),
    ("bool", True, None, "scalar"),
    ("numpy scalar", np.float32(1.5), None, "scalar"),
    ("small vector", np.zeros(6), None, "scalar"),
    ("long vector", np.zeros(100), None, "tensor"),
    ("string", "auto", None, "text"),
    ("trigger", None, None, "event"),
    ("bytes", b"\x00\x01", None, None),
    ("structured", np.zeros(3, [("a", "<i4"), ("b", "<f8")]), None, None),
    ("unicode array", np.array(["a", "b"]), None, None),
    ("5-D", np.zeros((2, 2, 2, 2, 2)), None, None),
    ("image forced on a tensor", np.zeros((48, 64), np.uint16), "image", "image"),
    ("tensor forced on an image", FRAME, "tensor", "tensor"),
    ("scalar forced on 7 floats", np.zeros(7), "scalar", "scalar"),
    ("image forced on a vector", np.zeros(10), "image", None),
    ("scalar forced on a long vector", np.zeros(100), "scalar", None),
    ("image forced on a number", 3, "image", None),
    ("a kind that cannot be forced", FRAME, "pose", None),
]


@pytest.mark.parametrize(
    ("value", "forced", "kind"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_each_kind_of_value_gets_its_view_or_a_reason(
    value: Any, forced: str | None, kind: str | None
) -> None:
    got, reason = mapping.classify(value, forced)
    assert got == kind, reason
    assert reason  # every decision says why, skipped or not


def test_containers_are_walked_into_leaves_named_by_their_path() -> None:
    value = {
        "cam": FRAME,
        "arm": {"joints": np.zeros(6), "tool": Pose([0, 0, 0], [1, 0, 0, 0])},
        "tags": ["a", b"b"],
    }
    leaves = mapping.plan("robot", value)
    assert [(leaf.path, leaf.kind) for leaf in leaves] == [
        ("robot/cam", "image"),
        ("robot/arm/joints", "scalar"),
        ("robot/arm/tool", "pose"),
        ("robot/tags/0", "text"),
        ("robot/tags/1", None),
    ]
    assert "bytes" in leaves[-1].reason


def test_as_applies_to_an_object_or_to_one_leaf_by_its_path() -> None:
    value = {"a": np.zeros(7), "b": np.zeros(7)}
    kinds = [leaf.kind for leaf in mapping.plan("obj", value, {"obj/b": "scalar"})]
    assert kinds == ["pose", "scalar"]
    assert mapping.plan("depth", np.zeros((4, 4), np.uint16), {"depth": "image"})[0].kind == "image"
    # A name alone does not reach into a container's leaves: say the leaf's path.
    assert [leaf.kind for leaf in mapping.plan("obj", value, {"obj": "scalar"})] == ["pose", "pose"]


def test_the_command_line_offers_the_kinds_the_mapping_can_force() -> None:
    assert command.FORCEABLE == mapping.FORCEABLE


def test_building_the_command_line_loads_neither_numpy_nor_an_extra() -> None:
    """`shared-object --help` and the parsers of the commands that drive an extra load neither
    numpy nor the extra: a command that is only asked for its help starts at once."""
    code = (
        "import sys; from shared_object.cli import build_parser, command_parser; build_parser(); "
        "[command_parser(c) for c in ('bridge', 'view', 'record', 'play', 'health')]; "
        "print(sorted(m for m in ('numpy', 'zenoh', 'rerun', 'mcap') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# The archetypes, with Rerun itself
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def rr() -> Any:
    return pytest.importorskip("rerun", reason="the view extra: pip install -e '.[view]'")


@pytest.mark.parametrize("part", ["plain", "with space", "a/b", "dots.and-dash_", "é", "", "x\\y"])
def test_entity_path_parts_are_escaped_as_rerun_escapes_them(rr: Any, part: str) -> None:
    assert mapping.entity_path("obj", (part,)) == "obj/" + rr.escape_entity_path_part(part)


def test_images_become_images_and_jpeg_only_where_asked(rr: Any) -> None:
    [image] = mapping.archetypes(rr, "image", FRAME)
    assert isinstance(image, rr.Image)
    [compressed] = mapping.archetypes(rr, "image", FRAME, jpeg_quality=80)
    assert isinstance(compressed, rr.EncodedImage)
    # RGBA has no JPEG: sent as it is
    [rgba] = mapping.archetypes(rr, "image", np.zeros((8, 8, 4), np.uint8), jpeg_quality=80)
    assert isinstance(rgba, rr.Image)


def quaternion_xyzw(transform: Any) -> list[float]:
    return [float(x) for x in transform.quaternion.as_arrow_array().to_pylist()[0]]


def test_poses_become_transforms_with_the_quaternion_reordered_and_normalized(rr: Any) -> None:
    # w x y z = (0.5, 0.5, 0.5, 0.5) scaled by 2: sapien's order in, Rerun's x y z w out, unit length
    transform, axes = mapping.archetypes(rr, "pose", Pose([1, 2, 3], [1.0, 1.0, 1.0, 2.0]))
    assert isinstance(transform, rr.Transform3D) and isinstance(axes, rr.TransformAxes3D)
    norm = np.sqrt(7.0)
    np.testing.assert_allclose(quaternion_xyzw(transform), [1 / norm, 1 / norm, 2 / norm, 1 / norm])
    np.testing.assert_allclose(transform.translation.as_arrow_array().to_pylist()[0], [1, 2, 3])
    [vector_transform, _] = mapping.archetypes(rr, "pose", np.array([4, 5, 6, 0, 0, 0, 1.0]))
    np.testing.assert_allclose(quaternion_xyzw(vector_transform), [0, 0, 1, 0])
    # A zero quaternion (an unset pose) is shown as no rotation, not as a crash
    [identity, _] = mapping.archetypes(rr, "pose", np.zeros(7))
    np.testing.assert_allclose(quaternion_xyzw(identity), [0, 0, 0, 1])


def test_scalars_tensors_text_and_events(rr: Any) -> None:
    [scalars] = mapping.archetypes(rr, "scalar", np.array([1.0, 2.0, 3.0]))
    assert isinstance(scalars, rr.Scalars)
    assert scalars.scalars.as_arrow_array().to_pylist() == [1.0, 2.0, 3.0]
    [one] = mapping.archetypes(rr, "scalar", True)
    assert one.scalars.as_arrow_array().to_pylist() == [1.0]
    [tensor] = mapping.archetypes(rr, "tensor", np.zeros((3, 4, 5), bool))
    assert isinstance(tensor, rr.Tensor)
    assert isinstance(mapping.archetypes(rr, "text", "auto")[0], rr.TextDocument)
    assert isinstance(mapping.archetypes(rr, "event", None)[0], rr.TextLog)
    with pytest.raises(ValueError, match="no archetype"):
        mapping.archetypes(rr, "hologram", 1)
