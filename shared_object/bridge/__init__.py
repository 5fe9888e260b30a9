"""The same shared objects on several hosts, through Eclipse Zenoh (extra:
``shared_object[zenoh]``).

``shared-object bridge --export 'demo-*' --import 'demo-*' --listen tcp/0.0.0.0:7447`` on one host
and ``... --connect tcp/host-a:7447`` on another: each publishes its local objects under
``shared_object/<name>`` and mirrors the other's into local objects of the same names, so code
that uses them runs unchanged on either host.

- ``wire``: the message, byte by byte; ``encoding``: ``--encode``'s codecs and the encoded
  payload, byte by byte; ``session``: the Zenoh configuration, its links and buffers; ``core``:
  the exporters and the importer; ``stats``: what it moved; ``defaults``: its defaults. The
  command is ``shared_object.cli.bridge``.

The names below are loaded when first used (PEP 562), so that importing the command's parser
loads neither numpy nor Zenoh.
"""

from __future__ import annotations

import importlib
from typing import Any

from .defaults import BIG_PAYLOAD, DEFAULT_PREFIX

_LAZY = {"Bridge": ".core", "Stats": ".core", "build_config": ".session"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = ["BIG_PAYLOAD", "DEFAULT_PREFIX", "Bridge", "Stats", "build_config"]
