"""Helpers for tests, examples and containers that need collision-free segment names."""

from __future__ import annotations

import os
import secrets


def unique_name(prefix: str = "so-test") -> str:
    """A segment name no other process will pick: ``<prefix>-<pid>-<random hex>``."""
    return f"{prefix}-{os.getpid()}-{secrets.token_hex(6)}"


__all__ = ["unique_name"]
