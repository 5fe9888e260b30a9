"""Segment names, and the directory whose files they name.

Small and free of numpy on purpose: health probes import it (see ``_probe``).
"""

from __future__ import annotations

import os

from ._errors import InvalidNameError

# Neither typing nor re is imported at run time: the health probe loads this module, and their
# import costs as much as the rest of the probe (mypy takes any name TYPE_CHECKING as true).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

#: Where segments live. Override with SHARED_OBJECT_DIR (e.g. a tmpfs bind-mounted into containers).
SHM_DIR: Final = os.environ.get("SHARED_OBJECT_DIR", "/dev/shm")  # noqa: S108 - it is the shared-memory dir
TEMP_PREFIX: Final = ".shared_object-tmp-"
MAX_NAME_LENGTH: Final = 200  # NAME_MAX is 255; leave room for the temporary prefix and suffix
_NAME_FIRST: Final = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_NAME_REST: Final = _NAME_FIRST | frozenset(".-")


def validate_name(name: object) -> str:
    """Return ``name`` if it can name a segment file, else raise InvalidNameError."""
    if not isinstance(name, str):
        msg = f"a segment name must be a str, not {type(name).__name__}"
        raise InvalidNameError(msg)
    if (
        not name
        or len(name) > MAX_NAME_LENGTH
        or name[0] not in _NAME_FIRST
        or not _NAME_REST.issuperset(name)
    ):
        msg = (
            f"invalid segment name {name!r}: use 1 to {MAX_NAME_LENGTH} characters from letters, "
            "digits, '_', '-' and '.', not starting with '.' or '-' (no '/', no NUL)"
        )
        raise InvalidNameError(msg)
    return name


def segment_path(name: str) -> str:
    """The file that holds segment ``name``."""
    return os.path.join(SHM_DIR, validate_name(name))


__all__ = ["MAX_NAME_LENGTH", "SHM_DIR", "TEMP_PREFIX", "segment_path", "validate_name"]
