"""Code written for the reference runs unchanged: the same calls, side by side, on both libraries.

``reference_driver.py`` runs scripted sequences (create, attach, fetch, fetch(fn), assign,
modified, triggered, trigger, mtime, pickling, close; across two handles and a child process;
for every type the reference supports, and for values it refuses) once on the reference
(real-robot 0.2.1, in the virtual environment ``tests/reference_env.sh`` makes) and once on
shared_object. Every call must return the same value, or raise an exception that the
reference's caller catches (ours may be more specific: our TypeMismatchError is a BufferError).

A difference is allowed only where it is listed below, under a name that the README's "What
changed from the reference" table has a row for. A listed difference that stops happening fails
too, so the list stays what the libraries do.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import reference_driver

from shared_object.testing import unique_name

ROOT = Path(__file__).resolve().parent.parent
DRIVER = Path(reference_driver.__file__)
_LIFECYCLES = [name for name, steps in reference_driver.scenarios().items() if len(steps) > 30]

#: Differences we chose (name -> scenario -> steps); the README's table gives each one's reason.
KNOWN_DIFFERENCES: dict[str, dict[str, set[int]]] = {
    # The reference's mtime is the last change this handle saw; ours is the object's last change.
    "mtime": {name: {8, 12} for name in _LIFECYCLES},
    # After close(), the reference's calls fail on the closed file descriptor (OSError EBADF).
    "closed handle": {name: {36} for name in _LIFECYCLES},
    # A leaf takes a value of another type that it holds exactly; the reference refuses it.
    "lossless conversions": {"complex": {29, 30, 32}, "numbers": {1, 2, 4, 7, 8, 12, 13, 15, 16}},
    # The reference re-assigns a str/bytes only with the same length or while short.
    "string capacity": {
        "str-lengths": {5, 6, 8},
        "bytes-long-first": {3, 4, 6},
        "str-init-size": {4, 5},
    },
    # An int beyond 64 bits: the reference raises struct.error after zeroing the stored value.
    "int range": {"numbers": {9, 10}},
    "numpy scalars": {"numpy-scalar": {0, 1}},
    "compound values": {"dict": {0, 1}, "tuple": {0, 1}, "list": {0, 1}, "set": {0, 1}},
    "array dtypes": {"datetime-array": {0, 1}},
    "SharedDynamicObject": {"dynamic": {0, 1, 2}},
}


def _reference_python() -> str:
    given = os.environ.get("SHARED_OBJECT_REFERENCE_PYTHON")
    if given:
        return given
    default = ROOT / ".venv-reference" / "bin" / "python"
    if default.exists():
        return str(default)
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(
            "the reference's virtual environment is missing: tests/run.sh makes it (tests/reference_env.sh)"
        )
    pytest.skip(
        "the reference is not installed: run `bash tests/reference_env.sh` (needs PyPI) to compare with it"
    )


def _run(python: str, library: str) -> dict[str, list[Any]]:
    result = subprocess.run(
        [python, str(DRIVER), library, unique_name()],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "LOGURU_LEVEL": "ERROR"},
    )
    assert result.returncode == 0, f"the driver failed on {library}:\n{result.stderr[-3000:]}"
    outcomes: dict[str, list[Any]] = json.loads(result.stdout)
    return outcomes


def _agree(ours: list[Any], reference: list[Any]) -> bool:
    """Same value; or both raised, and ours is caught by every builtin that catches the reference's."""
    if ours == reference:
        return True
    return ours[0] == reference[0] == "raised" and set(reference[1]) <= set(ours[1])


@pytest.fixture(scope="module")
def outcomes() -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    reference = _run(_reference_python(), "reference")
    ours = _run(sys.executable, "ours")
    return ours, reference


def test_every_scenario_ran_on_both(
    outcomes: tuple[dict[str, list[Any]], dict[str, list[Any]]],
) -> None:
    ours, reference = outcomes
    assert "pose" in reference, (
        "sapien is missing from the reference's environment: its Pose went untested"
    )
    assert set(ours) == set(reference) == set(reference_driver.scenarios())
    for name, steps in reference_driver.scenarios().items():
        assert len(ours[name]) == len(reference[name]) == len(steps), name


def test_every_difference_is_a_known_one(
    outcomes: tuple[dict[str, list[Any]], dict[str, list[Any]]],
) -> None:
    ours, reference = outcomes
    scenarios = reference_driver.scenarios()
    found = {
        (name, i)
        for name in reference
        for i, (a, b) in enumerate(zip(ours[name], reference[name], strict=True))
        if not _agree(a, b)
    }
    known = {
        (name, i)
        for steps in KNOWN_DIFFERENCES.values()
        for name, indices in steps.items()
        for i in indices
    }
    unexplained = [
        f"{name} step {i} {scenarios[name][i]}: ours {ours[name][i]}, reference {reference[name][i]}"
        for name, i in sorted(found - known)
    ]
    assert not unexplained, (
        "differences from the reference that are neither fixed nor listed:\n"
        + "\n".join(unexplained)
    )
    gone = sorted(known - found)
    assert not gone, (
        f"listed differences that no longer happen (remove them from the list and the README): {gone}"
    )


def test_the_common_life_of_an_object_agrees_step_by_step(
    outcomes: tuple[dict[str, list[Any]], dict[str, list[Any]]],
) -> None:
    """The parts users hit most, spelled out: the trigger rule and the assign rule."""
    ours, reference = outcomes
    steps = reference_driver.scenarios()["trigger-object"]
    for i, (handle, op, _) in enumerate(steps):
        assert ours["trigger-object"][i] == reference["trigger-object"][i], (i, handle, op)
    assert reference["trigger-object"][3] == [
        "value",
        ["bool", "True"],
    ]  # so.trigger(); so.triggered


def test_every_known_difference_has_a_row_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## What changed from the reference", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1).strip() for m in re.finditer(r"^\| *([^|]+?) *\|", section, re.MULTILINE)}
    missing = [name for name in KNOWN_DIFFERENCES if name not in rows]
    assert not missing, f"README's 'What changed from the reference' has no row for {missing}"
