"""The bridge's defaults, in a module that imports nothing: the command line shows them in its
help without loading the bridge (numpy, Zenoh)."""

from __future__ import annotations

#: Every object's key is this prefix and its name.
DEFAULT_PREFIX = "shared_object/"
#: Payloads at least this big are bulk (frames): Zenoh priority DATA, on the bulk link; smaller
#: ones (commands, poses, triggers) go first: priority REAL_TIME, on a link of their own.
BIG_PAYLOAD = 64 * 1024

__all__ = ["BIG_PAYLOAD", "DEFAULT_PREFIX"]
