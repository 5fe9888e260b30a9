"""The same shared objects on several hosts, through Eclipse Zenoh (extra:
``shared_object[zenoh]``).

``shared-object bridge --export 'demo-*' --import 'demo-*' --listen tcp/0.0.0.0:7447`` on one host
and ``... --connect tcp/host-a:7447`` on another: each publishes its local objects under
``shared_object/<name>`` and mirrors the other's into local objects of the same names, so code
that uses them runs unchanged on either host.

- ``wire``: the message, byte by byte; ``session``: the Zenoh configuration; ``core``: the
  exporters and the importer; ``command``: ``shared-object bridge``.
"""

from __future__ import annotations

from .core import BIG_PAYLOAD, DEFAULT_PREFIX, Bridge, Stats
from .session import build_config

__all__ = ["BIG_PAYLOAD", "DEFAULT_PREFIX", "Bridge", "Stats", "build_config"]
